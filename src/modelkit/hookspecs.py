"""Every modelkit hook, grouped by phase.

Plugins implement hooks with :data:`modelkit.hookimpl` and are registered through the
``modelkit`` entry-point group (or ``PluginManager.register`` in an embedding app).

Docstring template for each hook: one summary line; *Called*: when; *Arguments*: what
each argument is; *Return*: what is done with the result.

Three families:

- ``register_*(register)`` hooks collect named factories. The plugin calls ``register(name,
  factory)`` once per thing it provides; two plugins taking the same name is a
  :class:`~modelkit.exceptions.PluginError`.
- ``make_*`` hooks are ``firstresult``: the first plugin to return something other than
  ``None`` wins.
- ``on_*`` event hooks observe what happened. Their return values are ignored, and one that
  raises is reported as a :class:`~modelkit.exceptions.HookFailedWarning` and skipped; it never
  breaks the operation it observes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import numpy as np

    from modelkit.artifact import Artifact
    from modelkit.batch.sinks import Sink
    from modelkit.batch.sources import Source
    from modelkit.cli import Command
    from modelkit.model import Model
    from modelkit.monitoring import DriftReport, Monitor
    from modelkit.monitoring.health import HealthAlert
    from modelkit.monitoring.performance import PerformanceReport
    from modelkit.registry import AliasEvent, ModelVersion, Registry, RegistryBackend
    from modelkit.retrain import RetrainEvent
    from modelkit.servers import Server
    from modelkit.serving.auth import AuthenticatorFactory
    from modelkit.signature import Signature
    from modelkit.stores import ArtifactStore

__all__ = ["hookimpl", "hookspec"]

PROJECT_NAME = "modelkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marker for hook specifications (used by modelkit itself)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for hook implementations: decorate plugin functions with ``@hookimpl``."""


# -- registration: collect named factories ------------------------------------------------


@hookspec
def register_artifact_stores(
    register: Callable[[str, Callable[[str], ArtifactStore]], None],
) -> None:
    """Register artifact stores by URL scheme.

    *Called*: the first time a store is looked up by URL (``modelkit.stores.open_store``).

    *Arguments*: ``register(scheme, factory)``; ``factory(url)`` returns an
    :class:`~modelkit.stores.ArtifactStore` for a URL of that scheme (``"file"`` for
    ``file:///srv/models`` and plain paths).

    *Return*: nothing; call ``register`` once per scheme.
    """


@hookspec
def register_registry_backends(
    register: Callable[[str, Callable[[str], RegistryBackend]], None],
) -> None:
    """Register registry metadata backends by URL scheme.

    *Called*: when a :class:`~modelkit.Registry` is opened.

    *Arguments*: ``register(scheme, factory)``; ``factory(url)`` returns a
    :class:`~modelkit.registry.RegistryBackend` for a URL of that scheme (``"sqlite"`` for
    ``sqlite:///…`` and directories, ``"postgresql"`` for ``postgresql://…``).

    *Return*: nothing; call ``register`` once per scheme.
    """


@hookspec
def register_servers(register: Callable[[str, Callable[..., Server]], None]) -> None:
    """Register server backends by name.

    *Called*: when a backend is looked up (:func:`modelkit.servers.get_server`,
    ``modelkit serve --backend``, ``modelkit demo --backend``).

    *Arguments*: ``register(name, factory)``; ``factory(**options)`` returns a
    :class:`~modelkit.servers.Server`, or raises
    :class:`~modelkit.exceptions.MissingDependencyError` when the packages it needs are not
    installed (so that ``auto`` can try the next backend). Import those packages in
    ``Server.run``, not here.

    *Return*: nothing; call ``register`` once per backend.
    """


# -- model wrapping -----------------------------------------------------------------------


@hookspec(firstresult=True)
def make_model(obj: Any, signature: Signature | None, sample: Any) -> Model | None:
    """Wrap an arbitrary fitted object as a :class:`~modelkit.Model`.

    *Called*: by :meth:`modelkit.Model.wrap` (and so by everything that accepts "a model"):
    training, saving artifacts, serving an object passed in-process.

    *Arguments*: ``obj`` the object to wrap; ``signature`` the signature the caller gave, or
    ``None`` to infer one; ``sample`` example input data to infer the signature from, or
    ``None``.

    *Return*: a ``Model``, or ``None`` to let the next plugin try. The built-in plugin wraps
    anything with a scikit-learn style ``predict`` and runs last.
    """


