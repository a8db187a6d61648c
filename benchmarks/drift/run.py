"""Drift detection benchmark: modelkit's verdicts beside re-implemented common defaults.

One command (about 25 minutes on one core; ``--quick`` about 4)::

    .venv/bin/python benchmarks/drift/run.py [--quick] [--no-write] [--large-only]

It generates seeded data (``generators.py``: 20 mixed columns), runs every scenario at every
size, and writes the tables into the "Drift detection" section of ``benchmarks/RESULTS.md``
(the other sections are left as they are). Everything runs on one core (BLAS threads = 1).
Every run draws its own reference: windows checked against a shared reference are
dependent, and binomial intervals over them too narrow. The categorical columns' own tests
also run on those four columns alone, many more times. ``tails.py`` measures the tails of
the single tests far below 0.05, where the dataset-level decision is made.

Methods, on the same data in the same run:

- ``modelkit``: ``check_drift`` significance verdict (Holm–Šidák over features) and
  relevance verdict (simultaneous lower bounds above the default margins);
- ``per-column``: scipy ``ks_2samp`` (numeric) / ``chi2_contingency`` (categorical), an
  alarm when any column has p < 0.05 (uncorrected);
- ``bonferroni``: the same at p < 0.05 / d;
- ``wd/js rule``: above 1,000 reference rows normed Wasserstein ≥ 0.1 (numeric) or
  Jensen–Shannon distance ≥ 0.1 (categorical), at most 1,000 rows KS p < 0.05 and a
  chi-square *goodness of fit against the reference proportions* p < 0.05; dataset drift
  when at least 50% of the columns drift;
- ``psi≥0.1`` / ``psi≥0.25``: PSI on 10 reference-decile bins (categories for
  categoricals), an alarm when any column reaches the threshold.
"""

# ruff: noqa: RUF001, RUF002, RUF003
# (statistics notation: σ, ρ, ×, en dashes in the tables and their captions)
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from generators import CATEGORICAL, COLUMNS, NUMERIC, SHIFTED, generate, generate_categorical

from modelkit.monitoring import DriftConfig, Reference, check_drift

RESULTS = Path(__file__).parent.parent / "RESULTS.md"
SECTION = "## Drift detection (`benchmarks/drift/run.py`)"
SIGNIFICANCE = DriftConfig(mode="significance")
BASELINES = ("per-column", "bonferroni", "wd/js rule", "psi>=0.1", "psi>=0.25")


# -- baselines (documented defaults, re-implemented) ------------------------------------------


def _values(frame: pd.DataFrame, name: str) -> np.ndarray:
    column = frame[name]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.astype(object).to_numpy()
    values = column.to_numpy(dtype=np.float64)
    return values[~np.isnan(values)]


