"""Seeded generators of the drift benchmark: 20 mixed columns and the shift scenarios.

Scenarios: ``none``, ``negligible`` (+0.02σ on every continuous column, on the positive part
of the zero-inflated one so that its zeros stay zeros; integer columns get one more unit on a
share of rows that moves their mean by 0.02σ, keeping their support; 0.2
points of probability moved in every categorical), ``mean`` (+0.1σ), ``scale`` (×1.10),
``category`` (2 points moved between two levels), ``new_category``, ``correlation``
(0.8 → 0.4 with the marginals fixed) and ``missing`` (2% → 6%).

Columns: a correlated Gaussian pair (ρ = 0.8), heavy tails (Student t, 3 df), log-normal,
zero-inflated exponential, Poisson, a 5-valued integer, a 4-level categorical, a binary
column, Zipf 50-level and 1,000-level categoricals, and nine more numeric columns; 2% of the
values are missing in four columns. Categoricals are pandas ``category`` columns.
"""

# ruff: noqa: RUF001, RUF002, RUF003
# (statistics notation: σ, ρ, ×, en dashes in the tables and their captions)
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

NUMERIC = [
    "gauss_a",
    "gauss_b",
    "heavy_t",
    "lognormal",
    "zero_inflated",
    "poisson",
    "int5",
    "binary",
    "normal_c",
    "uniform",
    "gamma",
    "exponential",
    "beta",
    "normal_d",
    "geometric",
    "normal_e",
]
CATEGORICAL = ["cat4", "zipf50", "zipf1000", "color6"]
COLUMNS = [
    "gauss_a",
    "gauss_b",
    "heavy_t",
    "lognormal",
    "zero_inflated",
    "poisson",
    "int5",
    "cat4",
    "binary",
    "zipf50",
    "zipf1000",
    "normal_c",
    "uniform",
    "gamma",
    "exponential",
    "beta",
    "normal_d",
    "color6",
    "geometric",
    "normal_e",
]
DISCRETE = ("poisson", "int5", "binary", "geometric")
"""Integer-valued columns: their negligible shift moves 0.02σ of mean by whole units."""
MISSING = ("heavy_t", "lognormal", "cat4", "uniform")
CAT4 = np.array([0.4, 0.3, 0.2, 0.1])
COLOR6 = np.array([0.3, 0.25, 0.15, 0.12, 0.1, 0.08])
INT5 = np.array([0.1, 0.2, 0.4, 0.2, 0.1])


def _zipf(k: int) -> np.ndarray:
    p = 1 / np.arange(1, k + 1)
    return p / p.sum()


ZIPF50 = _zipf(50)
ZIPF1000 = _zipf(1000)
SD = {
    "heavy_t": np.sqrt(3.0),
    "lognormal": float(np.sqrt((np.e - 1) * np.e)),
    "normal_c": 2.0,
    "uniform": float(np.sqrt(1 / 12)),
    "gamma": float(np.sqrt(2.0)),
    "poisson": float(np.sqrt(3.0)),
    "int5": float(np.sqrt(1.2)),
    "binary": float(np.sqrt(0.21)),
    "beta": float(np.sqrt(10 / (49 * 8))),
    "normal_e": 0.5,
    "geometric": float(np.sqrt(0.75) / 0.5),
    "zero_inflated": 0.8,  # 60% zeros, 40% Exp(1): variance 0.8 - 0.4²
}


def _categorical(rng: np.random.Generator, p: np.ndarray, n: int, prefix: str) -> pd.Categorical:
    codes = rng.choice(p.size, size=n, p=p)
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}{i}" for i in range(p.size)])


