"""The model registry: versions, aliases with an append-only history, and training runs.

A :class:`Registry` keeps *metadata* in a database (SQLite by default, PostgreSQL for many
hosts) and *artifacts* in a content-addressed :class:`~modelkit.stores.ArtifactStore` (key =
the artifact's manifest sha256)::

    registry = Registry()                              # ./.modelkit or $MODELKIT_HOME
    version = registry.register("churn", artifact, tags={"team": "risk"})
    registry.set_alias("churn", "production", version.version, reason="passed the gate")
    model = registry.load("models:/churn@production")  # verified against the recorded hash
    registry.rollback("churn", "production")

Model URIs (:func:`parse_model_uri`): ``models:/churn/3``, ``models:/churn@production``,
``models:/churn`` (the latest active version), and the same without the ``models:/`` prefix.

Guarantees, on every backend: version numbers run 1, 2, 3 … per name with no gap and no
duplicate, whatever the number of concurrent writers; an alias change and its event are one
transaction; a version row is written only after its artifact is complete in the store, so a
crash at any moment never leaves a row pointing to a missing or partial artifact (a crash
between the two leaves an unreferenced store entry, which :meth:`Registry.gc` reclaims).

Metadata backends are plugins: a plugin implements the ``register_registry_backends`` hook
and registers a factory returning a :class:`RegistryBackend` per URL scheme. The suite in
:mod:`modelkit.testing` checks that a backend keeps every promise above.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import attrs

from modelkit._manifest import json_safe, to_metrics, to_tags
from modelkit._retrain_store import RetrainStoreMixin
from modelkit.exceptions import (
    ArtifactIntegrityError,
    NotFoundError,
    PluginError,
    RegistryError,
    UsageError,
)
from modelkit.plugins import notify

if TYPE_CHECKING:
    from modelkit.artifact import Artifact
    from modelkit.model import Model
    from modelkit.stores import ArtifactStore

__all__ = [
    "ALERT_KINDS",
    "Alert",
    "AliasEvent",
    "Feedback",
    "ModelRef",
    "ModelVersion",
    "PredictionRecord",
    "RegisteredModel",
    "Registry",
    "RegistryBackend",
    "Run",
    "check_alias",
    "check_model_name",
    "parse_model_uri",
]

HOME_ENV = "MODELKIT_HOME"
ARTIFACTS_ENV = "MODELKIT_ARTIFACTS"
ACTOR_ENV = "MODELKIT_ACTOR"
DEFAULT_HOME = ".modelkit"
DATABASE_FILE = "registry.db"
URI_PREFIX = "models:/"

RUN_STATUSES = ("running", "finished", "failed")
VERSION_STATUSES = ("active", "archived")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
MAX_PREDICTION_ID = 200
"""Longest prediction id recorded, in characters."""
ALERT_KINDS = ("drift", "performance", "health")
"""What an :class:`Alert` is about."""


# -- names and URIs -------------------------------------------------------------------------


def check_model_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`ValueError`.

    Valid: 1-128 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter or digit.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UsageError(
            f"invalid model name {name!r}: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit (e.g. 'churn' or 'churn-v2')"
        )
    return name


def check_alias(alias: object) -> str:
    """Return ``alias`` if it is a valid alias name, else raise :class:`ValueError`.

    Valid: 1-64 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter (so that an
    alias never reads like a version number).
    """
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise UsageError(
            f"invalid alias {alias!r}: use 1-64 characters from A-Z a-z 0-9 . _ - starting "
            "with a letter (e.g. 'production'); to pick a version by number use NAME/3"
        )
    return alias


def _check_version_number(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"a version is an integer >= 1, got {version!r}")
    return version


@attrs.frozen
class ModelRef:
    """A parsed model URI: a name and at most one of a version number or an alias.

    With neither, the reference means the latest active version.
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        """The canonical URI, e.g. ``models:/churn@production``."""
        if self.alias is not None:
            return f"{URI_PREFIX}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{URI_PREFIX}{self.name}/{self.version}"
        return f"{URI_PREFIX}{self.name}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/NAME/3``, ``models:/NAME@ALIAS``, ``models:/NAME`` or the short forms.

    ``NAME/latest`` is accepted as a synonym of ``NAME``. Raises :class:`ValueError` naming
    the part that is wrong.
    """
    if not isinstance(uri, str):
        raise TypeError(f"a model URI is a string, got {type(uri).__name__}")
    body = uri.removeprefix(URI_PREFIX)
    if body.startswith("/") or not body:
        raise UsageError(
            f"invalid model URI {uri!r}: expected models:/NAME, models:/NAME/VERSION or "
            "models:/NAME@ALIAS (one slash after 'models:')"
        )
    if "@" in body:
        name, _, alias = body.partition("@")
        return ModelRef(_uri_name(uri, name), alias=_uri_part(uri, alias, check_alias))
    if "/" in body:
        name, _, version = body.partition("/")
        if version == "latest":
            return ModelRef(_uri_name(uri, name))
        if not version.isdigit() or not version.isascii():
            raise UsageError(
                f"invalid model URI {uri!r}: the version must be a positive integer, got "
                f"{version!r}"
            )
        return ModelRef(
            _uri_name(uri, name), version=_uri_part(uri, int(version), _check_version_number)
        )
    return ModelRef(_uri_name(uri, body))


def _uri_name(uri: str, name: str) -> str:
    return str(_uri_part(uri, name, check_model_name))


def _uri_part(uri: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(f"invalid model URI {uri!r}: {exc}") from exc


# -- records --------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise UsageError(f"expected a timezone-aware datetime, got {value!r}")
    return value.astimezone(timezone.utc)


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _json_value(_inst: object, _field: object, value: Any) -> Any:
    """attrs.asdict serializer: ISO 8601 times, NaN as None, mappings as plain dicts."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _record_dict(record: Any) -> dict[str, Any]:
    return attrs.asdict(record, value_serializer=_json_value)


