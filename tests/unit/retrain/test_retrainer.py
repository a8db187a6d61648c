"""The retraining loop: triggers, limits, lease, hooks, gate, promotion, approval, rollback."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from tests.unit.retrain.helpers import W_NEW, W_OLD, Serve, concept

from modelkit.exceptions import HookFailedWarning, NotFoundError, RegistryError
from modelkit.hookspecs import hookimpl
from modelkit.registry import Registry
from modelkit.retrain import (
    Gate,
    Retrainer,
    RetrainEvent,
    RetrainPolicy,
    RetrainVetoError,
    approve,
)

FAST: dict[str, Any] = {"cooldown": 0.0, "min_rows": 100, "gate": Gate(n_resamples=200)}


def kinds(registry: Registry) -> list[str]:
    return [e.kind for e in reversed(registry.retrain_events("churn"))]


class Recorder:
    """A plugin keeping what the retraining hooks saw, and optionally vetoing."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.triggered: list[list[dict[str, Any]]] = []
        self.promoted: list[RetrainEvent] = []
        self.rollbacks: list[RetrainEvent] = []

    @hookimpl
    def on_retrain_triggered(self, name: str, reasons: list[dict[str, Any]]) -> Any:
        self.triggered.append(reasons)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    @hookimpl
    def on_model_promoted(self, event: RetrainEvent) -> None:
        self.promoted.append(event)

    @hookimpl
    def on_rollback(self, event: RetrainEvent) -> None:
        self.rollbacks.append(event)


@pytest.fixture
def hooks(plugin_manager: pluggy.PluginManager) -> Recorder:
    recorder = Recorder()
    plugin_manager.register(recorder, name="recorder")
    return recorder


def test_a_drift_alert_retrains_and_promotes_a_better_challenger(
    registry: Registry, serve: Serve, hooks: Recorder
) -> None:
    serve(*concept(800, W_NEW, seed=2))
    registry.record_alert("churn", "drift", {"verdict": "drift"}, version=1)
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))

    outcome = retrainer.step()

    assert outcome.decision == "promoted"
    assert (outcome.champion, outcome.challenger) == (1, 2)
    assert registry.aliases("churn") == {"production": 2}
    assert kinds(registry) == ["triggered", "trained", "promoted"]
    promoted = registry.retrain_events("churn", kind="promoted")[0]
    gate = promoted.details["gate"]
    assert gate["n"] == 160  # the newest 20% of 800 rows, never trained on
    assert promoted.details["train_rows"] == 640
    assert gate["b"] > 0.9 > gate["a"]
    assert gate["p_value"] < 1e-6
    assert promoted.details["reasons"][0]["trigger"] == "drift"
    assert hooks.triggered[0][0]["trigger"] == "drift"
    assert [e.challenger for e in hooks.promoted] == [2]
    history = registry.history("churn", "production")
    assert history[-1].reason is not None
    assert history[-1].reason.startswith("retrain promoted")
    run = registry.get_run(promoted.details["run_id"])
    assert run.version == 2
    assert registry.load_artifact("churn/2").profile is not None
    assert retrainer.step().decision == "idle"  # the alert is older than the retrain


def test_a_worse_challenger_is_rejected_and_archived(registry: Registry, serve: Serve) -> None:
    serve(*concept(600, W_OLD, seed=3))
    registry.record_alert("churn", "performance", {"metric": "accuracy"})
    policy = RetrainPolicy(
        **FAST, train=lambda X, y: DummyClassifier(strategy="most_frequent").fit(X, y)
    )

    outcome = Retrainer(registry=registry, name="churn", policy=policy).step()

    assert outcome.decision == "rejected"
    assert registry.aliases("churn") == {"production": 1}
    assert registry.get("churn", 2).status == "archived"
    assert registry.get("churn", 2).tags["retrain"] == "rejected"
    rejected = registry.retrain_events("churn", kind="rejected")[0]
    assert rejected.details["passed"] is False
    assert rejected.details["gate"]["improvement"] < 0
    assert rejected.details["gate"]["p_value"] > 0.5
    assert "improvement below the margin" in (rejected.reason or "")
    run = registry.get_run(registry.retrain_events("churn", kind="trained")[0].details["run_id"])
    assert run.status == "finished"
    assert run.params["train"].endswith("<lambda>")


