"""The report: machine, versions, the table, modelkit's ratios to each peer, the goals."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from load import Point

OURS = "modelkit-native"
"""The modelkit server profiled with ``--profile``."""
OURS_ALL = ("modelkit-native", "modelkit-uvicorn", "modelkit-gunicorn")
"""The modelkit servers whose ratios to each peer are reported, with the goals."""
GOALS = (
    (64, "seed-flask-run", 6.0),
    (64, "mlserver-batch", 6.0),
    (64, "raw-asgi", 2.0),
    (1, "raw-asgi", 0.8),
)
"""(concurrency, peer, ratio): modelkit's req/s must reach ``ratio`` x the peer's."""
P99_GOAL_MS = (64, 25.0)


@attrs.frozen
class Outcome:
    """One server's results: its points, or why it did not run."""

    name: str
    about: str
    environment: str
    versions: dict[str, str]
    command: list[str] = attrs.field(factory=list)
    points: list[Point] = attrs.field(factory=list)
    not_run: str | None = None
    rounds: list[list[Point]] = attrs.field(factory=list)
    """Every round's points, when the servers ran several rounds (``points`` holds medians)."""
    skipped: list[str] = attrs.field(factory=list)
    """Why some rounds (not all) did not run."""

    def at(self, concurrency: int) -> Point | None:
        """The point at ``concurrency``, if measured."""
        return next((p for p in self.points if p.concurrency == concurrency), None)

    def as_json(self) -> dict[str, Any]:
        """Everything, for ``--json``."""
        return {
            "name": self.name,
            "about": self.about,
            "environment": self.environment,
            "versions": self.versions,
            "command": self.command,
            "not_run": self.not_run,
            "points": [p.as_json() for p in self.points],
            "rounds": [[p.as_json() for p in points] for points in self.rounds],
            "skipped_rounds": self.skipped,
        }


def combine(rounds: Sequence[Sequence[Outcome]], order: Sequence[str]) -> list[Outcome]:
    """One outcome per server (in ``order``): at each concurrency, its median round by req/s.

    The median round's point is kept whole (its latencies and errors too); with an even number
    of rounds, the lower of the two middle ones.
    """
    groups: dict[str, list[Outcome]] = {name: [] for name in order}
    for outcomes in rounds:
        for outcome in outcomes:
            groups[outcome.name].append(outcome)
    return [_median(group) for group in groups.values() if group]