# -- serving: authentication -------------------------------------------------------------


@hookspec
def register_authenticators(register: Callable[[str, AuthenticatorFactory], None]) -> None:
    """Register request authenticators by name (API keys, OAuth tokens, mTLS…).

    *Called*: when a served application is built (``App``, ``wsgi_app``, ``asgi_app``), to
    resolve its ``auth`` option (see :mod:`modelkit.serving.auth`).

    *Arguments*: ``register(name, factory)``; ``factory(environ)`` returns a configured
    :class:`~modelkit.serving.auth.Authenticator`, or ``None`` when the environment mapping
    ``environ`` does not configure it (by default every configured authenticator is enabled).
    A configuration that is present but invalid raises
    :class:`~modelkit.exceptions.ServingError`, so that the server does not start open.

    *Return*: nothing; call ``register`` once per authenticator.
    """


# -- batch inference: sources and sinks ----------------------------------------------------


@hookspec
def register_batch_sources(register: Callable[[str, Callable[..., Source]], None]) -> None:
    """Register where batch jobs read rows from, by name or URL scheme.

    *Called*: when :func:`modelkit.batch_predict` (or ``modelkit batch --input``) opens its
    input (:func:`modelkit.batch.sources.open_source`).

    *Arguments*: ``register(name, factory)``; ``name`` is a file kind (``"csv"``,
    ``"parquet"``) or a URL scheme (``"sqlite"``, ``"postgresql"``, ``"s3"``…);
    ``factory(target, **options)`` returns a :class:`~modelkit.batch.sources.Source` for a
    path, glob or URL (with ``query=`` for databases).

    *Return*: nothing; call ``register`` once per name.
    """


@hookspec
def register_batch_sinks(register: Callable[[str, Callable[..., Sink]], None]) -> None:
    """Register where batch jobs write predictions to, by URL scheme.

    *Called*: when :func:`modelkit.batch_predict` (or ``modelkit batch --output``) opens its
    output (:func:`modelkit.batch.sinks.open_sink`).

    *Arguments*: ``register(scheme, factory)``; ``factory(target, table=…)`` returns a
    :class:`~modelkit.batch.sinks.Sink` that commits each chunk together with the job's
    progress (``"sqlite"``, ``"postgresql"``, ``"parquet"``, ``"csv"`` are built in).

    *Return*: nothing; call ``register`` once per scheme.
    """


# -- events -------------------------------------------------------------------------------


@hookspec
def on_prediction(model: Model, method: str, inputs: np.ndarray | Any, outputs: Any) -> None:
    """Observe a batch of predictions.

    *Called*: after every successful ``Model.predict`` / ``predict_proba`` /
    ``decision_function`` call, in the caller's thread.

    *Arguments*: ``model`` the model; ``method`` the method name; ``inputs`` the validated
    input exactly as the estimator saw it; ``outputs`` what the method returned.

    *Return*: ignored. Keep it fast: it runs on the prediction path.
    """


@hookspec
def on_artifact_saved(artifact: Artifact, path: Path) -> None:
    """Observe an artifact that was just written.

    *Called*: after :meth:`modelkit.Artifact.save` renamed the complete directory into place.

    *Arguments*: ``artifact`` the saved artifact; ``path`` its final directory.

    *Return*: ignored.
    """


@hookspec
def on_artifact_loaded(artifact: Artifact, path: Path) -> None:
    """Observe an artifact that was just loaded and verified.

    *Called*: after :meth:`modelkit.Artifact.load` checked every hash and unpickled the model.

    *Arguments*: ``artifact`` the loaded artifact; ``path`` the directory it came from.

    *Return*: ignored.
    """


@hookspec
def on_model_registered(registry: Registry, version: ModelVersion) -> None:
    """Observe a new model version.

    *Called*: after :meth:`modelkit.Registry.register` committed the version row.

    *Arguments*: ``registry`` the registry; ``version`` the new
    :class:`~modelkit.registry.ModelVersion`.

    *Return*: ignored.
    """


@hookspec
def on_alias_changed(registry: Registry, event: AliasEvent) -> None:
    """Observe an alias being set, moved, removed or rolled back (a promotion, say).

    *Called*: after the alias change and its history event were committed; not when an alias
    is set to the version it already points to.

    *Arguments*: ``registry`` the registry; ``event`` the
    :class:`~modelkit.registry.AliasEvent` (old and new version, time, actor, reason).

    *Return*: ignored.
    """