def _to_params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """JSON-safe copy: values JSON cannot hold become their repr (as in artifact manifests)."""
    return {str(k): json_safe(v, other=repr, nonfinite=repr) for k, v in dict(value or {}).items()}


def _to_cv_scores(value: Mapping[str, Any] | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for key, scores in dict(value or {}).items():
        out[str(key)] = [math.nan if s is None else float(s) for s in scores]
    return out


def _to_aliases(value: Mapping[str, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(value).items()}


def _one_of(choices: tuple[str, ...]) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise UsageError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class ModelVersion:
    """One registered version of a model: its number, artifact, tags and status."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_model_name(v))
    version: int = attrs.field(validator=lambda _i, _a, v: _check_version_number(v))
    artifact_sha256: str
    artifact_uri: str
    created_at: datetime = attrs.field(converter=_utc)
    run_id: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=to_tags)
    status: str = attrs.field(default="active", validator=_one_of(VERSION_STATUSES))
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=to_metrics)
    description: str | None = None

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"{URI_PREFIX}{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO 8601 UTC; a NaN metric as ``None``)."""
        return {**_record_dict(self), "uri": self.uri}


@attrs.frozen(kw_only=True)
class RegisteredModel:
    """A model name: when it was first registered, its latest active version, aliases, tags."""

    name: str
    created_at: datetime = attrs.field(converter=_utc)
    latest_version: int | None = None
    aliases: Mapping[str, int] = attrs.field(factory=dict, converter=_to_aliases)
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=to_tags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _record_dict(self)


@attrs.frozen(kw_only=True)
class AliasEvent:
    """One change of an alias: ``old_version`` → ``new_version`` (``None``: absent)."""

    id: int
    name: str
    alias: str
    old_version: int | None
    new_version: int | None
    at: datetime = attrs.field(converter=_utc)
    actor: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _record_dict(self)


@attrs.frozen(kw_only=True)
class Run:
    """A training (or tuning) run: parameters, metrics, CV scores, outcome and lineage."""

    id: str
    name: str
    status: str = attrs.field(default="running", validator=_one_of(RUN_STATUSES))
    started_at: datetime = attrs.field(converter=_utc)
    ended_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_to_params)
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=to_metrics)
    cv_scores: Mapping[str, list[float]] = attrs.field(factory=dict, converter=_to_cv_scores)
    fit_time: float | None = None
    dataset_fingerprint: str | None = None
    error: str | None = None
    parent_id: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=to_tags)
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO 8601 UTC; NaN metrics and scores as ``None``)."""
        return _record_dict(self)


def _check_prediction_id(_inst: object, _field: object, value: Any) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PREDICTION_ID:
        raise UsageError(
            f"a prediction id is a string of 1-{MAX_PREDICTION_ID} characters, got {value!r}"
        )


def _check_rows(_inst: object, _field: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"rows must be a non-negative integer, got {value!r}")


@attrs.frozen(kw_only=True)
class PredictionRecord:
    """One served prediction (a batch of rows), recorded so that labels can follow later.

    ``id`` is the prediction id the server answered; ``name`` and ``version`` the served
    model (``version`` is ``None`` for a model served in-process); ``at`` when it was made;
    ``rows`` how many rows it predicted; ``outputs`` the ``predict`` results, one JSON value
    per row, or ``None`` when they were not recorded; ``inputs`` the rows the model was given,
    one list of feature values per row in its Signature's order, or ``None`` when they were
    not recorded (retraining on served traffic needs them). Both are stored as JSON: NaN and
    ±inf come back as ``None``.
    """

    id: str = attrs.field(validator=_check_prediction_id)
    name: str
    version: int | None = None
    at: datetime = attrs.field(converter=_utc)
    rows: int = attrs.field(validator=_check_rows)
    outputs: list[Any] | None = None
    inputs: list[Any] | None = attrs.field(default=None)

    @inputs.validator
    def _check_inputs(self, _: attrs.Attribute[Any], value: list[Any] | None) -> None:
        if value is not None and len(value) != self.rows:
            raise UsageError(
                f"prediction {self.id!r} has {self.rows} row(s) but {len(value)} recorded "
                "input row(s); inputs holds one row per predicted row, or None"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _record_dict(self)


@attrs.frozen(kw_only=True)
class Feedback:
    """The delayed labels of one recorded prediction, next to what was predicted.

    ``labels`` holds one value per predicted row (``None`` where the truth is unknown);
    ``outputs`` the recorded ``predict`` results (``None`` when not recorded);
    ``inputs`` the recorded input rows (``None`` when not recorded);
    ``received_at`` when the labels arrived (a later label replaces an earlier one).
    """

    prediction_id: str
    name: str
    version: int | None
    predicted_at: datetime = attrs.field(converter=_utc)
    received_at: datetime = attrs.field(converter=_utc)
    rows: int
    outputs: list[Any] | None
    labels: list[Any]
    inputs: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO 8601 UTC)."""
        return _record_dict(self)