def test_the_margin_holds_back_a_challenger_that_is_only_a_little_better(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(800, W_NEW, seed=4))
    registry.record_alert("churn", "drift", {})
    policy = RetrainPolicy(**{**FAST, "gate": Gate(margin=0.9, n_resamples=200)})
    outcome = Retrainer(registry=registry, name="churn", policy=policy).step()
    assert outcome.decision == "rejected"
    assert outcome.comparison is not None
    assert outcome.comparison.p_value < 0.05


def test_manual_approval_leaves_the_challenger_pending_until_approved(
    registry: Registry, serve: Serve, hooks: Recorder
) -> None:
    serve(*concept(600, W_NEW, seed=5))
    registry.record_alert("churn", "drift", {})
    policy = RetrainPolicy(**FAST, approval="manual")

    outcome = Retrainer(registry=registry, name="churn", policy=policy).step()

    assert outcome.decision == "pending"
    assert registry.aliases("churn") == {"production": 1}
    assert registry.get("churn", 2).status == "active"
    with pytest.raises(NotFoundError, match="no pending retraining decision"):
        approve(registry, "churn", 1)
    event = approve(registry, "churn", 2, actor="reviewer@host")
    assert (event.kind, event.champion, event.challenger) == ("approved", 1, 2)
    assert event.actor == "reviewer@host"
    assert event.details["gate"]["b"] > event.details["gate"]["a"]
    assert registry.aliases("churn") == {"production": 2}
    assert [e.kind for e in hooks.promoted] == ["approved"]
    with pytest.raises(RegistryError, match="already approved"):
        approve(registry, "churn", 2)


def test_approval_is_refused_once_the_alias_moved_elsewhere(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(600, W_NEW, seed=5))
    outcome = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST)).retrain(
        promote=False
    )
    assert outcome.decision == "pending"
    X, y = concept(100, W_OLD, seed=9)
    from modelkit.training import train

    train(LogisticRegression(), X, y, name="churn", registry=registry, cv=2, alias="production")
    with pytest.raises(RegistryError, match="points to 3, not to version 1"):
        approve(registry, "churn", 2)


def test_the_cooldown_skips_a_retrain_once_and_says_why(registry: Registry, serve: Serve) -> None:
    serve(*concept(600, W_NEW, seed=6))
    registry.record_alert("churn", "drift", {})
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))
    assert retrainer.step().decision == "promoted"
    retrainer = Retrainer(
        registry=registry, name="churn", policy=RetrainPolicy(**{**FAST, "cooldown": 3600.0})
    )
    registry.record_alert("churn", "drift", {})

    first, second = retrainer.step(), retrainer.step()

    assert (first.decision, second.decision) == ("skipped", "skipped")
    assert kinds(registry)[-1] == "skipped"
    assert kinds(registry).count("skipped") == 1  # a poll loop does not repeat it
    skipped = registry.retrain_events("churn", kind="skipped")[0]
    assert skipped.reason is not None
    assert skipped.reason.startswith("cooldown")
    assert skipped.details["reasons"][0]["trigger"] == "drift"


def test_the_maximum_frequency_limits_retrains_in_a_window(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(600, W_NEW, seed=6))
    for _ in range(2):
        registry.record_retrain_event("churn", "triggered", champion=1)
    registry.record_alert("churn", "drift", {})
    policy = RetrainPolicy(**FAST, max_retrains=2, max_retrains_window=3600)
    outcome = Retrainer(registry=registry, name="churn", policy=policy).retrain(
        reasons=[{"trigger": "drift"}]
    )
    assert outcome.decision == "skipped"
    assert "max frequency: 2 retrain(s)" in (outcome.events[0].reason or "")


def test_another_holder_of_the_lease_makes_the_retrain_skip(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(600, W_NEW, seed=6))
    assert registry.acquire_lease("churn", "other-host", seconds=600) is not None
    outcome = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST)).retrain()
    assert outcome.decision == "skipped"
    assert "lease held by other-host" in (outcome.events[0].reason or "")
    assert kinds(registry) == ["skipped"]
    lease = registry.lease("churn")
    assert lease is not None
    assert lease.holder == "other-host"


