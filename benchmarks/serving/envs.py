"""The tools a run needs: peer virtual environments, wrk, taskset and py-spy.

Each peer gets its own virtual environment under ``~/.cache/modelkit-bench/venvs/<peer>``
(``$MODELKIT_BENCH_CACHE`` moves the cache), built once from ``requirements-<peer>.txt`` and
reused while that file is unchanged; none of it touches the project's own environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("MODELKIT_BENCH_CACHE", "~/.cache/modelkit-bench")).expanduser()
INSTALL_TIMEOUT = 1800.0
"""Seconds one ``pip install`` of a peer may take (MLflow pulls in a lot)."""


class UnavailableError(Exception):
    """A peer or tool that cannot be had here; the message says why."""


@attrs.frozen
class Venv:
    """A peer's virtual environment."""

    name: str
    path: Path

    def bin(self, program: str) -> str:
        """The path of ``program`` in the environment's ``bin`` directory."""
        return str(self.path / "bin" / program)

    @property
    def python(self) -> str:
        """The environment's interpreter."""
        return self.bin("python")


def requirements(peer: str) -> Path:
    """``requirements-<peer>.txt`` beside this file: the pinned packages of a peer."""
    return HERE / f"requirements-{peer}.txt"


def ensure_venv(peer: str, log: Path) -> Venv:
    """Create (once) and return the virtual environment of ``peer``; pip's output goes to ``log``.

    Raises :class:`UnavailableError` with pip's last lines when the packages cannot be installed.
    """
    venv = Venv(peer, CACHE / "venvs" / peer)
    wanted = requirements(peer).read_text()
    marker = venv.path / ".bench-requirements"
    if marker.is_file() and marker.read_text() == wanted:
        return venv
    print(f"  installing {peer} into {venv.path} (once; this may take minutes)", flush=True)
    if not Path(venv.python).exists():
        _logged([sys.executable, "-m", "venv", str(venv.path)], log, f"python -m venv {peer}")
    install = [venv.python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _logged([*install, "-r", str(requirements(peer))], log, f"pip install for {peer}")
    marker.write_text(wanted)
    return venv


def _logged(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise UnavailableError(f"{what} took more than {INSTALL_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise UnavailableError(f"{what} failed (status {done.returncode}): {tail(log)}")


def tail(log: Path, lines: int = 3) -> str:
    """The last meaningful lines of a log file, on one line (pip's index warnings left out)."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no output)"
    kept = [line.strip() for line in text if line.strip() and "is ignored:" not in line]
    return " | ".join(kept[-lines:]) or "(no output)"


def versions(python: str, packages: list[str]) -> dict[str, str]:
    """The installed versions of ``packages`` in the environment of ``python``."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n        return 'not installed'\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [python, "-c", code, *packages], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(out.stdout)
    return found


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get when missing (and saying so)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: running `apt-get install -y wrk`", flush=True)
    apt = shutil.which("apt-get")
    if apt is not None:
        for argv in ([apt, "install", "-y", "wrk"], [apt, "update"], [apt, "install", "-y", "wrk"]):
            subprocess.run(argv, capture_output=True, check=False)
            found = shutil.which("wrk")
            if found:
                print(f"installed wrk at {found}", flush=True)
                return found
    raise SystemExit(
        "error: wrk is needed and could not be installed with `apt-get install -y wrk` "
        "(needs root and Debian's packages); install wrk 4.x yourself and run again"
    )


def ensure_taskset(cores: int) -> None:
    """Check that ``taskset`` exists and there are enough cores to separate server and load."""
    if shutil.which("taskset") is None:
        raise SystemExit("error: taskset (util-linux) is needed to pin processes to cores")
    if len(os.sched_getaffinity(0)) < cores:
        raise SystemExit(
            f"error: the benchmark pins the server and wrk to {cores} different cores, "
            f"but this process may use only {len(os.sched_getaffinity(0))}"
        )


def ensure_py_spy() -> str:
    """The path of ``py-spy`` in the running environment, pip-installed there when missing."""
    here = Path(sys.executable).parent / "py-spy"
    if here.exists():
        return str(here)
    print("py-spy is not installed: pip-installing it into this environment", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "py-spy"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not here.exists():
        raise UnavailableError(f"pip install py-spy failed: {done.stderr.strip()[-300:]}")
    return str(here)


def export_source(revision: str, dest: Path) -> tuple[Path, str]:
    """Write ``src/modelkit`` as of git ``revision`` under ``dest``; return its ``src`` and sha.

    Only reads the repository (``git archive``): the working tree is left as it is.
    """
    import io
    import tarfile

    repo = HERE.parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", f"{revision}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", sha, "src/modelkit"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise SystemExit(f"error: cannot export modelkit at {revision!r}: {detail!r}") from exc
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src", sha
