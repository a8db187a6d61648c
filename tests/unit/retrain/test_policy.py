"""RetrainPolicy, Gate and Schedule: validated configuration."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from modelkit.exceptions import UsageError
from modelkit.retrain import Gate, RetrainPolicy, Schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_the_default_policy_retrains_on_alerts_with_an_hour_of_cooldown() -> None:
    policy = RetrainPolicy()
    assert policy.triggers == ("drift", "performance")
    assert policy.cooldown == 3600
    assert policy.gate == Gate()
    assert policy.approval == "auto"


def test_every_trigger_can_be_combined() -> None:
    policy = RetrainPolicy(performance_drop=0.05, every="@daily", min_new_labels=500)
    assert policy.triggers == (
        "drift",
        "performance",
        "performance_drop",
        "schedule",
        "data_volume",
    )
    assert isinstance(policy.every, Schedule)
    assert RetrainPolicy(every=600).every == 600.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cooldown": -1}, "cooldown must be a number >= 0"),
        ({"performance_drop": 0}, "performance_drop must be a number > 0"),
        ({"every": 0}, "every must be a number of seconds > 0"),
        ({"every": [1]}, "every is a number of seconds or a schedule"),
        ({"min_new_labels": 0}, "min_new_labels must be an integer >= 1"),
        ({"max_retrains": True}, "max_retrains must be an integer >= 1"),
        ({"data": 3}, "data is None"),
        ({"data": "recent.csv"}, "target="),
        ({"data": " ", "target": "y"}, "empty string"),
        ({"query": "SELECT 1"}, "query reads a database"),
        ({"train": "fit"}, "train is a callable"),
        ({"approval": "maybe"}, "approval"),
        ({"window_rows": 100, "min_rows": 200}, "window_rows"),
        ({"watch_rows": -1}, "watch_rows must be an integer >= 0"),
        ({"lease_seconds": 0}, "lease_seconds must be a number > 0"),
    ],
)
def test_invalid_policies_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises((UsageError, ValueError), match=message):
        RetrainPolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "auc"}, "metric"),
        ({"alpha": 0}, "alpha must be a number > 0.0 and <= 0.5"),
        ({"holdout": 1.0}, "holdout"),
        ({"margin": -0.1}, "margin must be a number >= 0"),
        ({"n_resamples": 10}, "n_resamples must be an integer >= 100"),
    ],
)
def test_invalid_gates_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises((UsageError, ValueError), match=message):
        Gate(**options)  # type: ignore[arg-type]


def test_the_gate_holds_out_the_newest_share_with_a_floor() -> None:
    gate = Gate(holdout=0.25, min_holdout_rows=50)
    assert gate.holdout_rows(1000) == 250
    assert gate.holdout_rows(100) == 50


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("*/15 * * * *", "2024-05-01T12:07:30", "2024-05-01T12:15:00"),
        ("0 3 * * *", "2024-05-01T03:00:00", "2024-05-02T03:00:00"),
        ("@hourly", "2024-05-01T23:59:00", "2024-05-02T00:00:00"),
        ("30 9 * * 1-5", "2024-05-03T10:00:00", "2024-05-06T09:30:00"),  # Friday -> Monday
        ("0 0 1 */3 *", "2024-02-10T00:00:00", "2024-04-01T00:00:00"),
        ("0 12 13 * 5", "2024-05-01T00:00:00", "2024-05-03T12:00:00"),  # day 13 OR Friday
        ("5,10 * * * *", "2024-05-01T12:05:00", "2024-05-01T12:10:00"),
    ],
)
def test_schedules_fire_like_cron(spec: str, after: str, expected: str) -> None:
    schedule = Schedule(spec)
    assert schedule.next_after(at(after)) == at(expected)
    assert schedule.matches(at(expected))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("* * *", "has 3 field"),
        ("61 * * * *", "values run from 0 to 59"),
        ("a * * * *", "use \\*, N"),
        ("*/0 * * * *", "values run"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Schedule(spec)


def test_a_schedule_that_never_fires_is_refused_when_asked() -> None:
    with pytest.raises(UsageError, match="never fires"):
        Schedule("0 0 31 2 *").next_after(at("2024-01-01T00:00:00"))
