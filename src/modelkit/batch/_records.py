"""The records a batch job passes between its stages, and the checks they share.

A :class:`JobSpec` says what a job is; a :class:`ChunkOutput` is one predicted chunk on its way
to a sink; a :class:`ChunkRecord` is a committed chunk; a :class:`JobState` is a job's progress
as its sink recorded it. :mod:`modelkit.batch.sinks` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import BatchJobError, UsageError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CHUNKS_TABLE",
    "CONSTANT_COLUMNS",
    "JOBS_TABLE",
    "ChunkOutput",
    "ChunkRecord",
    "JobSpec",
    "JobState",
    "Quarantined",
    "already_committed",
    "check_job_id",
    "check_same_job",
    "check_table",
    "now_iso",
    "quote_identifier",
    "quote_literal",
    "str_tuple",
]

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}\Z")
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
    counts the rows dropped with ``on_error="skip"``. ``row_numbers`` are the input rows the
    written rows come from (``None``: every row of the chunk, ``start`` on); ``keys_are_rows``
    says the key column holds those numbers (no key column was given).
    """

    chunk_id: int
    start: int
    rows_in: int
    rows_out: int
    columns: Mapping[str, np.ndarray]
    quarantined: Quarantined | None = None
    rows_skipped: int = 0
    predicted_at: str = attrs.field(factory=now_iso)
    row_numbers: np.ndarray | None = None
    keys_are_rows: bool = False

    def rows(self) -> np.ndarray:
        """The input row number of each written row."""
        import numpy as np

        if self.row_numbers is not None:
            return self.row_numbers
        return np.arange(self.start, self.start + self.rows_out, dtype=np.int64)

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