def _alert_details(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"alert details must be a mapping, got {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"alert details must be JSON-compatible (no NaN or infinity): {exc}"
        ) from exc


@attrs.frozen(kw_only=True)
class Alert:
    """A monitoring alert kept in the registry's database, so that history survives restarts.

    ``kind`` is ``"drift"``, ``"performance"`` or ``"health"``; ``name`` and ``version`` the
    model (``version`` ``None`` when unknown); ``at`` when it was raised; ``details`` the
    report with its window statistics (a drift report's ``to_dict()``, say). ``id`` orders
    alerts (``None`` before it is stored).
    """

    id: int | None = None
    name: str
    version: int | None = None
    kind: str = attrs.field(validator=_one_of(ALERT_KINDS))
    at: datetime = attrs.field(converter=_utc)
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_alert_details)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (time as ISO 8601 UTC)."""
        return _record_dict(self)


def _labels(prediction_id: object, value: Any) -> list[Any]:
    """One prediction's labels as a list of JSON scalars (a lone scalar is one row's label)."""
    if not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_PREDICTION_ID:
        raise UsageError(
            f"a prediction id is a string of 1-{MAX_PREDICTION_ID} characters, "
            f"got {prediction_id!r}"
        )
    labels = list(value) if isinstance(value, list | tuple) else [value]
    for row, label in enumerate(labels):
        if label is None or isinstance(label, bool | int | str):
            continue
        if isinstance(label, float) and math.isfinite(label):
            continue
        raise UsageError(
            f"prediction {prediction_id!r}: the label of row {row} must be a string, a "
            f"number, true/false or null, got {label!r}"
        )
    return labels


# -- the backend protocol -------------------------------------------------------------------


@runtime_checkable
class RegistryBackend(Protocol):
    """Where a :class:`Registry` keeps its metadata. Implement it to add a database.

    The facade validates names, parses URIs, stores artifacts and fills in defaults (actor,
    timestamps); a backend stores and queries rows. Every method that changes something is
    one transaction. Missing models, versions, aliases and runs raise
    :class:`~modelkit.exceptions.NotFoundError`; refused changes raise
    :class:`~modelkit.exceptions.RegistryError`. Run :mod:`modelkit.testing`'s
    ``RegistryConformance`` against a new backend.
    """

    @property
    def url(self) -> str:
        """The database URL, with any password masked."""

    def close(self) -> None:
        """Close every connection this backend opened."""

    def create_version(
        self,
        name: str,
        *,
        artifact_sha256: str,
        artifact_uri: str,
        created_at: datetime,
        tags: Mapping[str, str],
        metrics: Mapping[str, float],
        run_id: str | None,
        description: str | None,
        check_artifact: Callable[[], object],
    ) -> ModelVersion:
        """Create the model if new and insert version ``last + 1``, in one transaction.

        Concurrent callers must get consecutive numbers. ``check_artifact()`` is called inside
        the transaction, while it excludes :meth:`delete_if_unreferenced`, before the row is
        inserted (it re-stores an artifact a concurrent gc removed). A given ``run_id`` must
        exist; the run's ``version`` is set if it has none.
        """

    def get_version(self, name: str, version: int) -> ModelVersion:
        """Return one version."""

    def latest_version(self, name: str) -> ModelVersion:
        """Return the highest active version of ``name``."""

    def get_model(self, name: str) -> RegisteredModel:
        """Return one registered model."""

    def list_models(self) -> list[RegisteredModel]:
        """Return every registered model, sorted by name."""

    def list_versions(self, name: str, *, include_archived: bool) -> list[ModelVersion]:
        """Return the versions of ``name`` in increasing order."""

    def set_tags(self, name: str, version: int | None, tags: Mapping[str, str | None]) -> None:
        """Merge ``tags`` into a version's (or, version ``None``, the model's); ``None`` deletes."""

    def set_status(self, name: str, version: int, status: str) -> ModelVersion:
        """Set ``"active"`` or ``"archived"``; archiving a version an alias points to is refused."""

    def aliases(self, name: str) -> dict[str, int]:
        """Return alias -> version for ``name``."""

    def change_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str,
        reason: str | None,
        at: datetime,
        rollback: bool = False,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (``None``: remove it) and append the event, atomically.

        ``rollback=True`` ignores ``version`` and uses the previous target from the alias's
        latest event. Setting the current target is a no-op returning the latest event. The
        version must be active. Event times never go backwards for one alias.
        """

    def history(self, name: str, alias: str | None) -> list[AliasEvent]:
        """Return the events of ``name`` (one alias, or all), in the order they happened."""

    def alias_at(self, name: str, alias: str, when: datetime) -> int | None:
        """Return what ``alias`` pointed to at ``when`` (``None``: it did not exist)."""

    def insert_run(self, run: Run) -> None:
        """Insert a new run (its parent, if any, must exist)."""

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        ended_at: datetime,
        metrics: Mapping[str, float],
        cv_scores: Mapping[str, list[float]],
        fit_time: float | None,
        error: str | None,
        version: int | None,
    ) -> Run:
        """Record a running run's outcome (and link ``version`` of the run's model)."""

    def get_run(self, run_id: str) -> Run:
        """Return a run by id or unique id prefix of at least 6 characters."""

    def list_runs(self, name: str | None, parent_id: str | None, limit: int | None) -> list[Run]:
        """Return runs, newest first."""

    def referenced_artifacts(self) -> set[str]:
        """Return every artifact sha256 a version row references."""

    def delete_if_unreferenced(self, artifact_sha256: str, delete: Callable[[], object]) -> bool:
        """Call ``delete()`` if no version references the key, excluding concurrent registers."""

    def record_predictions(self, predictions: Sequence[PredictionRecord]) -> None:
        """Insert prediction records in one transaction; an id already present is kept as is."""

    def get_prediction(self, prediction_id: str) -> PredictionRecord:
        """Return one recorded prediction."""

    def add_feedback(self, labels: Mapping[str, list[Any]], *, received_at: datetime) -> None:
        """Store each prediction's labels (replacing earlier ones), all or nothing.

        Unknown ids raise :class:`~modelkit.exceptions.NotFoundError` naming every one; a
        label count other than the prediction's rows raises
        :class:`~modelkit.exceptions.UsageError`.
        """

    def list_feedback(
        self, name: str, since: datetime | None, until: datetime | None, limit: int | None
    ) -> list[Feedback]:
        """Return the labelled predictions of ``name`` received in ``[since, until)``, oldest
        label first."""

    def prune_predictions(self, before: datetime) -> int:
        """Delete the predictions made before ``before`` and their labels; return how many."""

    def record_alert(self, alert: Alert) -> Alert:
        """Store an alert; return it with its ``id`` (increasing in insertion order)."""

    def list_alerts(
        self,
        name: str | None,
        kind: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
    ) -> list[Alert]:
        """Return alerts (of one model and kind, or all) raised in ``[since, until)``,
        newest first, at most ``limit``."""


