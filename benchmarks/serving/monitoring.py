"""Monitoring overhead: modelkit with monitoring (and input recording) on and off.

``run.py --monitoring`` runs only these variants, at one concurrency (64 by default), and
reports each one's req/s and the CPU time its server process (and any workers) spent per
request, read from ``/proc`` around the timed run; the ratios say what monitoring and
input recording add per request. Every request carries the same row, so every drift window
(10,000 rows) drifts from the training profile and stores an alert: the dearest case for
monitoring.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from report import Outcome

VARIANTS = {
    "": ("monitoring on, inputs recorded (the default)", []),
    "-nomonitor": ("--no-monitor", ["--no-monitor"]),
    "-noinputs": ("--no-record-inputs", ["--no-record-inputs"]),
}
"""Name suffix -> (what it is, the ``modelkit serve`` options)."""
BACKENDS = ("native", "uvicorn")
GOAL = 1.05
"""Monitoring may add at most 5% CPU per request."""

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def background_cpu(url: str | None) -> dict[str, float] | None:
    """``modelkit_background_cpu_seconds_total`` by task, from a server's ``/metrics``."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("modelkit_background_cpu_seconds_total{"):
            labels, value = line.rsplit(" ", 1)
            task = labels.split('task="', 1)[1].split('"', 1)[0]
            found[task] = found.get(task, 0.0) + float(value)
    return found


def difference(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """What each task spent between two readings."""
    if before is None or after is None:
        return None
    return {task: after[task] - before.get(task, 0.0) for task in after}


def names() -> list[str]:
    """The server names of the variants, in the order they run."""
    return [f"modelkit-{backend}{suffix}" for backend in BACKENDS for suffix in VARIANTS]


def table(outcomes: Sequence[Outcome], concurrency: int) -> list[str]:
    """The markdown tables: req/s, CPU per request, the background threads' share, ratios."""
    found = {outcome.name: outcome.at(concurrency) for outcome in outcomes}
    lines = [
        f"### Monitoring overhead (c={concurrency})",
        "",
        "| server | variant | req/s | CPU µs / request | vs `--no-monitor` | drift + checks "
        "threads µs / request | recording thread µs / request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for backend in BACKENDS:
        base = f"modelkit-{backend}"
        off = _per_request(found.get(f"{base}-nomonitor"))
        for suffix, (about, _) in VARIANTS.items():
            point = found.get(base + suffix)
            cpu = _per_request(point)
            if point is None or cpu is None:
                lines.append(f"| {base} | {about} | not run | | | | |")
                continue
            versus = f"{cpu / off:.3f}" if off else ""
            monitor = _per_request(point, "drift", "checks")
            record = _per_request(point, "record")
            lines.append(
                f"| {base} | {about} | {point.ok_per_s:,.0f} | {cpu * 1e6:.1f} | {versus} | "
                f"{_us(monitor)} | {_us(record)} |"
            )
        on_point = found.get(base)
        on = _per_request(on_point)
        monitor = _per_request(on_point, "drift", "checks")
        if on and monitor is not None:
            share = monitor / (on - monitor)
            met = "met" if 1 + share <= GOAL else "NOT met"
            verdicts.append(
                f"- {base}: the monitoring threads spent {monitor * 1e6:.1f} µs per request, "
                f"{share:+.1%} over the rest of the server's CPU per request (goal ≤ +5%: {met})"
            )
        if on and off:
            verdicts.append(f"- {base}: CPU per request, monitoring on vs off: {on / off - 1:+.1%}")
        no_inputs = found.get(f"{base}-noinputs")
        with_rows, without_rows = (
            _per_request(on_point, "record"),
            _per_request(no_inputs, "record"),
        )
        if with_rows is not None and without_rows is not None and on:
            verdicts.append(
                f"- {base}: recording input rows costs the recording thread "
                f"{(with_rows - without_rows) * 1e6:+.1f} µs per request "
                f"({(with_rows - without_rows) / (on - with_rows + without_rows):+.1%} CPU per "
                "request)"
            )
    return [*lines, "", *verdicts]


def _per_request(point: object, *tasks: str) -> float | None:
    """CPU seconds per request: the server's, or the background tasks' (``tasks``)."""
    requests = getattr(point, "requests", 0)
    if not requests:
        return None
    if not tasks:
        cpu = getattr(point, "cpu_s", None)
        return None if cpu is None else float(cpu) / requests
    background = getattr(point, "background_cpu_s", None)
    if background is None:
        return None
    return sum(background.get(task, 0.0) for task in tasks) / requests


def _us(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e6:.1f}"
