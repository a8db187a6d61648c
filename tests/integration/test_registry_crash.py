"""Kill a process in the middle of registering, many times, and check what the registry holds.

A helper process imports modelkit and fits a model once; for every kill it forks a writer that
opens the registry and registers new artifacts back to back (each one saved first, then put
into the store, then recorded) until the test kills it with SIGKILL at a random moment. The
writer says when it has started through a pipe. After each kill every version row must load and
verify against its recorded hash, version numbers must run 1..n, and the only debris allowed
is store entries no row references (reclaimed by ``gc``) and hidden temporary directories.

A second test runs ``gc(grace_seconds=0)`` in a loop while a writer registers: even with no
grace period, gc never leaves a version row pointing to a missing artifact.
"""

from __future__ import annotations

import collections
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelkit import _atomic
from modelkit.exceptions import NotFoundError
from modelkit.registry import Registry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer process is forked"),
]

KILLS = 40
BLOB_BYTES = 2 << 20  # makes the store's copy a large part of every register

HELPER = textwrap.dedent(
    f"""
    import itertools, os, sys, time
    from pathlib import Path

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from modelkit.artifact import Artifact
    from modelkit.plugins import get_plugin_manager
    from modelkit.registry import Registry

    def say(line):
        os.write(1, (line + "\\n").encode())

    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    estimator = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    get_plugin_manager()

    serial = itertools.count()

    def register_forever(registry, scratch, limit=None):
        for _ in itertools.count() if limit is None else range(limit):
            i = next(serial)
            artifact = Artifact.from_model(
                estimator,
                name="churn",
                sample=X,
                metrics={{"i": float(i)}},
                extra_files={{"blob.bin": os.urandom({BLOB_BYTES})}},
            )
            path = artifact.save(scratch / f"{{os.getpid()}}-{{i}}")
            registry.register("churn", artifact, tags={{"i": str(i)}})

    scratch = Path(sys.argv[1])
    url, store = sys.argv[2], sys.argv[3]
    with Registry(scratch / "timing") as timing:
        register_forever(timing, scratch / "timing-src", limit=1)  # warm up
        start = time.perf_counter()
        register_forever(timing, scratch / "timing-src", limit=3)
    say(f"ready {{(time.perf_counter() - start) / 3:.6f}}")

    for command in sys.stdin:
        word, count = command.split()
        pid = os.fork()
        if pid == 0:
            try:
                registry = Registry(url, artifacts=store)
                say(f"started {{os.getpid()}}")
                register_forever(registry, scratch, limit=None if word == "go" else int(count))
                registry.close()
                say("done")
                os._exit(0)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        say(f"reaped {{pid}} {{status}}")
    """
)


