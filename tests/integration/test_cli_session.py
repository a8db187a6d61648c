"""A new user's first session with the registry, typed into a shell: the real ``modelkit``
console script in subprocesses, against a registry directory chosen with $MODELKIT_HOME.

train → models list → models versions → models alias → models history (and --at) →
models rollback → runs list / show → gc, then the promoted model loaded back in Python.
Run with ``-s`` to see the session as the user sees it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from modelkit.registry import Registry

pytestmark = pytest.mark.integration

LOGISTIC = [
    "--estimator",
    "sklearn.linear_model:LogisticRegression",
    "--param",
    "solver=liblinear",
    "--param",
    "C=0.5",
]
FOREST = [
    "--estimator",
    "sklearn.ensemble.RandomForestClassifier",
    "--param",
    "n_estimators=25",
    "--param",
    "max_depth=4",
    "--param",
    "random_state=0",
]


def _console_script() -> str:
    entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
    assert entry is not None, "the modelkit console script is not installed"
    return entry


class Shell:
    """Runs ``modelkit …`` like a user's shell would, keeping a transcript."""

    def __init__(self, cwd: Path, home: Path) -> None:
        self.entry = _console_script()
        self.cwd = cwd
        self.env = {
            **os.environ,
            "MODELKIT_HOME": str(home),
            "MODELKIT_ACTOR": "ann",
            "MODELKIT_LOAD_PLUGINS": "",  # the built-ins only, whatever is installed
        }
        self.transcript: list[str] = []

    def __call__(self, *args: str, status: int = 0) -> str:
        result = subprocess.run(
            [self.entry, *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.cwd,
            env=self.env,
            timeout=120,
        )
        self.transcript.append(f"$ modelkit {shlex.join(args)}")
        self.transcript.extend(line for line in (result.stdout + result.stderr).splitlines())
        assert result.returncode == status, result.stdout + result.stderr
        if status == 0:
            assert result.stderr == "", result.stderr
        return result.stdout


def rows(text: str) -> list[list[str]]:
    """The data rows of a table, split on blanks."""
    return [line.split() for line in text.splitlines()[1:]]


def test_a_first_session_with_the_registry(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = (X @ np.array([2.0, -1.0, 0.5, 0.0]) + rng.normal(scale=0.7, size=300) > 0).astype(int)
    np.savetxt(
        tmp_path / "train.csv",
        np.column_stack([X, y]),
        delimiter=",",
        header="age,income,tenure,calls,churned",
        comments="",
        fmt="%.17g",
    )
    home = tmp_path / "registry"
    shell = Shell(tmp_path, home)
    data = ["--data", "train.csv", "--target", "churned", "--name", "churn"]

    out = shell("train", *data, *LOGISTIC, "--alias", "production")
    fields = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines())
    first_run = fields["run"]
    assert fields["version"] == "churn/1  (models:/churn/1)"
    assert fields["alias"] == "churn@production -> 1"
    assert [r[0] for r in rows(out.split("\n\n")[1])] == ["accuracy", "f1", "roc_auc"]

    second = json.loads(
        shell("train", *data, *FOREST, "--cv", "holdout", "--tag", "kind=forest", "--json")
    )
    assert second["version"]["version"] == 2
    assert second["version"]["tags"] == {"kind": "forest"}
    assert second["run"]["params"]["n_estimators"] == 25
    shell("train", *data, *FOREST)  # shown only in the transcript: the human-readable output

    listed = rows(shell("models", "list"))
    assert [r[:3] for r in listed] == [["churn", "3", "production=1"]]

    versions = rows(shell("models", "versions", "churn"))
    assert [(r[0], r[1], r[3]) for r in versions] == [
        ("1", "active", "production"),
        ("2", "active", "-"),
        ("3", "active", "-"),
    ]
    assert versions[0][4] == first_run[:12]

    before_promotion = datetime.now(timezone.utc)
    out = shell("models", "alias", "churn", "production", "2", "--reason", "forest wins")
    assert out == "churn@production: 1 -> 2 (forest wins)\n"

    history = rows(shell("models", "history", "churn"))
    assert [r[1:5] for r in history] == [
        ["production", "-", "1", "ann"],
        ["production", "1", "2", "ann"],
    ]
    assert history[1][5:] == ["forest", "wins"]
    then = shell("models", "history", "churn", "--at", before_promotion.isoformat())
    assert rows(then)[1:] == [["production", "1"]]

    assert shell("models", "rollback", "churn", "production") == (
        "churn@production: 2 -> 1 (rollback)\n"
    )
    assert [r[1:4] for r in rows(shell("models", "history", "churn", "production"))][-1] == [
        "production",
        "2",
        "1",
    ]
    shown = shell("models", "show", "churn@production")
    assert "version      models:/churn/1" in shown.splitlines()

    runs = rows(shell("runs", "list"))
    assert [(r[1], r[2], r[5]) for r in runs] == [
        ("churn", "finished", "3"),
        ("churn", "finished", "2"),
        ("churn", "finished", "1"),
    ]
    assert runs[-1][0] == first_run[:12]
    out = shell("runs", "show", first_run[:8])
    assert f"run       {first_run}" in out.splitlines()
    assert "solver             liblinear" in out.splitlines()

    shell("models", "alias", "churn", "production", "9", status=1)
    error = shell.transcript[-1]
    assert error.startswith("error: ")
    assert "version 9" in error

    assert shell("gc", "--dry-run") == (
        "nothing to remove (unreferenced artifacts older than 3600s)\n"
    )
    assert json.loads(shell("gc", "--grace", "0", "--json"))["removed"] == []

    with Registry(home) as registry:
        model = registry.load("churn@production")
        assert registry.resolve("churn@production").version == 1
    from sklearn.linear_model import LogisticRegression

    same = LogisticRegression(solver="liblinear", C=0.5).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), same.predict(X))

    print("\n" + "\n".join(shell.transcript))


def test_output_piped_into_a_reader_that_went_away_ends_quietly(tmp_path: Path) -> None:
    """``modelkit plugins | head -0``: the reader is gone before the first write."""
    entry = _console_script()
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        result = subprocess.run(
            [entry, "plugins"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "MODELKIT_LOAD_PLUGINS": ""},
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 128 + 13