def _median(group: list[Outcome]) -> Outcome:
    ran = [o for o in group if o.not_run is None]
    if not ran:
        return group[0]
    levels = list(dict.fromkeys(p.concurrency for o in ran for p in o.points))
    medians = []
    for level in levels:
        points = sorted(
            (p for o in ran for p in o.points if p.concurrency == level), key=lambda p: p.ok_per_s
        )
        medians.append(points[(len(points) - 1) // 2])
    skipped = [o.not_run for o in group if o.not_run is not None]
    return attrs.evolve(ran[0], points=medians, rounds=[o.points for o in ran], skipped=skipped)


def machine(wrk: str) -> dict[str, str]:
    """CPU model, cores, OS, Python and wrk, as the report states them."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load average at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "wrk": (wrk_version.stdout or wrk_version.stderr).split("[")[0].strip(),
    }


def markdown(outcomes: Sequence[Outcome], facts: dict[str, str], settings: dict[str, str]) -> str:
    """The whole report as markdown."""
    lines = [
        f"Run on {facts['date']}: {facts['cpu']}, {facts['cores']} logical CPUs, "
        f"{facts['os']}, Python {facts['python']}, {facts['wrk']}; load average at the end "
        f"{facts['load average at the end']}.",
        f"Settings: {', '.join(f'{k} {v}' for k, v in settings.items())}.",
        "",
        *table(outcomes),
        "",
        *ratios(outcomes),
        "",
        *goals(outcomes),
        "",
        "Environments and versions:",
        "",
        *_versions(outcomes),
    ]
    return "\n".join(lines) + "\n"


def table(outcomes: Sequence[Outcome]) -> list[str]:
    """``server | c | req/s | p50 ms | p99 ms | errors``, one row per point."""
    rows = ["| server | c | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---|"]
    for outcome in outcomes:
        if outcome.not_run is not None:
            rows.append(f"| {outcome.name} | | not run: {_cell(outcome.not_run)} | | | |")
        if outcome.skipped:
            why = _cell(outcome.skipped[0])
            rows.append(
                f"| {outcome.name} | | {len(outcome.skipped)} round(s) not run: {why} | | | |"
            )
        rows.extend(
            f"| {outcome.name} | {p.concurrency} | {p.ok_per_s:,.0f} | {p.p50_ms:.2f} "
            f"| {p.p99_ms:.2f} | {p.describe_errors()} |"
            for p in outcome.points
        )
    return rows


def ratio(
    outcomes: Sequence[Outcome], peer: str, concurrency: int, ours_name: str = OURS
) -> float | None:
    """``ours_name``'s req/s over ``peer``'s at ``concurrency`` (``None``: not measured)."""
    by_name = {o.name: o for o in outcomes}
    if ours_name not in by_name or peer not in by_name:
        return None
    ours, theirs = by_name[ours_name].at(concurrency), by_name[peer].at(concurrency)
    if ours is None or theirs is None or theirs.ok_per_s == 0:
        return None
    return ours.ok_per_s / theirs.ok_per_s


def _ours(outcomes: Sequence[Outcome]) -> list[str]:
    measured = {o.name for o in outcomes if o.points}
    return [name for name in OURS_ALL if name in measured]


def ratios(outcomes: Sequence[Outcome]) -> list[str]:
    """Each modelkit server / each peer, req/s, at each concurrency."""
    levels = sorted({p.concurrency for o in outcomes for p in o.points})
    rows: list[str] = []
    for ours in _ours(outcomes):
        rows += [
            f"{ours} req/s ÷ peer req/s (same run):",
            "",
            "| peer | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        for outcome in outcomes:
            if outcome.name in OURS_ALL:
                continue
            cells = [ratio(outcomes, outcome.name, c, ours) for c in levels]
            text = ["-" if r is None else f"{r:.2f}x" for r in cells]
            rows.append(f"| {outcome.name} | " + " | ".join(text) + " |")
        rows.append("")
    return rows


def goals(outcomes: Sequence[Outcome]) -> list[str]:
    """Each goal with the figure reached and whether it is met, for each modelkit server."""
    rows: list[str] = []
    for ours in _ours(outcomes):
        rows += _goals(outcomes, ours)
    return rows


def _goals(outcomes: Sequence[Outcome], ours: str) -> list[str]:
    rows = [f"Goals for {ours}:", ""]
    for concurrency, peer, wanted in GOALS:
        reached = ratio(outcomes, peer, concurrency, ours)
        verdict = "not measured" if reached is None else _met(reached >= wanted)
        figure = "" if reached is None else f"{reached:.2f}x, "
        rows.append(f"- c={concurrency}: ≥ {wanted:g}x {peer}: {figure}{verdict}")
    mine = next((o for o in outcomes if o.name == ours), None)
    concurrency, limit = P99_GOAL_MS
    point = None if mine is None else mine.at(concurrency)
    if point is None:
        rows.append(f"- c={concurrency}: p99 ≤ {limit:g} ms: not measured")
    else:
        rows.append(
            f"- c={concurrency}: p99 ≤ {limit:g} ms: {point.p99_ms:.1f} ms, "
            f"{_met(point.p99_ms <= limit)}"
        )
    rows.append("")
    return rows


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _versions(outcomes: Sequence[Outcome]) -> list[str]:
    """One line per environment, with what its uvicorn runs on, as found at the server's start."""
    seen: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.versions and outcome.environment not in seen:
            packages = ", ".join(f"{k} {v}" for k, v in outcome.versions.items())
            flavour = uvicorn_flavour(outcome.versions)
            runs = f" (uvicorn on {flavour})" if flavour else ""
            seen[outcome.environment] = f"- {outcome.environment}{runs}: {packages}"
    return list(seen.values())


def uvicorn_flavour(versions: dict[str, str]) -> str | None:
    """What uvicorn's ``--http auto --loop auto`` picks with these packages (``None``: no uvicorn).

    ``httptools`` and ``uvloop`` when installed, else ``h11`` and ``asyncio``.
    """
    if versions.get("uvicorn", "not installed") == "not installed":
        return None
    http = "h11" if versions.get("httptools", "not installed") == "not installed" else "httptools"
    loop = "asyncio" if versions.get("uvloop", "not installed") == "not installed" else "uvloop"
    return f"{http} + {loop}"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "/").split())[:300]
