"""``modelkit batch``, in process through ``modelkit.cli.main``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.cli import main
from modelkit.registry import Registry
from modelkit.training import train

Run = Callable[..., tuple[int, str, str]]


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


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding data.csv (id + 4 features) and a registry with seed@production."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / ".modelkit"))
    X, y = make_classification(n_samples=400, n_features=4, random_state=1)
    with Registry() as reg:
        train(
            LogisticRegression(), X, y, name="seed", registry=reg, alias="production", cv="holdout"
        )
    header = "id," + ",".join(f"f{j}" for j in range(4))
    lines = [f"{1000 + i}," + ",".join(str(float(v)) for v in row) for i, row in enumerate(X)]
    (tmp_path / "data.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    return tmp_path


def test_a_new_users_first_run(cli: Run, workdir: Path) -> None:
    argv = (
        "batch",
        "seed@production",
        "--input",
        "data.csv",
        "--output",
        "sqlite:///pred.db",
        "--table",
        "predictions",
        "--key",
        "id",
    )
    code, out, err = cli(*argv)
    assert (code, err) == (0, "")
    assert "400 rows in, 400 out, 0 quarantined, 0 skipped" in out
    assert (workdir / "pred.db").is_file()  # sqlite:///pred.db is relative to the directory
    with sqlite3.connect(workdir / "pred.db") as conn:
        assert conn.execute("SELECT count(DISTINCT id), min(id) FROM predictions").fetchone() == (
            400,
            1000,
        )
        assert conn.execute(
            "SELECT DISTINCT model_name, model_version FROM predictions"
        ).fetchall() == [("seed", 1)]
    code, out, _ = cli(*argv)
    assert code == 0
    assert "had already finished" in out


def test_json_proba_and_parquet_output(cli: Run, workdir: Path) -> None:
    code, out, _ = cli(
        "batch",
        "seed@production",
        "--input",
        "data.csv",
        "--output",
        "out.parquet",
        "--proba",
        "--job-id",
        "nightly-1",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert (result["job_id"], result["rows_out"]) == ("nightly-1", 400)
    import pandas as pd

    frame = pd.read_parquet(workdir / "out.parquet")
    np.testing.assert_allclose(frame["proba_0"] + frame["proba_1"], 1.0)


def test_mistakes_are_one_line(cli: Run, workdir: Path) -> None:
    code, _, err = cli("batch", "seed@staging", "--input", "data.csv", "--output", "p.db")
    assert code == 1
    assert err.startswith("error: model 'seed' has no alias 'staging'")
    code, _, err = cli(
        "batch", "seed@production", "--input", "data.csv", "--output", "p.db", "--key", "customer"
    )
    assert code == 1
    assert "no key column 'customer'" in err
    code, _, err = cli(
        "batch",
        "seed@production",
        "--input",
        "data.csv",
        "--output",
        "p.db",
        "--on-error",
        "ignore",
    )
    assert code == 2
    code, _, err = cli("batch", "seed@production", "--input", "nope.csv", "--output", "p.db")
    assert (code, err.strip()) == (1, "error: no such file: 'nope.csv'")


def test_progress_shows_on_a_terminal(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from modelkit.batch._progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = Progress(total=100, enabled=None, stream=stream)
    bar.bar = None  # the plain line, as without tqdm
    bar.drawn = -1e9
    bar.update(40)
    bar.close()
    text = stream.getvalue()
    assert "40 / 100 rows" in text
    assert "rows/s" in text
    quiet = Progress(total=None, stream=io.StringIO())
    assert not quiet.enabled
