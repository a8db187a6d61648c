"""The prediction recorder's CPU per prediction as its SQLite table grows, by kind of id.

Every prediction a server answers is recorded in its registry (``PredictionRecorder``), keyed
by its id. This records ``--rows`` one-row predictions (outputs and 20 input floats each) into
a fresh SQLite registry, once with random version-4 UUID ids (``uuid.uuid4().hex``) and once
with modelkit's time-ordered version-7 ids (``modelkit.serving._http.new_id``), flushing every
2,000 records as a busy server would, and prints the writer thread's CPU per record (its own
``time.thread_time()`` account) for each successive slice of the table.

Run: ``python benchmarks/serving/recorder.py [--rows 600000]`` (about a minute).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelkit.registry import Registry
from modelkit.serving._http import new_id
from modelkit.serving.feedback import PredictionRecorder

FLUSH_EVERY = 2000


class _Served:
    name = "churn"
    version = 1


def run(make_id: Callable[[], str], rows: int, slices: int) -> list[float]:
    """Microseconds of writer CPU per record in each of ``slices`` equal slices."""
    row = np.random.default_rng(0).standard_normal((1, 20))
    output = np.array([1])
    per_slice = rows // slices
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        recorder = PredictionRecorder(registry)
        try:
            for _ in range(slices):
                start = recorder.cpu_seconds
                for i in range(per_slice):
                    recorder.record(_Served, make_id(), 1, output, row)  # type: ignore[arg-type]
                    if i % FLUSH_EVERY == FLUSH_EVERY - 1:
                        recorder.flush(60)
                recorder.flush(60)
                out.append((recorder.cpu_seconds - start) / per_slice * 1e6)
        finally:
            recorder.close()
            registry.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--slices", type=int, default=6)
    args = parser.parse_args(argv)
    kinds = {
        "random (uuid4)": lambda: uuid.uuid4().hex,
        "time-ordered (modelkit, uuid7)": new_id,
    }
    results = {label: run(make, args.rows, args.slices) for label, make in kinds.items()}
    step = args.rows // args.slices
    print(f"{platform.machine()}, Python {platform.python_version()}; {args.rows:,} records")
    print()
    heads = [f"{(k + 1) * step // 1000:,}k" for k in range(args.slices)]
    print("| ids | " + " | ".join(f"µs/record up to {h}" for h in heads) + " | mean |")
    print("|---|" + "---:|" * (args.slices + 1))
    for label, figures in results.items():
        cells = " | ".join(f"{f:.1f}" for f in figures)
        print(f"| {label} | {cells} | {sum(figures) / len(figures):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