# -- the facade -----------------------------------------------------------------------------


def _default_actor() -> str:
    actor = os.environ.get(ACTOR_ENV)
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no USER-like variable
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@attrs.frozen
class _Location:
    backend_url: str
    scheme: str
    artifacts: str


def _locate(url: str | os.PathLike[str] | None, artifacts: str | None) -> _Location:
    """Map the ``url`` a user gave to a backend URL, its scheme and an artifact store URL."""
    from modelkit.stores import url_scheme

    home = os.environ.get(HOME_ENV) or DEFAULT_HOME
    text = home if url is None else os.fspath(url)
    scheme = url_scheme(text)
    if scheme == "file":  # a plain path or file:// URL: a directory or a database file
        parts = urlsplit(text)
        path = Path(unquote(parts.path) if parts.scheme.lower() == "file" else text)
        path = Path(os.path.abspath(path))
        if path.is_file() or (not path.is_dir() and path.suffix in _SQLITE_SUFFIXES):
            text, scheme = "sqlite://" + path.as_posix(), "sqlite"
        else:
            path.mkdir(parents=True, exist_ok=True)
            db = path / DATABASE_FILE
            return _Location(
                "sqlite://" + db.as_posix(), "sqlite", artifacts or str(path / "artifacts")
            )
    if artifacts is None:
        artifacts = os.environ.get(ARTIFACTS_ENV)
    if artifacts is None and scheme == "sqlite":
        db = Path(unquote(urlsplit(text).path))
        artifacts = str(Path(os.path.abspath(db)).parent / "artifacts")
    if artifacts is None:
        artifacts = str(Path(os.path.abspath(home)) / "artifacts")
    return _Location(text, scheme, artifacts)


def _open_backend(url: str, scheme: str) -> RegistryBackend:
    from modelkit.plugins import collect

    factories = collect("register_registry_backends")
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(repr(s) for s in sorted(factories)) or "none"
        raise NotFoundError(
            f"no registry backend handles {scheme!r} URLs like {url!r} (known schemes: "
            f"{known}); install or register a plugin implementing register_registry_backends"
        )
    backend = factory(url)
    if not isinstance(backend, RegistryBackend):
        raise PluginError(
            f"the registry backend factory for {scheme!r} returned {type(backend).__name__}, "
            "which lacks the RegistryBackend methods"
        )
    return backend