def test_the_lease_is_released_after_a_retrain(registry: Registry, serve: Serve) -> None:
    serve(*concept(600, W_NEW, seed=6))
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))
    assert retrainer.retrain().decision == "promoted"
    assert registry.lease("churn") is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (False, "vetoed by plugin 'recorder'"),
        (RetrainVetoError("change freeze until Monday"), "change freeze until Monday"),
    ],
)
def test_a_hook_can_veto_a_retrain(
    registry: Registry, serve: Serve, plugin_manager: pluggy.PluginManager, answer: Any, reason: str
) -> None:
    plugin_manager.register(Recorder(answer), name="recorder")
    serve(*concept(600, W_NEW, seed=6))
    registry.record_alert("churn", "drift", {})
    outcome = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST)).step()
    assert outcome.decision == "skipped"
    assert reason in (outcome.events[0].reason or "")
    assert registry.aliases("churn") == {"production": 1}
    assert registry.versions("churn")[-1].version == 1


def test_a_failing_hook_warns_and_does_not_veto(
    registry: Registry, serve: Serve, plugin_manager: pluggy.PluginManager
) -> None:
    plugin_manager.register(Recorder(KeyError("oops")), name="recorder")
    serve(*concept(600, W_NEW, seed=6))
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))
    with pytest.warns(HookFailedWarning, match="on_retrain_triggered"):
        assert retrainer.retrain().decision == "promoted"


def test_too_few_labelled_rows_skip_the_retrain(registry: Registry, serve: Serve) -> None:
    serve(*concept(60, W_NEW, seed=6))
    serve(*concept(60, W_NEW, seed=7), inputs=False)
    outcome = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST)).retrain()
    assert outcome.decision == "skipped"
    assert "only 60 labelled row(s)" in (outcome.events[0].reason or "")


def test_training_trouble_is_recorded_as_failed(registry: Registry, serve: Serve) -> None:
    serve(*concept(300, W_NEW, seed=6))

    def broken(X: Any, y: Any) -> Any:
        raise RuntimeError("out of memory")

    policy = RetrainPolicy(**FAST, train=broken)
    outcome = Retrainer(registry=registry, name="churn", policy=policy).retrain()
    assert outcome.decision == "failed"
    assert kinds(registry) == ["triggered", "failed"]
    assert "RuntimeError: out of memory" in (outcome.events[-1].reason or "")
    assert registry.lease("churn") is None
    assert registry.runs("churn")[0].status == "failed"


def test_since_alert_trains_only_on_the_new_regime(registry: Registry, serve: Serve) -> None:
    start = registry.get("churn", 1).created_at
    serve(*concept(400, W_OLD, seed=8), at=start + timedelta(seconds=1))
    alert = registry.record_alert("churn", "drift", {}, at=start + timedelta(seconds=2))
    serve(*concept(300, W_NEW, seed=9), at=start + timedelta(seconds=3))
    policy = RetrainPolicy(**FAST, since_alert=True)
    outcome = Retrainer(registry=registry, name="churn", policy=policy).step()
    assert outcome.decision == "promoted"
    triggered = registry.retrain_events("churn", kind="triggered")[0]
    assert triggered.details["rows"] == 300
    assert triggered.details["data_since"] == alert.at.isoformat(timespec="microseconds")


def test_a_measured_drop_and_new_labels_trigger_without_alerts(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(300, W_NEW, seed=10))
    base = {**FAST, "on_drift": False, "on_performance": False}
    quiet = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**base))
    assert quiet.triggers() == []
    drop = Retrainer(
        registry=registry, name="churn", policy=RetrainPolicy(**base, performance_drop=0.2)
    ).triggers()
    assert [r["trigger"] for r in drop] == ["performance_drop"]
    assert drop[0]["n"] == 300
    assert drop[0]["baseline"] - drop[0]["live"] == pytest.approx(drop[0]["drop"])
    volume = Retrainer(
        registry=registry, name="churn", policy=RetrainPolicy(**base, min_new_labels=300)
    ).triggers()
    assert volume[0] == {"trigger": "data_volume", "new_labels": 300, "since": volume[0]["since"]}
    too_many = RetrainPolicy(**base, min_new_labels=301)
    assert Retrainer(registry=registry, name="churn", policy=too_many).triggers() == []


