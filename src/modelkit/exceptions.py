"""Every error and warning modelkit raises, in one tree.

Each error also subclasses the builtin exception a caller would naturally catch, so
``except ValueError`` still works around code that validates input::

    ModelkitError(Exception)
    ├── UsageError(ModelkitError, ValueError)        an argument is invalid; says what is accepted
    ├── SignatureError(ModelkitError, ValueError)    input does not match a Signature
    ├── DataError(ModelkitError, ValueError)         bad data; profiles that do not match
    ├── ArtifactError(ModelkitError)
    │   ├── ArtifactIntegrityError                   a file's hash, size or presence is wrong
    │   ├── ArtifactFormatError(…, ValueError)       unreadable or unsupported manifest
    │   ├── ArtifactExistsError(…, FileExistsError)  the save target is taken
    │   └── VersionMismatchError                     other library versions, under strict=True
    ├── UnsupportedModelError(…, TypeError)          not a model, or it lacks the method
    ├── NotFoundError(ModelkitError, LookupError)    no such model, version, plugin or file
    ├── RegistryError(ModelkitError)                 a refused registry operation
    ├── ServingError(ModelkitError)                  a served app cannot be built or started
    ├── BatchJobError(ModelkitError)                 a batch job id clash or concurrent run
    ├── MissingDependencyError(…, ImportError)       an optional extra is not installed
    ├── PluginError(ModelkitError)                   a plugin misbehaved at registration
    └── RetrainVetoError(ModelkitError)              an on_retrain_triggered hook vetoed the retrain

    ModelkitWarning(UserWarning)
    ├── HookFailedWarning                            an event hook raised; the work went on
    ├── MonitoringWarning                            a monitor failed on a batch; serving went on
    └── VersionMismatchWarning                       saved under other library versions
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ArtifactExistsError",
    "ArtifactFormatError",
    "ArtifactIntegrityError",
    "BatchJobError",
    "DataError",
    "HookFailedWarning",
    "MissingDependencyError",
    "ModelkitError",
    "ModelkitWarning",
    "MonitoringWarning",
    "NotFoundError",
    "PluginError",
    "RegistryError",
    "RetrainVetoError",
    "ServingError",
    "SignatureError",
    "UnsupportedModelError",
    "UsageError",
    "VersionMismatchError",
    "VersionMismatchWarning",
]


class ModelkitError(Exception):
    """Base class of every error modelkit raises on purpose."""


class UsageError(ModelkitError, ValueError):
    """A function or command was called with an invalid argument; the message says what is
    accepted (e.g. ``cv must be an int >= 2, 'holdout' or a splitter, got 1``)."""


class SignatureError(ModelkitError, ValueError):
    """Input data does not match what the model was trained on.

    The message names the feature, the row (when one row is at fault), what was expected
    and what was found, e.g. ``feature 'f3' must be numeric, got 'abc' at row 2``.
    """


class DataError(ModelkitError, ValueError):
    """Data cannot be fingerprinted or profiled as given, or two profiles do not match."""


class ArtifactError(ModelkitError):
    """Base class of errors about saved artifacts."""


class ArtifactIntegrityError(ArtifactError):
    """An artifact's file is missing, truncated or changed since it was saved.

    Nothing from the artifact is unpickled once this is raised.
    """


class ArtifactFormatError(ArtifactError, ValueError):
    """An artifact's manifest is unreadable, malformed or of an unsupported format version."""


class ArtifactExistsError(ArtifactError, FileExistsError):
    """Something already exists where an artifact was to be saved (``overwrite=True`` replaces
    an artifact, never anything else)."""


class VersionMismatchError(ArtifactError):
    """Under ``strict=True``: the artifact was saved with other versions of its libraries."""


class NotFoundError(ModelkitError, LookupError):
    """The named model, version, alias, plugin or file does not exist."""


class RegistryError(ModelkitError):
    """The registry refused an operation (e.g. archiving a version an alias points to), or its
    database was written by a newer modelkit."""


class MissingDependencyError(ModelkitError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra to install (``pip install 'modelkit[postgres]'``)."""


class ServingError(ModelkitError):
    """A served application cannot be built or started (no models, duplicate names, a model
    that failed to load). Errors of single requests are HTTP answers, never this."""


class BatchJobError(ModelkitError):
    """A batch job cannot go on: its id was used for a job with another model, input or
    output, or another run of the same job committed the chunk first. Nothing of the refused
    chunk was written; the message says how to resume or which id to use instead."""


class PluginError(ModelkitError):
    """A plugin registered something invalid (e.g. a name another plugin already took)."""


class RetrainVetoError(ModelkitError):
    """Raised by an ``on_retrain_triggered`` hook to veto a retrain; its message is the reason."""


class UnsupportedModelError(ModelkitError, TypeError):
    """An object cannot be used as a model, or a model lacks the method asked for.

    Raised by :meth:`modelkit.Model.wrap` when no plugin can wrap the object, and by
    ``Model.predict_proba`` / ``decision_function`` when the estimator has no such method
    (the message lists the methods it does have).
    """


class ModelkitWarning(UserWarning):
    """Base class of every warning modelkit emits."""


class HookFailedWarning(ModelkitWarning):
    """An event hook raised; the hook was skipped and the operation went on."""


class MonitoringWarning(ModelkitWarning):
    """A monitor failed on a batch, or dropped batches it could not keep up with; the
    predictions were unaffected."""


class VersionMismatchWarning(ModelkitWarning):
    """An artifact was saved with other versions of the libraries it depends on."""
