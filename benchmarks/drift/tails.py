"""Tails of the single drift tests under no shift: how often p falls below small levels.

One command (about 10 minutes on one core)::

    .venv/bin/python benchmarks/drift/tails.py [--runs-scale 0.2]

The dataset-level verdict compares each feature's p-value with about 0.05 / 21 (Holm-Šidák
over 20 features and the dependence check), so what matters is each test's tail far below
0.05. Each line runs one test alone, many times, every run with its own reference, and
prints the observed rate over the nominal one at p < 0.05, 0.01, 0.0025 and 0.001 (1.00x is
exact; the 95% interval of a ratio at 0.001 over 10,000 runs is about ±0.6x):

- ``shape``: the numeric omnibus chi-square on bins made from the reference's own quantiles,
  in its two variants on the same counts: ``design`` (the known expected masses and the
  Dirichlet-multinomial variance) and ``pooled`` (the two-sample chi-square); ``*`` marks
  the one ``check_drift`` runs (the design when the reference is the smaller sample);
- ``missing``: the conditional (hypergeometric mid-p) test of the missing rate, beside the
  two-proportion z-test;
- ``column``: a whole feature's p-value (``check_drift``), for the four categorical columns
  of ``generators.py`` and for numeric columns;
- ``dependence``: the dependence check on the 16 numeric columns.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from generators import CATEGORICAL, NUMERIC, generate, generate_categorical

from modelkit.monitoring import DriftConfig, Reference, check_drift
from modelkit.monitoring import drift as tests

LEVELS = (0.05, 0.01, 0.0025, 0.001)
SIGNIFICANCE = DriftConfig(mode="significance")


def ratios(p: np.ndarray) -> str:
    return "  ".join(f"{np.mean(p < level) / level:5.2f}x" for level in LEVELS)


def line(label: str, runs: int, p: np.ndarray) -> None:
    print(f"{label:<46} {runs:>6}  {ratios(p)}", flush=True)


def shape(
    n: int, m: int, runs: int, draw: Callable[[np.random.Generator, int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """p-values of the shape test's two variants on the same counts: on the quantile
    design's known masses, and the pooled two-sample chi-square."""
    rng = np.random.default_rng(n + m)
    design, pooled = [], []
    for _ in range(runs):
        reference = Reference.fit(pd.DataFrame({"v": draw(rng, n)}))
        window = reference.summarize(pd.DataFrame({"v": draw(rng, m)}))
        ref, cur = reference.inputs["v"], window.inputs["v"]
        a = np.asarray(ref.counts, dtype=np.float64)
        b = np.asarray(cur.counts, dtype=np.float64)
        masses = tests._quantile_design(ref)  # type: ignore[arg-type]
        assert masses is not None, "normal data: bins at the reference's quantiles"
        design.append(tests._design_chi_square(b, m, masses, ref.n_finite)[2])  # type: ignore[union-attr]
        pooled.append(tests._pooled_chi_square(a, b, n, m)[2])
    return np.asarray(design), np.asarray(pooled)


def missing(n: int, m: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import ndtr

    rng = np.random.default_rng(n * 3 + m)
    a = rng.binomial(n, 0.02, runs)
    b = rng.binomial(m, 0.02, runs)
    table: dict[tuple[int, int], float] = {}
    for x, y in set(zip(a.tolist(), b.tolist(), strict=True)):
        table[x, y] = tests._conditional_p(y, x + y, n + m, m)
    exact = np.array([table[x, y] for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    pooled = (a + b) / (n + m)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.nan_to_num(np.abs(b / m - a / n) / se)
    return exact, 2 * ndtr(-z)


def columns(n: int, m: int, runs: int, categorical: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n * 7 + m + categorical)
    names = CATEGORICAL if categorical else ["normal_d", "heavy_t", "zero_inflated", "int5"]
    out: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        if categorical:
            ref, cur = generate_categorical(n, rng), generate_categorical(m, rng)
        else:
            ref, cur = generate(n, rng)[names], generate(m, rng)[names]
        reference = Reference.fit(ref)
        report = check_drift(reference, reference.summarize(cur), SIGNIFICANCE)
        for f in report.features:
            if f.name in out:
                out[f.name].append(1.0 if f.p_value is None else f.p_value)
    return {name: np.asarray(values) for name, values in out.items()}


def dependence(n: int, m: int, runs: int) -> np.ndarray:
    rng = np.random.default_rng(n * 5 + m)
    p = []
    for _ in range(runs):
        reference = Reference.fit(generate(n, rng)[NUMERIC])
        report = check_drift(
            reference, reference.summarize(generate(m, rng)[NUMERIC]), SIGNIFICANCE
        )
        p.append(next(f.p_value for f in report.features if f.name == "dependence"))
    return np.asarray(p, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-scale", type=float, default=1.0, help="multiply every run count")
    args = parser.parse_args(argv)

    def runs(k: int) -> int:
        return max(50, round(k * args.runs_scale))

    started = time.perf_counter()
    header = "  ".join(f"p<{level:<5}" for level in LEVELS)
    print(f"{'test (n_ref/n_cur)':<46} {'runs':>6}  {header}")
    normal = lambda rng, k: rng.standard_normal(k)  # noqa: E731
    rounded = lambda rng, k: np.round(rng.standard_normal(k), 2)  # noqa: E731
    for n, m in ((1000, 10_000), (500, 500), (10_000, 1000)):
        k = runs(40_000)  # the shape test picks its variant on these figures: measure finely
        design, pooled = shape(n, m, k, normal)
        marks = ("*", " ") if tests._design_applies(n, m) else (" ", "*")  # what check_drift runs
        line(f"shape, normal {n}/{m}: design{marks[0]}", k, design)
        line(f"shape, normal {n}/{m}: pooled{marks[1]}", k, pooled)
    k = runs(10_000)
    design, pooled = shape(1000, 10_000, k, rounded)
    line("shape, rounded to 0.01 1000/10000: design*", k, design)
    line("shape, rounded to 0.01 1000/10000: pooled", k, pooled)
    for n, m in ((10_000, 1000), (1000, 10_000), (500, 500)):
        k = runs(1_000_000)
        exact, normal_p = missing(n, m, k)
        line(f"missing 2%, {n}/{m}: conditional mid-p", k, exact)
        line(f"missing 2%, {n}/{m}: z-test", k, normal_p)
    for (n, m), k in (((500, 500), 4000), ((1000, 10_000), 3000), ((10_000, 1000), 3000)):
        for name, p in columns(n, m, runs(k), categorical=True).items():
            line(f"column {name} {n}/{m}", runs(k), p)
    for (n, m), k in (((500, 500), 3000), ((1000, 10_000), 2000)):
        for name, p in columns(n, m, runs(k), categorical=False).items():
            line(f"column {name} {n}/{m}", runs(k), p)
    for (n, m), k in (((500, 500), 1000), ((1000, 10_000), 600)):
        line(f"dependence {n}/{m}", runs(k), dependence(n, m, runs(k)))
    print(f"\nTotal: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
