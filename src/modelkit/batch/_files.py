"""Predictions into a directory of Parquet or CSV part files, one part per chunk.

Layout of the output directory::

    out.parquet/
      <job>-000000000000.parquet         the rows of the chunk starting at row 0 (one per chunk)
      _quarantine/<job>-….parquet        the chunk's quarantined rows, if any
      _modelkit/<job>/job.json           the job's spec, status and drift verdict
      _modelkit/<job>/000000000000.json  the chunk's progress record: written last, it commits

Every file is written under a hidden temporary name, fsynced and renamed into place, and the
chunk's progress record is renamed into place only after its parts are. A part without a
progress record was left by a killed run: the rerun deletes it before it starts, so the
directory ends with every row exactly once. Readers such as ``pandas.read_parquet(dir)``,
pyarrow datasets and Spark skip the ``_`` and ``.`` names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import numpy as np

from modelkit._atomic import fsync_directory, is_temporary_name, temporary_path
from modelkit.batch._records import (
    CONSTANT_COLUMNS,
    ChunkOutput,
    ChunkRecord,
    JobSpec,
    JobState,
    already_committed,
    check_same_job,
    check_table,
    now_iso,
)
from modelkit.exceptions import DataError, MissingDependencyError, UsageError

__all__ = ["FORMATS", "FileSink"]

FORMATS = ("parquet", "csv")
_STATE_DIR = "_modelkit"
_QUARANTINE_DIR = "_quarantine"


def _directory(value: str | os.PathLike[str]) -> Path:
    text = os.fspath(value)
    parts = urlsplit(text)
    if parts.scheme.lower() in FORMATS:
        text = unquote(parts.netloc + parts.path)
    return Path(os.path.abspath(text))


def _check_format(_inst: object, _attr: object, value: str) -> None:
    if value not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}, got {value!r}")


def _write_atomic(target: Path, write: Any) -> None:
    """Write ``target`` through a hidden temporary file, fsync it, rename it into place."""
    tmp = temporary_path(target)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_json(target: Path, data: Mapping[str, Any]) -> None:
    _write_atomic(target, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))
    fsync_directory(target.parent)


@attrs.define
class FileSink:
    """Predictions as Parquet (needs pyarrow) or CSV part files in ``directory``.

    ``directory`` is a path or ``parquet://DIR`` / ``csv://DIR``; the format defaults to the
    URL scheme or the directory's suffix (``out.parquet``, ``out.csv``). ``table`` is accepted
    for symmetry with the database sinks and unused.
    """

    directory: Path = attrs.field(converter=_directory)
    format: str = attrs.field(kw_only=True, validator=_check_format)
    table: str = attrs.field(default="predictions", kw_only=True, validator=check_table)
    default_chunk_rows = 100_000
    """Rows per part file unless the job says otherwise (fewer, larger files for readers)."""

    @format.default
    def _default_format(self) -> str:
        return "csv" if self.directory.suffix.lower() == ".csv" else "parquet"

    def describe(self) -> str:
        """``parquet:`` or ``csv:`` and the directory."""
        return f"{self.format}://{self.directory.as_posix()}"

    def _state_dir(self, job: JobSpec) -> Path:
        return self.directory / _STATE_DIR / job.job_id

    def _part(self, job: JobSpec, chunk_id: int, *, quarantine: bool = False) -> Path:
        suffix = "parquet" if self.format == "parquet" else "csv"
        name = f"{job.job_id}-{chunk_id:012d}.{suffix}"
        return self.directory / _QUARANTINE_DIR / name if quarantine else self.directory / name

    def _records(self, job: JobSpec) -> dict[int, ChunkRecord]:
        records: dict[int, ChunkRecord] = {}
        state_dir = self._state_dir(job)
        for path in state_dir.glob("[0-9]*.json"):
            data = json.loads(path.read_text())
            records[int(data["chunk_id"])] = ChunkRecord(**data)
        return records

    def start(self, job: JobSpec) -> JobState:
        """Record the job, or check its spec; delete parts no progress record commits."""
        if self.format == "parquet":
            _require_pyarrow()
        state_dir = self._state_dir(job)
        state_dir.mkdir(parents=True, exist_ok=True)
        (self.directory / _QUARANTINE_DIR).mkdir(exist_ok=True)
        job_file = state_dir / "job.json"
        if job_file.exists():
            stored = json.loads(job_file.read_text())
            check_same_job(job, stored["spec"])
            status, drift = str(stored["status"]), stored.get("drift")
        else:
            status, drift = "running", None
            _write_json(
                job_file, {"spec": job.to_dict(), "status": status, "started_at": now_iso()}
            )
        records = self._records(job)
        self._remove_uncommitted(job, records)
        return JobState(status=status, chunks=records, drift=drift)

    def _remove_uncommitted(self, job: JobSpec, records: Mapping[int, ChunkRecord]) -> None:
        prefix = f"{job.job_id}-"
        for folder in (self.directory, self.directory / _QUARANTINE_DIR, self._state_dir(job)):
            for path in folder.iterdir():
                name = path.name
                if is_temporary_name(name) and path.is_file():
                    path.unlink()
                elif name.startswith(prefix) and path.is_file():
                    chunk = name[len(prefix) :].split(".", 1)[0]
                    if not chunk.isdigit() or int(chunk) not in records:
                        path.unlink()

    def write(self, job: JobSpec, output: ChunkOutput) -> None:
        """Write the chunk's parts, then commit them with its progress record."""
        record_path = self._state_dir(job) / f"{output.chunk_id:012d}.json"
        if record_path.exists():
            raise already_committed(job, output.chunk_id)
        if output.rows_out:
            columns = dict(output.columns)
            for name, value in zip(
                CONSTANT_COLUMNS, job.constants(output.predicted_at), strict=True
            ):
                columns[name] = _constant(value, output.rows_out)
            self._write_table(self._part(job, output.chunk_id), columns)
        quarantined = output.quarantined
        if quarantined is not None and len(quarantined):
            n = len(quarantined)
            self._write_table(
                self._part(job, output.chunk_id, quarantine=True),
                {
                    "job_id": np.full(n, job.job_id, dtype=object),
                    "key": np.asarray([str(k) for k in quarantined.keys.tolist()], dtype=object),
                    "row_number": quarantined.rows,
                    "reason": np.asarray(quarantined.reasons, dtype=object),
                    "data": np.asarray(quarantined.data, dtype=object),
                    "quarantined_at": np.full(n, output.predicted_at, dtype=object),
                },
            )
        fsync_directory(self.directory)
        fsync_directory(self.directory / _QUARANTINE_DIR)
        _write_json(record_path, output.record().to_dict())

    def _write_table(self, target: Path, columns: Mapping[str, Any]) -> None:
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({name: _arrow(values) for name, values in columns.items()})
            _write_atomic(target, lambda tmp: pq.write_table(table, str(tmp)))
            return
        _write_atomic(target, lambda tmp: _write_csv(tmp, columns))

    def finish(self, job: JobSpec, *, drift: Mapping[str, Any] | None = None) -> JobState:
        """Mark the job finished in its ``job.json``."""
        job_file = self._state_dir(job) / "job.json"
        stored = json.loads(job_file.read_text())
        records = self._records(job)
        stored.update(
            status="finished",
            finished_at=now_iso(),
            drift=None if drift is None else dict(drift),
            rows_in=sum(r.rows_in for r in records.values()),
            rows_out=sum(r.rows_out for r in records.values()),
        )
        _write_json(job_file, stored)
        return JobState(status="finished", chunks=records, drift=drift)

    def close(self) -> None:
        """Nothing to release."""

    def remove(self) -> None:
        """Delete the whole output directory (for tests and scratch jobs)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401 - imported to check it is there
    except ImportError as exc:
        raise MissingDependencyError(
            f"writing Parquet needs pyarrow: pip install 'modelkit[parquet]' ({exc})"
        ) from exc


def _constant(value: Any, n: int) -> Any:
    """A column of ``n`` times ``value``: a pyarrow array (no Python object per row), or an
    object array without pyarrow."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is installed wherever tested
        return np.full(n, value, dtype=object)
    return pa.repeat(value, n)


def _arrow(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values
    if values.dtype.kind == "O":
        try:
            return pa.array(values.tolist(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"cannot store a column of mixed types in Parquet: {exc}") from exc
    return pa.array(values)


def _write_csv(path: Path, columns: Mapping[str, Any]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.csv as pv
    except ImportError:
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(columns))
            writer.writerows(zip(*(values.tolist() for values in columns.values()), strict=True))
        return
    table = pa.table({name: _arrow(values) for name, values in columns.items()})
    pv.write_csv(table, str(path))
