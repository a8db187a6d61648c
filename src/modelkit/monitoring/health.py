"""Infrastructure health: latency, errors, throughput, queue depth, load time, and SLO alerts.

A :class:`HealthTracker` is fed request by request (``observe_request``) or from cumulative
figures kept elsewhere (``observe_totals``: what a serving application does with its own
request metrics, every few seconds), plus ``set_queue_depth`` and ``model_loaded``. It
renders its figures in the Prometheus text format for ``/metrics``
(:meth:`HealthTracker.render`) and checks service-level objectives (:class:`SLO`) over a
sliding time window::

    health = HealthTracker(slo=SLO(p99_seconds=0.250, error_rate=0.01))
    health.observe_request("churn", seconds=0.012, ok=True)
    for alert in health.check():      # also calls the on_health_alert hook
        print(alert.rule, alert.value, alert.limit)

The window is made of ten panes of ``window_seconds / 10``: memory is constant (one latency
histogram per pane and model). Every method is thread-safe and O(1) per request.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import UsageError

if TYPE_CHECKING:
    from modelkit.registry import Registry

__all__ = ["LATENCY_BUCKETS", "SLO", "HealthAlert", "HealthTracker"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram; ``+Inf`` is implied."""
PANES = 10
RULES = ("latency_p99", "error_rate", "queue_depth")


def _optional_positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise UsageError(f"{attribute.name} must be a positive number or None, got {value!r}")


@attrs.frozen(kw_only=True)
class SLO:
    """Service-level objectives; ``None`` disables a rule.

    ``p99_seconds``: the 99th latency percentile must stay below it; ``error_rate``: the
    share of failed requests (status 5xx) must stay below it; ``queue_depth``: requests
    waiting. Latency and error rules need ``min_requests`` requests in the window.
    """

    p99_seconds: float | None = attrs.field(default=None, validator=_optional_positive)
    error_rate: float | None = attrs.field(default=None, validator=_optional_positive)
    queue_depth: float | None = attrs.field(default=None, validator=_optional_positive)
    min_requests: int = 100


@attrs.frozen(kw_only=True)
class HealthAlert:
    """A broken objective: ``rule`` (``latency_p99``, ``error_rate``, ``queue_depth``) of
    ``model`` (``""``: the whole server), the observed ``value`` and the ``limit``, over the
    last ``window_seconds`` (``requests`` of them)."""

    rule: str
    model: str
    value: float
    limit: float
    window_seconds: float
    requests: int
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = attrs.asdict(self)
        out["at"] = self.at.isoformat()
        return out