# -- monitoring: alerts -------------------------------------------------------------------


@hookspec
def on_drift(monitor: Monitor, report: DriftReport) -> None:
    """Observe a drift alert.

    *Called*: when a monitor's window closes with a ``"drift"`` verdict (in the thread that
    observed the batch that closed it), after the alert was stored in the registry if the
    monitor has one.

    *Arguments*: ``monitor`` the :class:`~modelkit.Monitor` (``monitor.name`` is the model);
    ``report`` the :class:`~modelkit.monitoring.DriftReport`, features ranked most drifted
    first.

    *Return*: ignored. Retraining policies subscribe here.
    """


@hookspec
def on_performance_drop(monitor: Monitor | None, report: PerformanceReport) -> None:
    """Observe a performance alert: a metric is confidently worse than its baseline.

    *Called*: when a :class:`~modelkit.monitoring.PerformanceTracker` check finds a drop.

    *Arguments*: ``monitor`` the monitor the tracker belongs to, or ``None``; ``report`` the
    :class:`~modelkit.monitoring.performance.PerformanceReport` (metric, baseline, window
    value and its confidence interval).

    *Return*: ignored.
    """


@hookspec
def on_health_alert(alert: HealthAlert) -> None:
    """Observe a service-level alert (latency, error rate, queue depth above its limit).

    *Called*: when a :class:`~modelkit.monitoring.HealthTracker` check finds a rule broken
    (once per rule until it recovers).

    *Arguments*: ``alert`` the :class:`~modelkit.monitoring.health.HealthAlert`: rule, model,
    observed value, limit, window.

    *Return*: ignored.
    """


# -- retraining ---------------------------------------------------------------------------


@hookspec
def on_retrain_triggered(
    registry: Registry, name: str, alias: str, reasons: list[dict[str, Any]]
) -> bool | None:
    """Observe, or veto, a retrain about to start.

    *Called*: by a :class:`~modelkit.retrain.Retrainer` when a trigger fired, the cooldown and
    frequency limits allow a retrain and the model's lease was taken, before the
    ``triggered`` event is stored and training starts.

    *Arguments*: ``registry`` the registry; ``name`` the model; ``alias`` the alias it follows
    (``"production"``); ``reasons`` one dict per trigger that fired (``{"trigger": "drift",
    "alerts": 3, "first_at": "…"}``).

    *Return*: ``False`` vetoes the retrain (stored as a ``skipped`` event naming the plugin);
    ``None`` or ``True`` lets it go on. Raising :class:`~modelkit.exceptions.RetrainVetoError`
    vetoes with its message as the reason; any other exception only warns (a
    :class:`~modelkit.exceptions.HookFailedWarning`) and does not veto.
    """


@hookspec
def on_model_promoted(registry: Registry, event: RetrainEvent) -> None:
    """Observe a challenger promoted by a retraining loop, or approved by a person.

    *Called*: after the alias moved to the challenger and the ``promoted`` (or ``approved``)
    event was stored.

    *Arguments*: ``registry`` the registry; ``event`` the
    :class:`~modelkit.retrain.RetrainEvent` (``champion`` the old version, ``challenger``
    the new one, ``details`` the gate's numbers).

    *Return*: ignored.
    """


@hookspec
def on_rollback(registry: Registry, event: RetrainEvent) -> None:
    """Observe an automatic rollback after a promotion.

    *Called*: after the watch window found the new champion worse than the old one on the
    same newly labelled rows, moved the alias back and stored the ``rolled_back`` event.

    *Arguments*: ``registry`` the registry; ``event`` the
    :class:`~modelkit.retrain.RetrainEvent` (``champion`` the version restored,
    ``challenger`` the one withdrawn, ``details`` the paired comparison).

    *Return*: ignored.
    """


# -- command line -------------------------------------------------------------------------


@hookspec
def register_commands(register: Callable[[str, Command], None]) -> None:
    """Register ``modelkit`` sub-commands.

    *Called*: when the ``modelkit`` command line starts.

    *Arguments*: ``register(name, command)``; ``command`` is a :class:`~modelkit.cli.Command`
    (``help``, ``add_arguments(parser)``, ``run(args) -> int``).

    *Return*: nothing; call ``register`` once per sub-command.
    """
