"""Delayed labels: prediction ids recorded in the registry, and ``POST /feedback``.

Every prediction a served application answers is recorded in its registry's database
(prediction id, model name and version, time, row count, the ``predict`` outputs and, unless
``record_inputs=False``, the input rows as the model was given them), so that
labels known only later (a chargeback a month after the fraud score) can be attached to it::

    POST /feedback   {"id": "5e72…", "label": 1}
                     [{"id": "5e72…", "label": 1}, {"id": "a9c1…", "label": [0, 1, 1]}]
    200 {"accepted": 2}

The prediction id is ``/predict``'s ``"id"``, the ``"id"`` of an Open Inference Protocol
answer, and the ``X-Request-ID`` response header of ``/invocations``. ``label`` is one value per
predicted row (a list), or a single value for a one-row prediction; ``null`` marks a row whose
truth is unknown. A later label for the same id replaces the earlier one. The labels are
read back with :meth:`modelkit.Registry.feedback`.

Recording never slows or breaks a prediction: :class:`PredictionRecorder` queues records in
memory (bounded, in rows) and one background thread writes them in batches; a failed write
or a full queue is logged as a warning and the records are dropped. Records and their labels
are kept for a retention period (30 days by default) after which the writer prunes them.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit.exceptions import NotFoundError, RegistryError, UsageError
from modelkit.registry import MAX_PREDICTION_ID, PredictionRecord
from modelkit.serving._http import HTTPError, json_body, jsonable, require_json
from modelkit.serving._loading import own_registry
from modelkit.serving.core import Response

if TYPE_CHECKING:
    from modelkit.registry import Registry
    from modelkit.serving.core import App, Request, ServedModel

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "MAX_PENDING_ROWS",
    "MAX_RECORDED_OUTPUTS",
    "PredictionRecorder",
    "feedback",
    "json_rows",
    "make_recorder",
    "parse_feedback",
]

logger = logging.getLogger("modelkit.serving")

DEFAULT_RETENTION_DAYS = 30.0
"""How long recorded predictions and their labels are kept, by default."""

MAX_PENDING_ROWS = 1_000_000
"""Most rows waiting to be written; predictions beyond are dropped (and a warning logged)."""

MAX_RECORDED_OUTPUTS = 10_000
"""Predictions of more rows are recorded without their outputs (ids and counts only)."""

_IDLE_EXIT = 10.0  # seconds the writer thread waits for work before it exits
_FLUSH_SECONDS = 0.25  # longest a record waits to be written together with the next ones
_FLUSH_ROWS = 4096  # rows that make the writer write at once
_PRUNE_EVERY = 3600.0  # seconds between two prunings
_WARN_EVERY = 60.0  # seconds between two warnings about the same trouble


class PredictionRecorder:
    """Writes prediction records to a registry from one background thread.

    :meth:`record` never blocks and never raises. The writer thread starts with the first
    record, writes what is queued in one transaction (gathering records for at most a quarter
    of a second, so that a busy server commits a few times a second, not once per request),
    prunes records older than
    ``retention`` (``None``: keep everything) at most once an hour, and exits after a few
    idle seconds (the next record starts it again). ``owns_registry``: :meth:`close` also
    closes the registry.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        retention: timedelta | None = timedelta(days=DEFAULT_RETENTION_DAYS),
        max_pending_rows: int = MAX_PENDING_ROWS,
        owns_registry: bool = False,
        record_inputs: bool = True,
    ) -> None:
        """Record into ``registry``; nothing starts until the first record.

        ``record_inputs=False`` records no input rows (ids, counts and outputs only).
        """
        self.registry = registry
        self.record_inputs = record_inputs
        self.retention = retention
        self.max_pending_rows = max_pending_rows
        self.owns_registry = owns_registry
        self.dropped = 0
        self.cpu_seconds = 0.0
        """CPU time the writer thread spent converting and writing records, in seconds."""
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._pending_rows = 0
        self._queued = 0  # records accepted so far
        self._done = 0  # records written or given up
        self._thread: threading.Thread | None = None
        self._closed = False
        self._urgent = False  # flush() waits: write now
        self._last_prune = -_PRUNE_EVERY
        self._last_warning: dict[str, float] = {}

    def __repr__(self) -> str:
        """``PredictionRecorder(<registry>, pending=3)``."""
        return f"PredictionRecorder({self.registry!r}, pending={len(self._queue)})"

    @property
    def pending(self) -> int:
        """Records accepted and not yet written (or given up)."""
        return self._queued - self._done

    def record(
        self,
        served: ServedModel,
        prediction_id: str,
        rows: int,
        outputs: Any = None,
        inputs: Any = None,
    ) -> bool:
        """Queue one prediction; return whether it was accepted (never blocks or raises).

        ``outputs`` is the ``predict`` result (an array or a list, one value per row) or
        ``None``; ``inputs`` the rows the model was given (an array or a DataFrame in the
        Signature's order) or ``None``. Both are kept by reference and made JSON-ready by the
        writer thread, off the request path.
        """
        try:
            if os.getpid() != self._pid:  # a forked worker: fresh queue, lock and thread
                self._reset()
            if not 0 < len(prediction_id) <= MAX_PREDICTION_ID:
                return False
            item = _Pending(
                prediction_id,
                served.name,
                None if served.version is None else int(served.version),
                datetime.now(timezone.utc),
                rows,
                None if rows > MAX_RECORDED_OUTPUTS else outputs,
                None if rows > MAX_RECORDED_OUTPUTS or not self.record_inputs else inputs,
            )
            with self._cond:
                if self._closed:
                    return False
                if self._queue and self._pending_rows + rows > self.max_pending_rows:
                    self.dropped += 1
                    self._warn(
                        "full",
                        "dropped a prediction record: %d rows are already waiting to be "
                        "written to %s (is the database slow or down?)",
                        self._pending_rows,
                        self.registry.url,
                    )
                    return False
                self._queue.append(item)
                self._pending_rows += rows
                self._queued += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="modelkit-prediction-recorder", daemon=True
                    )
                    self._thread.start()
                if len(self._queue) == 1 or self._pending_rows >= _FLUSH_ROWS:
                    self._cond.notify_all()  # not on every record: the writer gathers them
            return True
        except Exception as exc:  # a prediction must never fail because of recording
            self._warn("record", "could not queue a prediction record: %s", exc)
            return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is written (or given up); ``False`` on timeout."""
        with self._cond:
            target = self._queued
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout=timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():  # stuck in the database: closing under it could crash it
                self._warn("busy", "the prediction writer is still busy; its registry stays open")
                return False
        if self.owns_registry:
            try:
                self.registry.close()
            except Exception as exc:
                self._warn("close", "could not close the registry %s: %s", self.registry.url, exc)
        return done

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait_for(lambda: bool(self._queue) or self._closed, _IDLE_EXIT)
                if self._queue and not self._closed:  # gather the records that follow
                    self._cond.wait_for(self._write_now, _FLUSH_SECONDS)
                self._urgent = False
                if not self._queue:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._pending_rows = 0
            started = time.thread_time()
            self._write(batch)
            self.cpu_seconds += time.thread_time() - started
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
            self._maybe_prune()

    def _write_now(self) -> bool:
        return self._closed or self._urgent or self._pending_rows >= _FLUSH_ROWS

    def _write(self, batch: list[_Pending]) -> None:
        try:
            inputs = _batch_inputs(batch)
            records = [item.to_record(rows) for item, rows in zip(batch, inputs, strict=True)]
            self.registry.record_predictions(records)
        except Exception as exc:
            self.dropped += len(batch)
            self._warn(
                "write",
                "could not record %d prediction(s) in %s; they get no feedback: %s",
                len(batch),
                self.registry.url,
                exc,
            )

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self.retention is None or now - self._last_prune < _PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            removed = self.registry.prune_feedback(self.retention)
        except Exception as exc:
            self._warn("prune", "could not prune old predictions in %s: %s", self.registry.url, exc)
        else:
            if removed:
                logger.info("pruned %d predictions older than %s", removed, self.retention)

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(kind, -_WARN_EVERY) >= _WARN_EVERY:
            self._last_warning[kind] = now
            logger.warning(message, *args)


@attrs.frozen
class _Pending:
    """A prediction waiting to be written (outputs as the model returned them)."""

    id: str
    name: str
    version: int | None
    at: datetime
    rows: int
    outputs: Any
    inputs: Any = None

    def to_record(self, inputs: list[list[Any]] | None = None) -> PredictionRecord:
        """The record to write, with ``inputs`` already made JSON-ready (:func:`_batch_inputs`)."""
        return PredictionRecord(
            id=self.id,
            name=self.name,
            version=self.version,
            at=self.at,
            rows=self.rows,
            outputs=_json_outputs(self.outputs),
            inputs=inputs,
        )


def _batch_inputs(batch: list[_Pending]) -> list[list[list[Any]] | None]:
    """The JSON-ready input rows of every pending record (``None`` where there are none).

    Float arrays of one width (what JSON requests of a numeric model give) are converted
    together, in one pass over the joined array: converting them one by one would cost more
    than writing them. Rows that cannot be converted are left out; the prediction is kept.
    """
    found: list[list[list[Any]] | None] = [None] * len(batch)
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(batch):
        value = item.inputs
        if type(value) is np.ndarray and value.ndim == 2 and value.dtype.kind == "f":
            if value.shape[0] == item.rows:
                groups.setdefault(value.shape[1], []).append(index)
            continue
        try:
            found[index] = json_rows(value, item.rows)
        except Exception:  # rows that cannot be written must not lose the prediction
            found[index] = None
    for members in groups.values():
        rows = jsonable(np.concatenate([batch[index].inputs for index in members]))
        start = 0
        for index in members:
            stop = start + batch[index].rows
            found[index] = rows[start:stop]
            start = stop
    return found


def _json_outputs(outputs: Any) -> list[Any] | None:
    """``predict`` outputs as a list of JSON values (``None`` when there are none)."""
    if outputs is None:
        return None
    values = outputs if isinstance(outputs, list) else jsonable(outputs)
    return values if isinstance(values, list) else [values]


def make_recorder(app: App, opened: Registry) -> PredictionRecorder:
    """The recorder of ``app``, writing through ``opened`` or through its own connections.

    A registry the caller gave is reopened, so that closing it never closes a connection
    the writer thread is using; a registry the application opened is its own.
    """
    target, owned = opened, True
    if opened is app.registry:
        target, owned = own_registry(opened)
        if not owned:
            logger.info("recording predictions through the registry given: %s", opened.url)
    days = app.feedback_retention_days
    return PredictionRecorder(
        target,
        retention=None if days is None else timedelta(days=days),
        owns_registry=owned,
        record_inputs=app.record_inputs,
    )


def json_rows(inputs: Any, rows: int) -> list[list[Any]] | None:
    """Input rows as lists of JSON values (``None`` when there are none or they do not fit).

    An array gives its rows; a DataFrame its rows in column order, each column converted on
    its own (floats stay floats, categories become their text, missing values ``None``).
    """
    if inputs is None:
        return None
    columns = getattr(inputs, "columns", None)
    if columns is not None:
        values = [jsonable(inputs[column].to_numpy()) for column in columns]
        table = [list(row) for row in zip(*values, strict=True)] if values else []
    else:
        array = np.asarray(inputs)
        if array.ndim == 1:
            array = array.reshape(-1, 1) if rows == array.shape[0] else array.reshape(1, -1)
        table = jsonable(array)
    return table if len(table) == rows else None


# -- POST /feedback --------------------------------------------------------------------------


def parse_feedback(document: Any) -> dict[str, Any]:
    """Prediction id → label(s) from a ``/feedback`` body, or a 400 naming the problem."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise HTTPError(400, 'send at least one {"id": ..., "label": ...} object')
    labels: dict[str, Any] = {}
    for i, item in enumerate(items):
        where = f"item {i}" if isinstance(document, list) else "the body"
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise HTTPError(
                400,
                f'{where} must be an object {{"id": <prediction id>, "label": <label or '
                "list of labels, one per row>}}",
            )
        extra = sorted(set(item) - {"id", "label"})
        if extra:
            raise HTTPError(400, f"{where} has unknown keys {extra}; only id and label")
        key = item["id"]
        if not isinstance(key, str) or not 0 < len(key) <= MAX_PREDICTION_ID:
            raise HTTPError(
                400,
                f'{where}: "id" must be a prediction id (a string of 1-{MAX_PREDICTION_ID} '
                f"characters), got {_short(key)}",
            )
        if key in labels:
            raise HTTPError(400, f"prediction id {key!r} appears twice; send it once")
        labels[key] = item["label"]
    return labels


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def feedback(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``POST /feedback``: store delayed labels against recorded prediction ids."""
    recorder = app.recorder
    if recorder is None:
        raise HTTPError(404, app.feedback_unavailable())
    require_json(request.headers)
    labels = parse_feedback(json_body(request.body))
    try:
        try:
            count = recorder.registry.add_feedback(labels)
        except NotFoundError:
            if not recorder.pending:
                raise
            recorder.flush()  # the predictions may still be on their way to the database
            count = recorder.registry.add_feedback(labels)
    except UsageError as exc:
        raise HTTPError(400, str(exc)) from exc
    except RegistryError as exc:
        logger.warning("feedback could not be stored: %s", exc)
        raise HTTPError(
            503,
            "the feedback store is unavailable right now; retry later",
            headers=[("retry-after", str(app.retry_after))],
        ) from exc
    if app.monitoring is not None:
        app.monitoring.labels_received()
    return Response.json(200, {"accepted": count})
