"""Load with wrk: one thread, N connections, one JSON body, the figures parsed from ``post.lua``."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import attrs
from envs import HERE

LUA = HERE / "post.lua"
MARKER = "WRK_JSON "
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


@attrs.frozen
class Point:
    """One wrk run against one server at one concurrency."""

    server: str
    concurrency: int
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    cpu_s: float | None = None
    """CPU seconds the server's processes spent during the run (``None``: not measured)."""
    background_cpu_s: dict[str, float] | None = None
    """modelkit's own account of its background threads' CPU seconds during the run, by task
    (``drift``, ``checks``, ``record``), from ``/metrics``."""

    @property
    def ok_per_s(self) -> float:
        """Successful answers per second (wrk's requests less those with an error status)."""
        return (self.requests - self.non_2xx) / self.duration_s

    @property
    def errors(self) -> int:
        """Error answers plus socket errors."""
        return self.non_2xx + sum(self.socket_errors.values())

    def describe_errors(self) -> str:
        """``0``, or the total with its kinds: ``12 (non-2xx 2, timeout 10)``."""
        if not self.errors:
            return "0"
        kinds = {"non-2xx": self.non_2xx, **self.socket_errors}
        parts = ", ".join(f"{name} {count}" for name, count in kinds.items() if count)
        return f"{self.errors} ({parts})"

    def as_json(self) -> dict[str, Any]:
        """The raw figures, and the derived ones, for ``--json``."""
        return {**attrs.asdict(self), "ok_per_s": self.ok_per_s, "errors": self.errors}


def wrk_command(
    wrk: str, url: str, *, concurrency: int, duration: int, cpus: str, timeout: str = "5s"
) -> list[str]:
    """``taskset -c cpus wrk -t1 -cN -dDs --timeout 5s --latency -s post.lua URL``."""
    return [
        *("taskset", "-c", cpus, wrk, "-t1", f"-c{concurrency}", f"-d{duration}s"),
        *("--timeout", timeout, "--latency", "-s", str(LUA), url),
    ]


def run_wrk(argv: list[str], body: bytes, *, server: str, concurrency: int) -> Point:
    """Run wrk (``argv`` from :func:`wrk_command`) sending ``body``; parse its figures."""
    done = subprocess.run(
        argv,
        env={**os.environ, "WRK_BODY": body.decode()},
        capture_output=True,
        text=True,
        check=False,
    )
    figures = _figures(done.stdout)
    if done.returncode != 0 or figures is None:
        raise RuntimeError(
            f"wrk failed (status {done.returncode}): {done.stderr.strip() or done.stdout[-500:]}"
        )
    return Point(
        server=server,
        concurrency=concurrency,
        requests=int(figures["requests"]),
        duration_s=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1e3,
        p90_ms=figures["p90_us"] / 1e3,
        p99_ms=figures["p99_us"] / 1e3,
        max_ms=figures["max_us"] / 1e3,
        non_2xx=int(figures["status"]),
        socket_errors={kind: int(figures[kind]) for kind in SOCKET_ERRORS},
    )


def _figures(stdout: str) -> dict[str, float] | None:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            figures: dict[str, float] = json.loads(line[len(MARKER) :])
            return figures
    return None