def test_a_schedule_fires_once_its_time_has_come(registry: Registry) -> None:
    registered = registry.get("churn", 1).created_at
    policy = RetrainPolicy(on_drift=False, on_performance=False, every=3600)
    retrainer = Retrainer(registry=registry, name="churn", policy=policy)
    assert retrainer.triggers(registered + timedelta(minutes=59)) == []
    due = retrainer.triggers(registered + timedelta(minutes=61))
    assert [r["trigger"] for r in due] == ["schedule"]
    cron = Retrainer(
        registry=registry, name="churn", policy=RetrainPolicy(on_drift=False, every="@daily")
    )
    assert cron.triggers(registered + timedelta(days=1, minutes=1))[0]["trigger"] == "schedule"


def test_data_can_come_from_a_callable_or_a_file(
    registry: Registry, serve: Serve, tmp_path: Path
) -> None:
    X, y = concept(500, W_NEW, seed=11)
    policy = RetrainPolicy(**FAST, data=lambda: (X, y))
    outcome = Retrainer(registry=registry, name="churn", policy=policy).retrain()
    assert outcome.decision == "promoted"
    assert outcome.events[0].details["rows"] == 500

    path = tmp_path / "recent.csv"
    columns = [f"f{i}" for i in range(X.shape[1])]
    table = np.column_stack([X, y])
    header = ",".join([*columns, "label"])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.10g")
    policy = RetrainPolicy(**FAST, data=str(path), target="label")
    from_file = Retrainer(registry=registry, name="churn", policy=policy).retrain()
    assert from_file.decision in ("promoted", "rejected")
    assert "recent.csv" in from_file.events[0].details["source"]
    assert from_file.events[0].details["rows"] == 500


def promote_by_hand(registry: Registry, old: int, new: int) -> None:
    registry.set_alias("churn", "production", new)
    registry.record_retrain_event(
        "churn", "promoted", alias="production", champion=old, challenger=new
    )


def test_a_worse_new_champion_is_rolled_back_on_the_same_labelled_rows(
    registry: Registry, serve: Serve, hooks: Recorder
) -> None:
    X, y = concept(400, W_OLD, seed=12)
    from modelkit.training import train

    train(LogisticRegression(), X, 1 - y, name="churn", registry=registry, cv=2)  # version 2
    promote_by_hand(registry, 1, 2)
    policy = RetrainPolicy(**FAST, watch_rows=150)
    retrainer = Retrainer(registry=registry, name="churn", policy=policy)
    serve(*concept(100, W_OLD, seed=13), version=2)
    assert retrainer.check_watch() is None  # not enough labelled rows yet

    serve(*concept(100, W_OLD, seed=14), version=2)
    outcome = retrainer.step()

    assert outcome.decision == "rolled_back"
    assert registry.aliases("churn") == {"production": 1}
    event = registry.retrain_events("churn", kind="rolled_back")[0]
    assert (event.champion, event.challenger) == (1, 2)
    watch = event.details["watch"]
    assert watch["n"] == 150
    assert watch["b"] > 0.9  # the old champion is right where 2 is wrong
    assert watch["a"] < 0.1
    assert registry.history("churn", "production")[-1].reason.startswith("rollback:")  # type: ignore[union-attr]
    assert [e.kind for e in hooks.rollbacks] == ["rolled_back"]
    assert retrainer.check_watch() is None  # the window is closed


def test_a_new_champion_that_holds_up_is_kept(registry: Registry, serve: Serve) -> None:
    X, y = concept(400, W_OLD, seed=15)
    from modelkit.training import train

    train(LogisticRegression(), X, y, name="churn", registry=registry, cv=2)
    promote_by_hand(registry, 1, 2)
    serve(*concept(200, W_OLD, seed=16), version=2)
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))
    outcome = retrainer.check_watch()
    assert outcome is not None
    assert outcome.decision == "kept"
    assert registry.aliases("churn") == {"production": 2}
    assert retrainer.check_watch() is None


