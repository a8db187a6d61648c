"""Predictions into PostgreSQL with ``COPY``, each chunk in one transaction with its progress."""

# (S608: statements interpolate only quoted identifiers built in modelkit.batch.sinks.)
from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from modelkit.batch.sinks import (
    CONSTANT_COLUMNS,
    ChunkOutput,
    JobSpec,
    SqlSinkBase,
    check_table,
    quote_identifier,
)
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

    def _is_missing_column(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UndefinedColumn)

    def _ensure_table(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        # concurrent CREATE TABLE IF NOT EXISTS (Dask workers' first partitions) can collide
        # in PostgreSQL's catalog: serialise them on a lock held until this transaction ends
        self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext(?))", (self.table,))
        super()._ensure_table(conn, job, output)

    def _insert_rows(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        names = [*output.columns, *CONSTANT_COLUMNS]
        sql = (
            f"COPY {quote_identifier(self.table)} "
            f"({', '.join(quote_identifier(n) for n in names)}) FROM STDIN"
        )
        constants = job.constants(output.predicted_at)
        with conn.cursor() as cursor, cursor.copy(sql + " (FORMAT csv)") as copy:
            payload = _csv_payload(output, constants)
            if payload is not None:
                copy.write(payload)
                return
        with conn.cursor() as cursor, cursor.copy(sql) as copy:  # pragma: no cover - no pyarrow
            columns = [values.tolist() for values in output.columns.values()]
            for row in zip(*columns, strict=True):
                copy.write_row((*row, *constants))

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _csv_payload(output: ChunkOutput, constants: tuple[Any, ...]) -> bytes | None:
    """The chunk's rows as CSV bytes (pyarrow's writer), or ``None`` without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pv
    except ImportError:  # pragma: no cover - pyarrow is installed wherever tested
        return None
    n = output.rows_out
    arrays = [_arrow(values) for values in output.columns.values()]
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
