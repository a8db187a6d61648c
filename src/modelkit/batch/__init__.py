"""Batch inference: a model over a large input, chunk by chunk, into a database or files.

::

    from modelkit import batch_predict

    result = batch_predict(
        "churn@production",               # a registry URI, a Model, an Artifact or an estimator
        "data/2024-06-*.csv",             # CSV / Parquet files or globs, an array, a DataFrame
        "sqlite:///predictions.db",       # SQLite, PostgreSQL, a .parquet or .csv directory
        table="predictions",
        key="customer_id",
    )
    print(result.summary())

Rows are streamed in chunks of ``chunk_rows`` (memory stays flat whatever the input size), checked
against the model's :class:`~modelkit.Signature`, predicted and committed chunk by chunk: each
chunk's rows and the job's progress in one transaction (see :mod:`modelkit.batch.sinks`). A job
killed at any point and rerun with the same ``job_id`` resumes after its last committed chunk
and ends with every row exactly once; rerunning a finished job writes nothing. The default
``job_id`` is derived from the model artifact, the input files (path, size, modification
time), the output and the options, so rerunning the same command is safe: schedule it from
cron, systemd timers or Airflow and let it retry.

Sources and sinks are plugins (``register_batch_sources`` / ``register_batch_sinks``). The
``dask`` engine (extra ``dask``) reads partitions with Dask, predicts with ``map_partitions``
and commits each partition the same way, on a ``distributed`` cluster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.batch._predict import ON_ERROR, OUTPUTS, Plan
from modelkit.batch.sinks import ChunkOutput, JobSpec, JobState, Sink, open_sink
from modelkit.batch.sources import Chunk, Source, open_source
from modelkit.exceptions import UsageError

if TYPE_CHECKING:
    from modelkit.registry import Registry

__all__ = [
    "DASK_CHUNK_ROWS",
    "DEFAULT_CHUNK_ROWS",
    "ENGINES",
    "ON_ERROR",
    "OUTPUTS",
    "BatchResult",
    "Chunk",
    "ChunkOutput",
    "JobSpec",
    "JobState",
    "Sink",
    "Source",
    "batch_predict",
    "open_sink",
    "open_source",
]

ENGINES = ("local", "dask")
"""Where a job runs: in this process, or on a Dask cluster."""

DEFAULT_CHUNK_ROWS = 25_000
"""Rows per chunk (and per transaction) unless the sink prefers another number: a chunk of 20
float features is 4 MB as float64, small enough for the CPU caches and flat memory."""

DASK_CHUNK_ROWS = 100_000
"""Rows per Dask partition unless the job says otherwise (a task costs more than a chunk)."""


@attrs.frozen(kw_only=True)
class BatchResult:
    """What a batch job did: its id, row counts (the whole job's, over every run) and timing."""

    job_id: str
    rows_in: int
    """Rows read from the input (over every run of the job)."""
    rows_out: int
    """Rows written with their predictions."""
    rows_quarantined: int
    """Rows set aside with the reason (``on_error="quarantine"``)."""
    rows_skipped: int
    """Rows dropped (``on_error="skip"``)."""
    rows_this_run: int
    """Rows this run read (0 when the job had already finished)."""
    resumed_at: int
    """The row this run started at (0 for a new job)."""
    already_finished: bool
    """Whether the job had finished before this run (which then wrote nothing)."""
    seconds: float
    """How long this run took."""
    sink: str
    """Where the rows went."""
    drift: Mapping[str, Any] | None = None
    """The drift verdict of the job's input against the model's reference profile, if any."""

    def summary(self) -> str:
        """One line: rows in, out, quarantined and skipped, seconds, rate, destination."""
        if self.already_finished:
            return (
                f"job {self.job_id} had already finished: {self.rows_in:,} rows in, "
                f"{self.rows_out:,} out, {self.rows_quarantined:,} quarantined, "
                f"{self.rows_skipped:,} skipped; nothing written ({self.sink})"
            )
        rate = self.rows_this_run / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed at row {self.resumed_at:,}" if self.resumed_at else ""
        return (
            f"job {self.job_id}: {self.rows_in:,} rows in, {self.rows_out:,} out, "
            f"{self.rows_quarantined:,} quarantined, {self.rows_skipped:,} skipped in "
            f"{self.seconds:.2f}s ({rate:,.0f} rows/s{resumed}) -> {self.sink}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**attrs.asdict(self), "drift": None if self.drift is None else dict(self.drift)}


def _result(
    spec: JobSpec,
    state: JobState,
    sink: Sink,
    *,
    seconds: float,
    resumed: int,
    this_run: int,
    already: bool,
) -> BatchResult:
    return BatchResult(
        job_id=spec.job_id,
        rows_in=state.total("rows_in"),
        rows_out=state.total("rows_out"),
        rows_quarantined=state.total("rows_quarantined"),
        rows_skipped=state.total("rows_skipped"),
        rows_this_run=this_run,
        resumed_at=resumed,
        already_finished=already,
        seconds=seconds,
        sink=sink.describe(),
        drift=state.drift,
    )


def _configure(reader: Source, plan: Plan) -> None:
    """Tell a built-in file source what the job reads (unless the caller configured it)."""
    from modelkit.batch.sources import CsvSource, ParquetSource

    if isinstance(reader, CsvSource) and not reader.column_types:
        reader.column_types = plan.column_types()
        reader.lenient = plan.on_error != "fail"
        if reader.columns_wanted is None:
            reader.columns_wanted = plan.read_columns()
    elif isinstance(reader, ParquetSource) and reader.columns_wanted is None:
        reader.columns_wanted = plan.read_columns()


def batch_predict(
    model: Any,
    source: Any,
    sink: Any,
    *,
    table: str = "predictions",
    key: str | None = None,
    carry: Sequence[str] = (),
    job_id: str | None = None,
    chunk_rows: int | None = None,
    engine: str = "local",
    n_jobs: int | None = None,
    scheduler: Any = None,
    on_error: str = "fail",
    outputs: Sequence[str] = ("predict",),
    query: str | None = None,
    registry: Registry | str | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Predict every row of ``source`` with ``model`` and commit the results to ``sink``.

    Args:
        model: a registry URI (``churn@production``, ``churn/3``, ``models:/churn/3``; the
            artifact is verified before use), a :class:`~modelkit.Model`, an
            :class:`~modelkit.Artifact` or a fitted estimator.
        source: CSV or Parquet paths or globs, a numpy array, a pandas DataFrame, a database
            URL with ``query``, or a :class:`~modelkit.batch.sources.Source`.
        sink: ``sqlite:///pred.db`` (or a ``.db`` path), ``postgresql://…``, a directory ending
            in ``.parquet`` or ``.csv``, or a :class:`~modelkit.batch.sinks.Sink`.
        table: the output table (databases); quarantined rows go to ``<table>_quarantine``.
        key: the column identifying each row, written to the output and never fed to the
            model; without one, rows are keyed by their number in the input (column ``row``).
        carry: other input columns to copy to the output.
        job_id: the job's id; rerunning with the same id resumes (or, once finished, skips)
            the job. Default: derived from the model artifact, input, output and options.
        chunk_rows: rows per chunk (and per transaction); default: the sink's
            ``default_chunk_rows`` attribute when it has one (100,000 for part files), else
            :data:`DEFAULT_CHUNK_ROWS`; :data:`DASK_CHUNK_ROWS` per Dask partition.
        engine: ``"local"`` or ``"dask"`` (extra ``dask``).
        n_jobs: with ``engine="dask"`` and no ``scheduler``, the workers of the local cluster
            started for the job (default: the CPU count).
        scheduler: with ``engine="dask"``: a scheduler address (``tcp://host:8786``) or a
            ``distributed.Client``; default: a ``LocalCluster`` for the job.
        on_error: a row the model's signature refuses ``"fail"`` s the job (nothing of its
            chunk is written), is ``"skip"`` ped (counted), or is ``"quarantine"`` d with the
            reason.
        outputs: any of ``"predict"`` (column ``prediction``), ``"predict_proba"`` (one
            ``proba_<class>`` column per class), ``"decision_function"`` (``decision``).
        query: the SQL query when ``source`` is a database URL (end it with ``ORDER BY``).
        registry: the registry a URI is resolved in (a :class:`~modelkit.Registry` or its
            URL; default ``$MODELKIT_HOME``, else ``./.modelkit``).
        progress: show a progress bar on stderr; default: when stderr is a terminal.

    Returns:
        A :class:`BatchResult` with the job's counts; ``summary()`` is one line for logs.

    Raises:
        SignatureError: with ``on_error="fail"``, a row the model refuses (the job can be
            rerun to resume once the input is fixed).
        DataError: the input lacks the key, a feature or a carried column, or cannot be read.
        BatchJobError: the job id was used for another job, or another run of the same job
            is committing the same chunks.
    """
    from modelkit.batch._jobs import (
        ProfileCollector,
        default_job_id,
        resolve_model,
        run_local,
    )
    from modelkit.batch._progress import Progress

    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {ENGINES}, got {engine!r}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise UsageError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    info = resolve_model(model, registry)
    started = time.perf_counter()  # the rate counts the job's work, not loading the model
    plan = Plan(
        model=info.model, key=key, carry=tuple(carry), outputs=tuple(outputs), on_error=on_error
    )
    reader = open_source(source, query=query)
    _configure(reader, plan)
    writer = open_sink(sink, table=table)
    if chunk_rows is None:
        chunk_rows = (
            DASK_CHUNK_ROWS
            if engine == "dask"
            else int(getattr(writer, "default_chunk_rows", DEFAULT_CHUNK_ROWS))
        )
    described = reader.describe()  # stats every file, or hashes in-memory data: once
    plan.check_columns(reader.columns(), described.split(",", 1)[0])
    spec = JobSpec(
        job_id=job_id or default_job_id(info, described, writer, plan, table),
        table=table,
        key=plan.key_name,
        model_name=info.name,
        model_version=info.version,
        artifact_sha256=info.artifact_sha256,
        source=described,
        outputs=plan.outputs,
        engine=engine,
        chunk_rows=chunk_rows if engine == "dask" else None,
    )
    try:
        state = writer.start(spec)
        if state.finished:
            return _result(
                spec,
                state,
                writer,
                seconds=time.perf_counter() - started,
                resumed=state.next_row,
                this_run=0,
                already=True,
            )
        collector = ProfileCollector.maybe(info)
        resumed = state.next_row if engine == "local" else state.total("rows_in")
        bar = Progress(total=reader.total_rows(), initial=resumed, enabled=progress)
        counted = [0]

        def on_chunk(rows: int) -> None:
            counted[0] += rows
            bar.update(rows)

        try:
            if engine == "local":
                run_local(
                    plan,
                    reader,
                    writer,
                    spec,
                    state,
                    chunk_rows=chunk_rows,
                    on_chunk=on_chunk,
                    collector=collector,
                )
            else:
                from modelkit.batch._dask import run_dask

                run_dask(
                    plan,
                    reader,
                    writer,
                    spec,
                    state,
                    chunk_rows=chunk_rows,
                    on_chunk=on_chunk,
                    scheduler=scheduler,
                    n_jobs=n_jobs,
                )
        finally:
            bar.close()
        drift = None if collector is None else collector.verdict()
        final = writer.finish(spec, drift=drift)
        return _result(
            spec,
            final,
            writer,
            seconds=time.perf_counter() - started,
            resumed=resumed,
            this_run=counted[0],
            already=False,
        )
    finally:
        writer.close()
