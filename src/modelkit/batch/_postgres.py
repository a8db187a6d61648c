"""Predictions into PostgreSQL with ``COPY``, each chunk in one transaction with its progress.

The layout is SQLite's (:mod:`modelkit.batch._sqlbase`): a narrow rows table with the primary
key ``(_job, key[, _row])`` and a view that adds each job's constants. ``COPY`` then sends about
15 bytes a row instead of ~130, and the server parses and indexes a tenth of the text.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from modelkit.batch._records import (
    ChunkOutput,
    JobSpec,
    check_table,
    quote_identifier,
)
from modelkit.batch._sqlbase import Layout, SqlSinkBase
from modelkit.exceptions import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PostgresSink"]


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@attrs.define
class PostgresSink(SqlSinkBase):
    """Predictions into a PostgreSQL table, written with ``COPY … FROM STDIN`` (extra
    ``postgres``). The chunk's rows, its quarantined rows and its progress record commit in one
    transaction."""

    url: str
    table: str = attrs.field(default="predictions", kw_only=True, validator=check_table)
    _local: threading.local = attrs.field(factory=threading.local, init=False, repr=False)
    _numbers: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    postgres = True
    placeholder = "%s"
    time_type = "TIMESTAMPTZ"

    def describe(self) -> str:
        """The database URL (password masked) and the table."""
        return f"{_mask_password(self.url)}#{self.table}"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the connection (a Dask worker opens its own)."""
        return {"url": self.url, "table": self.table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled sink (no connection yet)."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_local", threading.local())
        object.__setattr__(self, "_numbers", {})

    def _job_numbers(self) -> dict[str, int]:
        return self._numbers

    def _connection(self) -> Any:
        """This thread's connection (threads of a Dask worker share the sink object)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                import psycopg
            except ImportError as exc:
                raise MissingDependencyError(
                    f"writing to PostgreSQL needs psycopg: pip install 'modelkit[postgres]' ({exc})"
                ) from exc
            conn = psycopg.connect(self.url)
            self._local.conn = conn
        return conn

    def _begin(self, conn: Any) -> None:
        """psycopg opens a transaction with the first statement."""

    def _is_integrity_error(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _is_missing_value(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.NotNullViolation)

    def _is_missing_column(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UndefinedColumn)

    def _object_type(self, conn: Any, name: str) -> str | None:
        row = self._execute(
            conn,
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return "view" if row[0] == "VIEW" else "table"

    def _table_columns(self, conn: Any, name: str) -> list[str]:
        rows = self._execute(
            conn,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (name,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _lock_jobs(self, conn: Any) -> None:
        """Job numbers are ``MAX + 1``: one registration at a time."""
        self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext('modelkit_batch_jobs'))")

    def _layout(self, conn: Any, job: JobSpec, output: ChunkOutput) -> Layout:
        # concurrent CREATE TABLE / VIEW (Dask workers' first partitions) can collide in
        # PostgreSQL's catalog: serialise them on a lock held until this transaction ends
        self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext(?))", (self.table,))
        return super()._layout(conn, job, output)

    def _write_rows(
        self,
        conn: Any,
        target: str,
        names: Sequence[str],
        values: Sequence[np.ndarray],
        constants: Sequence[Any],
    ) -> None:
        sql = f"COPY {target} ({', '.join(quote_identifier(n) for n in names)}) FROM STDIN"
        payload = _csv_payload(values, constants)
        if payload is not None:
            with conn.cursor() as cursor, cursor.copy(sql + " (FORMAT csv)") as copy:
                copy.write(payload)
            return
        with conn.cursor() as cursor, cursor.copy(sql) as copy:  # pragma: no cover - no pyarrow
            for row in zip(*(column.tolist() for column in values), strict=True):
                copy.write_row((*row, *constants))

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _csv_payload(values: Sequence[np.ndarray], constants: Sequence[Any]) -> bytes | None:
    """The rows as CSV bytes (pyarrow's writer), or ``None`` without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pv
    except ImportError:  # pragma: no cover - pyarrow is installed wherever tested
        return None
    n = len(values[0]) if values else 0
    arrays = [_arrow(column) for column in values]
    arrays += [pa.repeat(pa.scalar(value), n) for value in constants]
    names = [f"c{j}" for j in range(len(arrays))]
    buffer = io.BytesIO()
    pv.write_csv(
        pa.Table.from_arrays(arrays, names=names),
        buffer,
        write_options=pv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    return buffer.getvalue()


def _arrow(values: np.ndarray) -> Any:
    import pyarrow as pa

    if values.dtype.kind == "O":
        return pa.array(values.tolist(), from_pandas=True)
    return pa.array(values)
