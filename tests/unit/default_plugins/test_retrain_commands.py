"""``modelkit retrain``, ``modelkit watch``, ``models approve`` and ``models events``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelkit.cli import main
from modelkit.registry import PredictionRecord, Registry
from modelkit.training import train

Run = Callable[..., tuple[int, str, str]]
W = np.array([1.0, -2.0, 0.5, 1.5])


def rows(n: int, w: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, len(w)))
    return X, (X @ w > 0).astype(int)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry with churn@production (version 1) trained on a concept that has since
    turned around, and 500 labelled predictions of the new one."""
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / "registry"))
    monkeypatch.setenv("MODELKIT_ACTOR", "tester")
    with Registry(tmp_path / "registry") as registry:
        X, y = rows(400, W, seed=1)
        train(LogisticRegression(), X, y, name="churn", registry=registry, cv=2, alias="production")
        X, y = rows(500, -W, seed=2)
        model = registry.load("churn/1")
        records, labels = [], {}
        for i in range(0, 500, 10):
            pid = uuid.uuid4().hex
            records.append(
                PredictionRecord(
                    id=pid,
                    name="churn",
                    version=1,
                    at=registry.get("churn", 1).created_at,
                    rows=10,
                    outputs=model.predict(X[i : i + 10]).tolist(),
                    inputs=X[i : i + 10].tolist(),
                )
            )
            labels[pid] = y[i : i + 10].tolist()
        registry.record_predictions(records)
        registry.add_feedback(labels)
    return tmp_path / "registry"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_retrain_without_promote_leaves_a_pending_challenger_to_approve(
    home: Path, cli: Run
) -> None:
    code, out, err = cli("retrain", "churn", "--json")
    assert (code, err) == (0, "")
    outcome = json.loads(out)
    assert outcome["decision"] == "pending"
    assert outcome["comparison"]["b"] > outcome["comparison"]["a"]
    assert [e["kind"] for e in outcome["events"]] == ["triggered", "trained", "pending"]

    code, out, _ = cli("models", "approve", "churn", "2")
    assert code == 0
    assert "approved churn/2: churn@production 1 -> 2" in out
    with Registry(home) as registry:
        assert registry.aliases("churn") == {"production": 2}

    code, out, _ = cli("models", "events", "churn")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["AT", "KIND", "CHAMPION", "CHALLENGER"]
    assert [line.split()[1] for line in lines[1:]] == [
        "triggered",
        "trained",
        "pending",
        "approved",
    ]
    assert "accuracy" in lines[-1]
    code, out, _ = cli("models", "events", "churn", "--kind", "approved", "--json")
    assert [e["kind"] for e in json.loads(out)] == ["approved"]


def test_retrain_from_a_file_with_promote_moves_the_alias(
    home: Path, cli: Run, tmp_path: Path
) -> None:
    X, y = rows(400, -W, seed=3)
    path = tmp_path / "recent.csv"
    header = ",".join([*(f"f{i}" for i in range(X.shape[1])), "churned"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="")
    code, out, err = cli(
        "retrain", "churn", "--data", str(path), "--target", "churned", "--promote"
    )
    assert (code, err) == (0, "")
    assert [line.split()[1] for line in out.splitlines()] == ["triggered", "trained", "promoted"]
    assert "1 -> 2" in out.splitlines()[-1]
    with Registry(home) as registry:
        assert registry.aliases("churn") == {"production": 2}


def test_retrain_mistakes_are_one_line_errors(home: Path, cli: Run) -> None:
    code, _, err = cli("retrain", "churn", "--data", "recent.csv")
    assert code == 1
    assert "--data needs --target" in err
    code, _, err = cli("retrain", "churn/1")
    assert code == 1
    assert "pins version 1" in err
    code, _, err = cli("models", "approve", "churn", "7")
    assert code == 1
    assert "no pending retraining decision" in err
    code, out, _ = cli("models", "events", "fraud")
    assert code == 0
    assert "no retraining decisions recorded for fraud" in out


def test_watch_once_retrains_when_an_alert_fired(home: Path, cli: Run) -> None:
    code, out, _ = cli("watch", "churn@production", "--once", "--cooldown", "0")
    assert (code, out.strip()) == (0, "idle: nothing to do")
    with Registry(home) as registry:
        registry.record_alert("churn", "drift", {"verdict": "drift"})
    code, out, _ = cli("watch", "churn@production", "--once", "--json")
    assert code == 0
    assert json.loads(out)["decision"] == "promoted"


def test_watch_stops_cleanly_on_sigterm(home: Path) -> None:
    env = {**os.environ, "MODELKIT_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkit", "watch", "churn@production", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("watching churn@production every 0.2s (triggers: drift, performance)")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped watching churn@production")
