"""Dataset fingerprint throughput against plain hashlib.sha256, and Profile build time.

Three inputs: a 1,000,000 x 20 float64 array (160 MB), a non-contiguous view of the same
size (every other column of a 1,000,000 x 40 array), and a DataFrame of 1,000,000 rows with
19 float64 columns and one string column. The baseline is ``hashlib.sha256`` over the very
bytes the fingerprint streams (for the view, its C-order copy; for the DataFrame, the column
buffers and the UTF-8 text, all prepared beforehand and not timed), in the same process,
interleaved (baseline, fingerprint, fingerprint, baseline, ...); each figure is the median.
Then the streaming chunk size is swept, and ``Profile.from_data`` is timed.

Run: ``python benchmarks/bench_fingerprint.py [--repeats N] [--rows N]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import statistics
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from modelkit import _fingerprint
from modelkit.data import Profile, fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable

MB = 1e6


def version(package: str) -> str:
    """Installed version of ``package``, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """One line per fact about the machine and the libraries."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    lines = [
        f"platform   {platform.platform()}",
        f"cpu        {cpu}, {os.cpu_count()} logical CPUs",
        f"python     {platform.python_version()} ({platform.python_implementation()})",
        f"numpy      {np.__version__}",
    ]
    lines += [f"{package:<10} {version(package)}" for package in ("pandas", "scikit-learn")]
    return "\n".join(lines)


def sha256_of(buffers: list[Any]) -> Callable[[], str]:
    """Plain hashlib over ready-made buffers: one update per buffer."""

    def run() -> str:
        h = hashlib.sha256()
        for buffer in buffers:
            h.update(buffer)
        return h.hexdigest()

    return run


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(raw: Callable[[], Any], ours: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of ``raw`` and ``ours``, measured interleaved."""
    raw(), ours()  # warm up: page faults, lazy imports
    raw_times, our_times = [], []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            pair = (ours, raw) if i % 2 else (raw, ours)
            for function in pair:
                (our_times if function is ours else raw_times).append(timed(function))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(raw_times), statistics.median(our_times)


def frame_case(rows: int, rng: np.random.Generator) -> tuple[Any, list[Any]]:
    """A DataFrame with 19 float columns and a string column, and its raw buffers."""
    import pandas as pd

    numbers = rng.standard_normal((rows, 19))
    text = np.array([f"user-{i:08d}" for i in rng.integers(0, 10**8, rows)], dtype=object)
    columns = {f"f{j}": numbers[:, j].copy() for j in range(19)}
    frame = pd.DataFrame({**columns, "user": pd.Series(text, dtype=object)})
    buffers: list[Any] = [frame[name].to_numpy() for name in columns]
    buffers.append("".join(text).encode("utf-8"))
    return frame, buffers


def main(argv: list[str] | None = None) -> int:
    """Run every case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repetitions")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of every input")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = args.rows

    array = rng.standard_normal((rows, 20))
    view = rng.standard_normal((rows, 40))[:, ::2]
    frame, frame_buffers = frame_case(rows, rng)
    cases: list[tuple[str, Any, list[Any]]] = [
        (f"ndarray {rows:,}x20 float64 (C order)", array, [array]),
        (f"view {rows:,}x40[:, ::2] float64", view, [np.ascontiguousarray(view)]),
        (f"DataFrame {rows:,} rows, 19 float + 1 str", frame, frame_buffers),
    ]

    print(machine())
    print(f"\nfingerprint vs hashlib.sha256 over the same bytes (median of {args.repeats})")
    print(f"{'input':<44} {'MB':>7} {'sha256 MB/s':>12} {'ours MB/s':>10} {'ratio':>6}")
    for label, data, buffers in cases:
        size = sum(memoryview(b).nbytes for b in buffers) / MB
        raw, ours = compare(sha256_of(buffers), lambda data=data: fingerprint(data), args.repeats)
        print(f"{label:<44} {size:7.1f} {size / raw:12.0f} {size / ours:10.0f} {raw / ours:6.2f}")

    print("\nchunk size (bytes per hashlib update; ratio vs sha256 of the same bytes)")
    print(f"{'chunk':>8} {'C-order ratio':>14} {'view ratio':>11}")
    default = _fingerprint.CHUNK_BYTES
    try:
        for chunk in (1 << 16, 1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 23):
            _fingerprint.CHUNK_BYTES = chunk
            ratios = []
            for _, data, buffers in cases[:2]:
                raw, ours = compare(
                    sha256_of(buffers),
                    lambda data=data: fingerprint(data),
                    max(3, args.repeats // 2),
                )
                ratios.append(raw / ours)
            mark = "  (default)" if chunk == default else ""
            print(f"{chunk >> 10:>6}Ki {ratios[0]:14.2f} {ratios[1]:11.2f}{mark}")
    finally:
        _fingerprint.CHUNK_BYTES = default

    print(f"\nProfile.from_data (median of {args.repeats})")
    reference = Profile.from_data(array)
    frame_reference = Profile.from_data(frame)
    profile_cases: list[tuple[str, Callable[[], Any]]] = [
        (f"new profile, {rows:,}x20 float64", lambda: Profile.from_data(array)),
        (
            f"against reference, {rows:,}x20 float64",
            lambda: Profile.from_data(array, edges_from=reference),
        ),
        ("new profile, DataFrame 19 float + 1 str", lambda: Profile.from_data(frame)),
        (
            "against reference, DataFrame 19 float + 1 str",
            lambda: Profile.from_data(frame, edges_from=frame_reference),
        ),
    ]
    for label, function in profile_cases:
        function()
        seconds = statistics.median(timed(function) for _ in range(args.repeats))
        print(f"{label:<48} {seconds:6.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