def _cat_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    a = ref.value_counts(dropna=True)
    b = cur.value_counts(dropna=True)
    index = a.index.union(b.index)
    a, b = a.reindex(index, fill_value=0), b.reindex(index, fill_value=0)
    keep = (a + b) > 0
    return a[keep].to_numpy(dtype=np.float64), b[keep].to_numpy(dtype=np.float64)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p = np.clip(p, 1e-4, None)
    q = np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def baselines(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, bool]:
    """Dataset-level alarm of every baseline."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency, chisquare, ks_2samp, wasserstein_distance

    d = len(COLUMNS)
    p_values, rule_flags, psi = [], [], []
    small = len(ref) <= 1000
    for name in COLUMNS:
        if name in CATEGORICAL:
            a, b = _cat_counts(ref[name], cur[name])
            p = 1.0 if a.size < 2 else float(chi2_contingency(np.vstack([a, b]))[1])
            pa, pb = a / a.sum(), b / b.sum()
            if small:
                expected = np.clip(pa, 1e-12, None) * b.sum()
                expected *= b.sum() / expected.sum()
                rule = float(chisquare(b, expected)[1]) < 0.05
            else:
                rule = float(jensenshannon(pa, pb, base=2)) >= 0.1
            psi.append(_psi(pa, pb))
        else:
            x, y = _values(ref, name), _values(cur, name)
            p = float(ks_2samp(x, y).pvalue)
            if small:
                rule = p < 0.05
            else:
                sd = float(np.std(x)) or 1.0
                rule = float(wasserstein_distance(x, y)) / sd >= 0.1
            edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
            pa = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
            pb = np.bincount(np.searchsorted(edges, y, side="right"), minlength=edges.size + 1)
            psi.append(_psi(pa / pa.sum(), pb / pb.sum()))
        p_values.append(p)
        rule_flags.append(rule)
    return {
        "per-column": min(p_values) < 0.05,
        "bonferroni": min(p_values) < 0.05 / d,
        "wd/js rule": sum(rule_flags) >= 0.5 * d,
        "psi>=0.1": max(psi) >= 0.1,
        "psi>=0.25": max(psi) >= 0.25,
    }


# -- statistics of the benchmark itself --------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{100 * k / n:5.1f}% [{100 * low:4.1f}, {100 * high:4.1f}]"


class Tally:
    """Counts of alarms per method and per column."""

    def __init__(self) -> None:
        self.n = 0
        self.alarms: dict[str, int] = defaultdict(int)
        self.columns: dict[str, int] = defaultdict(int)
        self.first = 0
        self.baseline_n = 0

    def add(self, report: Any, relevance: Any, base: dict[str, bool] | None, shifted: str | None):
        self.n += 1
        self.alarms["modelkit significance"] += report.significance_drift
        self.alarms["modelkit relevance"] += relevance.relevance_drift
        for f in report.features:
            if f.p_value is not None and f.p_value < 0.05:
                self.columns[f.name] += 1
        if shifted is not None:
            self.first += report.features[0].name == shifted
        if base is not None:
            self.baseline_n += 1
            for key, value in base.items():
                self.alarms[key] += value


def one_check(ref_frame: pd.DataFrame, reference: Reference, cur: pd.DataFrame) -> Any:
    window = reference.summarize(cur)
    return check_drift(reference, window, SIGNIFICANCE), check_drift(
        reference, window, DriftConfig(mode="relevance")
    )


def run_case(
    *,
    n_ref: int,
    n_cur: int,
    scenario: str,
    refs: int,
    per_ref: int,
    baseline_checks: int,
    seed: int,
) -> Tally:
    """``refs`` reference samples, each checked against ``per_ref`` current samples."""
    rng = np.random.default_rng(seed)
    tally = Tally()
    shifted = SHIFTED.get(scenario)
    for _ in range(refs):
        ref_frame = generate(n_ref, rng)
        reference = Reference.fit(ref_frame)
        for _ in range(per_ref):
            cur = generate(n_cur, rng, scenario)
            report, relevance = one_check(ref_frame, reference, cur)
            base = None
            if tally.n < baseline_checks:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    base = baselines(ref_frame, cur)
            tally.add(report, relevance, base, shifted)
    return tally


def run_large(
    *, big: int, small: int, runs: tuple[int, int], baseline_checks: tuple[int, int], seed: int
) -> tuple[Tally, Tally]:
    """No-shift runs at ``big`` rows and at ``small`` rows from the same draws.

    Every ``big``-row sample (``generate`` draws its rows independently and identically) is
    also ``big // small`` disjoint ``small``-row samples: each pair of big samples gives one
    ``big``-row run, then ``small``-row runs on its blocks, until ``runs = (runs at small,
    runs at big)`` are done. Within each size every run has its own reference and current
    rows, used by no other run of that size, so the runs of a size stay independent and its
    binomial interval holds; only the two sizes' figures are dependent on each other, which
    no figure uses. The small runs then cost no data generation of their own.
    """
    rng = np.random.default_rng(seed)
    tallies = (Tally(), Tally())
    blocks = big // small
    while tallies[0].n < runs[0] or tallies[1].n < runs[1]:
        ref_big, cur_big = generate(big, rng), generate(big, rng)
        pairs: list[tuple[int, pd.DataFrame, pd.DataFrame]] = []
        if tallies[1].n < runs[1]:
            pairs.append((1, ref_big, cur_big))
        for k in range(min(blocks, runs[0] - tallies[0].n)):
            rows = slice(k * small, (k + 1) * small)
            block_ref = ref_big.iloc[rows].reset_index(drop=True)
            block_cur = cur_big.iloc[rows].reset_index(drop=True)
            pairs.append((0, block_ref, block_cur))
        for size, ref_frame, cur in pairs:
            tally = tallies[size]
            report, relevance = one_check(ref_frame, Reference.fit(ref_frame), cur)
            base = None
            if tally.n < baseline_checks[size]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    base = baselines(ref_frame, cur)
            tally.add(report, relevance, base, None)
    return tallies


# -- the sections --------------------------------------------------------------------------


LARGE = {100_000: (1200, 20), 1_000_000: (120, 2)}
"""Runs and baseline checks of the no-shift rows at 100,000 and 1,000,000 rows: about 11
minutes on one core together (``--large-only`` runs just these two rows)."""


def large_no_shift(quick: bool) -> tuple[Tally, Tally]:
    """The no-shift rows at 100,000 and 1,000,000 rows, from shared draws (:func:`run_large`)."""
    large = {100_000: (40, 4), 1_000_000: (4, 0)} if quick else LARGE
    started = time.perf_counter()
    tallies = run_large(
        big=1_000_000,
        small=100_000,
        runs=(large[100_000][0], large[1_000_000][0]),
        baseline_checks=(large[100_000][1], large[1_000_000][1]),
        seed=1_000_000 * 7 + 1_000_000,
    )
    print(f"  no shift 100000 and 1000000: {time.perf_counter() - started:.0f}s", flush=True)
    return tallies


def false_alarms(quick: bool, out: list[str]) -> dict[str, Any]:
    plan = [
        # (n_ref, n_cur, refs, per_ref, baseline checks): every run has its own reference
        (500, 500, 1000, 1, 1000),
        (2000, 2000, 600, 1, 600),
        (10_000, 10_000, 400, 1, 300),
        (10_000, 1000, 500, 1, 300),
        (1000, 10_000, 500, 1, 300),
    ]
    if quick:
        plan = [(a, b, max(1, r // 5), p, min(bc // 5, 40)) for a, b, r, p, bc in plan]
    methods = ["modelkit significance", "modelkit relevance", *BASELINES]
    rows, per_column = [], []
    data: dict[str, Any] = {}
    tallies: dict[tuple[int, int], Tally] = {}
    for n_ref, n_cur, refs, per_ref, base in plan:
        started = time.perf_counter()
        tallies[n_ref, n_cur] = run_case(
            n_ref=n_ref,
            n_cur=n_cur,
            scenario="none",
            refs=refs,
            per_ref=per_ref,
            baseline_checks=base,
            seed=n_ref * 7 + n_cur,
        )
        print(f"  no shift {n_ref}/{n_cur}: {time.perf_counter() - started:.0f}s", flush=True)
    small, big = large_no_shift(quick)
    tallies[100_000, 100_000], tallies[1_000_000, 1_000_000] = small, big
    for (n_ref, n_cur), tally in tallies.items():
        cells = [f"{n_ref:>9,} | {n_cur:>9,} | {tally.n:>5}"]
        for method in methods:
            n = tally.n if method.startswith("modelkit") else tally.baseline_n
            cells.append(rate(tally.alarms[method], n) if n else "—")
        rows.append(" | ".join(cells))
        worst_cat = max(CATEGORICAL, key=lambda c: tally.columns[c])
        per_column.append(
            f"{n_ref:>9,} | {n_cur:>9,} | "
            + " | ".join(rate(tally.columns[c], tally.n) for c in CATEGORICAL)
        )
        data[f"{n_ref}/{n_cur}"] = {m: tally.alarms[m] for m in methods} | {
            "n": tally.n,
            "baseline_n": tally.baseline_n,
            "worst_categorical": [worst_cat, tally.columns[worst_cat]],
            "categorical": {c: tally.columns[c] for c in CATEGORICAL},
        }
    out.append("### False alarms with no shift (dataset level; target 5% ± 1.5 pp)\n")
    out.append(
        "Each run: an independent reference and current sample (a reference is never reused, "
        "so the runs are independent and the binomial intervals hold; the 100,000-row runs "
        "are disjoint blocks of the 1,000,000-row samples, so those two rows are dependent on "
        "each other, never within a row). Rates with 95% Wilson "
        "intervals; the baselines run on the first checks of each row only (they are slow at "
        "large n).\n"
    )
    out.append("```")
    out.append(" | ".join(["    n_ref", "    n_cur", "   runs", *methods]))
    out.extend(rows)
    out.append("```\n")
    out.append(
        "Each categorical column's own test at p < 0.05 in the same runs (target ≤ 6%; see "
        "the next table for many more runs):\n"
    )
    out.append("```")
    out.append(" | ".join(["    n_ref", "    n_cur", *(c.ljust(19) for c in CATEGORICAL)]))
    out.extend(per_column)
    out.append("```\n")
    return data


def categorical_alone(quick: bool, out: list[str]) -> dict[str, Any]:
    """False alarms of each categorical column's own test, on the four columns alone.

    A feature's p-value depends on its own column only, so these runs count the same
    statistic as the 20-column table, many more times (each run with its own reference).
    """
    plan = [
        (500, 500, 2000),
        (2000, 2000, 1000),
        (10_000, 10_000, 1000),
        (10_000, 1000, 1000),
        (1000, 10_000, 1000),
        (100_000, 100_000, 600),
        (1_000_000, 1_000_000, 400),
    ]
    if quick:
        plan = [(a, b, max(20, r // 10)) for a, b, r in plan]
    rows: list[str] = []
    data: dict[str, Any] = {}
    for n_ref, n_cur, runs in plan:
        started = time.perf_counter()
        rng = np.random.default_rng(n_ref * 11 + n_cur)
        alarms = dict.fromkeys(CATEGORICAL, 0)
        tails = dict.fromkeys(CATEGORICAL, 0)
        for _ in range(runs):
            reference = Reference.fit(generate_categorical(n_ref, rng))
            report = check_drift(
                reference, reference.summarize(generate_categorical(n_cur, rng)), SIGNIFICANCE
            )
            for f in report.features:
                if f.p_value is not None:
                    alarms[f.name] += f.p_value < 0.05
                    tails[f.name] += f.p_value < 0.005
        rows.append(
            f"{n_ref:>9,} | {n_cur:>9,} | {runs:>5} | "
            + " | ".join(rate(alarms[c], runs) for c in CATEGORICAL)
        )
        data[f"{n_ref}/{n_cur}"] = {"n": runs, "alarms": alarms, "p<0.005": tails}
        print(f"  categorical alone {n_ref}/{n_cur}: {time.perf_counter() - started:.0f}s")
    out.append(
        "Each categorical column's own test at p < 0.05, on the four categorical columns alone "
        "(same distributions, 2% missing in cat4; every run with its own reference; target "
        "≤ 6%):\n"
    )
    out.append("```")
    out.append(" | ".join(["    n_ref", "    n_cur", " runs", *(c.ljust(19) for c in CATEGORICAL)]))
    out.extend(rows)
    out.append("```\n")
    return data


def negligible(quick: bool, out: list[str]) -> dict[str, Any]:
    plan = [(100_000, 60 if not quick else 12, 1), (1_000_000, 8 if not quick else 2, 1)]
    out.append(
        "### Negligible shift (+0.02σ on every numeric column, 0.2 points moved in every "
        "categorical; target ≤ 5% alarms in relevance mode)\n"
    )
    out.append("```")
    methods = ["modelkit relevance", "modelkit significance", *BASELINES]
    out.append(" | ".join(["        n", " runs", *methods]))
    data: dict[str, Any] = {}
    for n, refs, per_ref in plan:
        started = time.perf_counter()
        tally = run_case(
            n_ref=n,
            n_cur=n,
            scenario="negligible",
            refs=refs,
            per_ref=per_ref,
            baseline_checks=2 if not quick else 0,
            seed=n + 5,
        )
        cells = [f"{n:>9,} | {tally.n:>4}"]
        for method in methods:
            k = tally.n if method.startswith("modelkit") else tally.baseline_n
            cells.append(rate(tally.alarms[method], k) if k else "—")
        out.append(" | ".join(cells))
        data[str(n)] = {m: tally.alarms[m] for m in methods} | {"n": tally.n}
        print(f"  negligible {n}: {time.perf_counter() - started:.0f}s", flush=True)
    out.append("```\n")
    return data


def power(quick: bool, out: list[str]) -> dict[str, Any]:
    scenarios = {
        "mean +0.1σ (normal_d)": "mean",
        "scale ×1.10 (normal_d)": "scale",
        "2-point category move (cat4: 40%→38%, 10%→12%)": "category",
        "correlation 0.8→0.4, marginals fixed": "correlation",
        "new category (cat4, 2%)": "new_category",
        "missing rate 2%→6% (heavy_t)": "missing",
    }
    targets = {"mean": 0.95, "scale": 0.95, "category": 0.80, "correlation": 0.95}
    reps = 40 if quick else 150
    out.append(
        "### Power at n = 10,000 (one shifted column, default configuration, "
        "significance mode: 5% false alarms)\n"
    )
    out.append("```")
    methods = ["modelkit significance", *BASELINES]
    out.append(" | ".join(["scenario".ljust(48), "target", *methods, "ranked first"]))
    data: dict[str, Any] = {}
    for label, scenario in scenarios.items():
        tally = run_case(
            n_ref=10_000,
            n_cur=10_000,
            scenario=scenario,
            refs=reps,
            per_ref=1,
            baseline_checks=reps,
            seed=sum(map(ord, scenario)),
        )
        target = targets.get(scenario)
        cells = [label.ljust(48), f"{target:.0%}" if target else "  —"]
        for method in methods:
            n = tally.n if method.startswith("modelkit") else tally.baseline_n
            cells.append(rate(tally.alarms[method], n))
        cells.append(rate(tally.first, tally.n))
        out.append(" | ".join(cells))
        data[scenario] = {m: tally.alarms[m] for m in methods} | {
            "n": tally.n,
            "first": tally.first,
        }
        print(f"  power {scenario}: done", flush=True)
    out.append("```\n")
    out.append(
        "The correlation change is ranked first when the `dependence` row tops the report. "
        "The baselines' power is not at a 5% false-alarm rate (see the first table).\n"
    )
    return data


def timing(quick: bool, out: list[str]) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(99)
    ref_frame = generate(1_000_000, rng)
    cur = generate(1_000_000, rng)
    fits, scores = [], []
    for _ in range(1 if quick else 3):
        started = time.perf_counter()
        reference = Reference.fit(ref_frame)
        fits.append(time.perf_counter() - started)
        started = time.perf_counter()
        check_drift(reference, reference.summarize(cur))
        scores.append(time.perf_counter() - started)
    object_frame = cur.astype(dict.fromkeys(CATEGORICAL, object))
    started = time.perf_counter()
    check_drift(reference, reference.summarize(object_frame))
    object_score = time.perf_counter() - started
    ks_seconds = math.nan
    if not quick:
        started = time.perf_counter()
        for name in NUMERIC:
            ks_2samp(_values(ref_frame, name), _values(cur, name))
        ks_seconds = time.perf_counter() - started
    small = reference.summarize(cur.iloc[:10_000])
    big = reference.summarize(cur)
    size_ref = reference.size_per_feature()
    sizes = (small.size_per_feature(), big.size_per_feature())
    out.append("### Speed and memory (1,000,000 × 20, one core)\n")
    out.append("```")
    out.append(f"fit the reference summary            {min(fits):6.2f} s   (target ≤ 2 s)")
    out.append(
        f"score against it (summarize + check) {min(scores):6.2f} s   (target ≤ 1 s; "
        "categoricals as pandas category)"
    )
    out.append(f"  same, categoricals as Python str   {object_score:6.2f} s")
    if not quick:
        out.append(f"scipy ks_2samp, 16 numeric columns  {ks_seconds:6.2f} s")
    out.append(f"reference summary, largest feature  {size_ref:6,} B  (target ≤ 4 KiB)")
    out.append(
        f"window summary, largest feature     {sizes[0]:6,} B after 10k rows, "
        f"{sizes[1]:,} B after 1M rows (target ≤ 64 KiB, flat)"
    )
    out.append("```\n")
    return {
        "fit_s": min(fits),
        "score_s": min(scores),
        "score_object_s": object_score,
        "ks_s": ks_seconds,
        "reference_bytes_per_feature": size_ref,
        "window_bytes_per_feature": sizes,
    }


def edge_cases(out: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    base = generate(2000, rng)
    cases: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    inf = generate(2000, rng)
    inf.loc[::7, "normal_d"] = np.inf
    inf.loc[::11, "gamma"] = -np.inf
    cases["NaN and ±inf in live data"] = (base, inf)
    const_ref, const_cur = base.copy(), generate(2000, rng)
    const_ref["normal_c"] = 1.0
    const_cur["normal_c"] = 1.0
    cases["constant column"] = (const_ref, const_cur)
    const_cur2 = const_cur.copy()
    const_cur2["normal_c"] = 2.0
    cases["constant column that moves"] = (const_ref, const_cur2)
    one_ref, one_cur = base.copy(), generate(2000, rng)
    one_ref["cat4"] = pd.Categorical(["c0"] * 2000)
    one_cur["cat4"] = pd.Categorical(["c0"] * 2000)
    cases["one category"] = (one_ref, one_cur)
    na_ref, na_cur = base.copy(), generate(2000, rng)
    na_ref["uniform"] = np.nan
    na_cur["uniform"] = np.nan
    cases["all-missing column"] = (na_ref, na_cur)
    cases["29 current rows"] = (base, generate(29, rng))
    cases["29 reference rows"] = (generate(29, rng), base)
    cases["1 current row"] = (base, generate(1, rng))
    lines, failures = [], 0
    for label, (ref_frame, cur) in cases.items():
        try:
            reference = Reference.fit(ref_frame)
            report = check_drift(reference, reference.summarize(cur))
            numbers = [
                v
                for f in report.features
                for v in (f.effect, f.effect_low, f.effect_high, f.p_value, f.p_adjusted)
                if v is not None
            ]
            bad = sum(1 for v in numbers if not math.isfinite(v))
            json.dumps(report.to_dict(), allow_nan=False)
            outcome = f"{report.verdict}; {bad} non-finite numbers"
            failures += bad > 0
        except Exception as exc:  # the benchmark counts them
            outcome = f"EXCEPTION {type(exc).__name__}: {exc}"
            failures += 1
        lines.append(f"{label:<32} {outcome}")
    out.append("### Edge cases (target: no NaN, no exception)\n")
    out.append("```")
    out.extend(lines)
    out.append("```\n")
    return {"failures": failures, "cases": len(cases)}


def categorical_targets(raw: dict[str, Any]) -> list[str]:
    """Each categorical column's false-alarm rate against the 6% target.

    A cell of a few hundred runs cannot tell 5% from 6% (its interval is ±2 pp wide, and
    with 56 cells a few land above 6% by chance when every true rate is 5%). So the verdict
    is on the column's rate over every size of the categorical-alone runs (all independent),
    and a column also fails if any single cell, of either table, is above 6% with 95%
    confidence, which a rate that grows with n would show.
    """
    rows = []
    alone = raw["categorical_alone"]
    for name in CATEGORICAL:
        k = sum(counts["alarms"][name] for counts in alone.values())
        n = sum(counts["n"] for counts in alone.values())
        cells = [(size, c["alarms"][name], c["n"]) for size, c in alone.items()]
        cells += [(size, c["categorical"][name], c["n"]) for size, c in raw["false_alarms"].items()]
        above = [cell for cell in cells if wilson(cell[1], cell[2])[0] > 0.06]
        worst = max(cells, key=lambda cell: cell[1] / cell[2])
        verdict = "met" if k / n <= 0.06 and not above else "NOT met"
        target = f"categorical column {name} ≤ 6% (all sizes, {n:,} runs)"
        rows.append(f"{target:<58} {rate(k, n)}  {verdict}")
        rows.append(
            f"  highest of {len(cells)} cells: {rate(worst[1], worst[2]).strip()} at {worst[0]}; "
            f"cells above 6% with 95% confidence: {len(above)}"
        )
    return rows


def targets_table(raw: dict[str, Any]) -> list[str]:
    """The issue's targets against this run's figures (point estimate and 95% interval)."""
    rows = []

    def add(target: str, k: int, n: int, ok: bool) -> None:
        rows.append(f"{target:<58} {rate(k, n)}  {'met' if ok else 'NOT met'}")

    for size, counts in raw["false_alarms"].items():
        k, n = counts["modelkit significance"], counts["n"]
        add(f"false alarms {size}: 5% ± 1.5 pp", k, n, 0.035 <= k / n <= 0.065)
    rows.extend(categorical_targets(raw))
    for size, counts in raw["negligible"].items():
        k, n = counts["modelkit relevance"], counts["n"]
        add(f"negligible shift, n = {int(size):,}: ≤ 5% (relevance)", k, n, k / n <= 0.05)
    goals = {"mean": 0.95, "scale": 0.95, "category": 0.80, "correlation": 0.95}
    for scenario, goal in goals.items():
        counts = raw["power"][scenario]
        k, n = counts["modelkit significance"], counts["n"]
        add(f"power {scenario} at n = 10,000: ≥ {goal:.0%}", k, n, k / n >= goal)
    for scenario in goals:
        counts = raw["power"][scenario]
        add(
            f"{scenario}: shifted row ranked first ≥ 95%",
            counts["first"],
            counts["n"],
            counts["first"] / counts["n"] >= 0.95,
        )
    timing = raw["timing"]
    rows.append(
        f"{'score 1M x 20 ≤ 1 s / fit ≤ 2 s / ≤ 4 KiB per feature':<58} "
        f"{timing['score_s']:.2f} s / {timing['fit_s']:.2f} s / "
        f"{timing['reference_bytes_per_feature']:,} B  "
        f"{'met' if timing['score_s'] <= 1 and timing['fit_s'] <= 2 else 'NOT met'}"
    )
    edge = raw["edge_cases"]
    rows.append(
        f"{'edge cases: no NaN, no exception':<58} {edge['failures']} failures in "
        f"{edge['cases']} cases  {'met' if edge['failures'] == 0 else 'NOT met'}"
    )
    return ["### Targets (this run)\n", "```", *rows, "```\n"]


def write_section(text: str) -> None:
    content = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = content.find(SECTION)
    if start >= 0:
        end = content.find("\n## ", start + len(SECTION))
        content = content[:start] + text + ("" if end < 0 else content[end:])
    else:
        content = content.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(content.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about 3 minutes)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write the raw counts to this file")
    parser.add_argument(
        "--large-only",
        action="store_true",
        help="only the no-shift rows at 100,000 and 1,000,000 rows (printed, not written)",
    )
    args = parser.parse_args(argv)
    if args.large_only:
        for n, tally in zip((100_000, 1_000_000), large_no_shift(args.quick), strict=True):
            alarms = tally.alarms["modelkit significance"]
            print(f"{n:>9,} | {tally.n:>5} runs | modelkit significance {rate(alarms, tally.n)}")
        return 0
    import scipy
    import sklearn

    started = time.perf_counter()
    out = [SECTION, ""]
    out.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs (run on one: BLAS threads "
        f"= 1); Python {platform.python_version()}, numpy {np.__version__}, scipy "
        f"{scipy.__version__}, pandas {pd.__version__}, scikit-learn {sklearn.__version__}. "
        f"{'Quick run (`--quick`).' if args.quick else 'Full run.'} Data: `generators.py` "
        "(20 columns: correlated Gaussian pair, t(3), log-normal, zero-inflated, Poisson, "
        "5-valued integer, 4-level, binary, Zipf 50 and 1,000 levels, 2% missing in 4 "
        "columns).\n"
    )
    raw: dict[str, Any] = {}
    print("false alarms", flush=True)
    raw["false_alarms"] = false_alarms(args.quick, out)
    print("categorical columns alone", flush=True)
    raw["categorical_alone"] = categorical_alone(args.quick, out)
    print("negligible shift", flush=True)
    raw["negligible"] = negligible(args.quick, out)
    print("power", flush=True)
    raw["power"] = power(args.quick, out)
    print("timing", flush=True)
    raw["timing"] = timing(args.quick, out)
    raw["edge_cases"] = edge_cases(out)
    out[2:2] = targets_table(raw)
    out.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.\n")
    text = "\n".join(out)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
