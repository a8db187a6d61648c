"""Where a batch job's predictions go, each chunk committed exactly once.

A :class:`Sink` receives a job's chunks as :class:`ChunkOutput` records and commits each one
**atomically together with the job's progress**: the rows, the quarantined rows and the chunk's
progress record in one database transaction (SQLite, PostgreSQL), or, for files, part files
renamed into place before a progress record is (Parquet, CSV). A job killed at any moment and
rerun with the same id therefore resumes after the last committed chunk, and finishes with every
row exactly once; a rerun of a finished job writes nothing.

Each output row holds the key, the carried columns, the prediction (and probabilities or
decision values when asked), the model's name and version, the artifact's sha256, the job id
and the time its chunk was predicted (UTC, ISO 8601). Rows a model's signature refuses go, with
``on_error="quarantine"``, to ``<table>_quarantine`` with the reason and the row's features as
JSON.

Built-in sinks (plugins add more through ``register_batch_sinks``):

===================================  =========================================================
URL                                  sink
===================================  =========================================================
``sqlite:///pred.db``, ``pred.db``   :class:`SqliteSink` (``sqlite:///pred.db`` is relative;
                                     ``sqlite:///abs/dir/pred.db`` absolute)
``postgresql://user@host/db``        :class:`~modelkit.batch._postgres.PostgresSink`, COPY
                                     (extra ``postgres``)
``out.parquet/``, ``parquet://dir``  :class:`~modelkit.batch._files.FileSink`, Parquet parts
``out.csv/``, ``csv://dir``          :class:`~modelkit.batch._files.FileSink`, CSV parts
===================================  =========================================================
"""

# ruff: noqa: S608
# (S608: statements interpolate only quoted identifiers and quoted literals built here.)
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from modelkit.exceptions import BatchJobError, DataError, UsageError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ChunkOutput",
    "ChunkRecord",
    "JobSpec",
    "JobState",
    "Quarantined",
    "Sink",
    "SqliteSink",
    "open_sink",
    "quote_identifier",
]

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
_CHECKPOINT_PAGES = 65536
JOBS_TABLE = "modelkit_batch_jobs"
CHUNKS_TABLE = "modelkit_batch_chunks"
CONSTANT_COLUMNS = ("model_name", "model_version", "artifact_sha256", "job_id", "predicted_at")
"""Columns every output row has after its key, carried columns and outputs."""


def check_job_id(_inst: object, _attr: object, value: str) -> None:
    """attrs validator: a job id is 1-128 letters, digits and ``. _ : @ + -``."""
    if not isinstance(value, str) or not _JOB_ID_RE.match(value):
        raise UsageError(
            f"a job id is 1 to 128 letters, digits and . _ : @ + - (starting with a letter or "
            f"digit), got {value!r}"
        )


def check_table(_inst: object, _attr: object, value: str) -> None:
    """attrs validator: a table name is a plain SQL identifier."""
    if not isinstance(value, str) or not _TABLE_RE.match(value):
        raise UsageError(
            f"table must be a plain SQL name (letters, digits, _; up to 63), got {value!r}"
        )


def str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    """attrs converter: any iterable of names as a tuple (one string is one name)."""
    return (values,) if isinstance(values, str) else tuple(values)


def quote_identifier(name: str) -> str:
    """``"name"`` with embedded double quotes doubled: any column name is safe in SQL."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: object) -> str:
    """A SQL literal for a constant this module writes (str, int or None)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def now_iso() -> str:
    """The current UTC time as ``2024-06-01T12:03:04.123456Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- records ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobSpec:
    """What a job is: its id, target, model and input. Stored with the job's progress.

    A job is resumed only by a run with the same spec (the same model artifact, input, key,
    outputs and engine): anything else under the same id is a
    :class:`~modelkit.exceptions.BatchJobError`.
    """

    job_id: str = attrs.field(validator=check_job_id)
    table: str = attrs.field(validator=check_table)
    key: str
    model_name: str
    model_version: int | None
    artifact_sha256: str
    source: str
    outputs: tuple[str, ...] = attrs.field(converter=str_tuple)
    engine: str = "local"
    chunk_rows: int | None = None
    """The partitioning of a Dask job (its partitions are its chunks); ``None`` for local jobs,
    which may resume with any chunk size."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**attrs.asdict(self), "outputs": list(self.outputs)}

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """What differs between this spec and a stored one, as ``field: stored -> this``."""
        mine = self.to_dict()
        return [
            f"{name}: {stored.get(name)!r} -> {mine[name]!r}"
            for name in (
                "table",
                "key",
                "model_name",
                "model_version",
                "artifact_sha256",
                "source",
                "outputs",
                "engine",
                "chunk_rows",
            )
            if stored.get(name) != mine[name]
        ]

    def constants(self, predicted_at: str) -> tuple[Any, ...]:
        """The values of :data:`CONSTANT_COLUMNS` for one chunk."""
        return (
            self.model_name,
            self.model_version,
            self.artifact_sha256,
            self.job_id,
            predicted_at,
        )