@attrs.define
class _Pane:
    counts: list[int] = attrs.field(factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    errors: int = 0
    total: int = 0
    seconds: float = 0.0

    def add(self, counts: list[int], *, errors: int, total: int, seconds: float) -> None:
        """Add the figures of other requests (a histogram's counts and their sums)."""
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        self.errors += errors
        self.total += total
        self.seconds += seconds


def _quantile(counts: list[int], q: float) -> float:
    """Upper-bound estimate of a quantile from histogram counts (Prometheus style)."""
    total = sum(counts)
    if not total:
        return math.nan
    rank = q * total
    running = 0
    lower = 0.0
    for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
        if running + count >= rank and count:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - running) / count
        running += count
        lower = bound
    return lower


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@attrs.define(kw_only=True)
class HealthTracker:
    """Health figures of a served application, and SLO checks over a sliding window.

    ``clock`` returns seconds (monotonic); tests pass a fake one. ``registry`` (optional)
    stores every alert.
    """

    slo: SLO = attrs.field(factory=SLO)
    window_seconds: float = 60.0
    registry: Registry | None = None
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _panes: dict[str, dict[int, _Pane]] = attrs.field(init=False, factory=dict)
    _totals: dict[str, _Pane] = attrs.field(init=False, factory=dict)
    _queue: int = attrs.field(init=False, default=0)
    _load: dict[str, float] = attrs.field(init=False, factory=dict)
    _firing: set[tuple[str, str]] = attrs.field(init=False, factory=set)
    _seen: dict[str, tuple[list[int], int, int, float]] = attrs.field(init=False, factory=dict)

    def _pane_id(self) -> int:
        return math.floor(self.clock() / (self.window_seconds / PANES))

    def observe_request(self, model: str, seconds: float, *, ok: bool) -> None:
        """Count one request of ``model`` that took ``seconds``; ``ok=False`` for a 5xx."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        pane_id = self._pane_id()
        with self._lock:
            for target in self._targets(model, pane_id):
                target.counts[index] += 1
                target.total += 1
                target.errors += not ok
                target.seconds += seconds

    def observe_totals(
        self, model: str, counts: list[int], *, errors: int, total: int, seconds: float
    ) -> None:
        """Count the requests of ``model`` from cumulative figures kept elsewhere.

        ``counts`` is a cumulative latency histogram on :data:`LATENCY_BUCKETS` (one more
        count for ``+Inf``), ``errors`` the 5xx answers among the ``total`` requests,
        ``seconds`` their total latency: what a serving application's own metrics keep. What
        grew since the previous call counts as requests of now, so calling this every few
        seconds (instead of :meth:`observe_request` per request) costs nothing per request.
        """
        if len(counts) != len(LATENCY_BUCKETS) + 1:
            raise UsageError(
                f"counts must have {len(LATENCY_BUCKETS) + 1} values (the latency buckets and "
                f"+Inf), got {len(counts)}"
            )
        pane_id = self._pane_id()
        with self._lock:
            before = self._seen.get(model)
            self._seen[model] = (list(counts), errors, total, seconds)
            if before is not None and total >= before[2]:  # else counted afresh (a reset)
                counts = [now - then for now, then in zip(counts, before[0], strict=True)]
                errors, total, seconds = errors - before[1], total - before[2], seconds - before[3]
            if total <= 0:
                return
            for target in self._targets(model, pane_id):
                target.add(counts, errors=errors, total=total, seconds=seconds)

    def _targets(self, model: str, pane_id: int) -> tuple[_Pane, _Pane]:
        """The current pane of ``model`` (panes out of the window dropped) and its totals.

        Call with the lock held.
        """
        panes = self._panes.setdefault(model, {})
        pane = panes.get(pane_id)
        if pane is None:
            pane = panes[pane_id] = _Pane()
            for old in [k for k in panes if k <= pane_id - PANES]:
                del panes[old]
        totals = self._totals.get(model)
        if totals is None:
            totals = self._totals[model] = _Pane()
        return pane, totals

    def set_queue_depth(self, depth: int) -> None:
        """Record how many requests are waiting (micro-batching queue, worker backlog)."""
        with self._lock:
            self._queue = int(depth)

    def model_loaded(self, model: str, seconds: float) -> None:
        """Record how long loading (and verifying) ``model`` took."""
        with self._lock:
            self._load[model] = float(seconds)

    def _window(self, model: str) -> _Pane:
        now = self._pane_id()
        merged = _Pane()
        for pane_id, pane in self._panes.get(model, {}).items():
            if pane_id > now - PANES:
                merged.add(pane.counts, errors=pane.errors, total=pane.total, seconds=pane.seconds)
        return merged

    def check(self) -> list[HealthAlert]:
        """Check every objective; return (and report) the rules that newly broke.

        A broken rule calls ``on_health_alert`` once, then again only after it recovered.
        """
        slo = self.slo
        now = datetime.now(timezone.utc)
        found: list[HealthAlert] = []
        broken: set[tuple[str, str]] = set()
        with self._lock:
            models = list(self._panes)
            windows = {m: self._window(m) for m in models}
            queue_depth = self._queue
        for model, pane in windows.items():
            values = {}
            if pane.total >= slo.min_requests:
                values["latency_p99"] = (_quantile(pane.counts, 0.99), slo.p99_seconds)
                values["error_rate"] = (pane.errors / pane.total, slo.error_rate)
            for rule, (value, limit) in values.items():
                if limit is not None and value > limit:
                    broken.add((rule, model))
                    found.append(
                        self._alert(rule, model, value, limit, requests=pane.total, at=now)
                    )
        if slo.queue_depth is not None and queue_depth > slo.queue_depth:
            broken.add(("queue_depth", ""))
            found.append(
                self._alert("queue_depth", "", queue_depth, slo.queue_depth, requests=0, at=now)
            )
        new = [a for a in found if (a.rule, a.model) not in self._firing]
        self._firing = broken
        for alert in new:
            self._report(alert)
        return new

    def _alert(
        self, rule: str, model: str, value: float, limit: float, *, requests: int, at: datetime
    ) -> HealthAlert:
        return HealthAlert(
            rule=rule,
            model=model,
            value=float(value),
            limit=float(limit),
            window_seconds=self.window_seconds,
            requests=requests,
            at=at,
        )

    def _report(self, alert: HealthAlert) -> None:
        from modelkit.plugins import notify

        notify("on_health_alert", alert=alert)
        if self.registry is not None:
            from modelkit.monitoring.alerts import store_alert

            store_alert(
                self.registry, None, "health", alert.to_dict(), at=alert.at, name=alert.model
            )

    def render(self, *, full: bool = True) -> str:
        """The figures in the Prometheus text exposition format (for ``/metrics``).

        ``full=False`` leaves out what a serving application's own metrics already export
        (the latency histogram, error counts, queue depth and load time, see
        :mod:`modelkit.serving.metrics`) and renders only the figures over the SLO window
        (p99 latency, error rate, throughput), the objectives and which of them are broken.
        """
        with self._lock:
            totals = {
                m: (list(p.counts), p.total, p.errors, p.seconds) for m, p in self._totals.items()
            }
            windows = {m: self._window(m) for m in self._panes}
            queue_depth = self._queue
            load = dict(self._load)
            firing = sorted(self._firing)
        lines = self._render_window(windows, firing)
        if not full:
            return "\n".join(lines) + "\n"
        lines += [
            "# HELP modelkit_monitor_request_seconds Request latency seen by the monitor.",
            "# TYPE modelkit_monitor_request_seconds histogram",
        ]
        for model, (counts, total, _, seconds) in sorted(totals.items()):
            label = f'model="{_escape(model)}"'
            running = 0
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                running += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(
                    f'modelkit_monitor_request_seconds_bucket{{{label},le="{le}"}} {running}'
                )
            lines.append(f"modelkit_monitor_request_seconds_sum{{{label}}} {seconds!r}")
            lines.append(f"modelkit_monitor_request_seconds_count{{{label}}} {total}")
        lines += [
            "# HELP modelkit_monitor_errors_total Requests that failed (5xx).",
            "# TYPE modelkit_monitor_errors_total counter",
        ]
        lines += [
            f'modelkit_monitor_errors_total{{model="{_escape(m)}"}} {errors}'
            for m, (_, _, errors, _) in sorted(totals.items())
        ]
        lines += [
            "# HELP modelkit_monitor_queue_depth Requests waiting.",
            "# TYPE modelkit_monitor_queue_depth gauge",
            f"modelkit_monitor_queue_depth {queue_depth}",
            "# HELP modelkit_monitor_model_load_seconds Time to load and verify a model.",
            "# TYPE modelkit_monitor_model_load_seconds gauge",
        ]
        lines += [
            f'modelkit_monitor_model_load_seconds{{model="{_escape(m)}"}} {s!r}'
            for m, s in sorted(load.items())
        ]
        return "\n".join(lines) + "\n"

    def _render_window(self, windows: dict[str, _Pane], firing: list[tuple[str, str]]) -> list[str]:
        """Throughput, p99 latency and error rate over the window; objectives; breaches."""
        lines = [
            "# HELP modelkit_monitor_throughput Requests per second over the window.",
            "# TYPE modelkit_monitor_throughput gauge",
        ]
        lines += [
            f'modelkit_monitor_throughput{{model="{_escape(m)}"}} '
            f"{pane.total / self.window_seconds!r}"
            for m, pane in sorted(windows.items())
        ]
        lines += [
            "# HELP modelkit_monitor_window_latency_seconds Latency quantile over the window.",
            "# TYPE modelkit_monitor_window_latency_seconds gauge",
        ]
        lines += [
            f'modelkit_monitor_window_latency_seconds{{model="{_escape(m)}",quantile="0.99"}} '
            f"{_quantile(pane.counts, 0.99)!r}"
            for m, pane in sorted(windows.items())
            if pane.total
        ]
        lines += [
            "# HELP modelkit_monitor_error_rate Share of requests that failed over the window.",
            "# TYPE modelkit_monitor_error_rate gauge",
        ]
        lines += [
            f'modelkit_monitor_error_rate{{model="{_escape(m)}"}} {pane.errors / pane.total!r}'
            for m, pane in sorted(windows.items())
            if pane.total
        ]
        limits = {
            "latency_p99": self.slo.p99_seconds,
            "error_rate": self.slo.error_rate,
            "queue_depth": self.slo.queue_depth,
        }
        lines += [
            "# HELP modelkit_monitor_slo_limit A service-level objective (its limit).",
            "# TYPE modelkit_monitor_slo_limit gauge",
        ]
        lines += [
            f'modelkit_monitor_slo_limit{{rule="{rule}"}} {float(limit)!r}'
            for rule, limit in limits.items()
            if limit is not None
        ]
        lines += [
            "# HELP modelkit_monitor_slo_breached 1 while an objective is broken.",
            "# TYPE modelkit_monitor_slo_breached gauge",
        ]
        lines += [
            f'modelkit_monitor_slo_breached{{rule="{rule}",model="{_escape(model)}"}} 1'
            for rule, model in firing
        ]
        return lines
