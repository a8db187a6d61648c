"""The registry's SQL backend, shared by SQLite and PostgreSQL (DB-API 2 drivers).

Queries are written once, with ``?`` placeholders; a dialect (a subclass of
:class:`SQLBackend`) overrides only what differs: connecting, placeholders, column types, how
a write transaction starts, row and registry locks, JSON and timestamp adaptation, and the
append-only trigger.

Schema (every table prefixed ``modelkit_``)::

    schema       one row: the schema version, migrated in place on open
    models       name, created_at, tags, last_version (the per-name version counter)
    versions     (name, version) unique; artifact sha256 and URI, status, tags, metrics, run
    aliases      (name, alias) -> version; FK to versions, so an aliased version cannot vanish
    alias_events append-only (triggers refuse UPDATE and DELETE); ordered by an identity id
    runs         id (uuid4 hex), name, status, times, JSON params/metrics/cv_scores/tags, ...
    predictions  served predictions by id: model name and version, time, rows, JSON outputs
                 and (schema 4) JSON input rows
    feedback     prediction id (FK) -> JSON labels, received_at; one row per prediction
    alerts       monitoring alerts: identity id, model name and version, kind, time, JSON
    retrain_events  append-only retraining decisions: kind, versions, actor, JSON numbers
    leases       one retraining lease per model name: holder and expiry

Concurrency: a write transaction locks the model's row first (SQLite: ``BEGIN IMMEDIATE``
serialises writers; PostgreSQL: ``SELECT … FOR UPDATE``), and a new version's number comes
from ``models.last_version + 1`` bumped inside that transaction, so concurrent registers get
consecutive numbers. Registers hold a shared registry lock that gc's deletions take exclusively.

Connections: one per thread and per process (a forked child opens its own and never touches
the parent's), all closed by :meth:`SQLBackend.close` or when the backend is collected.
"""

# ruff: noqa: S608
# (S608: queries interpolate only module constants - column lists, table names, dialect
# keywords; every value is a bound parameter.)
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs

from modelkit._json import rows_json
from modelkit._retrain_store import RetrainSQLMixin, create_retrain_tables
from modelkit.exceptions import NotFoundError, RegistryError, UsageError
from modelkit.registry import (
    Alert,
    AliasEvent,
    Feedback,
    ModelVersion,
    PredictionRecord,
    RegisteredModel,
    Run,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "SQLBackend", "Tx"]

_ABANDONED: list[Any] = []
"""Connections inherited over fork: never used nor closed in the child (closing one could
end the parent's session), kept referenced so that collecting them does nothing either."""


