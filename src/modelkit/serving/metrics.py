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
from collections.abc import Iterable

import attrs

__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "Metrics"]

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
    _models: dict[str, _ModelInfo] = attrs.field(factory=dict, init=False, repr=False)
    _in_flight: int = attrs.field(default=0, init=False, repr=False)
    _ready: bool = attrs.field(default=False, init=False, repr=False)

    # -- recording ---------------------------------------------------------------------------

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        key = (route, model, str(status))
        index = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            histogram = self._requests.get(key)
            if histogram is None:
                histogram = self._requests[key] = _Histogram([0] * len(self.buckets))
            if index < len(self.buckets):
                histogram.counts[index] += 1
            histogram.total += seconds
            histogram.count += 1

    def predicted(self, model: str, rows: int) -> None:
        """Count ``rows`` rows predicted by ``model``."""
        with self._lock:
            self._rows[model] = self._rows.get(model, 0) + rows

    def enter(self) -> None:
        """A request started."""
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

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now."""
        return self._in_flight

    def render(self) -> str:
        """The exposition text (format 0.0.4) of every metric."""
        with self._lock:
            requests = {
                key: attrs.evolve(histogram, counts=list(histogram.counts))
                for key, histogram in self._requests.items()
            }
            rows = dict(self._rows)
            models = dict(self._models)
            in_flight, ready = self._in_flight, self._ready
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
            cumulative = 0
            for bound, count in zip(self.buckets, histogram.counts, strict=True):
                cumulative += count
                labels = _labels([*base, ("le", _number(bound))])
                add(f"modelkit_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels([*base, ("le", "+Inf")])
            add(f"modelkit_request_duration_seconds_bucket{labels} {histogram.count}")
            add(f"modelkit_request_duration_seconds_sum{_labels(base)} {_number(histogram.total)}")
            add(f"modelkit_request_duration_seconds_count{_labels(base)} {histogram.count}")
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
        return "\n".join(lines) + "\n"