def test_the_loop_runs_in_a_background_thread_until_stopped(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(600, W_NEW, seed=17))
    registry.record_alert("churn", "drift", {})
    promoted = threading.Event()

    class Signal:
        @hookimpl
        def on_model_promoted(self, event: RetrainEvent) -> None:
            promoted.set()

    from modelkit.plugins import get_plugin_manager

    get_plugin_manager().register(Signal(), name="signal")
    retrainer = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST))
    retrainer.start(interval=0.05)
    try:
        assert promoted.wait(60)
    finally:
        retrainer.stop(timeout=60)
    assert registry.aliases("churn") == {"production": 2}
    retrainer.start(interval=0.05)
    try:
        with pytest.raises(RegistryError, match="already running"):
            retrainer.start(0.05)
    finally:
        retrainer.stop(timeout=60)


def test_a_retrain_longer_than_its_lease_keeps_renewing_it(
    registry: Registry, serve: Serve
) -> None:
    serve(*concept(300, W_NEW, seed=18))
    seen: list[float] = []

    def slow(X: Any, y: Any) -> Any:
        first = registry.lease("churn")
        assert first is not None
        while True:  # until the lease was renewed past its first expiry
            lease = registry.lease("churn")
            assert lease is not None
            if lease.expires_at > first.expires_at:
                seen.append((lease.expires_at - first.expires_at).total_seconds())
                return LogisticRegression().fit(X, y)
            threading.Event().wait(0.01)

    policy = RetrainPolicy(**FAST, train=slow, lease_seconds=0.3)
    outcome = Retrainer(registry=registry, name="churn", policy=policy).retrain()
    assert outcome.decision == "promoted"
    assert seen
    assert seen[0] > 0
    assert registry.lease("churn") is None


def test_a_dataframe_model_with_categories_retrains_from_recorded_rows(
    tmp_path: Path,
) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelkit.registry import PredictionRecord
    from modelkit.training import train

    rng = np.random.default_rng(20)

    def frame(n: int, flip: bool) -> tuple[Any, Any]:
        X = pd.DataFrame(
            {
                "age": rng.normal(40, 10, size=n),
                "plan": rng.choice(["basic", "pro"], size=n),
            }
        )
        y = ((X["age"] - 40) / 10 + 2 * (X["plan"] == "pro") - 1 > 0).astype(int)
        return X, (1 - y if flip else y)

    def pipeline() -> Any:
        encode = make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough")
        return make_pipeline(encode, LogisticRegression(max_iter=1000))

    with Registry(tmp_path / "registry") as registry:
        X, y = frame(300, flip=False)
        train(pipeline(), X, y, name="churn", registry=registry, cv=2, alias="production")
        model = registry.load("churn@production")
        assert model.signature.input_type == "dataframe"
        X, y = frame(400, flip=True)
        outputs = model.predict(X).tolist()
        rows = X.to_numpy(dtype=object).tolist()
        registry.record_predictions(
            [
                PredictionRecord(
                    id=f"p{i}",
                    name="churn",
                    version=1,
                    at=registry.get("churn", 1).created_at + timedelta(seconds=i),
                    rows=1,
                    outputs=[outputs[i]],
                    inputs=[rows[i]],
                )
                for i in range(400)
            ]
        )
        registry.add_feedback({f"p{i}": int(y.iloc[i]) for i in range(400)})
        outcome = Retrainer(registry=registry, name="churn", policy=RetrainPolicy(**FAST)).retrain()
        assert outcome.decision == "promoted"
        assert outcome.comparison is not None
        assert outcome.comparison.b > 0.85
        assert outcome.comparison.a < 0.2


def test_a_file_without_the_columns_the_model_takes_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    from modelkit.exceptions import DataError

    path = tmp_path / "recent.csv"
    path.write_text("a,b\n1,2\n")
    no_label = RetrainPolicy(**FAST, data=str(path), target="label")
    with pytest.raises(DataError, match="no label column 'label'"):
        Retrainer(registry=registry, name="churn", policy=no_label).retrain()
    no_features = RetrainPolicy(**FAST, data=str(path), target="b")
    with pytest.raises(DataError, match="lacks the feature column"):
        Retrainer(registry=registry, name="churn", policy=no_features).retrain()
    assert registry.lease("churn") is None
    assert registry.retrain_events("churn") == []
