"""Where a batch job's predictions go, each chunk committed exactly once.

A :class:`Sink` receives a job's chunks as :class:`ChunkOutput` records and commits each one
**atomically together with the job's progress**: the rows, the quarantined rows and the chunk's
progress record in one database transaction (SQLite, PostgreSQL), or, for files, part files
renamed into place before a progress record is (Parquet, CSV). A job killed at any moment and
rerun with the same id therefore resumes after the last committed chunk, and finishes with every
row exactly once; a rerun of a finished job writes nothing.

Each output row shows the key, the carried columns, the prediction (and probabilities or
decision values when asked), the model's name and version, the artifact's sha256, the job id
and the time its chunk was committed (UTC, ISO 8601). In a database the table is a view over a
narrow rows table and the jobs table, so what is the same for a whole job is stored once (see
:mod:`modelkit.batch._sqlbase`). Rows a model's signature refuses go, with
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

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from modelkit.batch._records import (
    ChunkOutput,
    ChunkRecord,
    JobSpec,
    JobState,
    Quarantined,
    check_table,
    quote_identifier,
    quote_literal,
)
from modelkit.batch._sqlbase import SqlSinkBase
from modelkit.exceptions import UsageError

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

_CHECKPOINT_PAGES = 65536
"""WAL pages between checkpoints (256 MB): a checkpoint copies and fsyncs, so fewer is faster."""


@runtime_checkable
class Sink(Protocol):
    """A destination that commits each chunk together with the job's progress.

    A sink may also have a ``default_chunk_rows`` attribute: the rows per chunk of jobs that
    do not choose (part files prefer larger chunks than database transactions).
    """

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


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))


@attrs.define
class SqliteSink(SqlSinkBase):
    """Predictions into a SQLite table (the embedded default).

    Writes use WAL journaling with ``synchronous=NORMAL``: a commit is in the write-ahead log
    before ``COMMIT`` returns, so a killed process never loses or tears a committed chunk; a
    power cut or an OS crash may lose the last chunks committed before it (never part of one),
    which the rerun then writes again. Each chunk is one ``INSERT … SELECT`` (see
    :mod:`modelkit.batch._bulk`) run without the GIL, or ``executemany`` for values it cannot
    pack.
    """

    path: Path = attrs.field(converter=_absolute)
    table: str = attrs.field(default="predictions", kw_only=True, validator=check_table)
    _local: threading.local = attrs.field(factory=threading.local, init=False, repr=False)
    _numbers: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    without_rowid = " WITHOUT ROWID"

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
        object.__setattr__(self, "_numbers", {})

    def _job_numbers(self) -> dict[str, int]:
        return self._numbers

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (threads of a Dask worker share the sink object)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            self._local.conn = conn
        return conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _is_missing_value(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "NOT NULL" in str(exc)

    def _is_missing_column(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no column" in str(exc)

    def _object_type(self, conn: Any, name: str) -> str | None:
        row = conn.execute(
            "SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _table_columns(self, conn: Any, name: str) -> list[str]:
        return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({quote_identifier(name)})")]

    def _write_rows(
        self,
        conn: Any,
        target: str,
        names: Sequence[str],
        values: Sequence[np.ndarray],
        constants: Sequence[Any],
    ) -> None:
        n = len(values[0]) if values else 0
        _insert(conn, target, names, values, n, constants=[quote_literal(v) for v in constants])

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _insert(
    conn: sqlite3.Connection,
    target: str,
    names: Sequence[str],
    values: Sequence[np.ndarray],
    n: int,
    *,
    constants: Sequence[str] = (),
) -> None:
    """Insert ``n`` rows: the columns ``values`` then the SQL literals ``constants``."""
    from modelkit.batch._bulk import select_rows

    head = f"INSERT INTO {target} ({', '.join(quote_identifier(name) for name in names)}) "
    select = select_rows(values, n, constants=constants)
    if select is not None:
        conn.execute(head + select.sql, select.params)
        return
    marks = ", ".join(["?"] * len(values) + list(constants))
    conn.executemany(
        f"{head}VALUES ({marks})", zip(*(column.tolist() for column in values), strict=True)
    )


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
