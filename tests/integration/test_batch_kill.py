"""SIGKILL a running ``modelkit batch`` at random points, many times; the rerun finishes with
every row exactly once (count and checksum of keys and predictions)."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.registry import Registry
from modelkit.training import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_ROWS = 60_000
CHUNK_ROWS = 2_000
DEADLINE = 60.0


def checksum(pairs: list[tuple[int, int]]) -> str:
    digest = hashlib.sha256()
    for key, prediction in sorted(pairs):
        digest.update(f"{key}:{prediction}\n".encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """data.csv (id + 6 features) and a registry with clf@production; the expected checksum."""
    root = tmp_path_factory.mktemp("kill")
    X, y = make_classification(n_samples=N_ROWS, n_features=6, random_state=3)
    with Registry(str(root / "registry")) as reg:
        train(
            LogisticRegression(),
            X[:2000],
            y[:2000],
            name="clf",
            registry=reg,
            alias="production",
            cv="holdout",
        )
        expected = reg.load("clf@production").predict(X)
    keys = np.arange(N_ROWS) * 7 + 11
    body = "\n".join(
        f"{k}," + ",".join(f"{v:.17g}" for v in row) for k, row in zip(keys, X, strict=True)
    )
    (root / "data.csv").write_text("id," + ",".join(f"f{j}" for j in range(6)) + "\n" + body + "\n")
    return root, checksum(list(zip(keys.tolist(), expected.tolist(), strict=True)))


def committed(out: Path, sink: str) -> int:
    """Chunks the job has committed so far (0 while nothing exists yet)."""
    if sink == "sqlite":
        if not out.exists():
            return 0
        try:
            with sqlite3.connect(out, timeout=0.1) as conn:
                return int(conn.execute("SELECT count(*) FROM modelkit_batch_chunks").fetchone()[0])
        except sqlite3.OperationalError:  # the tables do not exist yet, or a write lock
            return 0
    state = out / "_modelkit" / "killme"
    return len(list(state.glob("[0-9]*.json"))) if state.exists() else 0


def read_back(out: Path, sink: str) -> list[tuple[int, int]]:
    if sink == "sqlite":
        with sqlite3.connect(out) as conn:
            return [
                (int(k), int(p)) for k, p in conn.execute("SELECT id, prediction FROM predictions")
            ]
    import pandas as pd

    frame = pd.read_parquet(out)
    return list(zip(frame["id"].tolist(), frame["prediction"].tolist(), strict=True))


@pytest.mark.parametrize(("sink", "kills"), [("sqlite", 6), ("parquet", 3)])
def test_kill_and_resume(workdir: tuple[Path, str], sink: str, kills: int) -> None:
    root, expected = workdir
    out = root / ("out.db" if sink == "sqlite" else "out.parquet")
    target = f"sqlite:///{out}" if sink == "sqlite" else str(out)
    argv = [
        sys.executable,
        "-m",
        "modelkit",
        "batch",
        "clf@production",
        "--input",
        str(root / "data.csv"),
        "--output",
        target,
        "--key",
        "id",
        "--job-id",
        "killme",
        "--chunk-rows",
        str(CHUNK_ROWS),
        "--registry",
        str(root / "registry"),
        "--quiet",
    ]
    total_chunks = N_ROWS // CHUNK_ROWS
    rng = random.Random(f"{sink}-kills")
    killed_at: list[int] = []
    for _ in range(kills):
        before = committed(out, sink)
        if before >= total_chunks:
            break
        wanted = rng.randint(before, min(before + total_chunks // kills + 1, total_chunks - 1))
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + DEADLINE
        while committed(out, sink) < wanted and process.poll() is None:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
        killed_at.append(committed(out, sink))
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    pairs = read_back(out, sink)
    print(
        f"\n{sink}: killed {len(killed_at)} times after chunks {killed_at}; "
        f"final rows {len(pairs)}, distinct keys {len({k for k, _ in pairs})}, "
        f"checksum {checksum(pairs)[:16]} (expected {expected[:16]})"
    )
    assert len(pairs) == N_ROWS
    assert len({key for key, _ in pairs}) == N_ROWS
    assert checksum(pairs) == expected
    again = subprocess.run([*argv[:-1], "--json"], capture_output=True, text=True, check=True)
    assert '"already_finished": true' in again.stdout
    assert len(read_back(out, sink)) == N_ROWS
