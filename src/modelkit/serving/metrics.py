"""Serving metrics in the Prometheus text exposition format, with no dependency.

One :class:`Metrics` object per served application counts requests and their latency per
route, model and status, tracks the requests in flight, and describes the served models
(load time, version, artifact hash)::

    modelkit_requests_total{route="/predict",model="seed",status="200"} 12
    modelkit_request_duration_seconds_bucket{route="/predict",…,le="0.005"} 9
    modelkit_requests_in_flight 1
    modelkit_model_info{model="seed",version="3",sha256="ab…",uri="seed@production"} 1

``route`` is the route template (``/v2/models/{name}/infer``), never the raw path, and
``model`` is a served model's name or ``""``, so that clients cannot grow the number of
series. Every method is thread-safe.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

import attrs

__all__ = ["BATCH_BUCKETS", "CONTENT_TYPE", "DEFAULT_BUCKETS", "STAGES", "STAGE_BUCKETS", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of the exposition format."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the request latency histogram; ``+Inf`` is implied."""

STAGES = ("queue", "batch", "model", "codec")
"""The stages of a computed request, as in its ``Server-Timing`` header: waiting for a batch,
the batch's own work (checking, joining, splitting), the estimator, and everything else
(decoding the body, encoding the answer, the HTTP layer)."""

STAGE_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
"""Upper bounds (seconds) of the per-stage histograms: stages are often microseconds."""

BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds of the batch size histogram (requests per batch)."""

_RequestKey = tuple[str, str, str]  # route, model, status


def _bounds(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(sorted(float(v) for v in values))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@attrs.define
class _Histogram:
    counts: list[int]
    total: float = 0.0
    count: int = 0


def _add(histogram: _Histogram, bounds: tuple[float, ...], value: float) -> None:
    index = bisect.bisect_left(bounds, value)
    if index < len(bounds):
        histogram.counts[index] += 1
    histogram.total += value
    histogram.count += 1


def _render_histogram(
    add: Callable[[str], None],
    name: str,
    base: list[tuple[str, str]],
    bounds: tuple[float, ...],
    histogram: _Histogram,
) -> None:
    cumulative = 0
    for bound, count in zip(bounds, histogram.counts, strict=True):
        cumulative += count
        add(f"{name}_bucket{_labels([*base, ('le', _number(bound))])} {cumulative}")
    add(f"{name}_bucket{_labels([*base, ('le', '+Inf')])} {histogram.count}")
    add(f"{name}_sum{_labels(base)} {_number(histogram.total)}")
    add(f"{name}_count{_labels(base)} {histogram.count}")


@attrs.frozen
class _ModelInfo:
    version: str
    uri: str
    sha256: str
    load_seconds: float


@attrs.define
class Metrics:
    """Request counters, latency histograms, in-flight gauge and model descriptions."""

    buckets: tuple[float, ...] = attrs.field(default=DEFAULT_BUCKETS, converter=_bounds)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _requests: dict[_RequestKey, _Histogram] = attrs.field(factory=dict, init=False, repr=False)
    _rows: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _swaps: dict[tuple[str, str], int] = attrs.field(factory=dict, init=False, repr=False)
    _models: dict[str, _ModelInfo] = attrs.field(factory=dict, init=False, repr=False)
    _in_flight: int = attrs.field(default=0, init=False, repr=False)
    _stages: dict[str, _Histogram] = attrs.field(factory=dict, init=False, repr=False)
    _batches: _Histogram = attrs.field(
        factory=lambda: _Histogram([0] * len(BATCH_BUCKETS)), init=False, repr=False
    )
    queued: int = attrs.field(default=0, init=False, repr=False)
    """Requests waiting for a batch (set by the application before rendering)."""
    _ready: bool = attrs.field(default=False, init=False, repr=False)

    # -- recording ---------------------------------------------------------------------------

    def observe(
        self,
        route: str,
        model: str,
        status: int,
        seconds: float,
        *,
        stages: dict[str, float] | None = None,
        batch_size: int = 0,
    ) -> None:
        """Count one finished request and its latency.

        For a computed request, also the time of each of its ``stages`` and its batch's size
        (as :meth:`stages` does), under the same lock.
        """
        key = (route, model, str(status))
        with self._lock:
            histogram = self._requests.get(key)
            if histogram is None:
                histogram = self._requests[key] = _Histogram([0] * len(self.buckets))
            _add(histogram, self.buckets, seconds)
            if stages is not None:
                self._add_stages(stages, batch_size)

    def stages(self, seconds: dict[str, float], batch_size: int) -> None:
        """Count one computed request: the time of each of its stages, its batch's size."""
        with self._lock:
            self._add_stages(seconds, batch_size)

    def _add_stages(self, seconds: dict[str, float], batch_size: int) -> None:
        for stage, value in seconds.items():
            histogram = self._stages.get(stage)
            if histogram is None:
                histogram = self._stages[stage] = _Histogram([0] * len(STAGE_BUCKETS))
            _add(histogram, STAGE_BUCKETS, value)
        _add(self._batches, BATCH_BUCKETS, batch_size)

    def swapped(self, model: str, outcome: str) -> None:
        """Count a hot swap of ``model``: ``"swapped"``, or ``"refused"`` (the old one stays)."""
        with self._lock:
            key = (model, outcome)
            self._swaps[key] = self._swaps.get(key, 0) + 1

    def predicted(self, model: str, rows: int) -> None:
        """Count ``rows`` rows predicted by ``model``."""
        with self._lock:
            self._rows[model] = self._rows.get(model, 0) + rows

    def enter(self) -> None:
        """A request started (for servers that count their own; an App sets ``in_flight``)."""
        with self._lock:
            self._in_flight += 1

    def leave(self) -> None:
        """A request finished."""
        with self._lock:
            self._in_flight -= 1

    def set_ready(self, ready: bool) -> None:
        """Whether the application accepts predictions (the ``modelkit_ready`` gauge)."""
        with self._lock:
            self._ready = ready

    def describe_model(
        self,
        name: str,
        *,
        version: str | None,
        uri: str | None,
        sha256: str | None,
        load_seconds: float,
    ) -> None:
        """Record a served model: its version, source URI, artifact hash and load time."""
        with self._lock:
            self._models[name] = _ModelInfo(version or "", uri or "", sha256 or "", load_seconds)

    # -- reading -----------------------------------------------------------------------------

    def requests(self) -> dict[_RequestKey, int]:
        """How many requests finished, by ``(route, model, status)``."""
        with self._lock:
            return {key: histogram.count for key, histogram in self._requests.items()}

    def latency_by_model(self) -> dict[str, tuple[list[int], int, int, float]]:
        """Per served model, every route and status together: the latency histogram's counts
        (the last one for ``+Inf``), the errors (5xx), the requests and their total seconds.

        Cumulative figures, for :meth:`HealthTracker.observe_totals
        <modelkit.monitoring.HealthTracker.observe_totals>`.
        """
        found: dict[str, tuple[list[int], int, int, float]] = {}
        with self._lock:
            for (_, model, status), histogram in self._requests.items():
                if not model:
                    continue
                counts, errors, total, seconds = found.get(
                    model, ([0] * (len(self.buckets) + 1), 0, 0, 0.0)
                )
                for index, count in enumerate(histogram.counts):
                    counts[index] += count
                counts[-1] += histogram.count - sum(histogram.counts)
                if status.isdigit() and int(status) >= 500:
                    errors += histogram.count
                found[model] = (counts, errors, total + histogram.count, seconds + histogram.total)
        return found

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now."""
        return self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._in_flight = value

    def render(self) -> str:
        """The exposition text (format 0.0.4) of every metric."""
        with self._lock:
            requests = {
                key: attrs.evolve(histogram, counts=list(histogram.counts))
                for key, histogram in self._requests.items()
            }
            rows = dict(self._rows)
            swaps = dict(self._swaps)
            models = dict(self._models)
            in_flight, ready = self._in_flight, self._ready
            stages = {
                name: attrs.evolve(histogram, counts=list(histogram.counts))
                for name, histogram in self._stages.items()
            }
            batches = attrs.evolve(self._batches, counts=list(self._batches.counts))
        from modelkit._version import __version__

        lines: list[str] = []
        add = lines.append
        add("# HELP modelkit_build_info The modelkit version serving these models.")
        add("# TYPE modelkit_build_info gauge")
        add(f"modelkit_build_info{_labels([('version', __version__)])} 1")
        add("# HELP modelkit_requests_total HTTP requests answered, by route, model and status.")
        add("# TYPE modelkit_requests_total counter")
        for (route, model, status), histogram in sorted(requests.items()):
            labels = _labels([("route", route), ("model", model), ("status", status)])
            add(f"modelkit_requests_total{labels} {histogram.count}")
        add("# HELP modelkit_request_duration_seconds Time to answer a request, in seconds.")
        add("# TYPE modelkit_request_duration_seconds histogram")
        for (route, model, status), histogram in sorted(requests.items()):
            base = [("route", route), ("model", model), ("status", status)]
            _render_histogram(
                add, "modelkit_request_duration_seconds", base, self.buckets, histogram
            )
        add(
            "# HELP modelkit_request_stage_seconds Time computed requests spent in each stage "
            "(queue, batch, model, codec), as in their Server-Timing header."
        )
        add("# TYPE modelkit_request_stage_seconds histogram")
        for stage in STAGES:
            if stage in stages:
                _render_histogram(
                    add,
                    "modelkit_request_stage_seconds",
                    [("stage", stage)],
                    STAGE_BUCKETS,
                    stages[stage],
                )
        add("# HELP modelkit_batch_size Requests per computed batch, counted per request.")
        add("# TYPE modelkit_batch_size histogram")
        _render_histogram(add, "modelkit_batch_size", [], BATCH_BUCKETS, batches)
        add("# HELP modelkit_requests_queued Requests waiting for a batch.")
        add("# TYPE modelkit_requests_queued gauge")
        add(f"modelkit_requests_queued {self.queued}")
        add("# HELP modelkit_requests_in_flight Requests being handled right now.")
        add("# TYPE modelkit_requests_in_flight gauge")
        add(f"modelkit_requests_in_flight {in_flight}")
        add("# HELP modelkit_ready Whether the server accepts predictions (1) or not (0).")
        add("# TYPE modelkit_ready gauge")
        add(f"modelkit_ready {int(ready)}")
        add("# HELP modelkit_prediction_rows_total Rows predicted, by model.")
        add("# TYPE modelkit_prediction_rows_total counter")
        for model, count in sorted(rows.items()):
            add(f"modelkit_prediction_rows_total{_labels([('model', model)])} {count}")
        _render_models(add, models, swaps)
        return "\n".join(lines) + "\n"


def _render_models(
    add: Callable[[str], None],
    models: dict[str, _ModelInfo],
    swaps: dict[tuple[str, str], int],
) -> None:
    add("# HELP modelkit_model_swaps_total Hot swaps to a new version, by model and outcome.")
    add("# TYPE modelkit_model_swaps_total counter")
    for (model, outcome), count in sorted(swaps.items()):
        labels = _labels([("model", model), ("outcome", outcome)])
        add(f"modelkit_model_swaps_total{labels} {count}")
    add("# HELP modelkit_model_load_seconds Time taken to resolve, verify and load a model.")
    add("# TYPE modelkit_model_load_seconds gauge")
    for model, info in sorted(models.items()):
        labels = _labels([("model", model), ("version", info.version)])
        add(f"modelkit_model_load_seconds{labels} {_number(info.load_seconds)}")
    add("# HELP modelkit_model_info The served models: version, source URI, artifact sha256.")
    add("# TYPE modelkit_model_info gauge")
    for model, info in sorted(models.items()):
        labels = _labels(
            [
                ("model", model),
                ("version", info.version),
                ("uri", info.uri),
                ("sha256", info.sha256),
            ]
        )
        add(f"modelkit_model_info{labels} 1")
