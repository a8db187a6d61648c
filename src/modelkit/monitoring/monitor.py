"""The :class:`Monitor`: observe live batches in windows, check them against the reference.

::

    monitor = Monitor.fit(X_train, outputs=model.predict(X_train), name="churn")
    for batch in stream:
        for report in monitor.observe(batch, outputs=model.predict(batch)):
            print(report.to_text())          # one report per window that closed
    monitor.check().verdict                  # the current (partly filled) window

Windows are tumbling or sliding, by row count or by time (:class:`Window`). A window is
built of panes (one pane for a tumbling window; ``size / step`` panes for a sliding one);
each pane is a :class:`~modelkit.monitoring.summary.WindowSummary`, so memory stays constant
however long the stream. Every closed window is checked; a drift verdict calls the
``on_drift`` hook and, when the monitor has a registry, is stored as an alert.

``observe`` is thread-safe and costs a vectorised pass over the batch (no Python loop over
rows); :class:`AsyncObserver` moves even that off the caller's thread, for serving.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._fingerprint import as_array, is_pandas
from modelkit.exceptions import UsageError
from modelkit.monitoring.alerts import store_alert, warn
from modelkit.monitoring.drift import DriftConfig, check_drift
from modelkit.monitoring.summary import Reference, WindowSummary

if TYPE_CHECKING:
    from modelkit.artifact import Artifact
    from modelkit.monitoring.performance import PerformanceTracker
    from modelkit.monitoring.report import DriftReport
    from modelkit.registry import Registry

__all__ = ["MAX_PANES", "UNITS", "AsyncObserver", "Monitor", "Window"]


UNITS = ("rows", "seconds")
MAX_PANES = 12
"""Most panes in a sliding window: a pane takes at most about 5 KiB per feature."""


def _check_size(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None and attribute.name == "step":
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise UsageError(f"window {attribute.name} must be a positive number, got {value!r}")


@attrs.frozen(kw_only=True)
class Window:
    """A tumbling or sliding window, by row count or by time.

    ``size`` rows (``unit="rows"``) or seconds (``unit="seconds"``); ``step`` how far the
    window moves (default: ``size``, a tumbling window). ``size`` must be a whole multiple
    of ``step``, at most :data:`MAX_PANES` panes (a window then keeps at most about 64 KiB
    per feature).
    """

    size: float = attrs.field(default=10_000, validator=_check_size)
    step: float | None = attrs.field(default=None, validator=_check_size)
    unit: str = attrs.field(default="rows", validator=attrs.validators.in_(UNITS))

    def __attrs_post_init__(self) -> None:
        panes = self.size / self.pane
        if abs(panes - round(panes)) > 1e-9 or not 1 <= round(panes) <= MAX_PANES:
            raise UsageError(
                f"window size ({self.size:g}) must be 1 to {MAX_PANES} times its step "
                f"({self.pane:g}); pick a step that divides the size"
            )
        if self.unit == "rows" and (self.size != int(self.size) or self.pane != int(self.pane)):
            raise UsageError(f"a window by rows needs whole numbers, got size={self.size!r}")

    @property
    def pane(self) -> float:
        """The length of one pane: ``step``, or ``size`` for a tumbling window."""
        return self.size if self.step is None else self.step

    @property
    def panes(self) -> int:
        """How many panes make a window."""
        return round(self.size / self.pane)

    @classmethod
    def tumbling(cls, *, rows: int | None = None, seconds: float | None = None) -> Window:
        """A tumbling window of ``rows`` rows or ``seconds`` seconds."""
        return cls._make(rows, seconds, None)

    @classmethod
    def sliding(
        cls, *, rows: int | None = None, seconds: float | None = None, step: float
    ) -> Window:
        """A window of ``rows`` rows or ``seconds`` seconds moving by ``step``."""
        return cls._make(rows, seconds, step)

    @classmethod
    def _make(cls, rows: int | None, seconds: float | None, step: float | None) -> Window:
        if (rows is None) == (seconds is None):
            raise UsageError("give exactly one of rows= or seconds=")
        if rows is not None:
            return cls(size=rows, step=step, unit="rows")
        return cls(size=seconds, step=step, unit="seconds")  # type: ignore[arg-type]


def _slice(data: Any, start: int, stop: int) -> Any:
    if data is None:
        return None
    if is_pandas(data):
        return data.iloc[start:stop]
    return as_array(data, "data")[start:stop]


def _n_rows(data: Any) -> int:
    if is_pandas(data):
        return len(data)
    array = as_array(data, "X")
    if array.ndim == 1:  # one row of several features
        return 1
    return int(array.shape[0])


def _now() -> datetime:
    return datetime.now(timezone.utc)


@attrs.define(kw_only=True)
class Monitor:
    """Watch a model's inputs (and outputs) for drift, window by window.

    Build one with :meth:`fit` (from reference data: every check, the dependence check and
    output drift included), :meth:`from_artifact` or :meth:`from_registry` (from the saved
    profile). ``name`` names the model in reports, hooks and stored alerts; ``registry``
    (optional) stores every drift alert in the registry's database; ``performance``
    (optional) a :class:`~modelkit.monitoring.PerformanceTracker` that :meth:`observe`
    (``labels=``, ``ids=``) and :meth:`label` feed.
    """

    reference: Reference
    config: DriftConfig = attrs.field(factory=DriftConfig)
    window: Window = attrs.field(factory=Window)
    name: str | None = None
    version: int | None = None
    registry: Registry | None = None
    performance: PerformanceTracker | None = None
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _panes: deque[WindowSummary] = attrs.field(init=False)
    _pane: WindowSummary = attrs.field(init=False)
    _pane_id: int | None = attrs.field(init=False, default=None)
    _filled: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._panes = deque(maxlen=self.window.panes)
        self._pane = self.reference.empty()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def fit(cls, X: Any, outputs: Any = None, **options: Any) -> Monitor:
        """A monitor whose reference is fitted on ``X`` (and the model's ``outputs`` on it).

        ``options`` are the monitor's fields (``config``, ``window``, ``name``, …) and
        :meth:`Reference.fit`'s ``bins`` and ``max_levels``.
        """
        fit_options = {key: options.pop(key) for key in ("bins", "max_levels") if key in options}
        return cls(reference=Reference.fit(X, outputs, **fit_options), **options)

    @classmethod
    def from_artifact(cls, artifact: Artifact, **options: Any) -> Monitor:
        """A monitor whose reference is the artifact's profile of its training data."""
        if artifact.profile is None:
            raise UsageError(
                f"artifact {artifact.name!r} has no profile of its training data; fit the "
                "monitor from reference data with Monitor.fit(X_train, ...)"
            )
        options.setdefault("name", artifact.name)
        return cls(reference=Reference.from_profile(artifact.profile), **options)

    @classmethod
    def from_registry(cls, registry: Registry, uri: str, **options: Any) -> Monitor:
        """A monitor of a registered version (``"churn@production"``, ``"models:/churn/3"``),
        storing its alerts in that registry."""
        version = registry.resolve(uri)
        artifact = registry.load_artifact(uri)
        options.setdefault("registry", registry)
        options.setdefault("version", version.version)
        options.setdefault("name", version.name)
        return cls.from_artifact(artifact, **options)

    # -- observing ---------------------------------------------------------------------------

    def observe(
        self,
        inputs: Any,
        outputs: Any = None,
        *,
        ids: Any = None,
        labels: Any = None,
        scores: Any = None,
        at: datetime | None = None,
    ) -> list[DriftReport]:
        """Add a batch to the current window; return the reports of windows it closed.

        ``inputs`` are what the model was given (any table :class:`~modelkit.Profile`
        reads), ``outputs`` what it returned, ``at`` when the batch was seen (default: now;
        used by windows by time). For performance tracking (when the monitor has a
        :attr:`performance` tracker): ``labels`` the true values when already known, or
        ``ids`` one prediction id per row, so that :meth:`label` can join labels that come
        later. Both need ``outputs``; ``scores`` (the positive class's probability, or
        ``predict_proba``'s rows) let the tracker follow ROC AUC. Thread-safe.
        """
        when = _now() if at is None else at
        if self.performance is not None and (labels is not None or ids is not None):
            if outputs is None:
                raise UsageError("labels and ids need the outputs they are compared with")
            if labels is not None:
                self.performance.add(outputs, labels, scores=scores, at=when)
            else:
                self.performance.expect(ids, outputs, scores=scores)
        if self.window.unit == "seconds":
            summary = self.reference.summarize(inputs, outputs, at=when)
            with self._lock:
                return self._add_timed(summary, when)
        return self._add_rows(inputs, outputs, when)

    def _add_rows(self, inputs: Any, outputs: Any, when: datetime) -> list[DriftReport]:
        total = _n_rows(inputs)
        if total == 1 and not is_pandas(inputs) and as_array(inputs, "X").ndim == 1:
            inputs = [inputs]
        reports: list[DriftReport] = []
        start = 0
        pane = int(self.window.pane)
        while start < total:
            with self._lock:
                room = pane - self._filled
            stop = min(total, start + room)
            summary = self.reference.summarize(
                _slice(inputs, start, stop), _slice(outputs, start, stop), at=when
            )
            with self._lock:
                self._pane = self._pane.merge(summary)
                self._filled += stop - start
                if self._filled >= pane:
                    reports.extend(self._close_pane())
            start = stop
        return self._after(reports)

    def _add_timed(self, summary: WindowSummary, when: datetime) -> list[DriftReport]:
        pane_id = math.floor(when.timestamp() / self.window.pane)
        reports: list[DriftReport] = []
        if self._pane_id is None:
            self._pane_id = pane_id
        while pane_id > self._pane_id:
            reports.extend(self._close_pane())
            self._pane_id += 1
            if len(reports) > self.window.panes:  # a long gap: empty windows say nothing
                self._panes.clear()
                self._pane_id = pane_id
        self._pane = self._pane.merge(summary)
        return self._after(reports)

    def _close_pane(self) -> list[DriftReport]:
        """Close the current pane (lock held); check the window if it is complete."""
        self._panes.append(self._pane)
        self._pane = self.reference.empty()
        self._filled = 0
        if len(self._panes) < self.window.panes:
            return []
        window = self._merged(self._panes)
        if window.n_rows == 0:  # a silent stretch of a window by time: nothing to say
            return []
        return [self._check(window)]

    def _merged(self, panes: Sequence[WindowSummary]) -> WindowSummary:
        window = self.reference.empty()
        for pane in panes:
            window = window.merge(pane)
        return window

    def _after(self, reports: list[DriftReport]) -> list[DriftReport]:
        """Call hooks and store alerts for reports (outside the lock)."""
        for report in reports:
            if report.drift:
                self._alert(report)
        return reports

    def _check(self, window: WindowSummary) -> DriftReport:
        report = check_drift(self.reference, window, self.config)
        return attrs.evolve(report, model=self.name)

    def _alert(self, report: DriftReport) -> None:
        from modelkit.plugins import notify

        notify("on_drift", monitor=self, report=report)
        if self.registry is not None:
            store_alert(self.registry, self, "drift", report.to_dict(), at=report.end)

    def label(self, labels: Mapping[Any, Any]) -> int:
        """Join delayed labels (prediction id -> label) with outputs observed with ``ids``;
        return how many matched. Needs a :attr:`performance` tracker."""
        if self.performance is None:
            raise UsageError(
                "this monitor tracks no performance; give it "
                "performance=PerformanceTracker(baseline=artifact.metrics)"
            )
        return self.performance.label(labels)

    # -- checking ----------------------------------------------------------------------------

    def summary(self) -> WindowSummary:
        """The summary of the current window: closed panes plus the filling one."""
        with self._lock:
            panes = list(self._panes)[-(self.window.panes - 1) :] if self.window.panes > 1 else []
            return self._merged([*panes, self._pane])

    def check(self) -> DriftReport:
        """Check the current window (possibly partly filled) now. Calls no hook."""
        return self._check(self.summary())

    def check_data(self, X: Any, outputs: Any = None) -> DriftReport:
        """Check one batch on its own, leaving the windows alone. Calls no hook."""
        return self._check(self.reference.summarize(X, outputs))


_Item = tuple[Any, Any, Any, float]  # inputs, outputs, labels, time.time() when submitted


def _concat(parts: list[Any]) -> Any:
    """One table from consecutive batches of the same form (``None`` when all are)."""
    if all(part is None for part in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    if all(is_pandas(part) for part in parts):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    arrays = [part if type(part) is np.ndarray else as_array(part, "batch") for part in parts]
    if arrays[0].ndim == 1:
        return np.concatenate(arrays)
    return np.vstack(arrays)


class AsyncObserver:
    """Feed a :class:`Monitor` from a background thread: :meth:`submit` never blocks.

    For serving: call ``submit(inputs, outputs)`` after each prediction. It appends to a
    deque (no lock, well under a microsecond); a daemon thread wakes every ``max_delay``
    seconds, or as soon as ``batch_items`` batches wait, joins consecutive batches of the
    same form into one table and observes it at once (summarising 10,000 rows at once costs
    a fraction of summarising them one request at a time). More than ``max_pending`` waiting
    batches drop the new one, and a failing monitor only warns
    (:class:`~modelkit.exceptions.MonitoringWarning`), at most once per ``warn_every``
    failures: monitoring never slows nor breaks a request.
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        max_pending: int = 100_000,
        batch_items: int = 1024,
        max_delay: float = 1.0,
        warn_every: int = 100,
    ):
        """Start the background thread."""
        self.monitor = monitor
        self._items: deque[_Item] = deque()
        self._max_pending = max_pending
        self._batch_items = batch_items
        self._max_delay = max_delay
        self._warn_every = warn_every
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self.dropped = 0
        self.failed = 0
        self.rows = 0
        """Rows observed so far."""
        self.windows = 0
        """Windows closed (and checked) so far."""
        self.cpu_seconds = 0.0
        """CPU time the observer's thread spent observing, in seconds."""
        self._thread = threading.Thread(target=self._run, name="modelkit-monitor", daemon=True)
        self._thread.start()

    def submit(self, inputs: Any, outputs: Any = None, *, labels: Any = None) -> bool:
        """Queue a batch; ``False`` when too many wait and the batch was dropped."""
        waiting = len(self._items)
        if waiting >= self._max_pending:
            self.dropped += 1
            if (self.dropped - 1) % self._warn_every == 0:
                warn(
                    f"monitoring queue full: {self.dropped} batch(es) dropped so far; "
                    "raise max_pending or observe fewer batches"
                )
            return False
        self._items.append((inputs, outputs, labels, time.time()))
        if waiting + 1 == self._batch_items:
            self._wake.set()
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Observe every waiting batch now and wait for it; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self._items or not self._idle.is_set():
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            self._idle.wait(0.002)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Observe what is waiting, then stop the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._max_delay)
            self._wake.clear()
            stopping = self._stopping
            while self._items:
                self._idle.clear()
                items = [self._items.popleft() for _ in range(len(self._items))]
                started = time.thread_time()
                self._observe(items)
                self.cpu_seconds += time.thread_time() - started
            self._idle.set()
            if stopping:
                return

    def _observe(self, items: list[_Item]) -> None:
        """Observe consecutive items, joined where they have the same form."""
        keys = [_key(item) for item in items]
        start = 0
        while start < len(items):
            stop = start + 1
            while stop < len(items) and keys[stop] == keys[start] and keys[start] is not None:
                stop += 1
            group = items[start:stop]
            try:
                inputs = _concat([item[0] for item in group])
                outputs = _concat([item[1] for item in group])
                labels = _concat([item[2] for item in group])
                at = datetime.fromtimestamp(group[-1][3], timezone.utc)
                reports = self.monitor.observe(inputs, outputs, labels=labels, at=at)
                self.rows += _n_rows(inputs)
                self.windows += len(reports)
            except Exception as exc:
                self.failed += 1
                if (self.failed - 1) % self._warn_every == 0:
                    warn(
                        f"monitor of {self.monitor.name or 'a model'} failed on a "
                        f"batch ({type(exc).__name__}: {exc}); the batch was skipped, "
                        "predictions are unaffected"
                    )
            start = stop


def _form(value: Any) -> tuple[Any, int] | None:
    """What decides whether batches join: their type and number of dimensions."""
    kind = type(value)
    if value is None:
        return (kind, 0)
    if kind is np.ndarray:
        return (kind, value.ndim)
    if is_pandas(value):
        return (kind, 2)
    if kind is list or kind is tuple:
        return (list, 2 if value and isinstance(value[0], list | tuple) else 1)
    return None


def _key(item: _Item) -> tuple[Any, ...] | None:
    """Batches with equal keys join into one table (``None``: observed on its own)."""
    forms = (_form(item[0]), _form(item[1]), _form(item[2]))
    return None if None in forms else forms
