"""modelkit: take a scikit-learn model from a notebook to production and keep it healthy.

The public names are re-exported here; everything else lives in its own module
(``modelkit.plugins``, ``modelkit.stores``, ``modelkit.exceptions``, …). Importing modelkit
loads neither scikit-learn, pandas nor any plugin: those come when first needed.
"""

from modelkit._version import __version__
from modelkit.artifact import Artifact, Manifest
from modelkit.batch import batch_predict
from modelkit.data import Dataset, Profile, fingerprint
from modelkit.exceptions import (
    ArtifactError,
    ArtifactIntegrityError,
    DataError,
    ModelkitError,
    ModelkitWarning,
    NotFoundError,
    RegistryError,
    SignatureError,
    UsageError,
)
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.monitoring import Monitor
from modelkit.registry import Registry
from modelkit.retrain import Retrainer, RetrainEvent, RetrainPolicy
from modelkit.servers import Server
from modelkit.serving import asgi_app, wsgi_app
from modelkit.signature import Signature
from modelkit.training import TrainResult, TuneResult, train, tune

__all__ = [
    "Artifact",
    "ArtifactError",
    "ArtifactIntegrityError",
    "DataError",
    "Dataset",
    "Manifest",
    "Model",
    "ModelkitError",
    "ModelkitWarning",
    "Monitor",
    "NotFoundError",
    "Profile",
    "Registry",
    "RegistryError",
    "RetrainEvent",
    "RetrainPolicy",
    "Retrainer",
    "Server",
    "Signature",
    "SignatureError",
    "TrainResult",
    "TuneResult",
    "UsageError",
    "__version__",
    "asgi_app",
    "batch_predict",
    "fingerprint",
    "hookimpl",
    "train",
    "tune",
    "wsgi_app",
]
