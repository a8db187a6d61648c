"""Start servers in their own process groups, pinned to a core, and always stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import attrs
from envs import UnavailableError, tail

STOP_TIMEOUT = 15.0
"""Seconds a server's process group has to exit after SIGTERM before it is killed."""


@attrs.frozen
class Launch:
    """How to start one server: its command line, working directory and environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class Processes:
    """Every process a run starts; leaving the ``with`` block stops all that are left.

    Each process leads its own process group (``start_new_session``), so stopping it stops
    the workers it forked too (gunicorn's, uvicorn's, MLflow's), and a Ctrl-C in the terminal
    reaches only this script, which then stops them in order.
    """

    _running: list[subprocess.Popen[bytes]] = attrs.field(factory=list)

    def start(self, launch: Launch, *, cpus: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``launch`` under ``taskset -c cpus``, its output going to ``log``."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                ["taskset", "-c", cpus, *launch.argv],
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, wait for the leader, then SIGKILL the whole group."""
        if process in self._running:
            self._running.remove(process)
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        _signal_group(process.pid, signal.SIGKILL)  # workers left behind by the leader
        process.wait()

    def stop_all(self) -> None:
        """Stop every process still running, newest first."""
        while self._running:
            self.stop(self._running[-1])

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """POST a JSON ``body``; return the status and the answer's body (errors included)."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(
    process: subprocess.Popen[bytes], url: str, body: bytes, *, log: Path, deadline: float
) -> None:
    """Poll until ``url`` answers ``body`` with 200, else raise :class:`UnavailableError`.

    Gives up when the process exits (its log's last lines say why) or after ``deadline``
    seconds.
    """
    end = time.monotonic() + deadline
    last = "no answer"
    while time.monotonic() < end:
        if process.poll() is not None:
            raise UnavailableError(f"exited with status {process.returncode}: {tail(log)}")
        try:
            status, answer = post(url, body, timeout=2.0)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"HTTP {status}: {answer[:200]!r}"
        time.sleep(0.2)
    raise UnavailableError(f"not ready after {deadline:.0f} s ({last}): {tail(log)}")
