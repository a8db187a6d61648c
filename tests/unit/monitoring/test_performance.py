"""Performance from delayed labels: the statistical rule, feedback from the registry, hooks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest

from modelkit.exceptions import UsageError
from modelkit.hookspecs import hookimpl
from modelkit.monitoring.performance import PerformanceReport, PerformanceTracker, roc_auc
from modelkit.registry import Feedback, PredictionRecord, Registry


class Recorder:
    """A plugin recording performance alerts."""

    def __init__(self) -> None:
        self.reports: list[PerformanceReport] = []

    @hookimpl
    def on_performance_drop(self, monitor: Any, report: PerformanceReport) -> None:
        self.reports.append(report)


@pytest.fixture
def recorder(plugin_manager: pluggy.PluginManager) -> Recorder:
    plugin = Recorder()
    plugin_manager.register(plugin)
    return plugin


def labelled(n: int, accuracy: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    right = rng.random(n) < accuracy
    return np.where(right, labels, 1 - labels), labels


def by_metric(reports: list[PerformanceReport]) -> dict[str, PerformanceReport]:
    return {r.metric: r for r in reports}


def test_a_clear_drop_is_reported_once(recorder: Recorder) -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.90, "f1": 0.90, "roc_auc": 0.95})
    assert tracker.metrics == ("accuracy", "f1", "roc_auc")
    tracker.add(*labelled(1000, 0.75))
    reports = by_metric(tracker.check())
    assert reports["accuracy"].drop
    assert reports["f1"].drop
    assert reports["roc_auc"].status == "insufficient data"  # no scores were given
    assert reports["roc_auc"].n == 0
    accuracy = reports["accuracy"]
    assert accuracy.low < accuracy.value < accuracy.high < accuracy.threshold == 0.88
    assert [r.metric for r in recorder.reports] == ["accuracy", "f1"]
    tracker.check()  # still down: no second alert
    assert len(recorder.reports) == 2
    json.dumps(accuracy.to_dict(), allow_nan=False)


def test_a_window_as_good_as_the_baseline_is_ok(recorder: Recorder) -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.90}, positive=1)
    tracker.add(*labelled(1000, 0.90, seed=1))
    assert [r.status for r in tracker.check()] == ["ok"]
    assert recorder.reports == []


def test_a_small_noisy_window_is_not_a_drop() -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.90}, min_rows=20)
    labels = [1] * 30
    tracker.add([1] * 25 + [0] * 5, labels)  # 83%: below 88%, but 30 rows say little
    [report] = tracker.check()
    assert report.value < report.threshold < report.high
    assert report.status == "ok"


def test_too_few_labels_is_insufficient_data() -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.9})
    tracker.add([1, 0, None], [1, None, 0])  # rows without a label or output are skipped
    report = tracker.check()[0]
    assert (report.status, report.n) == ("insufficient data", 1)
    assert report.to_dict()["value"] is None


def test_the_window_keeps_the_latest_rows() -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.9}, window=100, min_rows=50)
    tracker.add(*labelled(500, 0.5, seed=3))
    tracker.add(*labelled(100, 1.0, seed=4))
    assert tracker.n_labelled == 100
    assert tracker.check()[0].value == 1.0


def test_recovery_rearms_the_alert(recorder: Recorder) -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.9}, window=300, min_rows=100)
    tracker.add(*labelled(300, 0.6, seed=5))
    tracker.check()
    tracker.add(*labelled(300, 0.9, seed=6))
    assert tracker.check()[0].status == "ok"
    tracker.add(*labelled(300, 0.6, seed=7))
    tracker.check()
    assert len(recorder.reports) == 2


def test_regression_errors() -> None:
    rng = np.random.default_rng(8)
    truth = rng.normal(size=2000)
    tracker = PerformanceTracker(baseline={"rmse": 0.5, "mae": 0.4, "r2": 0.8}, window=2000)
    tracker.add(truth + rng.normal(scale=0.5, size=2000), truth)
    reports = by_metric(tracker.check())
    assert set(reports) == {"rmse", "mae"}
    assert reports["rmse"].status == "ok"
    assert reports["rmse"].value == pytest.approx(0.5, abs=0.03)
    tracker.add(truth + rng.normal(scale=1.0, size=2000), truth)
    reports = by_metric(tracker.check())
    assert reports["rmse"].drop
    assert reports["mae"].drop
    assert reports["rmse"].low > reports["rmse"].threshold == pytest.approx(0.55)


def test_errors_need_numbers() -> None:
    tracker = PerformanceTracker(baseline={"mae": 0.1}, min_rows=2)
    tracker.add(["a", "b"], ["c", "d"])
    with pytest.raises(UsageError, match="numeric"):
        tracker.check()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"baseline": {"r2": 0.9}}, "no trackable metric"),
        ({"baseline": {"accuracy": 0.9}, "window": 1}, ">= 2"),
    ],
)
def test_bad_trackers_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        PerformanceTracker(**options)


def test_outputs_and_labels_must_pair_up() -> None:
    tracker = PerformanceTracker(baseline={"accuracy": 0.9})
    with pytest.raises(UsageError, match="one per row"):
        tracker.add([1, 2], [1])


def test_labels_from_the_registry_join_predictions_by_id(
    tmp_path: Path, recorder: Recorder
) -> None:
    at = datetime(2024, 6, 1, tzinfo=timezone.utc)
    outputs, labels = labelled(400, 0.6, seed=9)
    with Registry(tmp_path / "reg") as registry:
        registry.record_predictions(
            PredictionRecord(
                id=f"p{i}", name="churn", at=at, rows=4, outputs=outputs[i : i + 4].tolist()
            )
            for i in range(0, 400, 4)
        )
        registry.record_predictions([PredictionRecord(id="bare", name="churn", at=at, rows=1)])
        registry.add_feedback({f"p{i}": labels[i : i + 4].tolist() for i in range(0, 200, 4)})
        registry.add_feedback({"bare": 1})
        tracker = PerformanceTracker(
            baseline={"accuracy": 0.9}, name="churn", registry=registry, min_rows=100
        )
        assert tracker.update_from_registry() == 200
        later = datetime.now(timezone.utc) + timedelta(seconds=1)
        registry.add_feedback(
            {f"p{i}": labels[i : i + 4].tolist() for i in range(200, 400, 4)}, at=later
        )
        assert tracker.update_from_registry() == 200
        assert tracker.update_from_registry() == 0
        assert tracker.n_labelled == 400
        assert tracker.check()[0].drop
        stored = registry.alerts("churn", kind="performance")
        assert [a.details["metric"] for a in stored] == ["accuracy"]
    assert len(recorder.reports) == 1


def test_update_from_registry_needs_one() -> None:
    with pytest.raises(UsageError, match="registry and name"):
        PerformanceTracker(baseline={"accuracy": 0.9}).update_from_registry()


# -- ROC AUC from scores -------------------------------------------------------------------


def scored(n: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary outputs, labels and positive-class scores; AUC = Φ(separation / √2)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.normal(labels * separation, 1.0)
    return (scores > separation / 2).astype(int), labels, scores


def test_auc_matches_scikit_learn_with_delong_intervals() -> None:
    from sklearn.metrics import roc_auc_score

    _, labels, scores = scored(800, 1.0, seed=10)
    estimate = roc_auc(labels, list(scores))
    assert estimate is not None
    value, se = estimate
    assert value == pytest.approx(roc_auc_score(labels, scores))
    assert 0.01 < se < 0.03
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 900)
    logits = rng.normal(size=(900, 3))
    logits[np.arange(900), y] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    macro = roc_auc(y, list(probabilities))
    assert macro is not None
    assert macro[0] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr"))
    two = roc_auc(np.array(["no", "yes"])[labels], list(np.column_stack([-scores, scores])))
    assert two is not None
    assert two[0] == pytest.approx(value)


def test_the_auc_interval_covers_the_true_auc() -> None:
    """Over many windows of 300 rows, the 95% DeLong interval holds the true AUC about 95%
    of the time (Φ(1 / √2) = 0.760 for a separation of one standard deviation)."""
    from scipy.stats import binom

    truth = 0.7602499389065233
    hits, runs = 0, 400
    for seed in range(runs):
        _, labels, scores = scored(300, 1.0, seed=seed)
        estimate = roc_auc(labels, list(scores))
        assert estimate is not None
        hits += abs(estimate[0] - truth) < 1.96 * estimate[1]
    assert binom.ppf(0.0005, runs, 0.95) <= hits <= binom.isf(0.0005, runs, 0.95)


def test_an_auc_drop_is_reported_from_scored_feedback(recorder: Recorder) -> None:
    tracker = PerformanceTracker(baseline={"roc_auc": 0.86}, window=1000)
    outputs, labels, scores = scored(1000, 1.5, seed=12)  # AUC about 0.86: as trained
    tracker.add(outputs, labels, scores=scores)
    [report] = tracker.check()
    assert report.status == "ok"
    assert report.low < 0.86 < report.high
    outputs, labels, scores = scored(1000, 0.8, seed=13)  # AUC about 0.71
    ids = [f"r{i}" for i in range(1000)]
    tracker.expect(ids, outputs, scores=scores)
    assert tracker.label(dict(zip(ids, labels.tolist(), strict=True))) == 1000
    [report] = tracker.check()
    assert report.drop
    assert report.high < report.threshold == pytest.approx(0.84)
    assert [r.metric for r in recorder.reports] == ["roc_auc"]


def test_auc_counts_only_scored_rows_and_needs_both_classes() -> None:
    tracker = PerformanceTracker(baseline={"roc_auc": 0.8, "accuracy": 0.8}, min_rows=50)
    outputs, labels, scores = scored(200, 1.0, seed=14)
    tracker.add(outputs[:100], labels[:100])  # no scores
    partial = [None if i % 10 == 0 else float(v) for i, v in enumerate(scores[100:])]
    tracker.add(outputs[100:], labels[100:], scores=partial)
    reports = by_metric(tracker.check())
    assert reports["roc_auc"].n == 90
    assert reports["accuracy"].n == 200
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None  # one class: no AUC
    three_columns = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]]
    assert roc_auc([0, 1, 0, 1], three_columns) is None  # class 2 not seen: columns unnamed


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (["a", "b"], "must be numbers"),
        (np.zeros((2, 2, 2)), "1-D or 2-D"),
        ([0.1], "one per row"),
    ],
)
def test_bad_scores_are_refused(scores: Any, message: str) -> None:
    tracker = PerformanceTracker(baseline={"roc_auc": 0.8})
    with pytest.raises(UsageError, match=message):
        tracker.add([0, 1], [0, 1], scores=scores)


def test_scores_must_match_the_classes_given() -> None:
    with pytest.raises(UsageError, match="3 columns but classes names 2"):
        roc_auc([0, 1, 0], [[0.2, 0.3, 0.5]] * 3, classes=[0, 1])


def test_binary_f1_is_that_of_the_second_class_as_training_evaluates_it() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(7)
    labels = np.where(rng.random(600) < 0.2, "yes", "no")  # an imbalanced positive class
    outputs = np.where(rng.random(600) < 0.8, labels, np.where(labels == "yes", "no", "yes"))
    binary = PerformanceTracker(baseline={"f1": 0.5}, classes=["no", "yes"])
    macro = PerformanceTracker(baseline={"f1": 0.5})
    for tracker in (binary, macro):
        tracker.add(outputs, labels)
    (report,) = binary.check()
    assert report.value == pytest.approx(f1_score(labels, outputs, pos_label="yes"))
    (report,) = macro.check()
    assert report.value == pytest.approx(f1_score(labels, outputs, average="macro"))
    assert binary.check()[0].value < report.value  # the rare class is the harder one


def feedback_items(inputs: np.ndarray, outputs: np.ndarray, labels: np.ndarray) -> list[Feedback]:
    at = datetime(2024, 6, 1, tzinfo=timezone.utc)
    return [
        Feedback(
            prediction_id=f"p{i}",
            name="churn",
            version=1,
            predicted_at=at,
            received_at=at + timedelta(seconds=i),
            rows=10,
            outputs=outputs[i : i + 10].tolist(),
            labels=labels[i : i + 10].tolist(),
            inputs=inputs[i : i + 10].tolist(),
        )
        for i in range(0, len(labels), 10)
    ]


def test_a_scorer_gives_recorded_inputs_scores_so_auc_is_tracked() -> None:
    from sklearn.metrics import roc_auc_score

    outputs, labels, scores = scored(400, 1.0, seed=4)
    inputs = scores.reshape(-1, 1)  # the "model" scores a row by its only feature
    calls: list[int] = []

    def scorer(rows: list[Any]) -> np.ndarray:
        calls.append(len(rows))
        return np.asarray(rows, dtype=float)[:, 0]

    tracker = PerformanceTracker(baseline={"accuracy": 0.9, "roc_auc": 0.95}, scorer=scorer)
    assert tracker.add_feedback(feedback_items(inputs, outputs, labels)) == 400
    assert calls == [400]  # one call for all the feedback read
    reports = by_metric(tracker.check())
    assert reports["roc_auc"].n == 400
    assert reports["roc_auc"].value == pytest.approx(roc_auc_score(labels, scores))
    assert reports["roc_auc"].drop  # Φ(1/√2) ≈ 0.76, far below 0.95
    unscored = PerformanceTracker(baseline={"accuracy": 0.9}, scorer=scorer)
    unscored.add_feedback(feedback_items(inputs, outputs, labels))
    assert len(calls) == 1  # no AUC tracked: no row scored


def test_a_failing_scorer_warns_and_the_other_metrics_go_on() -> None:
    from modelkit.exceptions import MonitoringWarning

    outputs, labels, scores = scored(400, 1.0, seed=5)

    def broken(rows: list[Any]) -> Any:
        raise ValueError("no model here")

    def short(rows: list[Any]) -> Any:
        return [0.5]  # one score for 400 rows

    for scorer in (broken, short):
        tracker = PerformanceTracker(baseline={"accuracy": 0.9, "roc_auc": 0.8}, scorer=scorer)
        with pytest.warns(
            MonitoringWarning, match=r"inputs of 40 labelled prediction\(s\) \(the first: p0\)"
        ):
            tracker.add_feedback(feedback_items(scores.reshape(-1, 1), outputs, labels))
        reports = by_metric(tracker.check())
        assert reports["accuracy"].n == 400
        assert reports["roc_auc"].status == "insufficient data"
