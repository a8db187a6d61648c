"""The Dask engine: partitions read by Dask, predicted and committed on the workers.

Each partition is a chunk whose id is its partition number: a worker predicts it (the same
:func:`~modelkit.batch._predict.predict_chunk` as the local engine) and commits it through the
sink, rows and progress together, so the exactly-once guarantee is the local engine's. A CSV job
that skips or quarantines bad rows reads the numeric features as text and turns them into
numbers with the local engine's :func:`~modelkit.batch._csv.lenient_numbers`, so a cell that is
not a number sets its row aside, with the same reason, on both engines. A rerun
computes only the partitions the job has not committed. The partitioning is part of the job's
spec (``chunk_rows``): resume a job with the ``chunk_rows`` it was started with.

Runs on a ``distributed`` scheduler: an address (``tcp://host:8786``), a ``Client``, or a
``LocalCluster`` started for the job. The sink must be reachable from every worker (a
PostgreSQL server, a shared directory; SQLite only for workers on this machine).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelkit.batch._predict import Plan, predict_chunk
from modelkit.batch.sources import Chunk, CsvSource, MemorySource, ParquetSource, Source
from modelkit.exceptions import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from modelkit.batch.sinks import ChunkRecord, JobSpec, JobState, Sink

__all__ = ["process_partition", "run_dask", "to_dask"]

_BYTES_PER_ROW_GUESS = 400


def _require_dask() -> None:
    try:
        import dask.dataframe  # noqa: F401 - imported to check it is there
        import distributed  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"engine='dask' needs dask and distributed: pip install 'modelkit[dask]' ({exc})"
        ) from exc


def to_dask(source: Source, plan: Plan, chunk_rows: int) -> Any:
    """The source as a Dask DataFrame of the columns the job reads, about ``chunk_rows`` rows
    per partition."""
    import dask.dataframe

    dd: Any = dask.dataframe
    columns = plan.read_columns()
    if isinstance(source, CsvSource):
        from modelkit.batch._csv import ARROW_NULLS

        lenient = _lenient(source, plan)
        types = {
            name: ("float64" if dtype == "float64" and not lenient else "object")
            for name, dtype in plan.column_types().items()
        }
        per_row = _bytes_per_row(source)
        return dd.read_csv(
            [os.fspath(p) for p in source.paths],
            usecols=columns,
            dtype=types,
            blocksize=max(int(chunk_rows * per_row), 1 << 16),
            keep_default_na=False,
            na_values=list(ARROW_NULLS),
        )
    if isinstance(source, ParquetSource):
        import pyarrow.parquet as pq

        meta = pq.read_schema(source.paths[0]).empty_table().select(columns).to_pandas()
        return dd.from_map(
            _read_row_groups, _row_group_runs(source, chunk_rows), columns=columns, meta=meta
        )
    if isinstance(source, MemorySource):
        import pandas as pd

        chunk = next(source.chunks(source.total_rows() or 1), None)
        frame = pd.DataFrame(
            {} if chunk is None else {n: chunk.columns[n] for n in columns}, copy=False
        )
        return dd.from_pandas(frame, chunksize=chunk_rows, sort=False)
    to_dask_method = getattr(source, "to_dask", None)
    if callable(to_dask_method):
        return to_dask_method(columns, chunk_rows)
    raise UsageError(
        f"engine='dask' cannot read {type(source).__name__} sources; use CSV or Parquet files, "
        "an in-memory table, or a source with a to_dask(columns, chunk_rows) method"
    )


def _row_group_runs(source: ParquetSource, chunk_rows: int) -> list[list[tuple[str, int]]]:
    """Consecutive row groups, about ``chunk_rows`` rows per run: one partition each."""
    import pyarrow.parquet as pq

    runs: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    rows = 0
    for path in source.paths:
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            current.append((os.fspath(path), group))
            rows += metadata.row_group(group).num_rows
            if rows >= chunk_rows:
                runs.append(current)
                current, rows = [], 0
    if current:
        runs.append(current)
    return runs


def _read_row_groups(run: list[tuple[str, int]], columns: list[str]) -> Any:
    """A pandas DataFrame of some row groups (runs on a worker)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.ParquetFile(path).read_row_group(group, columns=columns) for path, group in run]
    return pa.concat_tables(tables).to_pandas()


def _bytes_per_row(source: CsvSource) -> float:
    estimate = source.total_rows()
    if not estimate:
        return _BYTES_PER_ROW_GUESS
    return sum(p.stat().st_size for p in source.paths) / estimate


def _lenient(source: Source, plan: Plan) -> bool:
    """Whether a CSV source's numeric features are read as text, to set bad cells aside."""
    return isinstance(source, CsvSource) and plan.on_error != "fail"


def process_partition(
    frame: Any,
    number: int,
    start: int,
    *,
    plan: Plan,
    sink: Sink,
    spec: JobSpec,
    text_numbers: bool = False,
) -> ChunkRecord:
    """Predict one partition and commit it as chunk ``number`` (runs on a worker).

    ``text_numbers``: the numeric features were read as text (a lenient CSV job); they are
    turned into numbers as the local engine does, the bad cells staying text.
    """
    from modelkit.batch._csv import lenient_numbers

    columns = {str(name): frame[name].to_numpy() for name in frame.columns}
    if text_numbers:
        for name, dtype in plan.column_types().items():
            if dtype == "float64" and columns[name].dtype.kind == "O":
                columns[name] = lenient_numbers(columns[name])
    chunk = Chunk(start, columns, len(frame), chunk_id=number)
    output = predict_chunk(plan, chunk)
    try:
        sink.write(spec, output)
    finally:
        sink.close()
    return output.record()


def _client(scheduler: Any, n_jobs: int | None) -> tuple[Any, Callable[[], None]]:
    import distributed as _distributed

    distributed: Any = _distributed
    if isinstance(scheduler, distributed.Client):
        return scheduler, lambda: None
    if isinstance(scheduler, str):
        client = distributed.Client(scheduler)
        return client, client.close
    cluster = distributed.LocalCluster(
        n_workers=n_jobs or os.cpu_count() or 1,
        threads_per_worker=1,
        dashboard_address=None,
    )
    client = distributed.Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()

    return client, close


def run_dask(
    plan: Plan,
    source: Source,
    sink: Sink,
    spec: JobSpec,
    state: JobState,
    *,
    chunk_rows: int,
    on_chunk: Callable[[int], None],
    scheduler: Any = None,
    n_jobs: int | None = None,
) -> None:
    """Commit every partition the job has not committed yet, on a Dask cluster."""
    _require_dask()
    import distributed as _distributed
    from dask.delayed import delayed as _delayed

    distributed: Any = _distributed
    delayed: Any = _delayed
    frame = to_dask(source, plan, chunk_rows)
    client, close = _client(scheduler, n_jobs)
    try:
        lengths = client.compute(frame.map_partitions(len)).result().tolist()
        starts = [0]
        for length in lengths[:-1]:
            starts.append(starts[-1] + int(length))
        parts = frame.to_delayed()
        todo = [i for i in range(len(parts)) if i not in state.chunks]
        text_numbers = _lenient(source, plan)
        tasks = [
            delayed(process_partition)(
                parts[i], i, starts[i], plan=plan, sink=sink, spec=spec, text_numbers=text_numbers
            )
            for i in todo
        ]
        futures = client.compute(tasks)
        for future in distributed.as_completed(futures):
            record: ChunkRecord = future.result()
            on_chunk(record.rows_in)
    finally:
        close()
