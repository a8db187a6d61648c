"""py-spy on a running server: collapsed stacks, and the functions that take the most time."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs

ATTEMPTS: tuple[list[str], ...] = (["--nonblocking", "--gil"], ["--gil"], ["--idle"])
"""py-spy options tried in turn. ``--gil`` samples only the thread holding the GIL, so on one
core the shares are of the server's time, not of threads waiting for the GIL. First without
pausing the server, then pausing it, then every thread, idle ones too."""
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@attrs.frozen
class Profile:
    """Where a profile went, or why there is none."""

    stacks: Path | None
    summary: Path | None
    failure: str | None = None


def record(
    py_spy: str, pid: int, *, seconds: int, cpus: str, out: Path, load: Callable[[], object]
) -> Profile:
    """Sample ``pid`` with py-spy while ``load()`` runs; write stacks and a top-functions summary.

    ``out`` is a directory; ``stacks.txt`` (collapsed stacks, which speedscope.app opens) and
    ``top.txt`` are written there. py-spy runs pinned to ``cpus``.
    """
    out.mkdir(parents=True, exist_ok=True)
    stacks = out / "stacks.txt"
    failures = []
    for options in ATTEMPTS:
        argv = ["taskset", "-c", cpus, py_spy, "record", "--pid", str(pid), "--format", "raw"]
        argv += ["--duration", str(seconds), "--output", str(stacks), *options]
        spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            load()
            output, _ = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            output = f"did not finish within {seconds + 30} s"
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if spy.returncode == 0 and stacks.is_file() and stacks.stat().st_size:
            summary = out / "top.txt"
            summary.write_text(summarise(stacks.read_text(), " ".join(options) or "(blocking)"))
            return Profile(stacks, summary)
        failures.append(f"py-spy {' '.join(options)}: {' '.join(output.split())[-300:]}")
    return Profile(None, None, "; ".join(failures))


def summarise(collapsed: str, how: str, top: int = 30) -> str:
    """The ``top`` functions by own time and by total time (callees included), in % of samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";") if frame]
        samples += count
        if frames:
            own[frames[-1]] += count
        for function in set(frames):
            total[function] += count
    lines = [f"py-spy record {how}: {samples} samples", "", "own time (the function itself):"]
    lines += [f"{100 * n / samples:6.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["", "total time (with what it calls):"]
    lines += [f"{100 * n / samples:6.1f} %  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def _function(frame: str) -> str:
    """``predict (sklearn/linear_model/_base.py)``: a frame without its line number."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"
