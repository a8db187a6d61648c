"""What the SQLite and PostgreSQL sinks share: the job tables, the row layout, the commit.

Layout of a job database (``predictions`` stands for the ``table`` a job writes to)::

    modelkit_batch_jobs      one row per job: job_id, job_number, model_name, model_version,
                             artifact_sha256, spec, status, started_at, finished_at, counts, drift
    modelkit_batch_chunks    one row per committed chunk: job_id, chunk_id, start_row, counts,
                             committed_at
    predictions_rows         the rows: _job (the job's number), the key, the carried columns,
                             the outputs, and _row (the input row) unless the key is the row
                             number; primary key (_job, key[, _row])
    predictions              a view: each row with its job's model name, version, artifact
                             sha256, job id, and its chunk's commit time as predicted_at
    predictions_quarantine   rows set aside, with the reason

What every output row shows but is the same for a whole job lives once in the jobs table: a
physical row is a few bytes, not the ~130 of the same row with its job's constants spelled out.
The primary key is the ``(job, key)`` index (SQLite stores the table in it: ``WITHOUT ROWID``).

A table written by an earlier version, with every column in each row, stays as it is: jobs
writing to it (resumed or new) write rows that way, and the jobs table gains its new columns
on first use, each recorded job getting a number.
"""

# ruff: noqa: S608
# (S608: statements interpolate only quoted identifiers and quoted literals built here.)
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.batch._records import (
    CHUNKS_TABLE,
    CONSTANT_COLUMNS,
    JOBS_TABLE,
    ChunkOutput,
    ChunkRecord,
    JobSpec,
    JobState,
    already_committed,
    check_same_job,
    now_iso,
    quote_identifier,
)
from modelkit.exceptions import DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["JOB_COLUMN", "ROWS_SUFFIX", "ROW_COLUMN", "Layout", "SqlSinkBase", "sql_type"]

ROWS_SUFFIX = "_rows"
"""The physical table behind a job table's view: ``<table>_rows``."""
JOB_COLUMN = "_job"
"""The physical column holding the job's number."""
ROW_COLUMN = "_row"
"""The physical column holding the input row number (when the key is another column)."""

_JOB_COLUMNS = (
    ("job_number", "big"),
    ("model_name", "TEXT"),
    ("model_version", "big"),
    ("artifact_sha256", "TEXT"),
)
"""Columns the jobs table gained with the narrow layout (added to an older table on use)."""


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


@attrs.frozen
class Layout:
    """How a job table is stored: ``narrow`` (rows table and view) or ``wide`` (one table
    with every column in each row, as earlier versions wrote), and whether the rows table
    has a ``_row`` column."""

    kind: str
    has_row: bool = False