class _Pool:
    """Connections by thread, for one process; everything here is fork-aware."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.connect = connect
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.all: list[Any] = []
        self.closed = False

    def get(self) -> Any:
        if os.getpid() != self.pid:
            with self.lock:
                if os.getpid() != self.pid:
                    _ABANDONED.extend(self.all)
                    self.all, self.local, self.pid = [], threading.local(), os.getpid()
        if self.closed:
            raise RegistryError("this registry was closed; open a new Registry")
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.connect()
            self.local.conn = conn
            with self.lock:
                self.all.append(conn)
        return conn

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if os.getpid() != self.pid:
                _ABANDONED.extend(self.all)
            else:
                for conn in self.all:
                    with contextlib.suppress(Exception):
                        conn.close()
            self.all = []
            self.local = threading.local()


class Tx:
    """A transaction's cursor-level helpers: ``?`` placeholders, one row or all rows."""

    def __init__(self, conn: Any, backend: SQLBackend) -> None:
        self.conn = conn
        self.backend = backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return the driver's cursor."""
        return self.conn.execute(self.backend.translate(sql), tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query and return its first row (or None)."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""
        return [tuple(row) for row in self.execute(sql, params).fetchall()]

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        self.conn.cursor().executemany(self.backend.translate(sql), [tuple(r) for r in rows])


@attrs.frozen
class Migration:
    """One schema step: ``apply(tx)`` brings the schema from ``version - 1`` to ``version``.

    Migrations run in order, all in one transaction, when a database is opened; statements
    may use the ``{timestamp}``, ``{json}``, ``{real}`` and ``{serial}`` type placeholders
    (see :meth:`SQLBackend.ddl`).
    """

    version: int
    description: str
    apply: Callable[[Tx], None]


_V1_TABLES = (
    """CREATE TABLE modelkit_models (
        name TEXT PRIMARY KEY,
        created_at {timestamp} NOT NULL,
        last_version INTEGER NOT NULL DEFAULT 0,
        tags {json} NOT NULL
    )""",
    """CREATE TABLE modelkit_runs (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
        started_at {timestamp} NOT NULL,
        ended_at {timestamp},
        params {json} NOT NULL,
        metrics {json} NOT NULL,
        cv_scores {json} NOT NULL,
        fit_time {real},
        dataset_fingerprint TEXT,
        error TEXT,
        parent_id TEXT REFERENCES modelkit_runs (id),
        tags {json} NOT NULL,
        version INTEGER
    )""",
    "CREATE INDEX modelkit_runs_by_name ON modelkit_runs (name, seq)",
    "CREATE INDEX modelkit_runs_by_parent ON modelkit_runs (parent_id, seq)",
    """CREATE TABLE modelkit_versions (
        name TEXT NOT NULL REFERENCES modelkit_models (name),
        version INTEGER NOT NULL CHECK (version >= 1),
        artifact_sha256 TEXT NOT NULL,
        artifact_uri TEXT NOT NULL,
        created_at {timestamp} NOT NULL,
        run_id TEXT REFERENCES modelkit_runs (id),
        tags {json} NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'archived')),
        metrics {json} NOT NULL,
        description TEXT,
        PRIMARY KEY (name, version)
    )""",
    "CREATE INDEX modelkit_versions_by_artifact ON modelkit_versions (artifact_sha256)",
    """CREATE TABLE modelkit_aliases (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES modelkit_versions (name, version)
    )""",
    """CREATE TABLE modelkit_alias_events (
        id {serial},
        name TEXT NOT NULL REFERENCES modelkit_models (name),
        alias TEXT NOT NULL,
        old_version INTEGER,
        new_version INTEGER,
        at {timestamp} NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT
    )""",
    "CREATE INDEX modelkit_alias_events_by_alias ON modelkit_alias_events (name, alias, id)",
)


def _create_v1(tx: Tx) -> None:
    for statement in _V1_TABLES:
        tx.execute(tx.backend.ddl(statement))
    for statement in tx.backend.append_only("modelkit_alias_events"):
        tx.execute(statement)


_V2_TABLES = (
    """CREATE TABLE modelkit_predictions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER,
        at {timestamp} NOT NULL,
        n_rows INTEGER NOT NULL CHECK (n_rows >= 0),
        outputs {json}
    )""",
    "CREATE INDEX modelkit_predictions_by_time ON modelkit_predictions (at)",
    "CREATE INDEX modelkit_predictions_by_name ON modelkit_predictions (name, at)",
    """CREATE TABLE modelkit_feedback (
        prediction_id TEXT PRIMARY KEY REFERENCES modelkit_predictions (id),
        labels {json} NOT NULL,
        received_at {timestamp} NOT NULL
    )""",
    "CREATE INDEX modelkit_feedback_by_time ON modelkit_feedback (received_at)",
)


def _create_v2(tx: Tx) -> None:
    for statement in _V2_TABLES:
        tx.execute(tx.backend.ddl(statement))


_V3_TABLES = (
    """CREATE TABLE modelkit_alerts (
        id {serial},
        name TEXT NOT NULL,
        version INTEGER,
        kind TEXT NOT NULL CHECK (kind IN ('drift', 'performance', 'health')),
        at {timestamp} NOT NULL,
        details {json} NOT NULL
    )""",
    "CREATE INDEX modelkit_alerts_by_name ON modelkit_alerts (name, at)",
    "CREATE INDEX modelkit_alerts_by_time ON modelkit_alerts (at)",
)


def _create_v3(tx: Tx) -> None:
    for statement in _V3_TABLES:
        tx.execute(tx.backend.ddl(statement))


def _add_v4(tx: Tx) -> None:
    tx.execute(tx.backend.ddl("ALTER TABLE modelkit_predictions ADD COLUMN inputs {json}"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "models, versions, aliases, append-only alias events, runs", _create_v1),
    Migration(2, "served predictions and their delayed labels (feedback)", _create_v2),
    Migration(3, "monitoring alerts (drift, performance, health)", _create_v3),
    Migration(4, "the input rows of served predictions", _add_v4),
    Migration(5, "retraining decisions and retraining leases", create_retrain_tables),
)
"""Every schema step, in order; the last one's version is :data:`SCHEMA_VERSION`."""

SCHEMA_VERSION = MIGRATIONS[-1].version

_GC_LOCK = 0x6D6B_7267_6763  # "mkrggc": registers share it, gc deletions take it alone
_MIGRATION_LOCK = 0x6D6B_7267_6D67  # "mkrgmg"

_V_COLS = (
    "name, version, artifact_sha256, artifact_uri, created_at, run_id, tags, status, metrics, "
    "description"
)
_E_COLS = "id, name, alias, old_version, new_version, at, actor, reason"
_R_COLS = (
    "id, name, status, started_at, ended_at, params, metrics, cv_scores, fit_time, "
    "dataset_fingerprint, error, parent_id, tags, version"
)
_P_COLS = "id, name, version, at, n_rows, outputs, inputs"
_F_COLS = "p.id, p.name, p.version, p.at, f.received_at, p.n_rows, p.outputs, f.labels, p.inputs"
_A_COLS = "id, name, version, kind, at, details"
_IN_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


class SQLBackend(RetrainSQLMixin):
    """A :class:`~modelkit.registry.RegistryBackend` over a DB-API connection; subclass per dialect.

    Subclasses implement :meth:`_connect` (an autocommit connection: transactions are
    explicit) and override the class attributes and small methods that differ.
    """

    placeholder: ClassVar[str] = "?"
    types: ClassVar[Mapping[str, str]] = {}
    begin_write: ClassVar[str] = "BEGIN"
    begin_read: ClassVar[str] = "BEGIN"
    for_update: ClassVar[str] = ""
    no_index: ClassVar[str] = ""
    """Written before a column to keep the planner off its index (SQLite: ``+``)."""
    database_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, url: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        """Connect to ``url`` and migrate its schema (see :meth:`migrate`)."""
        self._url = url
        self._migrations = tuple(migrations)
        self._pool = _Pool(self._connect)
        self._finalizer = weakref.finalize(self, self._pool.close)
        self.migrate()

    # -- dialect hooks ---------------------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    def _describe_error(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    def translate(self, sql: str) -> str:
        """Rewrite ``?`` placeholders for the driver."""
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def ddl(self, statement: str) -> str:
        """Fill the ``{timestamp}``, ``{json}``, ``{real}`` and ``{serial}`` type placeholders."""
        return statement.format_map(self.types)

    def append_only(self, table: str) -> list[str]:
        """Statements that make ``table`` refuse UPDATE and DELETE."""
        raise NotImplementedError

    def table_exists(self, tx: Tx, table: str) -> bool:
        """Tell whether ``table`` exists."""
        raise NotImplementedError

    def lock(self, tx: Tx, key: int, *, shared: bool) -> None:
        """Take a transaction-scoped registry lock (SQLite: the write lock already does)."""

    def to_db_time(self, value: datetime) -> Any:
        """A UTC datetime as the driver stores it."""
        return value

    def from_db_time(self, value: Any) -> datetime:
        """A stored timestamp back as a UTC datetime (what :func:`to_db_time` stored)."""
        return value  # type: ignore[no-any-return]  # drivers return datetimes already

    def to_db_json(self, value: Any) -> Any:
        """A JSON-ready value as the driver stores it."""
        return json.dumps(value, sort_keys=True, allow_nan=False)

    def to_db_rows(self, value: list[Any]) -> Any:
        """Recorded rows (a prediction's outputs or inputs: lists of JSON values) as the
        driver stores them, NaN and ±inf as ``null`` (:func:`~modelkit._json.rows_json`)."""
        return rows_json(value)

    def from_db_json(self, value: Any) -> Any:
        """A stored JSON value back as Python data."""
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    # -- connections and transactions ------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL this backend was opened with."""
        return self._url

    def close(self) -> None:
        """Close every connection this backend opened (in this process)."""
        self._finalizer()

    def clone(self) -> SQLBackend:
        """The same database through connections of its own, closed by its own :meth:`close`.

        For a background thread: closing either backend never closes a connection the other
        one is using (a SQLite connection closed while another thread uses it can crash).
        """
        other = copy.copy(self)
        other._pool = _Pool(other._connect)
        other._finalizer = weakref.finalize(other, other._pool.close)
        return other

    @contextlib.contextmanager
    def transaction(self, *, write: bool) -> Iterator[Tx]:
        """Run a block in one transaction; a write transaction waits for the write lock."""
        try:
            conn = self._pool.get()
            conn.execute(self.begin_write if write else self.begin_read)
        except self.database_errors as exc:
            raise RegistryError(
                f"registry database {self.url}: cannot start a transaction "
                f"({self._describe_error(exc)}); check that the database is reachable and not "
                "locked by a stuck process"
            ) from exc
        try:
            yield Tx(conn, self)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            if isinstance(exc, self.database_errors):
                raise RegistryError(
                    f"registry database {self.url}: {self._describe_error(exc)}"
                ) from exc
            raise
        try:
            conn.execute("COMMIT")
        except self.database_errors as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise RegistryError(
                f"registry database {self.url}: the commit failed "
                f"({self._describe_error(exc)}); nothing was changed"
            ) from exc

    # -- schema ----------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The database's schema version (0 for an empty database)."""
        with self.transaction(write=False) as tx:
            return self._read_schema_version(tx)

    def _read_schema_version(self, tx: Tx) -> int:
        if not self.table_exists(tx, "modelkit_schema"):
            return 0
        row = tx.one("SELECT version FROM modelkit_schema WHERE id = 1")
        return 0 if row is None else int(row[0])

    def migrate(self) -> None:
        """Bring the schema to the newest version this code knows, in one transaction.

        A database written by a newer modelkit is refused with
        :class:`~modelkit.exceptions.RegistryError`; concurrent openers migrate once.
        """
        target = self._migrations[-1].version
        current = self.schema_version()
        if current == target:
            return
        if current < target:
            with self.transaction(write=True) as tx:
                self.lock(tx, _MIGRATION_LOCK, shared=False)
                current = self._read_schema_version(tx)
                if current < target:
                    self._apply_migrations(tx, current)
                    return
        if current > target:
            raise RegistryError(
                f"registry database {self.url} has schema version {current}, but this "
                f"modelkit knows versions up to {target}: it was written by a newer modelkit; "
                "upgrade modelkit to use it"
            )

    def _apply_migrations(self, tx: Tx, current: int) -> None:
        if current == 0:
            tx.execute(
                "CREATE TABLE modelkit_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"
            )
            tx.execute("INSERT INTO modelkit_schema (id, version) VALUES (1, 0)")
        for migration in self._migrations:
            if migration.version > current:
                migration.apply(tx)
                tx.execute(
                    "UPDATE modelkit_schema SET version = ? WHERE id = 1", (migration.version,)
                )

    # -- row conversion --------------------------------------------------------------------

    def _version(self, row: Sequence[Any]) -> ModelVersion:
        return ModelVersion(
            name=row[0],
            version=int(row[1]),
            artifact_sha256=row[2],
            artifact_uri=row[3],
            created_at=self.from_db_time(row[4]),
            run_id=row[5],
            tags=self.from_db_json(row[6]),
            status=row[7],
            metrics=self.from_db_json(row[8]),
            description=row[9],
        )

    def _event(self, row: Sequence[Any]) -> AliasEvent:
        return AliasEvent(
            id=int(row[0]),
            name=row[1],
            alias=row[2],
            old_version=row[3],
            new_version=row[4],
            at=self.from_db_time(row[5]),
            actor=row[6],
            reason=row[7],
        )

    def _run(self, row: Sequence[Any]) -> Run:
        return Run(
            id=row[0],
            name=row[1],
            status=row[2],
            started_at=self.from_db_time(row[3]),
            ended_at=None if row[4] is None else self.from_db_time(row[4]),
            params=self.from_db_json(row[5]),
            metrics=self.from_db_json(row[6]),
            cv_scores=self.from_db_json(row[7]),
            fit_time=row[8],
            dataset_fingerprint=row[9],
            error=row[10],
            parent_id=row[11],
            tags=self.from_db_json(row[12]),
            version=row[13],
        )

    def _metrics(self, metrics: Mapping[str, float]) -> Any:
        return self.to_db_json({k: _nan_to_none(v) for k, v in metrics.items()})

    # -- shared lookups inside a transaction -----------------------------------------------

    def _lock_model(self, tx: Tx, name: str) -> tuple[Any, ...]:
        row = tx.one(
            "SELECT name, created_at, tags FROM modelkit_models WHERE name = ?" + self.for_update,
            (name,),
        )
        if row is None:
            raise NotFoundError(f"no model named {name!r} in registry {self.url}")
        return row

    def _model_exists(self, tx: Tx, name: str) -> None:
        if tx.one("SELECT 1 FROM modelkit_models WHERE name = ?", (name,)) is None:
            raise NotFoundError(f"no model named {name!r} in registry {self.url}")

    def _get_version(self, tx: Tx, name: str, version: int) -> ModelVersion:
        row = tx.one(
            f"SELECT {_V_COLS} FROM modelkit_versions WHERE name = ? AND version = ?",
            (name, version),
        )
        if row is None:
            self._model_exists(tx, name)
            raise NotFoundError(f"model {name!r} has no version {version} in registry {self.url}")
        return self._version(row)

    def _get_run(self, tx: Tx, run_id: str, *, for_update: bool = False) -> Run:
        suffix = self.for_update if for_update else ""
        row = tx.one(f"SELECT {_R_COLS} FROM modelkit_runs WHERE id = ?" + suffix, (run_id,))
        if row is not None:
            return self._run(row)
        prefix = run_id.lower()
        if len(prefix) >= 6 and prefix.isalnum() and prefix.isascii():
            rows = tx.all(
                f"SELECT {_R_COLS} FROM modelkit_runs WHERE id LIKE ? ORDER BY seq LIMIT 2",
                (prefix + "%",),
            )
            if len(rows) == 1:
                return self._get_run(tx, rows[0][0], for_update=for_update)
            if rows:
                raise RegistryError(
                    f"run id prefix {run_id!r} matches several runs ({rows[0][0]}, "
                    f"{rows[1][0]}, …); give more characters"
                )
        raise NotFoundError(
            f"no run with id {run_id!r} in registry {self.url} (a prefix needs 6+ characters)"
        )

    # -- versions --------------------------------------------------------------------------

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
        """See :meth:`modelkit.registry.RegistryBackend.create_version`."""
        with self.transaction(write=True) as tx:
            self.lock(tx, _GC_LOCK, shared=True)
            tx.execute(
                "INSERT INTO modelkit_models (name, created_at, last_version, tags) "
                "VALUES (?, ?, 0, ?) ON CONFLICT (name) DO NOTHING",
                (name, self.to_db_time(created_at), self.to_db_json({})),
            )
            tx.execute(
                "UPDATE modelkit_models SET last_version = last_version + 1 WHERE name = ?",
                (name,),
            )
            row = tx.one("SELECT last_version FROM modelkit_models WHERE name = ?", (name,))
            assert row is not None
            version = int(row[0])
            if run_id is not None:
                self._get_run(tx, run_id)
            check_artifact()
            tx.execute(
                f"INSERT INTO modelkit_versions ({_V_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
                (
                    name,
                    version,
                    artifact_sha256,
                    artifact_uri,
                    self.to_db_time(created_at),
                    run_id,
                    self.to_db_json(dict(tags)),
                    self._metrics(metrics),
                    description,
                ),
            )
            if run_id is not None:
                tx.execute(
                    "UPDATE modelkit_runs SET version = ? WHERE id = ? AND version IS NULL",
                    (version, run_id),
                )
            return self._get_version(tx, name, version)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """See :meth:`modelkit.registry.RegistryBackend.get_version`."""
        with self.transaction(write=False) as tx:
            return self._get_version(tx, name, version)

    def latest_version(self, name: str) -> ModelVersion:
        """See :meth:`modelkit.registry.RegistryBackend.latest_version`."""
        with self.transaction(write=False) as tx:
            row = tx.one(
                f"SELECT {_V_COLS} FROM modelkit_versions WHERE name = ? AND status = 'active' "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            )
            if row is None:
                self._model_exists(tx, name)
                raise NotFoundError(f"model {name!r} has no active version (all are archived)")
            return self._version(row)

    def _models(self, tx: Tx, name: str | None) -> list[RegisteredModel]:
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        latest = dict(
            tx.all(
                f"SELECT name, MAX(version) FROM modelkit_versions {where}"
                + (" AND" if where else " WHERE")
                + " status = 'active' GROUP BY name",
                params,
            )
        )
        aliases: dict[str, dict[str, int]] = {}
        for model, alias, version in tx.all(
            f"SELECT name, alias, version FROM modelkit_aliases {where} ORDER BY alias", params
        ):
            aliases.setdefault(model, {})[alias] = int(version)
        return [
            RegisteredModel(
                name=model,
                created_at=self.from_db_time(created_at),
                latest_version=None if latest.get(model) is None else int(latest[model]),
                aliases=aliases.get(model, {}),
                tags=self.from_db_json(tags),
            )
            for model, created_at, tags in tx.all(
                f"SELECT name, created_at, tags FROM modelkit_models {where} ORDER BY name",
                params,
            )
        ]

    def get_model(self, name: str) -> RegisteredModel:
        """See :meth:`modelkit.registry.RegistryBackend.get_model`."""
        with self.transaction(write=False) as tx:
            found = self._models(tx, name)
        if not found:
            raise NotFoundError(f"no model named {name!r} in registry {self.url}")
        return found[0]

    def list_models(self) -> list[RegisteredModel]:
        """See :meth:`modelkit.registry.RegistryBackend.list_models`."""
        with self.transaction(write=False) as tx:
            return self._models(tx, None)

    def list_versions(self, name: str, *, include_archived: bool) -> list[ModelVersion]:
        """See :meth:`modelkit.registry.RegistryBackend.list_versions`."""
        status = "" if include_archived else " AND status = 'active'"
        with self.transaction(write=False) as tx:
            self._model_exists(tx, name)
            rows = tx.all(
                f"SELECT {_V_COLS} FROM modelkit_versions WHERE name = ?{status} ORDER BY version",
                (name,),
            )
        return [self._version(row) for row in rows]

    def set_tags(self, name: str, version: int | None, tags: Mapping[str, str | None]) -> None:
        """See :meth:`modelkit.registry.RegistryBackend.set_tags`."""
        with self.transaction(write=True) as tx:
            model = self._lock_model(tx, name)
            if version is None:
                current = self.from_db_json(model[2])
            else:
                current = dict(self._get_version(tx, name, version).tags)
            for key, value in tags.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            if version is None:
                tx.execute(
                    "UPDATE modelkit_models SET tags = ? WHERE name = ?",
                    (self.to_db_json(current), name),
                )
            else:
                tx.execute(
                    "UPDATE modelkit_versions SET tags = ? WHERE name = ? AND version = ?",
                    (self.to_db_json(current), name, version),
                )

    def set_status(self, name: str, version: int, status: str) -> ModelVersion:
        """See :meth:`modelkit.registry.RegistryBackend.set_status`."""
        if status not in ("active", "archived"):
            raise UsageError(f"status must be 'active' or 'archived', got {status!r}")
        with self.transaction(write=True) as tx:
            self._lock_model(tx, name)
            self._get_version(tx, name, version)
            if status == "archived":
                pointing = [
                    alias
                    for (alias,) in tx.all(
                        "SELECT alias FROM modelkit_aliases WHERE name = ? AND version = ? "
                        "ORDER BY alias",
                        (name, version),
                    )
                ]
                if pointing:
                    raise RegistryError(
                        f"cannot archive {name!r} version {version}: alias(es) "
                        f"{', '.join(repr(a) for a in pointing)} point to it; move or remove "
                        "them first"
                    )
            tx.execute(
                "UPDATE modelkit_versions SET status = ? WHERE name = ? AND version = ?",
                (status, name, version),
            )
            return self._get_version(tx, name, version)

    # -- aliases ---------------------------------------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        """See :meth:`modelkit.registry.RegistryBackend.aliases`."""
        with self.transaction(write=False) as tx:
            self._model_exists(tx, name)
            rows = tx.all(
                "SELECT alias, version FROM modelkit_aliases WHERE name = ? ORDER BY alias",
                (name,),
            )
        return {alias: int(version) for alias, version in rows}

    def _latest_event(self, tx: Tx, name: str, alias: str) -> AliasEvent | None:
        row = tx.one(
            f"SELECT {_E_COLS} FROM modelkit_alias_events WHERE name = ? AND alias = ? "
            "ORDER BY id DESC LIMIT 1",
            (name, alias),
        )
        return None if row is None else self._event(row)

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
        """See :meth:`modelkit.registry.RegistryBackend.change_alias`."""
        with self.transaction(write=True) as tx:
            self._lock_model(tx, name)
            row = tx.one(
                "SELECT version FROM modelkit_aliases WHERE name = ? AND alias = ?", (name, alias)
            )
            current = None if row is None else int(row[0])
            latest = self._latest_event(tx, name, alias)
            if rollback:
                if latest is None:
                    raise NotFoundError(f"model {name!r} has no alias {alias!r} to roll back")
                if latest.old_version is None:
                    raise RegistryError(
                        f"cannot roll back alias {alias!r} of {name!r}: it had no target before "
                        f"its latest change (event {latest.id}); use remove_alias to remove it"
                    )
                version = latest.old_version
            if version is None:
                if current is None:
                    raise NotFoundError(f"model {name!r} has no alias {alias!r} to remove")
            else:
                target = self._get_version(tx, name, version)
                if target.status != "active":
                    raise RegistryError(
                        f"cannot point alias {alias!r} at {name!r} version {version}: it is "
                        f"{target.status}; choose an active version"
                    )
                if current == version and latest is not None:
                    return latest  # already there: no event
            if latest is not None and latest.at > at:
                at = latest.at  # never let one alias's history go back in time
            if version is None:
                tx.execute(
                    "DELETE FROM modelkit_aliases WHERE name = ? AND alias = ?", (name, alias)
                )
            elif current is None:
                tx.execute(
                    "INSERT INTO modelkit_aliases (name, alias, version) VALUES (?, ?, ?)",
                    (name, alias, version),
                )
            else:
                tx.execute(
                    "UPDATE modelkit_aliases SET version = ? WHERE name = ? AND alias = ?",
                    (version, name, alias),
                )
            tx.execute(
                "INSERT INTO modelkit_alias_events "
                "(name, alias, old_version, new_version, at, actor, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, alias, current, version, self.to_db_time(at), actor, reason),
            )
            event = self._latest_event(tx, name, alias)
            assert event is not None
            return event

    def history(self, name: str, alias: str | None) -> list[AliasEvent]:
        """See :meth:`modelkit.registry.RegistryBackend.history`."""
        where, params = (
            ("name = ?", [name])
            if alias is None
            else (
                "name = ? AND alias = ?",
                [name, alias],
            )
        )
        with self.transaction(write=False) as tx:
            self._model_exists(tx, name)
            rows = tx.all(
                f"SELECT {_E_COLS} FROM modelkit_alias_events WHERE {where} ORDER BY id", params
            )
        return [self._event(row) for row in rows]

    def alias_at(self, name: str, alias: str, when: datetime) -> int | None:
        """See :meth:`modelkit.registry.RegistryBackend.alias_at`."""
        with self.transaction(write=False) as tx:
            self._model_exists(tx, name)
            row = tx.one(
                "SELECT new_version FROM modelkit_alias_events "
                "WHERE name = ? AND alias = ? AND at <= ? ORDER BY id DESC LIMIT 1",
                (name, alias, self.to_db_time(when)),
            )
        return None if row is None or row[0] is None else int(row[0])

    # -- runs ------------------------------------------------------------------------------

    def insert_run(self, run: Run) -> None:
        """See :meth:`modelkit.registry.RegistryBackend.insert_run`."""
        with self.transaction(write=True) as tx:
            if run.parent_id is not None:
                self._get_run(tx, run.parent_id)
            tx.execute(
                f"INSERT INTO modelkit_runs ({_R_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.name,
                    run.status,
                    self.to_db_time(run.started_at),
                    None if run.ended_at is None else self.to_db_time(run.ended_at),
                    self.to_db_json(dict(run.params)),
                    self._metrics(run.metrics),
                    self._cv_scores(run.cv_scores),
                    run.fit_time,
                    run.dataset_fingerprint,
                    run.error,
                    run.parent_id,
                    self.to_db_json(dict(run.tags)),
                    run.version,
                ),
            )

    def _cv_scores(self, scores: Mapping[str, list[float]]) -> Any:
        return self.to_db_json({k: [_nan_to_none(s) for s in v] for k, v in scores.items()})

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
        """See :meth:`modelkit.registry.RegistryBackend.finish_run`."""
        with self.transaction(write=True) as tx:
            run = self._get_run(tx, run_id, for_update=True)
            if run.status != "running":
                raise RegistryError(
                    f"run {run.id} already {run.status} at {run.ended_at}; a run finishes once"
                )
            if version is not None:
                self._link_version(tx, run, version)
            tx.execute(
                "UPDATE modelkit_runs SET status = ?, ended_at = ?, metrics = ?, cv_scores = ?, "
                "fit_time = ?, error = ?, version = COALESCE(?, version) WHERE id = ?",
                (
                    status,
                    self.to_db_time(ended_at),
                    self._metrics(metrics),
                    self._cv_scores(cv_scores),
                    fit_time,
                    error,
                    version,
                    run.id,
                ),
            )
            return self._get_run(tx, run.id)

    def _link_version(self, tx: Tx, run: Run, version: int) -> None:
        self._lock_model(tx, run.name)
        linked = self._get_version(tx, run.name, version).run_id
        if linked not in (None, run.id):
            raise RegistryError(
                f"{run.name!r} version {version} was registered from run {linked}, not {run.id}"
            )
        tx.execute(
            "UPDATE modelkit_versions SET run_id = ? WHERE name = ? AND version = ?",
            (run.id, run.name, version),
        )

    def get_run(self, run_id: str) -> Run:
        """See :meth:`modelkit.registry.RegistryBackend.get_run`."""
        if not isinstance(run_id, str) or not run_id:
            raise UsageError(f"a run id is a non-empty string, got {run_id!r}")
        with self.transaction(write=False) as tx:
            return self._get_run(tx, run_id)

    def list_runs(self, name: str | None, parent_id: str | None, limit: int | None) -> list[Run]:
        """See :meth:`modelkit.registry.RegistryBackend.list_runs`."""
        clauses: list[str] = []
        params: list[Any] = []
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if parent_id is not None:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT {_R_COLS} FROM modelkit_runs{where} ORDER BY seq DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self.transaction(write=False) as tx:
            rows = tx.all(query, params)
        return [self._run(row) for row in rows]

    # -- gc --------------------------------------------------------------------------------

    def referenced_artifacts(self) -> set[str]:
        """See :meth:`modelkit.registry.RegistryBackend.referenced_artifacts`."""
        with self.transaction(write=False) as tx:
            return {
                key for (key,) in tx.all("SELECT DISTINCT artifact_sha256 FROM modelkit_versions")
            }

    def delete_if_unreferenced(self, artifact_sha256: str, delete: Callable[[], object]) -> bool:
        """See :meth:`modelkit.registry.RegistryBackend.delete_if_unreferenced`."""
        with self.transaction(write=True) as tx:
            self.lock(tx, _GC_LOCK, shared=False)
            if tx.one(
                "SELECT 1 FROM modelkit_versions WHERE artifact_sha256 = ? LIMIT 1",
                (artifact_sha256,),
            ):
                return False
            try:
                delete()
            except NotFoundError:
                return False
            return True

    # -- predictions and feedback ----------------------------------------------------------

    def _prediction(self, row: Sequence[Any]) -> PredictionRecord:
        return PredictionRecord(
            id=row[0],
            name=row[1],
            version=None if row[2] is None else int(row[2]),
            at=self.from_db_time(row[3]),
            rows=int(row[4]),
            outputs=None if row[5] is None else self.from_db_json(row[5]),
            inputs=None if row[6] is None else self.from_db_json(row[6]),
        )

    def record_predictions(self, predictions: Sequence[PredictionRecord]) -> None:
        """See :meth:`modelkit.registry.RegistryBackend.record_predictions`."""
        rows = [
            (
                p.id,
                p.name,
                p.version,
                self.to_db_time(p.at),
                p.rows,
                None if p.outputs is None else self.to_db_rows(p.outputs),
                None if p.inputs is None else self.to_db_rows(p.inputs),
            )
            for p in predictions
        ]
        with self.transaction(write=True) as tx:
            tx.execute_many(
                f"INSERT INTO modelkit_predictions ({_P_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                rows,
            )

    def get_prediction(self, prediction_id: str) -> PredictionRecord:
        """See :meth:`modelkit.registry.RegistryBackend.get_prediction`."""
        with self.transaction(write=False) as tx:
            row = tx.one(
                f"SELECT {_P_COLS} FROM modelkit_predictions WHERE id = ?", (prediction_id,)
            )
        if row is None:
            raise NotFoundError(
                f"no prediction with id {prediction_id!r} in registry {self.url} (never "
                "recorded, or older than the retention period)"
            )
        return self._prediction(row)

    def add_feedback(self, labels: Mapping[str, list[Any]], *, received_at: datetime) -> None:
        """See :meth:`modelkit.registry.RegistryBackend.add_feedback`."""
        ids = list(labels)
        with self.transaction(write=True) as tx:
            counts: dict[str, int] = {}
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                counts.update(
                    (key, int(n))
                    for key, n in tx.all(
                        f"SELECT id, n_rows FROM modelkit_predictions WHERE id IN ({marks})"
                        + self.for_update,
                        chunk,
                    )
                )
            unknown = [key for key in ids if key not in counts]
            if unknown:
                shown = ", ".join(repr(key) for key in unknown[:10])
                more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
                raise NotFoundError(
                    f"no recorded prediction with id {shown}{more}: labels can only follow "
                    "predictions this registry recorded, within the retention period"
                )
            for key in ids:
                if len(labels[key]) != counts[key]:
                    raise UsageError(
                        f"prediction {key!r} has {counts[key]} row(s), so it takes "
                        f"{counts[key]} label(s) (a list, one per row); got {len(labels[key])}"
                    )
            when = self.to_db_time(received_at)
            tx.execute_many(
                "INSERT INTO modelkit_feedback (prediction_id, labels, received_at) "
                "VALUES (?, ?, ?) ON CONFLICT (prediction_id) DO UPDATE "
                "SET labels = excluded.labels, received_at = excluded.received_at",
                [(key, self.to_db_json(labels[key]), when) for key in ids],
            )

    def list_feedback(
        self, name: str, since: datetime | None, until: datetime | None, limit: int | None
    ) -> list[Feedback]:
        """See :meth:`modelkit.registry.RegistryBackend.list_feedback`."""
        # by the labels' time index: the name index would walk every prediction of the model
        clauses: list[str] = [f"{self.no_index}p.name = ?"]
        params: list[Any] = [name]
        if since is not None:
            clauses.append("f.received_at >= ?")
            params.append(self.to_db_time(since))
        if until is not None:
            clauses.append("f.received_at < ?")
            params.append(self.to_db_time(until))
        query = (
            f"SELECT {_F_COLS} FROM modelkit_feedback f "
            "JOIN modelkit_predictions p ON p.id = f.prediction_id "
            f"WHERE {' AND '.join(clauses)} ORDER BY f.received_at, p.id"
        )
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self.transaction(write=False) as tx:
            rows = tx.all(query, params)
        return [
            Feedback(
                prediction_id=row[0],
                name=row[1],
                version=None if row[2] is None else int(row[2]),
                predicted_at=self.from_db_time(row[3]),
                received_at=self.from_db_time(row[4]),
                rows=int(row[5]),
                outputs=None if row[6] is None else self.from_db_json(row[6]),
                labels=self.from_db_json(row[7]),
                inputs=None if row[8] is None else self.from_db_json(row[8]),
            )
            for row in rows
        ]

    def prune_predictions(self, before: datetime) -> int:
        """See :meth:`modelkit.registry.RegistryBackend.prune_predictions`."""
        cutoff = self.to_db_time(before)
        with self.transaction(write=True) as tx:
            tx.execute(
                "DELETE FROM modelkit_feedback WHERE prediction_id IN "
                "(SELECT id FROM modelkit_predictions WHERE at < ?)",
                (cutoff,),
            )
            removed = tx.execute("DELETE FROM modelkit_predictions WHERE at < ?", (cutoff,))
            return max(int(removed.rowcount), 0)

    # -- monitoring alerts -----------------------------------------------------------------

    def _alert(self, row: Sequence[Any]) -> Alert:
        return Alert(
            id=int(row[0]),
            name=row[1],
            version=None if row[2] is None else int(row[2]),
            kind=row[3],
            at=self.from_db_time(row[4]),
            details=self.from_db_json(row[5]),
        )

    def record_alert(self, alert: Alert) -> Alert:
        """See :meth:`modelkit.registry.RegistryBackend.record_alert`."""
        with self.transaction(write=True) as tx:
            row = tx.one(
                "INSERT INTO modelkit_alerts (name, version, kind, at, details) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (
                    alert.name,
                    alert.version,
                    alert.kind,
                    self.to_db_time(alert.at),
                    self.to_db_json(dict(alert.details)),
                ),
            )
        assert row is not None
        return attrs.evolve(alert, id=int(row[0]))

    def list_alerts(
        self,
        name: str | None,
        kind: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
    ) -> list[Alert]:
        """See :meth:`modelkit.registry.RegistryBackend.list_alerts`."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("name = ?", name),
            ("kind = ?", kind),
            ("at >= ?", None if since is None else self.to_db_time(since)),
            ("at < ?", None if until is None else self.to_db_time(until)),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        query = f"SELECT {_A_COLS} FROM modelkit_alerts {where}ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self.transaction(write=False) as tx:
            return [self._alert(row) for row in tx.all(query, params)]
