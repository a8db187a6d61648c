"""Health: SLO alerts over a sliding window, and the Prometheus text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from modelkit.exceptions import UsageError
from modelkit.hookspecs import hookimpl
from modelkit.monitoring.health import SLO, HealthAlert, HealthTracker
from modelkit.registry import Registry


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A plugin recording health alerts."""

    def __init__(self) -> None:
        self.alerts: list[HealthAlert] = []

    @hookimpl
    def on_health_alert(self, alert: HealthAlert) -> None:
        self.alerts.append(alert)


@pytest.fixture
def recorder(plugin_manager: pluggy.PluginManager) -> Recorder:
    plugin = Recorder()
    plugin_manager.register(plugin)
    return plugin


def tracker(clock: Clock, **slo: Any) -> HealthTracker:
    return HealthTracker(slo=SLO(min_requests=10, **slo), window_seconds=60, clock=clock)


def test_slow_requests_break_the_latency_objective_once(recorder: Recorder) -> None:
    clock = Clock()
    health = tracker(clock, p99_seconds=0.1)
    for _ in range(95):
        health.observe_request("churn", 0.004, ok=True)
    assert health.check() == []
    for _ in range(5):
        health.observe_request("churn", 0.7, ok=True)
    alerts = health.check()
    assert [(a.rule, a.model) for a in alerts] == [("latency_p99", "churn")]
    assert 0.5 < alerts[0].value <= 1.0
    assert alerts[0].limit == 0.1
    assert alerts[0].requests == 100
    assert health.check() == []  # still broken: no second alert
    assert recorder.alerts == alerts
    clock.now += 61  # the slow requests leave the window
    for _ in range(20):
        health.observe_request("churn", 0.004, ok=True)
    assert health.check() == []
    for _ in range(5):
        health.observe_request("churn", 0.7, ok=True)
    assert [a.rule for a in health.check()] == ["latency_p99"]  # re-armed


def test_errors_and_queue_depth(recorder: Recorder) -> None:
    clock = Clock()
    health = tracker(clock, error_rate=0.05, queue_depth=10)
    for i in range(40):
        health.observe_request("fraud", 0.01, ok=i % 5 != 0)
    health.set_queue_depth(11)
    alerts = health.check()
    assert {(a.rule, a.model) for a in alerts} == {("error_rate", "fraud"), ("queue_depth", "")}
    error = next(a for a in alerts if a.rule == "error_rate")
    assert error.value == pytest.approx(0.2)
    assert error.to_dict()["at"].endswith("+00:00")


def test_too_few_requests_never_alert() -> None:
    clock = Clock()
    health = tracker(clock, error_rate=0.01)
    for _ in range(5):
        health.observe_request("churn", 0.01, ok=False)
    assert health.check() == []


def test_alerts_are_stored(tmp_path: Path) -> None:
    clock = Clock()
    with Registry(tmp_path / "reg") as registry:
        health = HealthTracker(
            slo=SLO(error_rate=0.1, min_requests=1), clock=clock, registry=registry
        )
        health.observe_request("churn", 0.01, ok=False)
        health.check()
        [alert] = registry.alerts(kind="health")
        assert (alert.name, alert.details["rule"]) == ("churn", "error_rate")


def test_render_is_prometheus_text() -> None:
    clock = Clock()
    health = tracker(clock)
    health.observe_request('we"ird', 0.003, ok=True)
    health.observe_request('we"ird', 20.0, ok=False)
    health.set_queue_depth(3)
    health.model_loaded("churn", 0.25)
    text = health.render()
    assert 'modelkit_monitor_request_seconds_bucket{model="we\\"ird",le="0.005"} 1' in text
    assert 'modelkit_monitor_request_seconds_bucket{model="we\\"ird",le="+Inf"} 2' in text
    assert 'modelkit_monitor_request_seconds_count{model="we\\"ird"} 2' in text
    assert 'modelkit_monitor_errors_total{model="we\\"ird"} 1' in text
    assert "modelkit_monitor_queue_depth 3" in text
    assert 'modelkit_monitor_model_load_seconds{model="churn"} 0.25' in text
    assert 'modelkit_monitor_throughput{model="we\\"ird"} ' in text
    assert text.endswith("\n")


def test_bad_objectives_are_refused() -> None:
    with pytest.raises(UsageError, match="p99_seconds"):
        SLO(p99_seconds=0)


def test_render_without_what_serving_metrics_export(recorder: Recorder) -> None:
    clock = Clock()
    health = HealthTracker(
        slo=SLO(error_rate=0.1, p99_seconds=0.5, min_requests=2), window_seconds=60, clock=clock
    )
    for _ in range(3):
        health.observe_request("churn", 0.003, ok=False)
    health.set_queue_depth(3)
    health.model_loaded("churn", 0.25)
    health.check()
    text = health.render(full=False)
    assert 'modelkit_monitor_throughput{model="churn"} 0.05' in text
    assert 'modelkit_monitor_error_rate{model="churn"} 1.0' in text
    assert 'modelkit_monitor_window_latency_seconds{model="churn",quantile="0.99"} ' in text
    assert 'modelkit_monitor_slo_limit{rule="error_rate"} 0.1' in text
    assert 'modelkit_monitor_slo_limit{rule="latency_p99"} 0.5' in text
    assert 'modelkit_monitor_slo_breached{rule="error_rate",model="churn"} 1' in text
    for exported_by_serving in (
        "modelkit_monitor_request_seconds",
        "modelkit_monitor_errors_total",
        "modelkit_monitor_queue_depth",
        "modelkit_monitor_model_load_seconds",
    ):
        assert exported_by_serving not in text
    assert text.endswith("\n")
    clock.now += 120  # the window empties: no breach, no per-model figure
    health.check()
    text = health.render(full=False)
    assert "modelkit_monitor_slo_breached{" not in text
    assert "modelkit_monitor_error_rate{" not in text
    assert health.render().count("# TYPE modelkit_monitor_throughput") == 1


def test_cumulative_totals_count_what_grew() -> None:
    clock = Clock()
    health = HealthTracker(slo=SLO(error_rate=0.2, min_requests=5), window_seconds=60, clock=clock)
    empty = [0] * 14
    counts = list(empty)
    counts[2] = 10  # ten requests of 2.5-5 ms
    health.observe_totals("churn", counts, errors=4, total=10, seconds=0.04)
    [alert] = health.check()
    assert (alert.rule, alert.value, alert.requests) == ("error_rate", 0.4, 10)
    clock.now += 61  # the window moves on; the same totals again add nothing
    health.observe_totals("churn", counts, errors=4, total=10, seconds=0.04)
    assert health.check() == []
    assert "modelkit_monitor_error_rate{" not in health.render(full=False)
    counts[2] = 30  # twenty more, no error
    health.observe_totals("churn", counts, errors=4, total=30, seconds=0.12)
    assert 'modelkit_monitor_error_rate{model="churn"} 0.0' in health.render(full=False)
    assert 'modelkit_monitor_request_seconds_count{model="churn"} 30' in health.render()
    health.observe_totals("churn", [0] * 13 + [2], errors=0, total=2, seconds=30.0)  # a reset
    assert 'modelkit_monitor_request_seconds_count{model="churn"} 32' in health.render()
    with pytest.raises(UsageError, match="14 values"):
        health.observe_totals("churn", [1, 2], errors=0, total=3, seconds=1.0)
