"""Paired comparisons of two models on the same rows: exact McNemar and paired bootstrap.

Both answer one directional question: is model B better than model A on these rows? The
answer carries the observed difference (B minus A, oriented so that positive is better for
every metric, errors included) and a one-sided p-value for "B is no better than A".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from modelkit._metrics import f1_score
from modelkit.exceptions import UsageError

__all__ = [
    "GATE_METRICS",
    "Comparison",
    "compare",
    "mcnemar_midp",
    "metric_value",
    "paired_bootstrap",
]

GATE_METRICS = ("accuracy", "f1", "rmse", "mae", "r2")
"""Metrics a gate compares; ``rmse`` and ``mae`` are errors (lower is better)."""

LOWER_IS_BETTER = frozenset({"rmse", "mae"})


def mcnemar_midp(b: int, c: int) -> float:
    """One-sided exact McNemar mid-p-value that B is no better than A.

    ``b`` counts rows A got right and B wrong, ``c`` rows B got right and A wrong. Under "no
    difference" ``c`` follows Binomial(b + c, 1/2); the mid-p-value is
    ``P(X > c) + P(X = c) / 2``, which is less conservative than the exact test and keeps
    close to its nominal level (Fagerland, Lydersen and Laake, 2013). With no discordant
    pair there is no evidence either way: 1.0.
    """
    if b < 0 or c < 0:
        raise UsageError(f"discordant counts are non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    log_half_n = n * math.log(0.5)

    def pmf(k: int) -> float:
        return math.exp(
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n
        )

    upper = math.fsum(pmf(k) for k in range(c + 1, n + 1))
    return min(1.0, upper + 0.5 * pmf(c))


def metric_value(metric: str, y: np.ndarray, p: np.ndarray, *, positive: Any = None) -> float:
    """The value of ``metric`` for predictions ``p`` of truths ``y`` (as usually reported)."""
    if metric == "accuracy":
        return float(np.mean(p == y))
    if metric == "f1":
        return f1_score(y, p, positive)
    yf, pf = y.astype(float), p.astype(float)
    if metric == "rmse":
        return float(np.sqrt(np.mean((pf - yf) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(pf - yf)))
    if metric == "r2":
        total = float(np.sum((yf - yf.mean()) ** 2))
        return 1.0 - float(np.sum((pf - yf) ** 2)) / total if total > 0 else math.nan
    raise UsageError(f"metric must be one of {', '.join(GATE_METRICS)}, got {metric!r}")


def _oriented(metric: str) -> Callable[[np.ndarray, np.ndarray, Any], float]:
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return lambda y, p, positive: sign * metric_value(metric, y, p, positive=positive)


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    positive: Any = None,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``metric(B) - metric(A)`` (positive: B better, errors included).

    The same resampled rows score both models. Returns the one-sided p-value (the share of
    resamples where B is no better, with the usual +1 correction) and the percentile
    interval ``(low, high)`` at level ``1 - 2 * alpha`` (its low end is the one-sided bound).
    """
    score = _oriented(metric)
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs = np.empty(n_resamples)
    for i in range(n_resamples):
        rows = rng.integers(0, n, size=n)
        diffs[i] = score(y[rows], b[rows], positive) - score(y[rows], a[rows], positive)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return 1.0, math.nan, math.nan
    p_value = (1 + int(np.sum(diffs <= 0))) / (1 + diffs.size)
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(p_value), float(low), float(high)


@attrs.frozen(kw_only=True)
class Comparison:
    """Model B against model A on the same ``n`` rows.

    ``a`` and ``b`` are the metric values as usually reported; ``improvement`` is B minus A
    oriented so that positive is better (for an error, A's minus B's); ``p_value`` is the
    one-sided p-value of "B is no better than A" from ``test`` (``"mcnemar-midp"`` for
    accuracy, ``"paired-bootstrap"`` otherwise); ``ci`` the bootstrap interval of the
    improvement (``None`` for McNemar); ``b_only`` / ``a_only`` the discordant counts (rows
    only B, or only A, got right; accuracy only).
    """

    metric: str
    n: int
    a: float
    b: float
    improvement: float
    p_value: float
    test: str
    ci: tuple[float, float] | None = None
    a_only: int | None = None
    b_only: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``None``)."""
        out = attrs.asdict(self)
        out["ci"] = None if self.ci is None else list(self.ci)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def compare(
    metric: str,
    y: Any,
    a: Any,
    b: Any,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    positive: Any = None,
) -> Comparison:
    """Compare predictions ``b`` with predictions ``a`` of the same truths ``y``."""
    y_arr, a_arr, b_arr = (np.asarray(v, dtype=object).ravel() for v in (y, a, b))
    if not len(y_arr) == len(a_arr) == len(b_arr):
        raise UsageError(
            f"paired predictions need one value per row: {len(y_arr)} truths, "
            f"{len(a_arr)} and {len(b_arr)} predictions"
        )
    n = len(y_arr)
    if n == 0:
        raise UsageError("there are no rows to compare the models on")
    if metric not in GATE_METRICS:
        raise UsageError(f"metric must be one of {', '.join(GATE_METRICS)}, got {metric!r}")
    a_value = metric_value(metric, y_arr, a_arr, positive=positive)
    b_value = metric_value(metric, y_arr, b_arr, positive=positive)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    improvement = sign * (b_value - a_value)
    if metric == "accuracy":
        a_right, b_right = a_arr == y_arr, b_arr == y_arr
        a_only = int(np.sum(a_right & ~b_right))
        b_only = int(np.sum(b_right & ~a_right))
        return Comparison(
            metric=metric,
            n=n,
            a=a_value,
            b=b_value,
            improvement=improvement,
            p_value=mcnemar_midp(a_only, b_only),
            test="mcnemar-midp",
            a_only=a_only,
            b_only=b_only,
        )
    p_value, low, high = paired_bootstrap(
        metric,
        y_arr,
        a_arr,
        b_arr,
        n_resamples=n_resamples,
        alpha=alpha,
        seed=seed,
        positive=positive,
    )
    return Comparison(
        metric=metric,
        n=n,
        a=a_value,
        b=b_value,
        improvement=improvement,
        p_value=p_value,
        test="paired-bootstrap",
        ci=(low, high),
    )