class LineReader:
    """Read lines from a pipe, failing instead of hanging if the other side goes quiet."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def ready(self) -> bool:
        """True if a line is waiting (without blocking)."""
        if b"\n" in self.buffer:
            return True
        return bool(select.select([self.fd], [], [], 0)[0])

    def __call__(self, timeout: float = 180.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"the helper process said nothing for {timeout} s")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                assert self.proc.stderr is not None
                pytest.fail(f"the helper process died:\n{self.proc.stderr.read().decode()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().split()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/meta/registry.db"
    return str(request.getfixturevalue("postgres_url"))


def _start_helper(tmp_path: Path, url: str, store: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    (tmp_path / "scratch").mkdir()
    env = {**os.environ, "MODELKIT_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "scratch"), url, store],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _stop_helper(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    proc.wait(timeout=60)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _send(proc: subprocess.Popen[bytes], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{line}\n".encode())
    proc.stdin.flush()


def _temporary_entries(store_root: Path) -> set[str]:
    """Hidden temporary directories in the store: puts that were killed (or are running)."""
    if not store_root.is_dir():
        return set()
    return {
        entry.name
        for shard in store_root.iterdir()
        if shard.is_dir()
        for entry in shard.iterdir()
        if _atomic.is_temporary_name(entry.name)
    }


def _scan(registry: Registry, checked: set[int], counts: collections.Counter[str]) -> None:
    """Check every version row added since the last scan, and the numbering of all of them."""
    try:
        versions = registry.versions("churn")
    except NotFoundError:
        counts["scans without versions"] += 1
        return
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    for version in versions:
        if version.version in checked:
            continue
        artifact = registry.load_artifact(version.uri)  # verifies every file and the manifest hash
        assert artifact.manifest_sha256 == version.artifact_sha256
        assert artifact.metrics["i"] == float(version.tags["i"])
        checked.add(version.version)
        counts["versions verified"] += 1


def test_a_register_killed_at_any_moment_leaves_no_row_without_its_artifact(
    tmp_path: Path, registry_url: str
) -> None:
    seed = int(os.environ.get("MODELKIT_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    store = tmp_path / "artifacts"
    registry = Registry(registry_url, artifacts=str(store))
    proc = _start_helper(tmp_path, registry_url, str(store))
    read = LineReader(proc)
    counts: collections.Counter[str] = collections.Counter()
    checked: set[int] = set()
    temporary: set[str] = set()
    try:
        word, seconds = read(timeout=300)
        assert word == "ready"
        window = 3 * float(seconds)  # a few registers: lands in saves, puts and transactions
        for _ in range(KILLS):
            _send(proc, "go 0")
            word, pid = read()
            assert word == "started"
            time.sleep(rng.uniform(0, window))  # the random kill moment is the point
            os.kill(int(pid), signal.SIGKILL)
            word, reaped, status = read()
            assert (word, reaped) == ("reaped", pid)
            assert os.WIFSIGNALED(int(status))
            assert os.WTERMSIG(int(status)) == signal.SIGKILL
            counts["kills"] += 1
            temporary |= _temporary_entries(store)
            _scan(registry, checked, counts)
        counts["killed puts (temporary directories)"] = len(temporary)
        stray = set(registry.store.keys()) - registry.backend.referenced_artifacts()
        counts["stray store entries"] = len(stray)
        verified = len(checked)
        assert registry.gc(grace_seconds=3600) == []  # all young: could be registers in flight
        assert set(registry.gc(grace_seconds=0)) == stray
        assert set(registry.store.keys()) == registry.backend.referenced_artifacts()
        checked.clear()
        _scan(registry, checked, collections.Counter())  # every row still loads after gc
        assert len(checked) == verified
        if registry_url.startswith("sqlite"):
            conn = sqlite3.connect(Path(registry_url.removeprefix("sqlite://")))
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            conn.close()
    finally:
        registry.close()
        _stop_helper(proc)

    print(
        f"\nkill-during-register on {registry_url.split(':', 1)[0]} (seed {seed}): {dict(counts)}"
    )
    assert counts["kills"] == KILLS
    assert len(checked) > 0, counts  # registers completed between kills
    # Kills landed between storing an artifact and committing its row, or inside a put.
    assert counts["stray store entries"] + len(temporary) > 0, counts


def test_gc_without_grace_racing_a_writer_never_strands_a_version(
    tmp_path: Path, registry_url: str
) -> None:
    store = tmp_path / "artifacts"
    registry = Registry(registry_url, artifacts=str(store))
    proc = _start_helper(tmp_path, registry_url, str(store))
    read = LineReader(proc)
    removed: list[str] = []
    try:
        assert read(timeout=300)[0] == "ready"
        _send(proc, "count 12")
        assert read()[0] == "started"
        while not read.ready():  # collect as aggressively as possible until the writer is done
            removed += registry.gc(grace_seconds=0)
        assert read() == ["done"]
        assert read()[0] == "reaped"
        versions = registry.versions("churn")
        assert [v.version for v in versions] == list(range(1, 13))
        for version in versions:
            registry.load_artifact(version.uri)  # present and intact, whatever gc did
        restored = set(removed) & {v.artifact_sha256 for v in versions}
    finally:
        registry.close()
        _stop_helper(proc)
    print(
        f"\ngc racing a writer on {registry_url.split(':', 1)[0]}: {len(removed)} entries "
        f"collected, {len(restored)} of them in flight and stored again by their register"
    )
