"""Many processes writing to one registry at once, on SQLite and on PostgreSQL.

Every worker is a separate Python process. Each prepares everything it needs, says "ready"
on its stdout, and blocks reading a pipe shared by all of them; once every worker is ready the
test closes the pipe's write end, which releases them all at the same instant (a barrier made
of one pipe, no sleeps). The workers then register versions, move an alias, or open a fresh
database and register, and print what they got.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from modelkit._sql import SCHEMA_VERSION
from modelkit.artifact import Artifact
from modelkit.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKERS = 8
REGISTERS_EACH = 5
MOVES_EACH = 12
VERSIONS = 4

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from modelkit.exceptions import RegistryError
    from modelkit.registry import Registry

    job = json.loads(sys.argv[1])
    go = int(sys.argv[2])
    artifacts = job["paths"]  # saved directories: registered without unpickling the models
    registry = None if job["mode"] == "fresh" else Registry(job["url"], artifacts=job["store"])
    os.write(1, b"ready\\n")
    assert os.read(go, 1) == b""  # released when the test closes the other end
    out = []
    if job["mode"] == "fresh":
        registry = Registry(job["url"], artifacts=job["store"])
    if job["mode"] in ("register", "fresh"):
        out = [registry.register("churn", artifact).version for artifact in artifacts]
    elif job["mode"] == "alias":
        for i, target in enumerate(job["targets"]):
            try:
                if i % 3 == 2:
                    out.append(registry.rollback("churn", "production", actor=job["actor"]).id)
                else:
                    event = registry.set_alias("churn", "production", target, actor=job["actor"])
                    out.append(event.id)
            except RegistryError as exc:  # a rollback right after the alias was created
                assert "no target before" in str(exc), exc
                out.append(None)
    registry.close()
    os.write(1, (json.dumps(out) + "\\n").encode())
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/meta/registry.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def saved_artifacts(tmp_path: Path) -> list[Path]:
    """Distinct saved artifacts, enough for every worker."""
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(30, 3))
    estimator = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    paths = []
    for i in range(WORKERS * REGISTERS_EACH):
        artifact = Artifact.from_model(
            estimator, name="churn", extra_files={"nonce.txt": str(i).encode()}
        )
        paths.append(artifact.save(tmp_path / "saved" / str(i)))
    return paths


def _run_workers(tmp_path: Path, jobs: list[dict[str, Any]]) -> list[Any]:
    """Start one process per job, release them together, return what each printed."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go_read, go_write = os.pipe()
    env = {**os.environ, "MODELKIT_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.extend(
            subprocess.Popen(
                [sys.executable, str(script), json.dumps(job), str(go_read)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(go_read,),
                env=env,
            )
            for job in jobs
        )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # EOF (a dead worker) fails here, it cannot hang
            assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    finally:
        os.close(go_read)
        os.close(go_write)  # the barrier opens for everyone at once
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out.decode().splitlines()[-1]))
    return results


def test_concurrent_processes_get_versions_one_to_n_without_gaps_or_duplicates(
    tmp_path: Path, registry_url: str, saved_artifacts: list[Path]
) -> None:
    store = str(tmp_path / "artifacts")
    Registry(registry_url, artifacts=store).close()  # the schema exists before the race
    chunks = [
        [str(p) for p in saved_artifacts[i * REGISTERS_EACH : (i + 1) * REGISTERS_EACH]]
        for i in range(WORKERS)
    ]
    jobs = [
        {"mode": "register", "url": registry_url, "store": store, "paths": paths}
        for paths in chunks
    ]
    results = _run_workers(tmp_path, jobs)

    total = WORKERS * REGISTERS_EACH
    got = sorted(itertools.chain.from_iterable(results))
    assert got == list(range(1, total + 1))
    for numbers in results:
        assert numbers == sorted(numbers)
    interleaved = sum(
        1 for numbers in results if numbers != list(range(numbers[0], numbers[0] + len(numbers)))
    )
    print(
        f"\n{registry_url.split(':', 1)[0]}: {WORKERS} processes x {REGISTERS_EACH} registers, "
        f"{interleaved} workers interleaved with others"
    )
    with Registry(registry_url, artifacts=store) as registry:
        by_number = {v.version: v for v in registry.versions("churn")}
        assert sorted(by_number) == list(range(1, total + 1))
        for numbers, paths in zip(results, chunks, strict=True):
            for number, path in zip(numbers, paths, strict=True):
                expected = Artifact.load(path).manifest_sha256
                assert by_number[number].artifact_sha256 == expected
        registry.load(f"churn/{total}")
        assert registry.get_model("churn").latest_version == total
        assert registry.gc(grace_seconds=0) == []


def test_concurrent_alias_movers_leave_one_consistent_history(
    tmp_path: Path, registry_url: str, saved_artifacts: list[Path]
) -> None:
    store = str(tmp_path / "artifacts")
    with Registry(registry_url, artifacts=store) as registry:
        for path in saved_artifacts[:VERSIONS]:
            registry.register("churn", Artifact.load(path))
    jobs = [
        {
            "mode": "alias",
            "url": registry_url,
            "store": store,
            "paths": [],
            "actor": f"worker-{i}",
            "targets": [(i + j) % VERSIONS + 1 for j in range(MOVES_EACH)],
        }
        for i in range(WORKERS)
    ]
    results = _run_workers(tmp_path, jobs)

    with Registry(registry_url, artifacts=store) as registry:
        events = registry.history("churn", "production")
        current = registry.aliases("churn")["production"]
    returned = {e for got in results for e in got if e is not None}
    assert returned <= {e.id for e in events}
    assert events[0].old_version is None
    rollbacks = 0
    for before, after in itertools.pairwise(events):
        assert after.id > before.id
        assert after.at >= before.at
        assert after.old_version == before.new_version  # nobody moved it in between
        assert after.old_version != after.new_version  # no-ops record nothing
        if after.reason == "rollback":
            assert after.new_version == before.old_version  # back to the previous target
            rollbacks += 1
    assert events[-1].new_version == current
    assert rollbacks > 0
    actors = {e.actor for e in events}
    print(
        f"\n{registry_url.split(':', 1)[0]}: {WORKERS} movers, {len(events)} events, "
        f"{rollbacks} rollbacks, {len(actors)} actors"
    )
    assert len(actors) > 1


def test_processes_opening_a_fresh_database_together_create_the_schema_once(
    tmp_path: Path, registry_url: str, saved_artifacts: list[Path]
) -> None:
    store = str(tmp_path / "artifacts")
    jobs = [
        {"mode": "fresh", "url": registry_url, "store": store, "paths": [str(path)]}
        for path in saved_artifacts[:WORKERS]
    ]
    results = _run_workers(tmp_path, jobs)
    assert sorted(n for got in results for n in got) == list(range(1, WORKERS + 1))
    with Registry(registry_url, artifacts=store) as registry:
        assert registry.backend.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
