"""Model.predict against the raw estimator's predict, on the seed model.

The seed model: ``make_classification(n_samples=1000, n_features=20, random_state=42)`` and
``LogisticRegression(solver="liblinear")``. For 1, 100 and 10,000 rows, as a float64 array and
as a list of lists (the seed's JSON form), both sides predict on the very same object, in the
same process, interleaved (raw, modelkit, modelkit, raw, …) so that drifts in machine load hit
both alike; each figure is the median over many repetitions of the per-call time.

Run: ``python benchmarks/bench_predict.py [--repeats N] [--budget SECONDS]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable


def machine() -> str:
    """One line per fact about the machine and the libraries."""
    import sklearn

    cpu = platform.processor() or platform.machine()
    lines = [
        f"platform   {platform.platform()}",
        f"cpu        {cpu}, {os.cpu_count()} logical CPUs",
        f"python     {platform.python_version()} ({platform.python_implementation()})",
        f"numpy      {np.__version__}",
        f"sklearn    {sklearn.__version__}",
    ]
    blas = os.environ.get("OPENBLAS_CORETYPE")
    if blas:
        lines.append(f"OPENBLAS_CORETYPE={blas}")
    return "\n".join(lines)


def per_call(function: Callable[[], Any], calls: int) -> float:
    """Seconds per call of ``function``, over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def compare(
    raw: Callable[[], Any], ours: Callable[[], Any], *, repeats: int, budget: float
) -> tuple[float, float]:
    """Median seconds per call of ``raw`` and ``ours``, measured interleaved."""
    raw(), ours()  # warm up caches and lazy imports
    once = max(per_call(raw, 3), 1e-7)
    calls = max(1, int(budget / repeats / 2 / once))
    raw_times, our_times = [], []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            if i % 2:
                our_times.append(per_call(ours, calls))
                raw_times.append(per_call(raw, calls))
            else:
                raw_times.append(per_call(raw, calls))
                our_times.append(per_call(ours, calls))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(raw_times), statistics.median(our_times)


def main(argv: list[str] | None = None) -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41, help="interleaved repetitions")
    parser.add_argument(
        "--budget", type=float, default=4.0, help="seconds to spend per case (approximate)"
    )
    args = parser.parse_args(argv)

    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelkit.model import Model

    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    estimator = LogisticRegression(solver="liblinear").fit(X, y)
    model = Model.wrap(estimator, sample=X, name="seed")

    rng = np.random.default_rng(0)
    batches = {n: rng.normal(size=(n, 20)) for n in (1, 100, 10_000)}

    print(machine())
    print(
        f"repeats    {args.repeats} interleaved, median per-call time; budget {args.budget}s/case"
    )
    print()
    header = (
        f"{'input':<14}{'rows':>7}{'raw µs':>12}{'modelkit µs':>14}{'ratio':>8}"
        f"{'overhead µs':>13}{'validate µs':>13}"
    )
    print(header)
    print("-" * len(header))
    for form in ("ndarray", "list of lists"):
        for rows, array in batches.items():
            data: Any = array if form == "ndarray" else array.tolist()
            if not np.array_equal(model.predict(data), estimator.predict(data)):
                print(f"{form} {rows}: predictions differ", file=sys.stderr)
                return 1
            raw, ours = compare(
                lambda data=data: estimator.predict(data),
                lambda data=data: model.predict(data),
                repeats=args.repeats,
                budget=args.budget,
            )
            validate = per_call(
                lambda data=data: model.validate(data), 200 if rows < 10_000 else 20
            )
            print(
                f"{form:<14}{rows:>7,}{raw * 1e6:>12.1f}{ours * 1e6:>14.1f}{ours / raw:>8.3f}"
                f"{(ours - raw) * 1e6:>13.1f}{validate * 1e6:>13.1f}"
            )
    print()
    print("ratio = modelkit / raw (below 1: faster than the raw estimator, since scikit-learn")
    print("skips the checks modelkit already made); validate = Model.validate alone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