@attrs.define(init=False, repr=False)
class Registry(RetrainStoreMixin):
    """Versions, aliases, runs and the alias event log, over a backend and an artifact store.

    ``url``: ``None`` (``$MODELKIT_HOME`` or ``./.modelkit``), a directory (SQLite at
    ``<dir>/registry.db``, artifacts in ``<dir>/artifacts``), ``sqlite:///abs/path.db``, or
    ``postgresql://user@host:5432/db`` (needs the ``postgres`` extra). Any other scheme is
    looked up among the ``register_registry_backends`` plugins.

    ``artifacts``: an artifact-store URL (:func:`modelkit.stores.open_store`). Defaults:
    ``<dir>/artifacts`` for a directory; otherwise ``$MODELKIT_ARTIFACTS``, else
    ``artifacts`` next to a SQLite file, else ``<home>/artifacts``. Every host sharing a
    PostgreSQL registry must use the same artifact store.

    Retraining decisions and leases (:meth:`record_retrain_event`, :meth:`retrain_events`,
    :meth:`acquire_lease`, ...) come from :class:`~modelkit._retrain_store.RetrainStoreMixin`.

    One object may be shared by threads; after ``fork`` the child reconnects by itself.
    Close it (or use ``with``) to release the connections.
    """

    backend: RegistryBackend
    store: ArtifactStore

    def __init__(
        self, url: str | os.PathLike[str] | None = None, *, artifacts: str | None = None
    ) -> None:
        """Open (creating or migrating if needed) the registry at ``url``."""
        from modelkit.stores import open_store

        where = _locate(url, artifacts)
        store = open_store(where.artifacts)
        self.__attrs_init__(_open_backend(where.backend_url, where.scheme), store)

    @property
    def url(self) -> str:
        """The metadata backend's URL (passwords masked)."""
        return self.backend.url

    def __repr__(self) -> str:
        """``Registry('<backend url>', artifacts='<store url>')``."""
        return f"Registry({self.url!r}, artifacts={self.store.url!r})"

    def close(self) -> None:
        """Close the backend's connections; the object must not be used afterwards."""
        self.backend.close()

    def reopen(self) -> Registry:
        """The same registry (database and artifact store) through connections of its own.

        For work in another thread that may outlive this object: closing one of the two never
        closes a connection the other is using. Close the new one separately. Raises
        :class:`~modelkit.exceptions.RegistryError` when the backend cannot be cloned (it has
        no ``clone()`` method; the built-in SQL backends have one).
        """
        clone = getattr(self.backend, "clone", None)
        if not callable(clone):
            raise RegistryError(
                f"the registry backend {type(self.backend).__name__} cannot be reopened: it has "
                "no clone() method"
            )
        other: Registry = object.__new__(Registry)
        other.__attrs_init__(clone(), self.store)
        return other

    def __enter__(self) -> Registry:
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the registry."""
        self.close()

    # -- versions ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: Artifact | str | os.PathLike[str],
        *,
        tags: Mapping[str, str] | None = None,
        run: str | Run | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Store ``artifact`` and record it as the next version of ``name``; return it.

        ``artifact`` is an :class:`~modelkit.Artifact` (saved or not; an unsaved one is saved
        to a temporary directory and the caller's object is left untouched) or the path of a
        saved artifact directory, which is verified file by file without unpickling anything:
        registering it needs neither the model's libraries nor trust in its pickle. It is put
        into the store under its manifest sha256 first; then one transaction inserts the
        version row and links ``run`` (a :class:`Run` or a run id). The version's metrics are
        the manifest's.
        """
        check_model_name(name)
        tags = to_tags(tags)
        run_id = None
        if run is not None:
            run_id = self.backend.get_run(run.id if isinstance(run, Run) else run).id
        with _artifact_source(artifact) as (src, key, metrics):
            artifact_uri = self.store.put(src, key)
            _touch(self.store, key)

            def check_artifact() -> None:
                if not self.store.exists(key):  # a concurrent gc removed it: store it again
                    self.store.put(src, key)

            version = self.backend.create_version(
                name,
                artifact_sha256=key,
                artifact_uri=artifact_uri,
                created_at=_now(),
                tags=tags,
                metrics=metrics,
                run_id=run_id,
                description=description,
                check_artifact=check_artifact,
            )
        notify("on_model_registered", registry=self, version=version)
        return version

    def get(self, name: str, version: int) -> ModelVersion:
        """Return version ``version`` of ``name`` (NotFoundError if absent)."""
        return self.backend.get_version(check_model_name(name), _check_version_number(version))

    def resolve(self, uri: str) -> ModelVersion:
        """Return the version a model URI names (see :func:`parse_model_uri`)."""
        ref = parse_model_uri(uri)
        if ref.alias is not None:
            target = self.backend.aliases(ref.name).get(ref.alias)
            if target is None:
                raise NotFoundError(
                    f"model {ref.name!r} has no alias {ref.alias!r}; set it with "
                    f"set_alias({ref.name!r}, {ref.alias!r}, VERSION)"
                )
            return self.backend.get_version(ref.name, target)
        if ref.version is not None:
            return self.backend.get_version(ref.name, ref.version)
        return self.backend.latest_version(ref.name)

    def load(self, uri: str, *, strict: bool = False) -> Model:
        """Load the model a URI names, verified against the registry's recorded hash."""
        return self.load_artifact(uri, strict=strict).model

    def load_artifact(self, uri: str, *, strict: bool = False) -> Artifact:
        """Load the artifact a URI names; every hash is checked before unpickling.

        ``strict`` refuses an artifact saved under other library versions
        (see :meth:`modelkit.Artifact.load`).
        """
        from modelkit.artifact import Artifact

        version = self.resolve(uri)
        key = version.artifact_sha256
        try:
            path = self.store.get(key)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{version.uri}: artifact {key} is missing from store {self.store.url} "
                f"(recorded at {version.artifact_uri}); open the registry with the artifact "
                "store it was registered into"
            ) from exc
        return Artifact.load(path, expected_manifest_sha256=key, strict=strict)

    def list(self) -> list[RegisteredModel]:
        """Return every registered model, sorted by name."""
        return self.backend.list_models()

    def get_model(self, name: str) -> RegisteredModel:
        """Return one registered model (NotFoundError if absent)."""
        return self.backend.get_model(check_model_name(name))

    def versions(self, name: str, *, include_archived: bool = True) -> builtins.list[ModelVersion]:
        """Return the versions of ``name``, oldest first (NotFoundError for an unknown name)."""
        return self.backend.list_versions(check_model_name(name), include_archived=include_archived)

    def set_tags(self, name: str, version: int | None, tags: Mapping[str, str | None]) -> None:
        """Merge ``tags`` into a version's (``None``: the model's); a ``None`` value deletes."""
        check_model_name(name)
        if version is not None:
            _check_version_number(version)
        for key, value in dict(tags).items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                raise TypeError(f"tags map strings to strings (or None), got {key!r}: {value!r}")
        self.backend.set_tags(name, version, dict(tags))

    def archive(self, name: str, version: int) -> ModelVersion:
        """Archive a version: it stays loadable by number but is no longer ``latest``.

        Refused with :class:`~modelkit.exceptions.RegistryError` while an alias points to it.
        There is no way to delete a version.
        """
        return self.backend.set_status(
            check_model_name(name), _check_version_number(version), "archived"
        )

    # -- aliases -----------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at an active ``version``; return the event recorded.

        Setting the version it already has records nothing and returns the latest event.
        ``actor`` defaults to ``$MODELKIT_ACTOR`` or ``user@host``.
        """
        return self._change_alias(name, alias, _check_version_number(version), actor, reason)

    def remove_alias(
        self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None
    ) -> AliasEvent:
        """Remove ``alias`` (NotFoundError if it is not set); return the event recorded."""
        return self._change_alias(name, alias, None, actor, reason)

    def aliases(self, name: str) -> dict[str, int]:
        """Return alias -> version for ``name``."""
        return self.backend.aliases(check_model_name(name))

    def history(self, name: str, alias: str | None = None) -> builtins.list[AliasEvent]:
        """Return alias events of ``name`` (one alias, or all), oldest first."""
        return self.backend.history(
            check_model_name(name), None if alias is None else check_alias(alias)
        )

    def alias_at(self, name: str, alias: str, when: datetime) -> int | None:
        """Return the version ``alias`` pointed to at ``when`` (``None``: it was not set)."""
        return self.backend.alias_at(check_model_name(name), check_alias(alias), _utc(when))

    def rollback(
        self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None
    ) -> AliasEvent:
        """Move ``alias`` back to the target it had before its latest change.

        Recorded as an event with reason ``"rollback"`` unless another is given; a second
        rollback undoes the first. Refused (RegistryError) if the alias had no previous
        target or that version is archived.
        """
        return self._change_alias(name, alias, None, actor, reason or "rollback", rollback=True)

    def _change_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        actor: str | None,
        reason: str | None,
        *,
        rollback: bool = False,
    ) -> AliasEvent:
        at = _now()
        event = self.backend.change_alias(
            check_model_name(name),
            check_alias(alias),
            version,
            actor=actor or _default_actor(),
            reason=reason,
            at=at,
            rollback=rollback,
        )
        if event.at == at:  # an alias set to its current version returns its last event
            notify("on_alias_changed", registry=self, event=event)
        return event

    # -- runs --------------------------------------------------------------------------

    def start_run(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_id: str | None = None,
        dataset_fingerprint: str | None = None,
    ) -> Run:
        """Record a new running run for model ``name``; return it.

        ``params`` are kept as JSON (values JSON cannot hold as their ``repr``).
        """
        if parent_id is not None:
            parent_id = self.backend.get_run(parent_id).id
        run = Run(
            id=uuid.uuid4().hex,
            name=check_model_name(name),
            started_at=_now(),
            params=params,
            tags=tags,
            parent_id=parent_id,
            dataset_fingerprint=dataset_fingerprint,
        )
        self.backend.insert_run(run)
        return run

    def finish_run(
        self,
        run_id: str,
        *,
        status: str = "finished",
        metrics: Mapping[str, float] | None = None,
        cv_scores: Mapping[str, builtins.list[float]] | None = None,
        fit_time: float | None = None,
        error: str | None = None,
        version: int | None = None,
    ) -> Run:
        """Record a run's outcome (``"finished"`` or ``"failed"``); return the updated run.

        A run finishes once (RegistryError otherwise). ``version`` links a registered version
        of the run's model to it.
        """
        if status not in ("finished", "failed"):
            raise UsageError(f"status must be 'finished' or 'failed', got {status!r}")
        if version is not None:
            _check_version_number(version)
        return self.backend.finish_run(
            run_id,
            status=status,
            ended_at=_now(),
            metrics=to_metrics(metrics),
            cv_scores=_to_cv_scores(cv_scores),
            fit_time=None if fit_time is None else float(fit_time),
            error=error,
            version=version,
        )

    def get_run(self, run_id: str) -> Run:
        """Return a run by id, or by a unique prefix of at least 6 characters."""
        return self.backend.get_run(run_id)

    def runs(
        self, name: str | None = None, *, parent_id: str | None = None, limit: int | None = None
    ) -> builtins.list[Run]:
        """Return runs (of one model, or children of ``parent_id``), newest first."""
        if name is not None:
            check_model_name(name)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise UsageError(f"limit must be a non-negative integer or None, got {limit!r}")
        if parent_id is not None:
            parent_id = self.backend.get_run(parent_id).id
        return self.backend.list_runs(name, parent_id, limit)

    # -- predictions and feedback ------------------------------------------------------

    def record_predictions(self, predictions: Iterable[PredictionRecord]) -> None:
        """Record served predictions so that delayed labels can be attached to them.

        One transaction for the batch. An id that is already recorded keeps its first
        record. The serving layer calls this from a background thread, never on the
        prediction path.
        """
        batch = builtins.list(predictions)
        for record in batch:
            if not isinstance(record, PredictionRecord):
                raise TypeError(
                    f"record_predictions takes PredictionRecord objects, got "
                    f"{type(record).__name__}"
                )
        if batch:
            self.backend.record_predictions(batch)

    def prediction(self, prediction_id: str) -> PredictionRecord:
        """Return the recorded prediction ``prediction_id``.

        NotFoundError when it was never recorded, or was pruned (see :meth:`prune_feedback`).
        """
        _labels(prediction_id, None)  # checks the id
        return self.backend.get_prediction(prediction_id)

    def add_feedback(self, labels: Mapping[str, Any], *, at: datetime | None = None) -> int:
        """Attach delayed labels to recorded predictions, all or nothing; return how many.

        ``labels`` maps a prediction id to its labels: a list with one value per predicted
        row (a string, a number, true/false, or ``None`` where the truth is unknown), or a
        single value for a one-row prediction. A later label for the same prediction replaces
        the earlier one. ``at`` is when the labels were received (default: now).

        Nothing is stored if any id is unknown (NotFoundError naming every unknown id) or any
        label is invalid or of the wrong count (UsageError naming the prediction).
        """
        if not isinstance(labels, Mapping):
            raise TypeError(
                f"add_feedback takes a mapping of prediction id to labels, got "
                f"{type(labels).__name__}"
            )
        normalized = {key: _labels(key, value) for key, value in labels.items()}
        if normalized:
            self.backend.add_feedback(normalized, received_at=_now() if at is None else _utc(at))
        return len(normalized)

    def feedback(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> builtins.list[Feedback]:
        """Return the labelled predictions of model ``name``, oldest label first.

        ``since`` / ``until`` keep labels received in ``[since, until)``, so that a monitor can
        ask for what arrived since its last look; ``limit`` caps the count. Each
        :class:`Feedback` carries the model version, the recorded outputs and the labels.
        """
        if not isinstance(name, str) or not name:
            raise UsageError(f"a model name is a non-empty string, got {name!r}")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise UsageError(f"limit must be a non-negative integer or None, got {limit!r}")
        return self.backend.list_feedback(name, _optional_utc(since), _optional_utc(until), limit)

    def prune_feedback(self, older_than: timedelta | datetime) -> int:
        """Delete predictions made before a time (or older than an age), with their labels.

        This bounds how much the prediction and feedback tables keep; served applications
        call it periodically with their retention period. Returns how many predictions
        were deleted.
        """
        if isinstance(older_than, timedelta):
            if older_than < timedelta(0):
                raise UsageError(f"older_than must be a non-negative age, got {older_than!r}")
            before = _now() - older_than
        else:
            before = _utc(older_than)
        return self.backend.prune_predictions(before)

    # -- monitoring alerts -------------------------------------------------------------

    def record_alert(
        self,
        name: str,
        kind: str,
        details: Mapping[str, Any],
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> Alert:
        """Store a monitoring alert of model ``name`` and return it (with its id).

        ``kind`` is one of :data:`ALERT_KINDS`; ``details`` a JSON-compatible mapping (the
        report and its window statistics); ``at`` when it was raised (default: now). The
        model need not be registered: in-process models are monitored too.
        """
        if not isinstance(name, str) or not name:
            raise UsageError(f"a model name is a non-empty string, got {name!r}")
        if version is not None:
            _check_version_number(version)
        alert = Alert(
            name=name,
            version=version,
            kind=kind,
            at=_now() if at is None else at,
            details=details,
        )
        return self.backend.record_alert(alert)

    def alerts(
        self,
        name: str | None = None,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> builtins.list[Alert]:
        """Return stored alerts, newest first: of model ``name`` (default all), of one
        ``kind``, raised in ``[since, until)``, at most ``limit``."""
        if kind is not None and kind not in ALERT_KINDS:
            raise UsageError(f"kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise UsageError(f"limit must be a non-negative integer or None, got {limit!r}")
        return self.backend.list_alerts(
            name, kind, _optional_utc(since), _optional_utc(until), limit
        )

    # -- maintenance -------------------------------------------------------------------

    def gc(self, *, grace_seconds: float = 3600, dry_run: bool = False) -> builtins.list[str]:
        """Remove store entries no version references, older than ``grace_seconds``.

        The grace period protects the artifact of a register still in flight (stored, its
        row not yet committed); each deletion is also excluded against concurrent registers
        by the backend. Only content-addressed keys (64 hex digits) are considered. Returns
        the removed keys (with ``dry_run``, those that would be removed).
        """
        if grace_seconds < 0:
            raise UsageError(f"grace_seconds must be >= 0, got {grace_seconds!r}")
        referenced = self.backend.referenced_artifacts()
        now = time.time()
        removed: builtins.list[str] = []
        for key in list(self.store.keys()):
            if key in referenced or not _SHA256_RE.match(key):
                continue
            modified = _modified(self.store, key)
            if modified is None or now - modified < grace_seconds:
                continue
            if dry_run or self.backend.delete_if_unreferenced(key, partial(self.store.delete, key)):
                removed.append(key)
        return removed


@contextlib.contextmanager
def _artifact_source(
    artifact: Artifact | str | os.PathLike[str],
) -> Iterator[tuple[Path, str, dict[str, float]]]:
    """Yield a directory holding ``artifact``, its manifest sha256 and its metrics."""
    from modelkit.artifact import MANIFEST_FILE, Artifact, verify

    if isinstance(artifact, str | os.PathLike):
        saved = Path(artifact)
        verify(saved)  # a clear error now; the store verifies again against the sha256
        raw = (saved / MANIFEST_FILE).read_bytes()
        yield saved, hashlib.sha256(raw).hexdigest(), to_metrics(json.loads(raw).get("metrics"))
        return
    if not isinstance(artifact, Artifact):
        raise TypeError(
            f"register() takes a modelkit.Artifact or the path of a saved one, got "
            f"{type(artifact).__name__}; build one with Artifact.from_model(estimator, "
            "name=..., sample=X)"
        )
    with contextlib.ExitStack() as stack:
        src = artifact.path
        if src is None:  # save a copy, leaving the caller's object unsaved
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelkit-")))
            src = attrs.evolve(artifact).save(tmp / "artifact")
        raw = (src / MANIFEST_FILE).read_bytes()
        key = hashlib.sha256(raw).hexdigest()
        if artifact.path is not None and key != artifact.manifest_sha256:
            raise ArtifactIntegrityError(
                f"artifact {artifact.name!r} at {src}: manifest.json has sha256 {key} but "
                f"{artifact.manifest_sha256} was saved; it changed on disk since, so it was "
                "not registered. Save it again"
            )
        metrics = to_metrics(json.loads(raw).get("metrics"))
        yield src, key, metrics


def _touch(store: ArtifactStore, key: str) -> None:
    """Restart the gc grace clock of a (possibly pre-existing) entry, where the store allows."""
    from modelkit.stores import url_scheme

    touch = getattr(store, "touch", None)
    if callable(touch):
        touch(key)
    elif url_scheme(store.url) == "file":
        with contextlib.suppress(OSError, NotFoundError):  # gone: the transaction re-stores it
            os.utime(store.get(key))


def _modified(store: ArtifactStore, key: str) -> float | None:
    """When an entry was last written (epoch seconds), or None if the store cannot tell."""
    from modelkit.stores import url_scheme

    modified = getattr(store, "modified", None)
    if callable(modified):
        return float(modified(key))
    if url_scheme(store.url) != "file":
        return None
    try:
        stat = store.get(key).stat()
    except (OSError, NotFoundError):
        return None
    return max(stat.st_mtime, stat.st_ctime)
