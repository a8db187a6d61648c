"""Running a job: which model, which job id, the local engine's pipeline, the drift seam.

The local engine overlaps reading and predicting (a background thread; a CSV source parses its
blocks on threads of its own: pyarrow and numpy release the GIL) with writing (the caller's
thread; SQLite runs each chunk's one statement without the GIL), through a queue two chunks
deep, so memory holds a few chunks whatever the input size. Chunks are committed strictly in
order, so a job's progress is the end of its last committed chunk.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit.batch._predict import Plan, predict_chunk

if TYPE_CHECKING:
    from modelkit.artifact import Artifact
    from modelkit.batch.sinks import JobSpec, JobState, Sink
    from modelkit.batch.sources import Source
    from modelkit.data import Profile
    from modelkit.model import Model
    from modelkit.registry import Registry

__all__ = [
    "ModelInfo",
    "ProfileCollector",
    "default_job_id",
    "drift_verdict",
    "resolve_model",
    "run_local",
]


@attrs.frozen(kw_only=True)
class ModelInfo:
    """The model a job runs, with what each output row records about it."""

    model: Model
    name: str
    version: int | None
    artifact_sha256: str
    reference: Profile | None = None


def _estimator_sha256(model: Model) -> str:
    digest = hashlib.sha256(pickle.dumps(model.estimator, protocol=5))
    digest.update(json.dumps(model.signature.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def resolve_model(model: Any, registry: Registry | str | None) -> ModelInfo:
    """A registry URI (``churn@production``), an :class:`~modelkit.Artifact` or a
    :class:`~modelkit.Model` (any fitted estimator is wrapped) as a :class:`ModelInfo`."""
    from modelkit.artifact import Artifact
    from modelkit.model import Model
    from modelkit.registry import Registry

    if isinstance(model, str):
        own = not isinstance(registry, Registry)
        reg = registry if isinstance(registry, Registry) else Registry(registry)
        try:
            version = reg.resolve(model)
            artifact = reg.load_artifact(version.uri)
        finally:
            if own:
                reg.close()
        return ModelInfo(
            model=artifact.model,
            name=version.name,
            version=version.version,
            artifact_sha256=version.artifact_sha256,
            reference=artifact.profile,
        )
    if isinstance(model, Artifact):
        return _from_artifact(model)
    wrapped = Model.wrap(model)
    return ModelInfo(
        model=wrapped,
        name=wrapped.name or "model",
        version=None,
        artifact_sha256=_estimator_sha256(wrapped),
    )


def _from_artifact(artifact: Artifact) -> ModelInfo:
    from modelkit.exceptions import ArtifactError

    try:
        sha = artifact.manifest_sha256
    except ArtifactError:  # never saved: identify it by its content
        sha = _estimator_sha256(artifact.model)
    return ModelInfo(
        model=artifact.model,
        name=artifact.name,
        version=None,
        artifact_sha256=sha,
        reference=artifact.profile,
    )


def default_job_id(info: ModelInfo, source: str, sink: Sink, plan: Plan, table: str) -> str:
    """``job-`` and 16 hex digits of a hash of the model artifact, the input (paths, sizes,
    modification times, or the data's fingerprint), the output, the key, the carried columns,
    the outputs and ``on_error``: rerunning the same command resumes or skips the same job.
    ``source`` is the input's :meth:`~modelkit.batch.sources.Source.describe`."""
    identity = {
        "artifact": info.artifact_sha256,
        "source": source,
        "sink": sink.describe(),
        "table": table,
        "key": plan.key,
        "carry": list(plan.carry),
        "outputs": list(plan.outputs),
        "on_error": plan.on_error,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"job-{digest[:16]}"


# -- the drift seam -----------------------------------------------------------------------


def _monitoring() -> Any:
    """``modelkit.monitoring`` when it is available, else ``None``."""
    try:
        from modelkit import monitoring
    except ImportError:  # pragma: no cover - monitoring ships with modelkit
        return None
    if not all(hasattr(monitoring, name) for name in ("Reference", "check_drift")):
        return None  # pragma: no cover - an incompatible monitoring module
    return monitoring


def drift_verdict(reference: Any, window: Any) -> dict[str, Any] | None:
    """The drift verdict of a job's input summary ``window`` against ``reference``.

    This is where batch jobs meet monitoring: ``reference`` is the monitoring reference built
    from the model's training profile (``Reference.from_profile``), ``window`` the job's
    merged input summary; the result is ``check_drift(reference, window).to_dict()``, stored
    with the job. ``None`` when monitoring is not available.
    """
    monitoring = _monitoring()
    if monitoring is None:  # pragma: no cover - monitoring ships with modelkit
        return None
    report = monitoring.check_drift(reference, window)
    result = report.to_dict() if hasattr(report, "to_dict") else report
    return dict(result) if isinstance(result, Mapping) else {"verdict": result}


_SUMMARY_ROWS = 65_536
"""Rows summarized at a time: monitoring bins long columns in one pass per bin edge, much
faster per row than the binary search it uses for the small batches a served model sees."""


class ProfileCollector:
    """The job's input summary, merged chunk by chunk on the reference's bins and levels.

    Chunks are summarized :data:`_SUMMARY_ROWS` rows at a time (a few chunks are held until
    then): the summary is the same, its cost a third.
    """

    def __init__(self, reference: Any, names: tuple[str, ...]) -> None:
        self.reference = reference
        self.names = names
        self.window: Any = None
        self.lock = threading.Lock()
        self.pending: list[Mapping[str, np.ndarray]] = []
        self.pending_rows = 0

    @classmethod
    def maybe(cls, info: ModelInfo) -> ProfileCollector | None:
        """A collector when the model has a reference profile and monitoring is available."""
        monitoring = _monitoring()
        if info.reference is None or monitoring is None:
            return None
        reference = monitoring.Reference.from_profile(info.reference)
        return cls(reference, info.model.signature.names)

    def add(self, columns: Mapping[str, np.ndarray], n_rows: int) -> None:
        """Add the rows a chunk predicted: ``columns`` holds (at least) the model's features."""
        with self.lock:
            self.pending.append({name: columns[name] for name in self.names})
            self.pending_rows += n_rows
            if self.pending_rows < _SUMMARY_ROWS:
                return
            parts, self.pending, self.pending_rows = self.pending, [], 0
        self._summarize(parts)

    def _summarize(self, parts: list[Mapping[str, np.ndarray]]) -> None:
        if not parts:
            return
        columns = {
            name: parts[0][name]
            if len(parts) == 1
            else np.concatenate([part[name] for part in parts])
            for name in self.names
        }
        part = self.reference.summarize(_frame(columns, self.names))
        with self.lock:
            self.window = part if self.window is None else self.window.merge(part)

    def verdict(self) -> dict[str, Any] | None:
        """The drift verdict of everything added (``None`` when nothing was)."""
        with self.lock:
            parts, self.pending, self.pending_rows = self.pending, [], 0
        self._summarize(parts)
        return None if self.window is None else drift_verdict(self.reference, self.window)


# -- the local engine ---------------------------------------------------------------------

_DONE = object()


@attrs.frozen
class _Failure:
    error: BaseException


def run_local(
    plan: Plan,
    source: Source,
    sink: Sink,
    spec: JobSpec,
    state: JobState,
    *,
    chunk_rows: int,
    on_chunk: Callable[[int], None],
    collector: ProfileCollector | None = None,
) -> None:
    """Read and predict in a background thread, commit chunk by chunk in this one."""
    results: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            on_features = None if collector is None else collector.add
            for chunk in source.chunks(chunk_rows, start=state.next_row):
                output = predict_chunk(plan, chunk, on_features=on_features)
                if not put(output):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Failure(exc))

    worker = threading.Thread(target=produce, name="modelkit-batch-read", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            sink.write(spec, item)
            on_chunk(item.rows_in)
    finally:
        stop.set()
        worker.join()


def _frame(columns: Mapping[str, np.ndarray], names: tuple[str, ...]) -> Any:
    """The features as a DataFrame (monitoring matches columns by name)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - a 2-D array in the model's column order
        return np.column_stack([columns[name] for name in names])
    return pd.DataFrame({name: columns[name] for name in names}, copy=False)
