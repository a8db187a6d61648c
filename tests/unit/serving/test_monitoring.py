"""Monitoring served models: every batch observed, alerts stored once, health in /metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pandas as pd
import pluggy
import pytest
from tests.unit.serving.helpers import Client

from modelkit import Artifact, Monitor, Profile
from modelkit.exceptions import ServingError
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.monitoring import SLO, DriftConfig, Window
from modelkit.registry import Registry
from modelkit.serving import App, Request, ServedModel
from modelkit.serving.batching import Call, Work, compute
from modelkit.serving.feedback import json_rows
from modelkit.serving.monitoring import MonitorOptions, ServingMonitor

FAST = MonitorOptions(window=200, check_every=3600, max_delay=3600)
"""Small windows; the timer and the observer's own delay never fire during a test."""


class Alerts:
    """A plugin recording the monitoring hooks."""

    def __init__(self) -> None:
        self.drift: list[Any] = []
        self.performance: list[Any] = []
        self.health: list[Any] = []

    @hookimpl
    def on_drift(self, monitor: Monitor, report: Any) -> None:
        self.drift.append((monitor.name, monitor.version, report))

    @hookimpl
    def on_performance_drop(self, monitor: Monitor | None, report: Any) -> None:
        self.performance.append(report)

    @hookimpl
    def on_health_alert(self, alert: Any) -> None:
        self.health.append(alert)


@pytest.fixture
def alerts(plugin_manager: pluggy.PluginManager) -> Alerts:
    plugin = Alerts()
    plugin_manager.register(plugin)
    return plugin


def artifact(model: Model, X: Any, accuracy: float = 0.87) -> Artifact:
    """The model saved with a profile of ``X`` (the drift reference), its accuracy and an
    input example (what a hot swap warms the new version up on)."""
    return Artifact.from_model(
        model,
        name="churn",
        sample=X,
        profile=Profile.from_data(X),
        metrics={"accuracy": accuracy},
    )


@pytest.fixture
def registry(tmp_path: Path, seed_model: Model, seed_data: Any) -> Iterator[Registry]:
    """ "churn" version 1, the seed model with a profile of its training data, in production."""
    with Registry(str(tmp_path / "reg")) as reg:
        reg.register("churn", artifact(seed_model, seed_data[0]))
        reg.set_alias("churn", "production", 1)
        yield reg


def post(app: App, rows: Any, path: str = "/predict", **extra: Any) -> Any:
    body = json.dumps({"features": rows, **extra}).encode()
    response = app.handle(
        Request("POST", path, headers={"content-type": "application/json"}, body=body)
    )
    assert response.status == 200, response.body
    return json.loads(response.body)


def send_labels(app: App, key: str, labels: list[int]) -> None:
    response = app.handle(
        Request(
            "POST",
            "/feedback",
            headers={"content-type": "application/json"},
            body=json.dumps({"id": key, "label": labels}).encode(),
        )
    )
    assert response.status == 200, response.body


def started(*models: Any, **options: Any) -> App:
    options.setdefault("monitor_options", FAST)
    app = App(*models, **options)
    app.start()
    return app


def observed(app: App, name: str = "churn") -> Monitor:
    assert app.monitoring is not None
    assert app.monitoring.flush()
    monitor = app.monitoring.monitor(name)
    assert monitor is not None
    return monitor


def test_every_computed_row_is_observed_once(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry)
    X = seed_data[0]
    for start in range(0, 150, 10):
        post(app, X[start : start + 10].tolist())
    monitor = observed(app)
    assert (monitor.name, monitor.version) == ("churn", 1)
    assert monitor.summary().n_rows == 150
    metrics = app.handle(Request("GET", "/metrics")).body.decode()
    assert 'modelkit_monitor_rows_total{model="churn"} 150' in metrics
    assert 'modelkit_background_cpu_seconds_total{task="drift",model="churn"} ' in metrics
    app.drain()


