"""The Monitor: windows by rows and by time, hooks, stored alerts, the async observer."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
from tests.unit.monitoring.helpers import mixed

from modelkit import Monitor
from modelkit.exceptions import MonitoringWarning, UsageError
from modelkit.hookspecs import hookimpl
from modelkit.monitoring import AsyncObserver, DriftConfig, Reference, Window
from modelkit.registry import Registry

REFERENCE = Reference.fit(mixed(3000, 0))
T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)


class Recorder:
    """A plugin recording drift alerts."""

    def __init__(self) -> None:
        self.reports: list[Any] = []

    @hookimpl
    def on_drift(self, monitor: Monitor, report: Any) -> None:
        self.reports.append((monitor.name, report))


@pytest.fixture
def recorder(plugin_manager: pluggy.PluginManager) -> Recorder:
    plugin = Recorder()
    plugin_manager.register(plugin)
    return plugin


def monitor(**options: Any) -> Monitor:
    options.setdefault("config", DriftConfig(mode="significance"))
    return Monitor(reference=REFERENCE, name="churn", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "positive"),
        ({"size": 10, "step": 3}, "1 to 12 times"),
        ({"size": 1000, "step": 10}, "1 to 12 times"),
        ({"size": 10.5}, "whole numbers"),
        ({"size": 10, "unit": "days"}, "unit"),
    ],
)
def test_bad_windows_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises((UsageError, ValueError), match=message):
        Window(**options)


def test_window_constructors() -> None:
    assert Window.tumbling(rows=100) == Window(size=100)
    assert Window.sliding(seconds=60, step=10).panes == 6
    with pytest.raises(UsageError, match="exactly one"):
        Window.tumbling()
    with pytest.raises(UsageError, match="exactly one"):
        Window.tumbling(rows=1, seconds=1)


def test_a_tumbling_window_by_rows_reports_each_time_it_fills(recorder: Recorder) -> None:
    watcher = monitor(window=Window.tumbling(rows=1000))
    assert watcher.observe(mixed(600, 1)) == []
    reports = watcher.observe(mixed(1900, 2, shift=1.0))  # closes two windows
    assert [r.n_current for r in reports] == [1000, 1000]
    assert [r.verdict for r in reports] == ["drift", "drift"]
    assert watcher.check().n_current == 500  # the filling window
    assert [name for name, _ in recorder.reports] == ["churn", "churn"]
    assert recorder.reports[0][1].model == "churn"


def test_no_drift_calls_no_hook(recorder: Recorder) -> None:
    watcher = monitor(window=Window.tumbling(rows=500))
    reports = watcher.observe(mixed(1000, 3))
    assert [r.verdict for r in reports] == ["no drift", "no drift"]
    assert recorder.reports == []


def test_one_row_at_a_time() -> None:
    watcher = monitor(window=Window.tumbling(rows=40))
    frame = mixed(40, 4)
    reports = []
    for i in range(40):
        reports += watcher.observe(frame.iloc[[i]])
    assert [r.n_current for r in reports] == [40]


def test_a_sliding_window_by_rows_reports_every_step() -> None:
    watcher = monitor(window=Window.sliding(rows=900, step=300))
    reports = watcher.observe(mixed(1500, 5))
    assert [r.n_current for r in reports] == [900, 900, 900]
    assert watcher.check().n_current == 600  # two closed panes + an empty one


def test_windows_by_time_close_when_a_later_batch_arrives() -> None:
    watcher = monitor(window=Window.tumbling(seconds=60))
    assert watcher.observe(mixed(300, 6), at=T0) == []
    assert watcher.observe(mixed(300, 7), at=T0 + timedelta(seconds=30)) == []
    reports = watcher.observe(mixed(100, 8), at=T0 + timedelta(seconds=61))
    assert [r.n_current for r in reports] == [600]
    assert reports[0].start == T0
    assert reports[0].end == T0 + timedelta(seconds=30)
    # a long silence: the empty windows in between say nothing
    later = watcher.observe(mixed(100, 9), at=T0 + timedelta(hours=5))
    assert [r.n_current for r in later] == [100]
    assert watcher.check().n_current == 100


def test_check_data_leaves_the_windows_alone() -> None:
    watcher = monitor()
    watcher.observe(mixed(100, 10))
    assert watcher.check_data(mixed(400, 11, shift=1)).verdict == "drift"
    assert watcher.summary().n_rows == 100


def test_concurrent_observers_lose_no_row() -> None:
    watcher = monitor(window=Window.tumbling(rows=10**9))
    frame = mixed(200, 12)

    def work() -> None:
        for _ in range(10):
            watcher.observe(frame)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = watcher.summary()
    assert summary.n_rows == 8000
    assert summary.joint is not None
    assert summary.joint.n == 8000


def test_drift_alerts_are_stored_in_the_registry(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as registry:
        watcher = monitor(window=Window.tumbling(rows=500), registry=registry, version=3)
        watcher.observe(mixed(500, 13, shift=1.0))
        watcher.observe(mixed(500, 14))
        alerts = registry.alerts("churn")
        assert [(a.kind, a.version) for a in alerts] == [("drift", 3)]
        assert alerts[0].details["verdict"] == "drift"
        assert alerts[0].details["features"][0]["name"] == "x"


class _BrokenRegistry:
    """A registry whose database is gone: it refuses every alert."""

    url = "broken://"

    def record_alert(self, *args: Any, **kwargs: Any) -> None:
        from modelkit.exceptions import RegistryError

        raise RegistryError("the database is gone")


def test_an_unusable_registry_only_warns(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.close()

    watcher = monitor(window=Window.tumbling(rows=300), registry=_BrokenRegistry())  # type: ignore[arg-type]
    with pytest.warns(MonitoringWarning, match="could not store a drift alert"):
        reports = watcher.observe(mixed(300, 15, shift=1.0))
    assert reports[0].drift


def test_an_unusable_registry_is_logged_where_warnings_are_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import warnings

    watcher = monitor(window=Window.tumbling(rows=300), registry=_BrokenRegistry())  # type: ignore[arg-type]
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, "modelkit.monitoring"):
        warnings.simplefilter("error", MonitoringWarning)
        reports = watcher.observe(mixed(300, 15, shift=1.0))
    assert reports[0].drift
    assert "MonitoringWarning: could not store a drift alert" in caplog.text


def test_fit_and_from_artifact(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    from modelkit.artifact import Artifact
    from modelkit.data import Dataset
    from modelkit.model import Model

    frame = mixed(400, 16)[["a", "b", "x"]]
    fitted = Monitor.fit(frame, outputs=frame["a"] * 2, bins=10, name="m")
    assert fitted.reference.outputs is not None
    assert len(fitted.reference.inputs["a"].counts) <= 12  # type: ignore[union-attr]
    model = Model.wrap(LinearRegression().fit(frame, frame["a"]), sample=frame)
    bare = Artifact.from_model(model, name="reg")
    with pytest.raises(UsageError, match="no profile"):
        Monitor.from_artifact(bare)
    artifact = Artifact.from_model(model, name="reg", profile=Dataset(frame).profile())
    watcher = Monitor.from_artifact(artifact)
    assert watcher.name == "reg"
    assert watcher.check_data(frame).verdict == "no drift"
    with Registry(tmp_path / "reg") as registry:
        registry.register("reg", artifact)
        registered = Monitor.from_registry(registry, "reg")
        assert (registered.name, registered.version, registered.registry) == ("reg", 1, registry)


def test_the_async_observer_feeds_the_monitor_off_thread() -> None:
    watcher = monitor(window=Window.tumbling(rows=10**9))
    observer = AsyncObserver(watcher)
    frame = mixed(100, 17)
    for _ in range(5):
        assert observer.submit(frame)
    assert observer.flush()
    assert watcher.summary().n_rows == 500
    observer.close()


def test_a_failing_monitor_warns_and_drops_the_batch() -> None:
    watcher = monitor()
    observer = AsyncObserver(watcher, warn_every=1)
    observer.submit(np.zeros((3, 2)))  # the wrong columns
    with pytest.warns(MonitoringWarning, match="failed on a batch"):
        observer.flush()
    observer.close()
    assert observer.failed == 1
    assert watcher.summary().n_rows == 0


def test_a_full_queue_drops_batches_with_a_warning() -> None:
    observer = AsyncObserver(monitor(), max_pending=1, warn_every=1, max_delay=60)
    frame = mixed(10, 18)
    assert observer.submit(frame)
    with pytest.warns(MonitoringWarning, match="queue full"):
        accepted = observer.submit(frame)
    assert accepted is False
    assert observer.dropped == 1
    assert observer.flush()
    assert observer.monitor.summary().n_rows == 10
    observer.close()


def test_flush_times_out_while_a_batch_is_stuck() -> None:
    release = threading.Event()

    class Stuck(Monitor):
        def observe(self, *args: Any, **kwargs: Any) -> list[Any]:
            release.wait(5)
            return []

    observer = AsyncObserver(Stuck(reference=REFERENCE))
    observer.submit(mixed(10, 19))
    assert observer.flush(timeout=0.05) is False
    release.set()
    assert observer.flush()
    observer.close()


def test_labels_need_outputs() -> None:
    from modelkit.monitoring.performance import PerformanceTracker

    watcher = monitor(performance=PerformanceTracker(baseline={"accuracy": 0.9}))
    with pytest.raises(UsageError, match="need the outputs"):
        watcher.observe(mixed(10, 20), labels=[1] * 10)
    watcher.observe(mixed(10, 20), outputs=[1] * 10, labels=[1] * 10)
    assert watcher.performance is not None
    assert watcher.performance.n_labelled == 10


def test_the_async_observer_joins_small_batches() -> None:
    calls: list[int] = []

    class Counting(Monitor):
        def observe(self, inputs: Any, *args: Any, **kwargs: Any) -> list[Any]:
            calls.append(len(inputs))
            return super().observe(inputs, *args, **kwargs)

    watcher = Counting(reference=REFERENCE, window=Window.tumbling(rows=10**9))
    observer = AsyncObserver(watcher, max_delay=60)
    frame = mixed(50, 21)
    for i in range(50):
        observer.submit(frame.iloc[[i]])
    assert observer.flush()
    assert calls == [50]  # one observe for fifty one-row batches
    observer.close()
    arrays = AsyncObserver(monitor(window=Window.tumbling(rows=10**9)), max_delay=60)
    values = np.random.default_rng(0).normal(size=(4, 3))
    small = Reference.fit(np.random.default_rng(1).normal(size=(100, 3)))
    arrays.monitor = Monitor(reference=small, window=Window.tumbling(rows=10**9))
    arrays.submit(values[:2], np.zeros(2))
    arrays.submit(values[2:].tolist(), [1.0, 1.0])  # another form: observed on its own
    arrays.submit(values[2:].tolist(), [1.0, 1.0])
    assert arrays.flush()
    assert arrays.monitor.summary().n_rows == 6
    arrays.close()


def test_labels_that_come_later_join_by_id() -> None:
    from modelkit.monitoring.performance import PerformanceTracker

    tracker = PerformanceTracker(baseline={"accuracy": 0.9}, min_rows=2, max_waiting=3)
    watcher = monitor(performance=tracker)
    watcher.observe(mixed(4, 21), outputs=[1, 0, 1, 1], ids=["a", "b", "c", "d"])
    # "a" was forgotten (3 wait at most), "zzz" never seen, "d" has no label yet
    assert watcher.label({"a": 1, "zzz": 0, "d": None}) == 0
    assert watcher.label({"b": 0, "c": 1, "d": 1}) == 3
    assert tracker.n_labelled == 3
    with pytest.raises(UsageError, match="one per row"):
        tracker.expect(["x"], [1, 2])
    with pytest.raises(UsageError, match="tracks no performance"):
        monitor().label({"a": 1})


def test_the_async_observer_counts_rows_and_windows() -> None:
    observer = AsyncObserver(monitor(window=Window.tumbling(rows=150)))
    for seed in range(4):
        observer.submit(mixed(100, 30 + seed))
    assert observer.flush()
    assert (observer.rows, observer.windows) == (400, 2)
    observer.close()


def test_a_warning_turned_into_an_error_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import warnings

    observer = AsyncObserver(monitor(), warn_every=1)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, "modelkit.monitoring"):
        warnings.simplefilter("error", MonitoringWarning)
        observer.submit(np.zeros((3, 2)))  # the wrong columns
        assert observer.flush()
        observer.submit(mixed(10, 40))
        assert observer.flush()
    assert "MonitoringWarning: monitor of churn failed on a batch" in caplog.text
    assert observer.monitor.summary().n_rows == 10  # the thread survived
    observer.close()


def test_an_alert_stored_by_another_process_is_found(tmp_path: Path) -> None:
    from modelkit.monitoring.alerts import already_stored

    with Registry(str(tmp_path / "reg")) as registry:
        registry.record_alert("churn", "performance", {"metric": "accuracy"}, version=2, at=T0)
        found = already_stored(
            registry, "churn", "performance", since=T0, version=2, match={"metric": "accuracy"}
        )
        assert found
        assert not already_stored(
            registry, "churn", "performance", since=T0, version=2, match={"metric": "f1"}
        )
        assert not already_stored(registry, "churn", "performance", since=T0, version=3)
        assert not already_stored(
            registry, "churn", "performance", since=T0 + timedelta(seconds=1), version=2
        )
        assert not already_stored(registry, "churn", "drift", since=T0)
