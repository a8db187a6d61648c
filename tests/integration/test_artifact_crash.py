"""Kill a process in the middle of saving artifacts, many times, and check what it leaves.

A helper process imports modelkit, fits a large-ish model once, and then, for every kill, forks
a writer that saves artifacts back to back (new directories and an atomic overwrite of one
directory) until it is killed with SIGKILL at a random moment. After each kill every directory
at the target paths must load and verify completely; the hidden temporary ones must be refused
by the loader. The writer is a real process killed by a real signal; the fork only saves the
import and fitting time per kill.
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from modelkit import _atomic
from modelkit.artifact import Artifact, verify
from modelkit.exceptions import ArtifactFormatError, ArtifactIntegrityError, NotFoundError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer process is forked"),
]

KILLS = 40
N_FEATURES = 20
PROBE_SEED = 99

WRITER = textwrap.dedent(
    f"""
    import hashlib, os, sys, time
    from pathlib import Path

    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    from modelkit.artifact import Artifact
    from modelkit.plugins import get_plugin_manager

    def say(line):
        os.write(1, (line + "\\n").encode())

    rng = np.random.default_rng(7)
    X = rng.normal(size=(200_000, {N_FEATURES}))  # ~32 MB of training data kept by the model
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    estimator = KNeighborsClassifier().fit(X, y)
    extras = {{f"extra/part-{{i:02d}}.bin": rng.bytes(64 * 1024) for i in range(16)}}
    artifact = Artifact.from_model(estimator, name="big", sample=X[:20], extra_files=extras)
    probe = np.random.default_rng({PROBE_SEED}).normal(size=(50, {N_FEATURES}))
    expected = hashlib.sha256(np.asarray(artifact.model.predict(probe)).tobytes()).hexdigest()
    get_plugin_manager()

    scratch = Path(sys.argv[1])
    start = time.perf_counter()
    artifact.save(scratch / "timing")
    say(f"ready {{time.perf_counter() - start:.6f}} {{expected}}")

    for command in sys.stdin:
        root = Path(command.split(" ", 1)[1].strip())
        pid = os.fork()
        if pid == 0:
            try:
                say(f"started {{os.getpid()}}")
                artifact.save(root / "current")
                i = 0
                while True:
                    artifact.save(root / f"fresh-{{i}}")
                    artifact.save(root / "current", overwrite=True)
                    i += 1
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

    def __call__(self, timeout: float = 120.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"the writer process said nothing for {timeout} s")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                assert self.proc.stderr is not None
                pytest.fail(f"the writer process died:\n{self.proc.stderr.read().decode()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().split()


def _prediction_digest(artifact: Artifact) -> str:
    probe = np.random.default_rng(PROBE_SEED).normal(size=(50, N_FEATURES))
    return hashlib.sha256(np.asarray(artifact.model.predict(probe)).tobytes()).hexdigest()


def test_a_save_killed_at_any_moment_never_leaves_a_loadable_partial_artifact(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("MODELKIT_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    (tmp_path / "scratch").mkdir()
    env = {
        **os.environ,
        "MODELKIT_LOAD_PLUGINS": "",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "scratch")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    read = LineReader(proc)
    counts: collections.Counter[str] = collections.Counter()
    try:
        word, seconds, expected = read(timeout=300)
        assert word == "ready"
        window = 4 * float(seconds)  # covers a first save, a new one, an overwrite and more
        assert proc.stdin is not None
        for kill in range(KILLS):
            root = tmp_path / f"kill-{kill}"
            proc.stdin.write(f"go {root}\n".encode())
            proc.stdin.flush()
            word, pid = read()
            assert word == "started"
            time.sleep(rng.uniform(0, window))  # the random kill moment is the point
            os.kill(int(pid), signal.SIGKILL)
            word, reaped, status = read()
            assert (word, reaped) == ("reaped", pid)
            assert os.WIFSIGNALED(int(status))
            assert os.WTERMSIG(int(status)) == signal.SIGKILL
            counts["kills"] += 1
            _scan(root, expected, counts)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    print(f"\nkill-during-save (seed {seed}): {dict(counts)}")
    assert counts["kills"] == KILLS
    # Every kill left only complete artifacts and recognisable temporary directories.
    assert counts["rejected"] == 0, counts
    # The kills really landed in the middle of saves, and after completed ones.
    assert counts["temporary"] > 0, counts
    assert counts["loaded"] > 0, counts


def _scan(root: Path, expected: str, counts: collections.Counter[str]) -> None:
    """Check every directory a killed writer left under ``root``."""
    if not root.exists():  # killed before even creating the directory
        counts["empty roots"] += 1
        return
    for entry in sorted(root.iterdir()):
        if _atomic.is_temporary_name(entry.name):
            counts["temporary"] += 1
            kind = entry.name.rsplit("-", 1)[0].rsplit(".", 1)[1]  # tmp, old or del
            complete = (entry / "manifest.json").exists()
            counts[f"temporary {kind} {'with' if complete else 'without'} manifest"] += 1
            with pytest.raises(NotFoundError, match="temporary directory"):
                Artifact.load(entry)
            continue
        try:
            loaded = Artifact.load(entry)
        except (ArtifactIntegrityError, ArtifactFormatError, NotFoundError) as exc:
            counts["rejected"] += 1
            counts[f"rejected {type(exc).__name__}"] += 1
            continue
        verify(entry, expected_manifest_sha256=loaded.manifest_sha256)
        assert _prediction_digest(loaded) == expected, entry
        counts["loaded"] += 1