@attrs.frozen(eq=False, kw_only=True)
class Quarantined:
    """Rows of a chunk set aside: their keys, row numbers, reasons and features (JSON)."""

    keys: np.ndarray
    rows: np.ndarray
    reasons: list[str]
    data: list[str]

    def __len__(self) -> int:
        """How many rows."""
        return len(self.reasons)


@attrs.frozen(eq=False, kw_only=True)
class ChunkOutput:
    """One predicted chunk, ready to commit.

    ``columns`` maps output column names (key first, then carried columns, then outputs) to
    arrays of ``rows_out`` values; ``quarantined`` holds the rows set aside, ``rows_skipped``
    counts the rows dropped with ``on_error="skip"``.
    """

    chunk_id: int
    start: int
    rows_in: int
    rows_out: int
    columns: Mapping[str, np.ndarray]
    quarantined: Quarantined | None = None
    rows_skipped: int = 0
    predicted_at: str = attrs.field(factory=now_iso)

    @property
    def rows_quarantined(self) -> int:
        """How many rows were quarantined."""
        return 0 if self.quarantined is None else len(self.quarantined)

    def record(self) -> ChunkRecord:
        """The progress record committed with the rows."""
        return ChunkRecord(
            chunk_id=self.chunk_id,
            start=self.start,
            rows_in=self.rows_in,
            rows_out=self.rows_out,
            rows_quarantined=self.rows_quarantined,
            rows_skipped=self.rows_skipped,
        )


@attrs.frozen(kw_only=True)
class ChunkRecord:
    """A committed chunk: where it starts and how many rows went in, out and aside."""

    chunk_id: int
    start: int
    rows_in: int
    rows_out: int
    rows_quarantined: int = 0
    rows_skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class JobState:
    """A job's progress as its sink recorded it."""

    status: str
    """``"new"`` (never started), ``"running"`` (started, not finished) or ``"finished"``."""
    chunks: Mapping[int, ChunkRecord] = attrs.field(factory=dict)
    drift: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """Whether every row was committed and the job marked finished."""
        return self.status == "finished"

    @property
    def next_row(self) -> int:
        """The first row no committed chunk covers (where the local engine resumes)."""
        return max((c.start + c.rows_in for c in self.chunks.values()), default=0)

    def total(self, field: str) -> int:
        """The sum of one count (``rows_in``, ``rows_out``, …) over the committed chunks."""
        return sum(int(getattr(c, field)) for c in self.chunks.values())


@runtime_checkable
class Sink(Protocol):
    """A destination that commits each chunk together with the job's progress."""

    def describe(self) -> str:
        """Where the rows go (passwords masked), for messages and the job's identity."""

    def start(self, job: JobSpec) -> JobState:
        """Record the job (or check that a recorded one has the same spec) and return its
        progress. Remove anything a killed run left uncommitted."""

    def write(self, job: JobSpec, output: ChunkOutput) -> None:
        """Commit one chunk's rows, quarantined rows and progress record, all or nothing.

        Committing a chunk id the job already committed raises
        :class:`~modelkit.exceptions.BatchJobError` and writes nothing.
        """

    def finish(self, job: JobSpec, *, drift: Mapping[str, Any] | None = None) -> JobState:
        """Mark the job finished (with its drift verdict, if any) and return its progress."""

    def close(self) -> None:
        """Release connections; a closed sink reopens them when used again."""


# -- SQL ----------------------------------------------------------------------------------


