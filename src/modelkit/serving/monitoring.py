"""Monitoring served models: drift on every batch, performance from labels, health.

An :class:`~modelkit.serving.App` serving registry models monitors them by default
(``App(..., monitor=False)`` turns it off). For each served model :class:`ServingMonitor`
keeps one :class:`~modelkit.Monitor` whose reference is the profile saved with the served
version's artifact, fed by an :class:`~modelkit.monitoring.AsyncObserver`:

- **drift**: each computed batch hands its checked input rows and ``predict`` outputs over
  (:func:`modelkit.serving.batching.compute` calls :meth:`ServingMonitor.submit` once per
  batch: a reference appended to a queue). The observer thread summarises them in windows
  (10,000 rows by default); a window that drifted calls ``on_drift`` and is stored in the
  registry's alerts table.
- **performance**: labels arrive by ``POST /feedback`` at any process sharing the registry.
  Every ``check_every`` seconds while labels come (less often while none do, up to every
  :data:`MAX_LABELS_WAIT` seconds) each process reads the labelled predictions of the served
  version from the registry (``Registry.feedback(name, since=...)``, from where it left
  off), so every process sees every label exactly once whichever process served the
  prediction or took the label, and compares rolling metrics with the artifact's metrics
  (:class:`~modelkit.monitoring.PerformanceTracker`). Since every worker sees the same
  labels, a drop is stored once: a process stores it only when no alert of that model,
  version and metric was stored since it last saw the metric healthy.
- **health**: the latency and status of every request for a model, which the application's
  own :class:`~modelkit.serving.metrics.Metrics` count anyway, the queue depth and load
  times go to a :class:`~modelkit.monitoring.HealthTracker` (from the metrics' cumulative
  figures, on the timer and at each scrape: nothing more per request); its SLO rules are
  checked on the same timer (a breach calls ``on_health_alert`` and is stored); ``/metrics``
  gains its figures over the SLO window.

A hot swap gives the new version a fresh monitor from its own artifact (windows of two
versions never mix); the old one is flushed and closed. A drain flushes and closes them
all. Nothing here ever fails or delays a request: a monitor that raises or lags only warns
(:class:`~modelkit.exceptions.MonitoringWarning`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Union

import attrs

from modelkit.exceptions import (
    ModelkitError,
    ServingError,
    UsageError,
)
from modelkit.monitoring.alerts import warn
from modelkit.monitoring.health import SLO, HealthTracker
from modelkit.monitoring.monitor import AsyncObserver, Monitor, Window
from modelkit.serving._loading import own_registry
from modelkit.serving.metrics import _escape

if TYPE_CHECKING:
    from modelkit.model import Model
    from modelkit.monitoring.performance import PerformanceTracker
    from modelkit.registry import Feedback, Registry
    from modelkit.serving.core import App, ServedModel

__all__ = [
    "DEFAULT_CHECK_SECONDS",
    "MAX_LABELS_WAIT",
    "MonitorOption",
    "MonitorOptions",
    "ServingMonitor",
]

logger = logging.getLogger("modelkit.serving")

MonitorOption = Union[bool, Monitor, Mapping[str, Union[Monitor, bool]]]  # noqa: UP007
"""``App(monitor=...)``: ``True`` (registry models, from their artifacts), ``False``, a
:class:`~modelkit.Monitor` for the one served model, or a mapping of model name (``"*"``: the
others) to a Monitor or a bool."""

DEFAULT_CHECK_SECONDS = 5.0
"""Seconds between two SLO checks, and between two reads of the labels while they come."""
MAX_LABELS_WAIT = 60.0
"""Longest wait between two reads of the labels while none come (seconds)."""


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ServingError(f"{attribute.name} must be a positive number, got {value!r}")


def _window(value: Window | int) -> Window:
    if isinstance(value, Window):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServingError(f"window must be a Window or a positive number of rows, got {value!r}")
    return Window.tumbling(rows=value)


@attrs.frozen(kw_only=True)
class MonitorOptions:
    """How an application monitors its models (``App(monitor_options=...)``).

    ``window``: the drift window (a :class:`~modelkit.monitoring.Window`, or a number of rows
    for a tumbling one; default 10,000 rows). ``slo``: the service-level objectives checked
    (default: none, the figures are still exported). ``check_every``: seconds between two
    reads of the labels and two SLO checks. ``performance``: track performance from the
    labels sent to ``POST /feedback``. ``max_delay``: longest a batch waits on the observer's
    queue before it is summarised (seconds).
    """

    window: Window = attrs.field(factory=Window, converter=_window)
    slo: SLO = attrs.field(factory=SLO)
    check_every: float = attrs.field(default=DEFAULT_CHECK_SECONDS, validator=_positive)
    performance: bool = True
    max_delay: float = attrs.field(default=1.0, validator=_positive)


@attrs.define(eq=False)
class _Watch:
    """The monitoring of one served version."""

    served: ServedModel
    monitor: Monitor
    given: bool
    """The monitor was given by the caller (else built from the artifact)."""
    tracker: PerformanceTracker | None
    start: datetime
    """Labels received before this cannot concern this version."""
    since: datetime
    seen: set[str] = attrs.field(factory=set)
    """Prediction ids already read whose labels arrived exactly at ``since``."""
    healthy_since: dict[str, datetime] = attrs.field(factory=dict)
    alerted: set[str] = attrs.field(factory=set)
    observer: AsyncObserver | None = None

    @property
    def version(self) -> int | None:
        served = self.served
        return None if served.version is None else int(served.version)


_LIVE: weakref.WeakSet[ServingMonitor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for monitor in list(_LIVE):
        monitor._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ServingMonitor:
    """The monitors of an application's served models, and its health figures.

    Built by :class:`~modelkit.serving.App` from its ``monitor`` option (:meth:`build`);
    :meth:`start` creates one monitor per served model, :meth:`submit` takes a batch (from
    the batchers), :meth:`swapped` a hot swap, :meth:`close` the drain. Background threads
    (one observer per model, one timer when labels or SLOs are to be checked) start with the
    first batch in each process, so a server that forks its workers after loading gets them
    in each worker.
    """

    def __init__(self, option: MonitorOption, options: MonitorOptions | None = None) -> None:
        """Check ``option``; nothing is built until :meth:`start`."""
        self.options = options or MonitorOptions()
        self.option = option
        self.health = HealthTracker(slo=self.options.slo)
        self.registry: Registry | None = None
        self._owns_registry = False
        self._app: App | None = None
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._timed = False
        self.checks = 0
        """Rounds of label reading and SLO checking done (by the timer or :meth:`check_now`)."""
        self.cpu_seconds = 0.0
        """CPU time those rounds took, in seconds."""
        self._labels_wait = self.options.check_every
        self._labels_due = 0.0
        _LIVE.add(self)

    @classmethod
    def build(
        cls, option: MonitorOption, options: MonitorOptions | None = None
    ) -> ServingMonitor | None:
        """The monitoring ``App(monitor=option)`` asks for, or ``None`` for ``False``."""
        if option is False:
            return None
        if not isinstance(option, bool | Monitor | Mapping):
            raise ServingError(
                "monitor must be True, False, a Monitor or a mapping of model name to a Monitor "
                f"or a bool, got {type(option).__name__}"
            )
        if isinstance(option, Mapping):
            for name, item in option.items():
                if not isinstance(item, bool | Monitor):
                    raise ServingError(
                        f"monitor[{name!r}] must be a Monitor or a bool, got {type(item).__name__}"
                    )
        return cls(option, options)

    # -- set-up ------------------------------------------------------------------------------

    def start(
        self,
        app: App,
        served: Mapping[str, ServedModel],
        registry: Registry | str | None,
    ) -> None:
        """Build one monitor per served model; ``registry`` takes the alerts and has the labels.

        A :class:`~modelkit.Registry` is reopened (connections of its own, closed by
        :meth:`close`); a URL is opened; ``None`` opens the default registry only when some
        model comes from a registry.
        """
        self._app = app
        chosen = self._chosen(served)
        if registry is not None or any(entry.artifact is not None for entry in served.values()):
            self._open(registry)
        for name, given in chosen.items():
            entry = served[name]
            self.health.model_loaded(name, entry.load_seconds)
            watch = self._watch(entry, given)
            if watch is not None:
                self._watches[name] = watch
        if self._watches:
            logger.info("monitoring %s", ", ".join(self._watches))
            # The drift tests' special functions: import them now, before serving (and, under
            # a pre-fork server, once for every worker), not in the first window's check.
            import scipy.special  # noqa: F401
        slo = self.options.slo
        self._timed = any(w.tracker is not None for w in self._watches.values()) or any(
            limit is not None for limit in (slo.p99_seconds, slo.error_rate, slo.queue_depth)
        )

    def _chosen(self, served: Mapping[str, ServedModel]) -> dict[str, Monitor | None]:
        """The served models to monitor, each with the monitor given for it (or ``None``)."""
        option = self.option
        if isinstance(option, Monitor) and len(served) != 1:
            raise ServingError(
                f"monitor=Monitor(...) is for one served model, but {len(served)} are "
                "served; pass a mapping of model name to Monitor instead"
            )
        if isinstance(option, Mapping):
            unknown = sorted(set(option) - set(served) - {"*"})
            if unknown:
                raise ServingError(
                    f"monitor names models that are not served: {unknown} (serving: "
                    f"{sorted(served)})"
                )
        choices = {name: self._choice(name) for name in served}
        return {
            name: item if isinstance(item, Monitor) else None
            for name, item in choices.items()
            if item is not False
        }

    def _choice(self, name: str) -> Monitor | bool:
        """What the ``monitor`` option says for served model ``name``."""
        option = self.option
        if isinstance(option, Mapping):
            return option.get(name, option.get("*", True))
        return option

    def _open(self, registry: Registry | str | None) -> None:
        try:
            self.registry, self._owns_registry = own_registry(registry)
        except ModelkitError as exc:
            logger.warning("monitoring stores no alert: cannot open the registry (%s)", exc)
        self.health.registry = self.registry

    def _watch(self, served: ServedModel, given: Monitor | None) -> _Watch | None:
        """The monitoring of one served version (``None``: nothing to compare it with)."""
        artifact = served.artifact
        version = None if served.version is None else int(served.version)
        if given is not None:
            monitor = attrs.evolve(
                given, name=served.name, version=version, registry=given.registry or self.registry
            )
        elif artifact is not None and artifact.profile is not None:
            monitor = Monitor.from_artifact(
                artifact,
                name=served.name,
                version=version,
                registry=self.registry,
                window=self.options.window,
            )
        else:
            logger.info(
                "model %r is not monitored for drift: it has no reference (serve it from a "
                "registry, its artifact saved with a profile, or pass monitor=Monitor.fit(...))",
                served.name,
            )
            return None
        start = _now()
        if artifact is not None:
            try:
                start = artifact.manifest.created_at
            except Exception:  # an artifact built in memory has no manifest
                start = _now()
        return _Watch(
            served=served,
            monitor=monitor,
            given=given is not None,
            tracker=self._tracker(served, monitor),
            start=start,
            since=start,
        )

    def _tracker(self, served: ServedModel, monitor: Monitor) -> PerformanceTracker | None:
        artifact = served.artifact
        if (
            not self.options.performance
            or self.registry is None
            or artifact is None
            or served.version is None
        ):
            return None
        from modelkit.monitoring.performance import PerformanceTracker

        model = served.model
        classes = model.classes
        try:
            return PerformanceTracker(
                baseline=artifact.metrics,
                name=served.name,
                monitor=monitor,
                classes=None if classes is None else classes.tolist(),
                scorer=_probabilities(model) if "predict_proba" in model.methods else None,
            )
        except UsageError:  # no metric it can track in the manifest
            return None

    # -- the request path --------------------------------------------------------------------

    def batch_observer(self, served: ServedModel) -> Callable[[ServedModel, Any, Any], None] | None:
        """:meth:`submit` for a batch of ``served`` about to be computed, or ``None`` when that
        version is not monitored (the batch then hands nothing over). Starts the timer in
        this process if it has not started yet (so a batch whose requests all fail starts it
        too)."""
        if self._thread is None and self._timed:
            self._spawn()
        watch = self._watches.get(served.name)
        return None if watch is None or watch.served is not served else self.submit

    def submit(self, served: ServedModel, inputs: Any, outputs: Any) -> None:
        """Hand a computed batch over (its checked rows and ``predict`` outputs); never blocks.

        Batches of a version no longer served (computed across a swap) are left out.
        """
        watch = self._watches.get(served.name)
        if watch is None or watch.served is not served:
            return
        observer = watch.observer
        if observer is None:
            observer = self._observer(watch)
            if observer is None:
                return
        observer.submit(inputs, outputs)

    def _observer(self, watch: _Watch) -> AsyncObserver | None:
        """The observer of ``watch``, started in this process on its first batch."""
        with self._lock:
            if self._closed:
                return None
            if watch.observer is None:
                watch.observer = AsyncObserver(watch.monitor, max_delay=self.options.max_delay)
        self._spawn()
        return watch.observer

    def _spawn(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed or not self._timed:
                return
            self._thread = threading.Thread(
                target=self._run, name="modelkit-monitoring-checks", daemon=True
            )
            self._thread.start()

    # -- swaps and the drain -----------------------------------------------------------------

    def swapped(self, old: ServedModel, new: ServedModel) -> None:
        """``new`` serves in place of ``old``: a fresh monitor for it, the old one closed."""
        self.health.model_loaded(new.name, new.load_seconds)
        with self._lock:
            previous = self._watches.pop(old.name, None)
        if previous is None and self._choice(new.name) is False:
            return
        given = previous.monitor if previous is not None and previous.given else None
        try:
            watch = self._watch(new, given)
        except Exception as exc:
            warn(f"cannot monitor version {new.version} of {new.name!r}: {exc}")
            watch = None
        with self._lock:
            if watch is not None and not self._closed:
                self._watches[new.name] = watch
                self._timed = self._timed or watch.tracker is not None
        if previous is not None and previous.observer is not None:
            previous.observer.flush(self.options.max_delay + 5.0)
            previous.observer.close()

    def close(self, timeout: float = 5.0) -> bool:
        """Observe what is waiting (at most ``timeout`` seconds), stop the threads; ``True``
        when everything waiting was observed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            watches = list(self._watches.values())
            thread = self._thread
        self._stop.set()
        done = True
        for watch in watches:
            observer = watch.observer
            if observer is not None:
                done = observer.flush(max(0.0, deadline - time.monotonic())) and done
                observer.close(max(0.0, deadline - time.monotonic()))
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.registry is not None and self._owns_registry:
            try:
                self.registry.close()
            except Exception as exc:
                logger.warning("could not close the registry %s: %s", self.registry.url, exc)
            self._owns_registry = False
        return done

    def _after_fork(self) -> None:
        """In a forked child: no thread of the parent's runs here; start afresh on demand."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        for watch in self._watches.values():
            watch.observer = None

    # -- the timer ---------------------------------------------------------------------------

    def _run(self) -> None:
        every = self.options.check_every
        while not self._stop.wait(every * random.uniform(0.8, 1.2)):  # noqa: S311 - jitter
            labels = time.monotonic() >= self._labels_due
            self.check_now(labels=labels)

    def labels_received(self) -> None:
        """Labels were just stored (``POST /feedback`` here): read them at the next check."""
        self._labels_wait = self.options.check_every
        self._labels_due = 0.0

    def _sync(self) -> None:
        """Bring the health figures up to date from the application's own metrics."""
        app = self._app
        if app is None:
            return
        self.health.set_queue_depth(app.thread_batcher.waiting + app.async_batcher.waiting)
        for model, (counts, errors, total, seconds) in app.metrics.latency_by_model().items():
            self.health.observe_totals(model, counts, errors=errors, total=total, seconds=seconds)

    def check_now(self, *, labels: bool = True) -> None:
        """Check the SLOs and (with ``labels``) read the new labels and check performance now.

        The timer does it every ``check_every`` seconds; it reads labels less often while
        none come (twice the wait after each empty read, up to :data:`MAX_LABELS_WAIT`),
        and at the next check again once ``POST /feedback`` took some here.
        """
        started = time.thread_time()
        try:
            self._sync()
        except Exception as exc:
            warn(f"health figures not updated: {exc}")
        fresh = 0
        for watch in list(self._watches.values()) if labels else []:
            if watch.tracker is not None:
                try:
                    fresh += self._performance(watch, watch.tracker)
                except Exception as exc:
                    warn(f"performance of {watch.served.name!r} not checked: {exc}")
        if labels:
            every = self.options.check_every
            self._labels_wait = every if fresh else min(2 * self._labels_wait, MAX_LABELS_WAIT)
            self._labels_due = time.monotonic() + self._labels_wait
        try:
            self.health.check()
        except Exception as exc:
            warn(f"service-level objectives not checked: {exc}")
        self.checks += 1
        self.cpu_seconds += time.thread_time() - started

    def _performance(self, watch: _Watch, tracker: PerformanceTracker) -> int:
        """Read the labels that came since the last read; check performance; return how many."""
        registry = self.registry
        assert registry is not None
        name, version = watch.served.name, watch.version
        fresh = self._fresh(watch, registry.feedback(name, since=watch.since))
        if not fresh:
            return 0
        tracker.add_feedback([f for f in fresh if f.version == version])
        now = _now()
        for report in tracker.check():  # calls on_performance_drop for a new drop
            if report.status == "ok":
                watch.healthy_since[report.metric] = now
                watch.alerted.discard(report.metric)
            elif report.drop and report.metric not in watch.alerted:
                watch.alerted.add(report.metric)
                self._store_drop(watch, report.metric, report.to_dict())
        return len(fresh)

    @staticmethod
    def _fresh(watch: _Watch, feedback: list[Feedback]) -> list[Feedback]:
        """The labels not read before; moves the watch's place in the feedback forward."""
        fresh = [
            f
            for f in feedback
            if not (f.received_at == watch.since and f.prediction_id in watch.seen)
        ]
        if fresh:
            last = max(f.received_at for f in fresh)
            if last > watch.since:
                watch.since, watch.seen = last, set()
            watch.seen.update(f.prediction_id for f in fresh if f.received_at == last)
        return fresh

    def _store_drop(self, watch: _Watch, metric: str, details: dict[str, Any]) -> None:
        """Store a performance drop, unless another process stored it in this episode."""
        from modelkit.monitoring.alerts import already_stored, store_alert

        registry = self.registry
        assert registry is not None
        name, version = watch.served.name, watch.version
        since = watch.healthy_since.get(metric, watch.start)
        if already_stored(
            registry, name, "performance", since=since, version=version, match={"metric": metric}
        ):
            return
        store_alert(registry, watch.monitor, "performance", details, name=name, version=version)

    # -- figures -----------------------------------------------------------------------------

    def monitor(self, name: str) -> Monitor | None:
        """The monitor of served model ``name`` now (``None``: not monitored)."""
        watch = self._watches.get(name)
        return None if watch is None else watch.monitor

    def flush(self, timeout: float = 5.0) -> bool:
        """Observe every batch handed over so far now; ``False`` on timeout (for tests)."""
        deadline = time.monotonic() + timeout
        done = True
        for watch in list(self._watches.values()):
            if watch.observer is not None:
                done = watch.observer.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def render(self) -> str:
        """Health over the SLO window and the observers' counts, for ``/metrics``."""
        watches = sorted(self._watches.items())
        lines: list[str] = []
        for metric, what, about in _COUNTERS:
            lines += [
                f"# HELP modelkit_monitor_{metric} {about}",
                f"# TYPE modelkit_monitor_{metric} counter",
            ]
            lines += [
                f'modelkit_monitor_{metric}{{model="{_escape(name)}"}} {_count(w, what)}'
                for name, w in watches
            ]
        lines += [
            "# HELP modelkit_background_cpu_seconds_total CPU time of the background work: drift "
            "observers, label and SLO checks, prediction recording.",
            "# TYPE modelkit_background_cpu_seconds_total counter",
        ]
        lines += [
            f'modelkit_background_cpu_seconds_total{{task="drift",model="{_escape(name)}"}} '
            f"{0.0 if w.observer is None else w.observer.cpu_seconds!r}"
            for name, w in watches
        ]
        lines.append(
            f'modelkit_background_cpu_seconds_total{{task="checks",model=""}} {self.cpu_seconds!r}'
        )
        recorder = None if self._app is None else self._app.recorder
        if recorder is not None:
            lines.append(
                'modelkit_background_cpu_seconds_total{task="record",model=""} '
                f"{recorder.cpu_seconds!r}"
            )
        self._sync()
        return self.health.render(full=False) + "\n".join(lines) + "\n"


_COUNTERS = (
    ("rows_total", "rows", "Rows observed for drift."),
    ("windows_total", "windows", "Drift windows closed and checked."),
    ("batches_dropped_total", "dropped", "Batches not observed: the queue was full."),
    ("failures_total", "failed", "Batches a monitor failed on (skipped, with a warning)."),
)


def _probabilities(model: Model) -> Callable[[list[Any]], Any]:
    """Class probabilities of recorded input rows, for the tracker's AUC (in its thread,
    on labelled rows only: the request path computes nothing more)."""

    def score(rows: list[Any]) -> Any:
        checked, has_missing = model.signature.check(rows)
        return model.call("predict_proba", checked, has_missing=has_missing, observed=False)

    return score


def _count(watch: _Watch, what: str) -> int:
    observer = watch.observer
    return 0 if observer is None else int(getattr(observer, what))


def _now() -> datetime:
    return datetime.now(timezone.utc)
