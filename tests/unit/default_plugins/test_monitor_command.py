"""``modelkit monitor check`` and ``modelkit monitor alerts``, in process through ``main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelkit.cli import main
from modelkit.default_plugins.monitor_command import EXIT_DRIFT, EXIT_NO_VERDICT, EXIT_OK
from modelkit.registry import Registry


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift, 10, n),
            "income": rng.lognormal(10, 1, n),
            "plan": rng.choice([1.0, 2.0, 3.0], n),
        }
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding churn@production (trained with a profile) and three CSV files."""
    root = tmp_path_factory.mktemp("monitor")
    train = frame(2000, 0)
    train["churned"] = (train["age"] > 45).astype(int)
    train.to_csv(root / "train.csv", index=False)
    frame(1500, 1).to_csv(root / "same.csv", index=False)
    frame(1500, 2, shift=5).assign(extra=1).to_csv(root / "live.csv", index=False)
    frame(10, 3).to_csv(root / "tiny.csv", index=False)
    frame(100, 4).drop(columns="plan").to_csv(root / "narrow.csv", index=False)
    status = main(
        [
            "train",
            "--data",
            str(root / "train.csv"),
            "--target",
            "churned",
            "--name",
            "churn",
            "--estimator",
            "sklearn.tree:DecisionTreeClassifier",
            "--param",
            "max_depth=3",
            "--cv",
            "2",
            "--alias",
            "production",
            "--registry",
            str(root / "reg"),
        ]
    )
    assert status == 0
    return root


def run(workspace: Path, *args: str) -> int:
    return main(["monitor", *args, "--registry", str(workspace / "reg")])


def test_no_drift_exits_0(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run(workspace, "check", "churn@production", "--current", str(workspace / "same.csv"))
    out = capsys.readouterr().out
    assert status == EXIT_OK
    assert "FEATURE" in out
    assert "verdict: no drift" in out


def test_drift_exits_1_and_names_the_feature(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(
        workspace, "check", "churn@production", "--current", str(workspace / "live.csv"), "--json"
    )
    report = json.loads(capsys.readouterr().out)
    assert status == EXIT_DRIFT
    assert report["verdict"] == "drift"
    assert report["model"] == "churn"
    assert report["features"][0]["name"] == "age"


def test_a_reference_file_adds_the_dependence_check(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(
        workspace,
        "check",
        "churn/1",
        "--current",
        str(workspace / "same.csv"),
        "--reference",
        str(workspace / "train.csv"),
        "--mode",
        "relevance",
        "--json",
    )
    report = json.loads(capsys.readouterr().out)
    assert status == EXIT_OK
    assert report["mode"] == "relevance"
    assert "dependence" in {f["name"] for f in report["features"]}


def test_too_few_rows_is_no_drift_but_says_so(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(workspace, "check", "churn@production", "--current", str(workspace / "tiny.csv"))
    assert status == EXIT_OK
    assert "verdict: insufficient data" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "churn@production", "--current", "nowhere.csv"], "no such file"),
        (["check", "churn@staging", "--current", "same.csv"], "staging"),
        (["check", "churn@production", "--current", "narrow.csv"], "lacks the model's feature"),
        (["check", "churn@production", "--current", "same.csv", "--alpha", "2"], "--alpha"),
    ],
)
def test_problems_exit_2_with_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [str(workspace / a) if a.endswith(".csv") else a for a in args]
    assert run(workspace, *args) == EXIT_NO_VERDICT
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1


def test_usage_errors_exit_2(workspace: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run(workspace, "check", "churn@production")
    assert info.value.code == EXIT_NO_VERDICT


def test_alerts_lists_what_monitors_stored(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Registry(workspace / "reg") as registry:
        registry.record_alert(
            "churn", "drift", {"verdict": "drift", "features": [{"name": "age"}]}, version=1
        )
        registry.record_alert("churn", "health", {"rule": "error_rate"})
    assert run(workspace, "alerts", "churn") == EXIT_OK
    out = capsys.readouterr().out
    assert "drift (top: age)" in out
    assert "error_rate" in out
    assert out.index("error_rate") < out.index("drift (top")  # newest first
    assert run(workspace, "alerts", "--kind", "drift", "--json") == EXIT_OK
    alerts = json.loads(capsys.readouterr().out)
    assert [a["kind"] for a in alerts] == ["drift"]
