"""One retrain per model at a time, across processes: the lease in the registry database."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelkit.registry import Registry
from modelkit.retrain import Gate, Retrainer, RetrainPolicy
from modelkit.training import train

pytestmark = pytest.mark.integration

PROCESSES = 6


def _take(url: str, artifacts: str, holder: str, barrier: Any, results: Any) -> None:
    with Registry(url, artifacts=artifacts) as registry:
        barrier.wait()
        lease = registry.acquire_lease("churn", holder, seconds=60)
        results.put((holder, lease is not None))


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{(tmp_path / 'registry.db').as_posix()}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_processes_racing_for_a_lease_get_exactly_one(registry_url: str, tmp_path: Path) -> None:
    artifacts = str(tmp_path / "artifacts")
    Registry(registry_url, artifacts=artifacts).close()  # migrate once
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(target=_take, args=(registry_url, artifacts, f"p{i}", barrier, results))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    winners = [holder for holder, won in got.items() if won]
    assert len(winners) == 1
    with Registry(registry_url, artifacts=artifacts) as registry:
        lease = registry.lease("churn")
        assert lease is not None
        assert lease.holder == winners[0]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from modelkit.hookspecs import hookimpl
    from modelkit.plugins import get_plugin_manager
    from modelkit.registry import Registry
    from modelkit.retrain import Gate, Retrainer, RetrainPolicy

    url, artifacts, started, release = sys.argv[1:5]

    class Pause:
        @hookimpl
        def on_retrain_triggered(self):
            Path(started).touch()  # holding the lease now
            while not Path(release).exists():
                time.sleep(0.01)

    get_plugin_manager().register(Pause(), name="pause")
    with Registry(url, artifacts=artifacts) as registry:
        X = np.random.default_rng(0).normal(size=(400, 4))
        y = (X[:, 0] > 0).astype(int)
        policy = RetrainPolicy(
            data=lambda: (X, 1 - y), cooldown=0, min_rows=100, gate=Gate(n_resamples=100)
        )
        retrainer = Retrainer(registry=registry, name="churn", holder="first", policy=policy)
        print(retrainer.retrain().decision)
    """
)


def test_a_second_process_skips_while_the_first_retrains(registry_url: str, tmp_path: Path) -> None:
    artifacts = str(tmp_path / "artifacts")
    X = np.random.default_rng(0).normal(size=(400, 4))
    y = (X[:, 0] > 0).astype(int)
    with Registry(registry_url, artifacts=artifacts) as registry:
        train(LogisticRegression(), X, y, name="churn", registry=registry, cv=2, alias="production")
    policy = RetrainPolicy(
        cooldown=0, min_rows=100, data=lambda: (X, 1 - y), gate=Gate(n_resamples=100)
    )
    started, release = tmp_path / "started", tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, registry_url, artifacts, str(started), str(release)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not started.exists():  # the first process holds the lease
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        with Registry(registry_url, artifacts=artifacts) as registry:
            second = Retrainer(registry=registry, name="churn", holder="second", policy=policy)
            skipped = second.retrain()
            assert skipped.decision == "skipped"
            assert "lease held by first" in (skipped.events[0].reason or "")
            release.touch()
            out, err = first.communicate(timeout=120)
            assert first.returncode == 0, err
            assert out.strip() == "promoted"
            assert registry.lease("churn") is None
            assert [e.kind for e in reversed(registry.retrain_events("churn"))] == [
                "skipped",
                "triggered",
                "trained",
                "promoted",
            ]
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
            first.communicate()