def generate(n: int, rng: np.random.Generator, scenario: str = "none") -> pd.DataFrame:  # noqa: PLR0912
    """``n`` rows of the 20 columns, with the named shift applied (``"none"``: no shift)."""
    rho = 0.4 if scenario == "correlation" else 0.8
    z1 = rng.standard_normal(n)
    z2 = rho * z1 + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    cat4 = CAT4.copy()
    zipf50, color6 = ZIPF50.copy(), COLOR6.copy()
    if scenario == "category":
        cat4[0] -= 0.02
        cat4[3] += 0.02
    if scenario == "negligible":
        for p in (cat4, zipf50, color6):
            p[0] -= 0.002
            p[1] += 0.002
    data: dict[str, object] = {
        "gauss_a": z1,
        "gauss_b": z2,
        "heavy_t": rng.standard_t(3, n),
        "lognormal": rng.lognormal(0.0, 1.0, n),
        "zero_inflated": np.where(rng.random(n) < 0.6, 0.0, rng.exponential(1.0, n)),
        "poisson": rng.poisson(3.0, n).astype(np.float64),
        "int5": (rng.choice(5, size=n, p=INT5) + 1).astype(np.float64),
        "binary": (rng.random(n) < 0.3).astype(np.float64),
        "normal_c": rng.normal(5.0, 2.0, n),
        "uniform": rng.random(n),
        "gamma": rng.gamma(2.0, 1.0, n),
        "exponential": rng.exponential(1.0, n),
        "beta": rng.beta(2.0, 5.0, n),
        "normal_d": rng.standard_normal(n),
        "geometric": rng.geometric(0.5, n).astype(np.float64),
        "normal_e": rng.normal(-3.0, 0.5, n),
    }
    if scenario == "mean":
        data["normal_d"] = data["normal_d"] + 0.1  # type: ignore[operator]
    if scenario == "scale":
        data["normal_d"] = data["normal_d"] * 1.1  # type: ignore[operator]
    if scenario == "negligible":
        for name in NUMERIC:
            column = data[name]
            if name == "zero_inflated":  # keep the zeros at zero: shift the positive part
                data[name] = np.where(column > 0, column + 0.02 * SD[name], 0.0)  # type: ignore[operator]
            elif name in DISCRETE:  # keep the support: one more unit on 0.02σ/unit of rows
                share = 0.02 * SD[name] / (0.7 if name == "binary" else 1.0)
                bump = rng.random(n) < share
                if name == "binary":
                    data[name] = np.where(bump, 1.0, column)  # type: ignore[call-overload]
                else:
                    data[name] = column + bump  # type: ignore[operator]
            else:
                data[name] = column + 0.02 * SD.get(name, 1.0)  # type: ignore[operator]
    cats = {
        "cat4": _categorical(rng, cat4, n, "c"),
        "zipf50": _categorical(rng, zipf50, n, "z"),
        "zipf1000": _categorical(rng, ZIPF1000, n, "w"),
        "color6": _categorical(rng, color6, n, "k"),
    }
    if scenario == "new_category":
        codes = cats["cat4"].codes.copy()
        new = rng.random(n) < 0.02
        codes[new] = 4
        cats["cat4"] = pd.Categorical.from_codes(codes, categories=["c0", "c1", "c2", "c3", "NEW"])
    frame = pd.DataFrame({name: data[name] if name in data else cats[name] for name in COLUMNS})
    missing_rate = dict.fromkeys(MISSING, 0.02)
    if scenario == "missing":
        missing_rate["heavy_t"] = 0.06
    for name, rate in missing_rate.items():
        mask = rng.random(n) < rate
        column = frame[name]
        frame[name] = (
            column.mask(mask)
            if not isinstance(column.dtype, pd.CategoricalDtype)
            else column.where(~mask)
        )
    return frame


def generate_categorical(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows of the four categorical columns alone, drawn as in :func:`generate` with
    no shift (2% missing in ``cat4``): a feature's test sees only its own column, so its
    false alarms can be counted over many more runs than the 20-column tables afford."""
    frame = pd.DataFrame(
        {
            "cat4": _categorical(rng, CAT4, n, "c"),
            "zipf50": _categorical(rng, ZIPF50, n, "z"),
            "zipf1000": _categorical(rng, ZIPF1000, n, "w"),
            "color6": _categorical(rng, COLOR6, n, "k"),
        }
    )
    frame["cat4"] = frame["cat4"].where(~(rng.random(n) < 0.02))
    return frame


SHIFTED: dict[str, str] = {
    "mean": "normal_d",
    "scale": "normal_d",
    "category": "cat4",
    "new_category": "cat4",
    "correlation": "dependence",
    "missing": "heavy_t",
}
"""The feature (row of the report) each one-column scenario shifts."""

Generator = Callable[[int, np.random.Generator, str], pd.DataFrame]