def test_in_distribution_traffic_raises_no_alert_and_a_shift_does(
    registry: Registry, seed_data: Any, alerts: Alerts
) -> None:
    app = started("churn@production", registry=registry)
    X = seed_data[0]
    for start in range(0, 400, 20):
        post(app, X[start : start + 20].tolist())
    observed(app)
    assert alerts.drift == []
    assert registry.alerts("churn", kind="drift") == []
    shifted = X[400:600] * 1.5 + 1.0
    for start in range(0, 200, 20):
        post(app, shifted[start : start + 20].tolist())
    observed(app)
    assert [(name, version) for name, version, _ in alerts.drift] == [("churn", 1)]
    (stored,) = registry.alerts("churn", kind="drift")
    assert stored.version == 1
    assert stored.details["verdict"] == "drift"
    assert stored.details["n_current"] == 200
    app.drain()


def test_only_the_rows_of_requests_that_succeeded_are_observed(
    registry: Registry, seed_data: Any
) -> None:
    app = started("churn@production", registry=registry)
    good = [seed_data[0][0].tolist()]
    works = [
        Work(Call("churn", good, ("predict",), lambda o: None)),  # type: ignore[arg-type,return-value]
        Work(Call("churn", [[1.0, 2.0]], ("predict",), lambda o: None)),  # type: ignore[arg-type,return-value]
        Work(Call("churn", good * 3, ("predict_proba",), lambda o: None)),  # type: ignore[arg-type,return-value]
    ]
    seen: list[tuple[Any, Any]] = []
    compute(app.models["churn"], works, lambda served, X, y: seen.append((X, y)))
    assert works[1].error is not None
    ((inputs, outputs),) = seen
    assert np.shape(inputs) == (4, 20)
    assert outputs is None  # not every request asked for predict
    seen.clear()
    compute(app.models["churn"], works[:1], lambda served, X, y: seen.append((X, y)))
    ((inputs, outputs),) = seen
    assert np.shape(inputs) == (1, 20)
    assert list(outputs) == list(app.models["churn"].model.predict(good))
    app.drain()