class SqlSinkBase:
    """The job tables, the layout of the rows and the chunk commit, for SQL databases."""

    table: str
    postgres = False
    placeholder = "?"
    time_type = "TEXT"
    without_rowid = ""

    def _connection(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        raise NotImplementedError

    def _write_rows(
        self,
        conn: Any,
        target: str,
        names: Sequence[str],
        values: Sequence[np.ndarray],
        constants: Sequence[Any],
    ) -> None:
        """Insert into ``target`` (quoted) one row per element of the arrays ``values`` (the
        columns ``names``), each row ending with the same ``constants`` (the columns that
        follow in ``names``)."""
        raise NotImplementedError

    def _insert_narrow(self, conn: Any, number: int, output: ChunkOutput, has_row: bool) -> None:
        """The chunk's rows in the narrow layout: job number, key, outputs (and row number)."""
        import numpy as np

        names = [JOB_COLUMN, *output.columns]
        values = [np.full(output.rows_out, number, dtype=np.int64), *output.columns.values()]
        if has_row:
            names.append(ROW_COLUMN)
            values.append(output.rows())
        self._write_rows(conn, quote_identifier(self.table + ROWS_SUFFIX), names, values, ())

    def _insert_wide(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        """The chunk's rows in a wide table of an older version: every column on every row."""
        self._write_rows(
            conn,
            quote_identifier(self.table),
            [*output.columns, *CONSTANT_COLUMNS],
            list(output.columns.values()),
            job.constants(output.predicted_at),
        )

    def _is_integrity_error(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _is_missing_value(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _is_missing_column(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _object_type(self, conn: Any, name: str) -> str | None:
        """``"table"``, ``"view"`` or ``None``: what ``name`` is in the database."""
        raise NotImplementedError

    def _table_columns(self, conn: Any, name: str) -> list[str]:
        """The column names of table ``name`` (empty when it does not exist)."""
        raise NotImplementedError

    def _lock_jobs(self, conn: Any) -> None:
        """Serialise job registrations until the transaction ends (PostgreSQL)."""

    def _job_numbers(self) -> dict[str, int]:
        raise NotImplementedError

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return conn.execute(sql, tuple(params))

    @property
    def _big(self) -> str:
        return "BIGINT" if self.postgres else "INTEGER"

    # -- the job tables -----------------------------------------------------------------

    def _create_job_tables(self, conn: Any) -> None:
        big = self._big
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {JOBS_TABLE} (job_id TEXT PRIMARY KEY, "
            f"target_table TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL, "
            f"started_at TEXT NOT NULL, finished_at TEXT, rows_in {big}, rows_out {big}, "
            f"rows_quarantined {big}, rows_skipped {big}, drift TEXT, job_number {big}, "
            f"model_name TEXT, model_version {big}, artifact_sha256 TEXT)",
        )
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {CHUNKS_TABLE} (job_id TEXT NOT NULL, "
            f"chunk_id {big} NOT NULL, start_row {big} NOT NULL, rows_in {big} NOT NULL, "
            f"rows_out {big} NOT NULL, rows_quarantined {big} NOT NULL, "
            f"rows_skipped {big} NOT NULL, committed_at TEXT NOT NULL, "
            "PRIMARY KEY (job_id, chunk_id))",
        )
        self._upgrade_jobs_table(conn)
        self._execute(
            conn,
            f"CREATE UNIQUE INDEX IF NOT EXISTS {JOBS_TABLE}_number ON {JOBS_TABLE} (job_number)",
        )
        self._execute(
            conn,
            f"CREATE INDEX IF NOT EXISTS {CHUNKS_TABLE}_start ON {CHUNKS_TABLE} "
            "(job_id, start_row)",
        )

    def _upgrade_jobs_table(self, conn: Any) -> None:
        """Add the columns an earlier version's jobs table lacks; number its jobs."""
        have = set(self._table_columns(conn, JOBS_TABLE))
        missing = [(name, kind) for name, kind in _JOB_COLUMNS if name not in have]
        if not missing:
            return
        for name, kind in missing:
            column_type = self._big if kind == "big" else kind
            self._execute(conn, f"ALTER TABLE {JOBS_TABLE} ADD COLUMN {name} {column_type}")
        jobs = self._execute(
            conn, f"SELECT job_id, spec FROM {JOBS_TABLE} ORDER BY started_at, job_id"
        ).fetchall()
        for number, (job_id, spec) in enumerate(jobs, start=1):
            stored = json.loads(spec)
            self._execute(
                conn,
                f"UPDATE {JOBS_TABLE} SET job_number = ?, model_name = ?, model_version = ?, "
                "artifact_sha256 = ? WHERE job_id = ?",
                (
                    number,
                    stored.get("model_name"),
                    stored.get("model_version"),
                    stored.get("artifact_sha256"),
                    job_id,
                ),
            )

    def _state(self, conn: Any, job_id: str) -> tuple[JobState, dict[str, Any] | None]:
        row = self._execute(
            conn,
            f"SELECT spec, status, drift, job_number FROM {JOBS_TABLE} WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return JobState(status="new"), None
        self._job_numbers()[job_id] = int(row[3])
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
        """Create (or upgrade) the job tables, record the job or check the recorded spec;
        return its progress."""
        conn = self._connection()
        self._begin(conn)
        try:
            self._lock_jobs(conn)
            self._create_job_tables(conn)
            state, stored = self._state(conn, job.job_id)
            if stored is None:
                number = int(
                    self._execute(
                        conn, f"SELECT COALESCE(MAX(job_number), 0) + 1 FROM {JOBS_TABLE}"
                    ).fetchone()[0]
                )
                self._execute(
                    conn,
                    f"INSERT INTO {JOBS_TABLE} (job_id, job_number, target_table, spec, status, "
                    "started_at, model_name, model_version, artifact_sha256) "
                    "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                    (
                        job.job_id,
                        number,
                        job.table,
                        json.dumps(job.to_dict()),
                        now_iso(),
                        job.model_name,
                        job.model_version,
                        job.artifact_sha256,
                    ),
                )
                state = JobState(status="running")
            else:
                check_same_job(job, stored)
            conn.commit()
        except BaseException:
            conn.rollback()
            self._job_numbers().pop(job.job_id, None)
            raise
        if stored is None:
            self._job_numbers()[job.job_id] = number
        return state

    def _job_number(self, conn: Any, job: JobSpec) -> int:
        """The job's number (looked up once per sink: a Dask worker never ran ``start``)."""
        numbers = self._job_numbers()
        if job.job_id not in numbers:
            row = self._execute(
                conn, f"SELECT job_number FROM {JOBS_TABLE} WHERE job_id = ?", (job.job_id,)
            ).fetchone()
            if row is None or row[0] is None:
                raise DataError(f"job {job.job_id!r} is not recorded in {JOBS_TABLE}")
            numbers[job.job_id] = int(row[0])
        return numbers[job.job_id]

    # -- the rows -----------------------------------------------------------------------

    def _layout(self, conn: Any, job: JobSpec, output: ChunkOutput) -> Layout:
        """How the job table is stored; create it (rows table and view) when missing."""
        kind = self._object_type(conn, self.table)
        if kind == "table":
            self._ensure_wide_index(conn, job)
            return Layout("wide")
        rows = self.table + ROWS_SUFFIX
        if kind is None:
            self._create_narrow(conn, job, output)
            return Layout("narrow", has_row=not output.keys_are_rows)
        has_row = ROW_COLUMN in self._table_columns(conn, rows)
        if not has_row and not output.keys_are_rows:
            raise DataError(
                f"table {self.table!r} keys its rows by their number in the input, and this job "
                f"has the key column {job.key!r}: write it to another table"
            )
        return Layout("narrow", has_row=has_row)

    def _create_narrow(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        table = quote_identifier(self.table)
        rows = quote_identifier(self.table + ROWS_SUFFIX)
        names = list(output.columns)
        clash = {JOB_COLUMN, ROW_COLUMN} & set(names)
        if clash:
            raise DataError(
                f"the input columns {sorted(clash)} have names reserved for the output table's "
                "own columns: rename them in the input"
            )
        key = quote_identifier(job.key)
        big = self._big
        columns = [f"{JOB_COLUMN} {big} NOT NULL"]
        columns += [
            f"{quote_identifier(name)} {sql_type(values, postgres=self.postgres)}"
            + (" NOT NULL" if name == job.key else "")
            for name, values in output.columns.items()
        ]
        primary = f"{JOB_COLUMN}, {key}"
        row = key
        if not output.keys_are_rows:
            columns.append(f"{ROW_COLUMN} {big} NOT NULL")
            primary += f", {ROW_COLUMN}"
            row = ROW_COLUMN
        self._execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {rows} ({', '.join(columns)}, "
            f"PRIMARY KEY ({primary})){self.without_rowid}",
        )
        committed = (
            f"(SELECT c.committed_at FROM {CHUNKS_TABLE} AS c WHERE c.job_id = j.job_id "
            f"AND c.start_row <= r.{row} ORDER BY c.start_row DESC LIMIT 1)"
        )
        if self.postgres:
            committed = f"CAST({committed} AS {self.time_type})"
        shown = [f"r.{quote_identifier(name)} AS {quote_identifier(name)}" for name in names]
        shown += [
            "j.model_name AS model_name",
            "j.model_version AS model_version",
            "j.artifact_sha256 AS artifact_sha256",
            "j.job_id AS job_id",
            f"{committed} AS predicted_at",
        ]
        self._execute(
            conn,
            f"CREATE VIEW {table} AS SELECT {', '.join(shown)} FROM {rows} AS r "
            f"JOIN {JOBS_TABLE} AS j ON j.job_number = r.{JOB_COLUMN}",
        )

    def _ensure_wide_index(self, conn: Any, job: JobSpec) -> None:
        table = quote_identifier(self.table)
        index = quote_identifier(f"{self.table}_job_key")
        key = quote_identifier(job.key)
        self._execute(conn, f"CREATE INDEX IF NOT EXISTS {index} ON {table} (job_id, {key})")

    def _ensure_quarantine(self, conn: Any) -> None:
        big = self._big
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
                layout = self._layout(conn, job, output)
                if layout.kind == "wide":
                    self._insert_wide(conn, job, output)
                else:
                    self._insert_narrow(conn, self._job_number(conn, job), output, layout.has_row)
            self._insert_quarantined(conn, job, output)
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
            if self._is_missing_value(exc):
                raise DataError(
                    f"the key column {job.key!r} has missing values in chunk "
                    f"{output.chunk_id}: every row needs a key"
                ) from exc
            if self._is_missing_column(exc):
                raise DataError(
                    f"table {self.table!r} already exists with other columns ({exc}); write to "
                    "another table, or drop it"
                ) from exc
            raise

    def _insert_quarantined(self, conn: Any, job: JobSpec, output: ChunkOutput) -> None:
        quarantined = output.quarantined
        if quarantined is None or not len(quarantined):
            return
        self._ensure_quarantine(conn)
        rows = zip(
            [job.job_id] * len(quarantined),
            [_key_text(k) for k in quarantined.keys.tolist()],
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


def _key_text(key: Any) -> str | None:
    """A quarantined row's key as text (``None`` when it has none)."""
    if key is None or (isinstance(key, float) and math.isnan(key)):
        return None
    return str(key)
