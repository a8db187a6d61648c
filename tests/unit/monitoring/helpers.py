"""Small seeded mixed tables for the monitoring tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Make = Callable[..., pd.DataFrame]


def mixed(
    n: int,
    seed: int,
    *,
    shift: float = 0.0,
    scale: float = 1.0,
    rho: float = 0.8,
    new_level: float = 0.0,
    missing: float = 0.02,
) -> pd.DataFrame:
    """``n`` rows: a correlated pair, a skewed and an integer column, a 3-level and a
    300-level categorical; ``shift``/``scale`` act on ``x``, ``rho`` is corr(a, b)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    b = rho * a + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    x = rng.standard_normal(n) * scale + shift
    skewed = rng.lognormal(0, 1, n)
    skewed[rng.random(n) < missing] = np.nan
    levels = np.array(["red", "green", "blue", "new"])
    p = np.array([0.5, 0.3, 0.2, 0.0])
    if new_level:
        p = np.array([0.5, 0.3, 0.2, 0.0]) * (1 - new_level) + np.array([0, 0, 0, new_level])
    color = levels[rng.choice(4, size=n, p=p / p.sum())]
    zipf = 1 / np.arange(1, 301)
    city = np.array([f"city{i}" for i in range(300)])[rng.choice(300, size=n, p=zipf / zipf.sum())]
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "x": x,
            "skewed": skewed,
            "count": rng.poisson(2.0, n).astype(np.float64),
            "color": pd.Series(color, dtype=object),
            "city": pd.Series(city, dtype=object),
        }
    )