def test_a_batch_observer_that_raises_never_fails_the_batch(
    seed_model: Model, seed_data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    served = ServedModel("seed", seed_model)
    work = Work(Call("seed", seed_data[0][:2].tolist(), ("predict",), lambda o: None))  # type: ignore[arg-type,return-value]

    def broken(served: Any, inputs: Any, outputs: Any) -> None:
        raise RuntimeError("monitor down")

    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        compute(served, [work], broken)
    assert work.outcome is not None
    assert work.error is None
    assert "could not hand a batch" in caplog.text


def test_a_failing_monitor_warns_and_requests_still_succeed(
    serve: Callable[..., Client],
    seed_model: Model,
    seed_data: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Monitor):
        def observe(self, *args: Any, **kwargs: Any) -> list[Any]:
            raise RuntimeError("the monitor is broken")

    reference = Monitor.fit(seed_data[0]).reference
    client = serve(
        seed_model, monitor=Broken(reference=reference), monitor_options=FAST, feedback=False
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            response = client.post("/predict", json={"features": seed_data[0][:2].tolist()})
            assert response.status_code == 200, response.text
            assert "Traceback" not in response.text
        assert client.core.monitoring.flush()
    assert "MonitoringWarning" in caplog.text
    assert "the monitor is broken" in caplog.text
    assert "modelkit_monitor_failures_total" in client.get("/metrics").text
    client.core.drain()


def test_input_rows_are_recorded_with_the_prediction(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry)
    rows = seed_data[0][:3].tolist()
    answer = post(app, rows)
    post(app, rows[:1])
    assert app.recorder is not None
    assert app.recorder.flush()
    registry.add_feedback({answer["id"]: [1, 0, 1]})
    (labelled,) = registry.feedback("churn")
    assert labelled.inputs == rows
    app.drain()


def test_inputs_are_not_recorded_when_turned_off(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry, record_inputs=False)
    answer = post(app, seed_data[0][:2].tolist())
    assert app.recorder is not None
    assert app.recorder.flush()
    assert registry.prediction(answer["id"]).inputs is None
    assert registry.prediction(answer["id"]).outputs is not None
    app.drain()


def test_json_rows_of_arrays_and_frames() -> None:
    assert json_rows(np.array([[1.0, np.nan], [np.inf, 2.5]]), 2) == [[1.0, None], [None, 2.5]]
    frame = pd.DataFrame({"age": [30.0, np.nan], "color": pd.Categorical(["red", "blue"])})
    assert json_rows(frame, 2) == [[30.0, "red"], [None, "blue"]]
    assert json_rows(None, 2) is None
    assert json_rows(np.zeros((3, 2)), 2) is None  # not one row per predicted row


def test_a_categorical_model_records_its_rows_in_signature_order(
    tmp_path: Path, mixed_model: Model, mixed_frame: pd.DataFrame
) -> None:
    with Registry(str(tmp_path / "reg")) as registry:
        app = started(mixed_model, registry=registry)
        rows = [{"color": "red", "age": 30, "income": 51.5}]
        answer = post(app, rows)
        assert app.recorder is not None
        assert app.recorder.flush()
        assert registry.prediction(answer["id"]).inputs == [[30.0, 51.5, "red"]]
        app.drain()


def test_labels_sent_to_another_process_count_once_and_alert_once(
    registry: Registry, seed_data: Any, alerts: Alerts
) -> None:
    first = started("churn@production", registry=registry)
    second = started("churn@production", registry=registry)  # another worker, same registry
    X, _y = seed_data
    ids = [post(first, X[start : start + 10].tolist())["id"] for start in range(0, 300, 10)]
    assert first.recorder is not None
    assert first.recorder.flush()
    wrong = {key: [int(1 - v) for v in registry.prediction(key).outputs or []] for key in ids}
    for key, labels in wrong.items():  # labels through the other worker
        send_labels(second, key, labels)
    for app in (first, second, first, second):
        assert app.monitoring is not None
        app.monitoring.check_now()
    assert len(alerts.performance) == 2  # each process's hook saw the drop once
    (stored,) = registry.alerts("churn", kind="performance")
    assert stored.details["metric"] == "accuracy"
    assert stored.details["n"] == 300  # every label counted once
    assert stored.version == 1
    first.drain()
    second.drain()


def test_a_swap_gives_the_new_version_a_fresh_monitor(
    registry: Registry, seed_model: Model, seed_data: Any
) -> None:
    app = started("churn@production", registry=registry)
    X = seed_data[0]
    post(app, X[:50].tolist())
    old = observed(app)
    old_observer = app.monitoring._watches["churn"].observer  # type: ignore[union-attr]
    registry.register("churn", artifact(seed_model, X[:500]))
    registry.set_alias("churn", "production", 2)
    assert app.watcher is not None
    (result,) = app.watcher.check_now()
    assert result.outcome == "swapped"
    new = observed(app)
    assert new is not old
    assert (new.version, new.summary().n_rows) == (2, 0)  # its warm-up is not observed
    assert old.summary().n_rows == 50
    assert old_observer is not None
    assert old_observer._thread.is_alive() is False
    post(app, X[:7].tolist())
    assert observed(app).summary().n_rows == 7
    app.drain()


def test_draining_observes_what_waits_and_stops(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry)
    post(app, seed_data[0][:30].tolist())
    assert app.monitoring is not None
    watch = app.monitoring._watches["churn"]
    assert app.drain()
    assert watch.monitor.summary().n_rows == 30
    assert watch.observer is not None
    assert not watch.observer._thread.is_alive()


def test_monitoring_can_be_turned_off(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry, monitor=False)
    assert app.monitoring is None
    post(app, seed_data[0][:3].tolist())
    metrics = app.handle(Request("GET", "/metrics")).body.decode()
    assert "modelkit_monitor_" not in metrics
    app.drain()


def test_per_model_choices(registry: Registry, seed_model: Model, seed_data: Any) -> None:
    given = Monitor.fit(seed_data[0], config=DriftConfig(mode="significance"))
    app = started(
        "churn@production",
        registry=registry,
        monitor={"churn": False, "seed": given},
        seed=seed_model,
    )
    assert app.monitoring is not None
    assert app.monitoring.monitor("churn") is None
    monitor = app.monitoring.monitor("seed")
    assert monitor is not None
    assert monitor is not given
    assert monitor.reference is given.reference
    assert monitor.name == "seed"
    app.drain()


def test_in_process_models_are_not_monitored_for_drift_by_default(seed_model: Model) -> None:
    app = started(seed_model)
    assert app.monitoring is not None
    assert app.monitoring.monitor("seed") is None
    assert app.monitoring.registry is None  # no registry opened for nothing
    app.drain()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("yes", "monitor must be"),
        ({"seed": "yes"}, r"monitor\['seed'\]"),
    ],
)
def test_bad_monitor_options_are_refused(seed_model: Model, option: Any, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        App(seed_model, monitor=option)


def test_monitor_options_are_checked_at_start(seed_model: Model, seed_data: Any) -> None:
    given = Monitor.fit(seed_data[0])
    with pytest.raises(ServingError, match="for one served model"):
        started(seed_model, other=seed_model, monitor=given)
    with pytest.raises(ServingError, match="not served"):
        started(seed_model, monitor={"nope": True})
    with pytest.raises(ServingError, match="window"):
        MonitorOptions(window=0)
    with pytest.raises(ServingError, match="check_every"):
        MonitorOptions(check_every=0)
    assert MonitorOptions(window=Window.tumbling(rows=5)).window.size == 5


def test_health_is_in_metrics_and_slo_breaches_alert(
    registry: Registry, seed_model: Model, alerts: Alerts
) -> None:
    class Failing:
        def predict(self, X: Any) -> Any:
            raise RuntimeError("boom")

    failing = attrs.evolve(seed_model, estimator=Failing(), name="bad", fast=False)
    options = attrs.evolve(FAST, slo=SLO(error_rate=0.1, min_requests=5))
    app = started(failing, registry=registry, monitor_options=options)
    for _ in range(6):
        response = app.handle(
            Request(
                "POST",
                "/predict",
                headers={"content-type": "application/json"},
                body=json.dumps({"features": [[0.0] * 20]}).encode(),
            )
        )
        assert response.status == 500
    assert app.monitoring is not None
    app.monitoring.check_now()
    (alert,) = alerts.health
    assert (alert.rule, alert.model, alert.value) == ("error_rate", "bad", 1.0)
    (stored,) = registry.alerts("bad", kind="health")
    assert stored.details["rule"] == "error_rate"
    metrics = app.handle(Request("GET", "/metrics")).body.decode()
    assert 'modelkit_monitor_error_rate{model="bad"} 1.0' in metrics
    assert 'modelkit_monitor_slo_breached{rule="error_rate",model="bad"} 1' in metrics
    assert 'modelkit_monitor_slo_limit{rule="error_rate"} 0.1' in metrics
    assert 'modelkit_background_cpu_seconds_total{task="checks",model=""} ' in metrics
    assert 'modelkit_background_cpu_seconds_total{task="record",model=""} ' in metrics
    names = [line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # no metric is exported twice
    app.drain()


def test_a_forked_child_starts_its_own_threads(registry: Registry, seed_data: Any) -> None:
    app = started("churn@production", registry=registry)
    post(app, seed_data[0][:5].tolist())
    observed(app)
    monitoring = app.monitoring
    assert monitoring is not None
    parent = monitoring._watches["churn"].observer
    monitoring._after_fork()  # what os.register_at_fork runs in a child
    assert monitoring._watches["churn"].observer is None
    post(app, seed_data[0][:5].tolist())
    child: Any = monitoring._watches["churn"].observer
    assert child is not None
    assert child is not parent
    assert observed(app).summary().n_rows == 10
    assert parent is not None
    parent.close()
    app.drain()


def test_the_build_refuses_nothing_it_accepts() -> None:
    assert ServingMonitor.build(False) is None
    built = ServingMonitor.build(True)
    assert built is not None
    assert built.options == MonitorOptions()


def test_float_rows_of_one_width_are_converted_together() -> None:
    from datetime import datetime, timezone

    from modelkit.serving.feedback import _batch_inputs, _Pending

    at = datetime.now(timezone.utc)

    def pending(rows: int, inputs: Any) -> _Pending:
        return _Pending("id", "churn", 1, at, rows, None, inputs)

    frame = pd.DataFrame({"a": [1.0], "color": ["red"]})
    batch = [
        pending(2, np.array([[1.0, 2.0], [3.0, np.nan]])),
        pending(1, frame),
        pending(1, np.array([[5.0, 6.0, 7.0]])),
        pending(1, np.array([[8.0, 9.0]])),
        pending(3, np.array([[1.0, 2.0]])),  # not one row per predicted row
        pending(1, None),
        pending(1, object()),  # cannot be converted: the prediction is kept without rows
    ]
    assert _batch_inputs(batch) == [
        [[1.0, 2.0], [3.0, None]],
        [[1.0, "red"]],
        [[5.0, 6.0, 7.0]],
        [[8.0, 9.0]],
        None,
        None,
        None,
    ]


def test_a_slow_monitor_never_delays_a_request(seed_model: Model, seed_data: Any) -> None:
    import threading

    release = threading.Event()
    entered = threading.Event()

    class Slow(Monitor):
        def observe(self, *args: Any, **kwargs: Any) -> list[Any]:
            entered.set()
            release.wait(30)
            return super().observe(*args, **kwargs)

    reference = Monitor.fit(seed_data[0]).reference
    options = attrs.evolve(FAST, max_delay=0.001)
    app = started(seed_model, monitor=Slow(reference=reference), monitor_options=options)
    post(app, seed_data[0][:2].tolist())
    assert entered.wait(30)  # the observer is stuck in the monitor...
    for _ in range(20):  # ...and requests are answered all the same
        post(app, seed_data[0][:2].tolist())
    assert app.monitoring is not None
    assert app.monitoring.flush(timeout=0.01) is False
    release.set()
    assert app.monitoring.flush()
    monitor = app.monitoring.monitor("seed")
    assert monitor is not None
    assert monitor.summary().n_rows == 42
    app.drain()


def test_labels_are_read_less_often_while_none_come(registry: Registry, seed_data: Any) -> None:
    from modelkit.serving.monitoring import MAX_LABELS_WAIT

    options = attrs.evolve(FAST, check_every=2.0)
    app = started("churn@production", registry=registry, monitor_options=options)
    monitoring = app.monitoring
    assert monitoring is not None
    waits = []
    for _ in range(7):
        monitoring.check_now()
        waits.append(monitoring._labels_wait)
    assert waits == [4.0, 8.0, 16.0, 32.0, MAX_LABELS_WAIT, MAX_LABELS_WAIT, MAX_LABELS_WAIT]
    checks = monitoring.checks
    monitoring.check_now(labels=False)  # what the timer does before the labels are due
    assert (monitoring.checks, monitoring._labels_wait) == (checks + 1, MAX_LABELS_WAIT)
    answer = post(app, seed_data[0][:2].tolist())
    assert app.recorder is not None
    assert app.recorder.flush()
    response = app.handle(
        Request(
            "POST",
            "/feedback",
            headers={"content-type": "application/json"},
            body=json.dumps({"id": answer["id"], "label": [0, 1]}).encode(),
        )
    )
    assert response.status == 200
    assert (monitoring._labels_wait, monitoring._labels_due) == (2.0, 0.0)  # due now
    monitoring.check_now()
    assert monitoring._labels_wait == 2.0  # labels came: read again at the next check
    app.drain()


def test_a_served_classifier_tracks_f1_and_auc_as_training_evaluated_them(
    tmp_path: Path, seed_model: Model, seed_data: Any, alerts: Alerts
) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    X, y = seed_data
    with Registry(str(tmp_path / "f1")) as reg:
        saved = Artifact.from_model(
            seed_model,
            name="churn",
            sample=X,
            profile=Profile.from_data(X),
            metrics={"f1": 1.0, "roc_auc": 1.0},
        )
        reg.register("churn", saved)
        app = started("churn/1", registry=reg)
        ids = [post(app, X[start : start + 10].tolist())["id"] for start in range(0, 300, 10)]
        assert app.recorder is not None
        assert app.recorder.flush()
        outputs: list[Any] = []
        for key, start in zip(ids, range(0, 300, 10), strict=True):
            outputs.extend(reg.prediction(key).outputs or [])
            labels = [int(v) for v in y[start : start + 10]]
            send_labels(app, key, labels)
        assert app.monitoring is not None
        app.monitoring.check_now()
        reports = {report.metric: report for report in alerts.performance}
        assert sorted(reports) == ["f1", "roc_auc"]
        positive = seed_model.classes[1]
        f1 = f1_score(y[:300], outputs, pos_label=positive)
        assert reports["f1"].value == pytest.approx(f1)
        auc = roc_auc_score(y[:300], seed_model.predict_proba(X[:300])[:, 1])
        assert reports["roc_auc"].value == pytest.approx(auc)  # scored from recorded rows
        assert reports["roc_auc"].n == 300
        app.drain()