def sql_type(values: np.ndarray, *, postgres: bool) -> str:  # noqa: PLR0911 - one per type
    """The column type for a numpy array: integers, reals, booleans, else text."""
    kind = values.dtype.kind
    if kind == "b":
        return "BOOLEAN" if postgres else "INTEGER"
    if kind in "iu":
        return "BIGINT" if postgres else "INTEGER"
    if kind == "f":
        return "DOUBLE PRECISION" if postgres else "REAL"
    if kind == "O" and len(values):
        sample = [v for v in values[:1000].tolist() if v is not None]
        if sample and all(isinstance(v, bool) for v in sample):
            return "BOOLEAN" if postgres else "INTEGER"
        if sample and all(isinstance(v, int) and not isinstance(v, bool) for v in sample):
            return "BIGINT" if postgres else "INTEGER"
        if sample and all(isinstance(v, float | int) and not isinstance(v, bool) for v in sample):
            return "DOUBLE PRECISION" if postgres else "REAL"
    return "TEXT"


class SqlSinkBase:
    """What the SQLite and PostgreSQL sinks share: the job tables and their statements."""

    table: str
    postgres = False
    placeholder = "?"
    time_type = "TEXT"

    def _connection(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        raise NotImplementedError

    def _insert_rows(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        raise NotImplementedError

    def _is_integrity_error(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _is_missing_column(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return conn.execute(sql, tuple(params))

    def _create_job_tables(self, conn: Any) -> None:
        big = "BIGINT" if self.postgres else "INTEGER"
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {JOBS_TABLE} (job_id TEXT PRIMARY KEY, "
            f"target_table TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL, "
            f"started_at TEXT NOT NULL, finished_at TEXT, rows_in {big}, rows_out {big}, "
            f"rows_quarantined {big}, rows_skipped {big}, drift TEXT)",
        )
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {CHUNKS_TABLE} (job_id TEXT NOT NULL, "
            f"chunk_id {big} NOT NULL, start_row {big} NOT NULL, rows_in {big} NOT NULL, "
            f"rows_out {big} NOT NULL, rows_quarantined {big} NOT NULL, "
            f"rows_skipped {big} NOT NULL, committed_at TEXT NOT NULL, "
            "PRIMARY KEY (job_id, chunk_id))",
        )

    def _state(self, conn: Any, job_id: str) -> tuple[JobState, dict[str, Any] | None]:
        row = self._execute(
            conn, f"SELECT spec, status, drift FROM {JOBS_TABLE} WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return JobState(status="new"), None
        chunks = {
            int(r[0]): ChunkRecord(
                chunk_id=int(r[0]),
                start=int(r[1]),
                rows_in=int(r[2]),
                rows_out=int(r[3]),
                rows_quarantined=int(r[4]),
                rows_skipped=int(r[5]),
            )
            for r in self._execute(
                conn,
                f"SELECT chunk_id, start_row, rows_in, rows_out, rows_quarantined, rows_skipped "
                f"FROM {CHUNKS_TABLE} WHERE job_id = ?",
                (job_id,),
            ).fetchall()
        }
        drift = None if row[2] is None else json.loads(row[2])
        return JobState(status=str(row[1]), chunks=chunks, drift=drift), json.loads(row[0])

    def start(self, job: JobSpec) -> JobState:
        """Create the job tables, record the job or check the recorded spec; its progress."""
        conn = self._connection()
        self._begin(conn)
        try:
            self._create_job_tables(conn)
            state, stored = self._state(conn, job.job_id)
            if stored is None:
                self._execute(
                    conn,
                    f"INSERT INTO {JOBS_TABLE} (job_id, target_table, spec, status, started_at) "
                    "VALUES (?, ?, ?, 'running', ?)",
                    (job.job_id, job.table, json.dumps(job.to_dict()), now_iso()),
                )
                state = JobState(status="running")
            else:
                check_same_job(job, stored)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return state

    def _ensure_table(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        table = quote_identifier(self.table)
        columns = [
            f"{quote_identifier(name)} {sql_type(values, postgres=self.postgres)}"
            for name, values in output.columns.items()
        ]
        columns += [
            f"model_name TEXT NOT NULL, model_version {'BIGINT' if self.postgres else 'INTEGER'}",
            f"artifact_sha256 TEXT NOT NULL, job_id TEXT NOT NULL, "
            f"predicted_at {self.time_type} NOT NULL",
        ]
        self._execute(conn, f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})")
        key = quote_identifier(job.key)
        index = quote_identifier(f"{self.table}_job_key")
        self._execute(conn, f"CREATE INDEX IF NOT EXISTS {index} ON {table} (job_id, {key})")

    def _ensure_quarantine(self, conn: Any) -> None:
        big = "BIGINT" if self.postgres else "INTEGER"
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {quote_identifier(self.table + '_quarantine')} "
            f"(job_id TEXT NOT NULL, key TEXT, row_number {big} NOT NULL, reason TEXT NOT NULL, "
            f"data TEXT NOT NULL, quarantined_at {self.time_type} NOT NULL)",
        )

    def write(self, job: JobSpec, output: ChunkOutput) -> None:
        """Commit the chunk's rows, quarantined rows and progress record in one transaction."""
        conn = self._connection()
        self._begin(conn)
        try:
            if output.rows_out:
                self._ensure_table(conn, job, output)
                self._insert_rows(conn, job, output)
            quarantined = output.quarantined
            if quarantined is not None and len(quarantined):
                self._ensure_quarantine(conn)
                rows = zip(
                    [job.job_id] * len(quarantined),
                    [None if k is None else str(k) for k in quarantined.keys.tolist()],
                    quarantined.rows.tolist(),
                    quarantined.reasons,
                    quarantined.data,
                    [output.predicted_at] * len(quarantined),
                    strict=True,
                )
                sql = (
                    f"INSERT INTO {quote_identifier(self.table + '_quarantine')} "
                    "(job_id, key, row_number, reason, data, quarantined_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ).replace("?", self.placeholder)
                conn.cursor().executemany(sql, list(rows))
            record = output.record()
            self._execute(
                conn,
                f"INSERT INTO {CHUNKS_TABLE} (job_id, chunk_id, start_row, rows_in, rows_out, "
                "rows_quarantined, rows_skipped, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.job_id,
                    record.chunk_id,
                    record.start,
                    record.rows_in,
                    record.rows_out,
                    record.rows_quarantined,
                    record.rows_skipped,
                    now_iso(),
                ),
            )
            conn.commit()
        except BaseException as exc:
            conn.rollback()
            if self._is_integrity_error(exc):
                raise already_committed(job, output.chunk_id) from exc
            if self._is_missing_column(exc):
                raise DataError(
                    f"table {self.table!r} already exists with other columns ({exc}); write to "
                    "another table, or drop it"
                ) from exc
            raise

    def finish(self, job: JobSpec, *, drift: Mapping[str, Any] | None = None) -> JobState:
        """Mark the job finished with its totals and drift verdict."""
        conn = self._connection()
        self._begin(conn)
        try:
            state, _ = self._state(conn, job.job_id)
            self._execute(
                conn,
                f"UPDATE {JOBS_TABLE} SET status = 'finished', finished_at = ?, rows_in = ?, "
                "rows_out = ?, rows_quarantined = ?, rows_skipped = ?, drift = ? WHERE job_id = ?",
                (
                    now_iso(),
                    state.total("rows_in"),
                    state.total("rows_out"),
                    state.total("rows_quarantined"),
                    state.total("rows_skipped"),
                    None if drift is None else json.dumps(drift),
                    job.job_id,
                ),
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return attrs.evolve(state, status="finished", drift=drift)


def already_committed(job: JobSpec, chunk_id: int) -> BatchJobError:
    """The error for a chunk another run of the same job has already committed."""
    return BatchJobError(
        f"job {job.job_id!r} already committed chunk {chunk_id} (is another run of the same "
        "job going on?); nothing of this chunk was written"
    )


def check_same_job(job: JobSpec, stored: Mapping[str, Any]) -> None:
    """Raise :class:`~modelkit.exceptions.BatchJobError` when ``job`` is not the stored one."""
    differences = job.differences(stored)
    if differences:
        raise BatchJobError(
            f"job {job.job_id!r} was started with another spec ({'; '.join(differences)}); "
            "rerun it exactly as it was started to resume it, or give this run another job id"
        )


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))


@attrs.define
class SqliteSink(SqlSinkBase):
    """Predictions into a SQLite table (the embedded default).

    Writes use WAL journaling with ``synchronous=NORMAL`` (a crash never loses or tears a
    committed chunk; a power cut may lose the last ones, which the rerun then writes again)
    and one ``executemany`` per chunk.
    """

    path: Path = attrs.field(converter=_absolute)
    table: str = attrs.field(default="predictions", kw_only=True, validator=check_table)
    _local: threading.local = attrs.field(factory=threading.local, init=False, repr=False)

    def describe(self) -> str:
        """``sqlite:`` and the database file."""
        return f"sqlite://{self.path.as_posix()}#{self.table}"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the connection (a Dask worker opens its own)."""
        return {"path": self.path, "table": self.table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled sink (no connection yet)."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_local", threading.local())

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (threads of a Dask worker share the sink object)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # checkpoint (and fsync) every 256 MB of WAL rather than every 4 MB: bulk chunks
            # otherwise spend a third of their time in checkpoints
            conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            self._local.conn = conn
        return conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def _is_missing_column(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no column" in str(exc)

    def _insert_rows(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        names = list(output.columns)
        constants = ", ".join(quote_literal(v) for v in job.constants(output.predicted_at))
        target = (
            f"INSERT INTO {quote_identifier(self.table)} "
            f"({', '.join(quote_identifier(n) for n in names)}, {', '.join(CONSTANT_COLUMNS)}) "
        )
        values = [_python_values(output.columns[name]) for name in names]
        payload = _json_rows(output.columns, values)
        if payload is not None:
            # one statement for the whole chunk: SQLite unpacks the rows itself, without the
            # GIL, so the next chunk is read and predicted meanwhile
            picks = ", ".join(f"value ->> {j}" for j in range(len(names)))
            conn.execute(f"{target}SELECT {picks}, {constants} FROM json_each(?)", (payload,))
            return
        sql = f"{target}VALUES ({', '.join('?' * len(names))}, {constants})"
        conn.executemany(sql, zip(*values, strict=True))

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _json_rows(columns: Mapping[str, np.ndarray], values: list[list[Any]]) -> str | None:
    """The rows as one JSON array of arrays, or ``None`` unless every column holds integers,
    booleans or text (floats are bound as they are: SQLite's JSON parser may round them)."""
    if sqlite3.sqlite_version_info < (3, 38, 0):  # the ->> operator
        return None
    for array in columns.values():
        kind = array.dtype.kind
        if kind not in "biuUO":
            return None
        if kind == "O" and not all(isinstance(v, str) for v in array.tolist()):
            return None
    try:
        return json.dumps(list(zip(*values, strict=True)), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _python_values(values: np.ndarray) -> list[Any]:
    """A column as Python values the database drivers take (numpy scalars become Python)."""
    python: list[Any] = values.tolist()
    return python


# -- opening what the user passed ---------------------------------------------------------


def open_sink(target: Any, *, table: str = "predictions", **options: Any) -> Sink:
    """Turn ``target`` into a :class:`Sink`.

    ``target`` may be a ``Sink``; ``sqlite:///…`` or a path ending in ``.db``, ``.sqlite``,
    ``.sqlite3``; ``postgresql://…``; a directory ending in ``.parquet`` or ``.csv`` (or
    ``parquet://DIR``, ``csv://DIR``); or a URL whose scheme a ``register_batch_sinks``
    plugin registered. ``table`` names the table (databases) and ``options`` go to the
    sink's constructor.
    """
    from modelkit.plugins import collect

    if isinstance(target, Sink):
        return target
    if not isinstance(target, str | os.PathLike):
        raise UsageError(
            f"cannot write predictions to a {type(target).__name__}: pass a database URL "
            "(sqlite:///pred.db, postgresql://…), a .parquet or .csv directory, or a Sink"
        )
    text = os.fspath(target)
    factories = collect("register_batch_sinks")
    scheme = urlsplit(text).scheme.lower()
    if len(scheme) <= 1:  # a plain path (or a Windows drive)
        lowered = text.rstrip("/\\").lower()
        if lowered.endswith((".db", ".sqlite", ".sqlite3")):
            scheme = "sqlite"
        elif lowered.endswith(".parquet"):
            scheme = "parquet"
        elif lowered.endswith(".csv"):
            scheme = "csv"
        else:
            raise UsageError(
                f"cannot tell what kind of output {text!r} is: use sqlite:///pred.db, "
                "postgresql://…, a directory ending in .parquet or .csv, or one of the schemes "
                f"{', '.join(sorted(factories))}"
            )
    if scheme == "postgres":
        scheme = "postgresql"
    factory = factories.get(scheme)
    if factory is None:
        raise UsageError(
            f"no batch sink for {scheme!r} outputs ({text!r}); known: "
            f"{', '.join(sorted(factories))} (plugins add more with register_batch_sinks)"
        )
    return factory(text, table=table, **options)  # type: ignore[no-any-return]
