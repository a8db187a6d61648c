"""Drift tests: a reference against a window summary, to a calibrated :class:`DriftReport`.

Every test is a *two-sample* test on the binned summaries: the reference is a sample too,
never the truth (no goodness-of-fit against reference counts), and expected counts come from
the pooled proportions. Per feature:

- numeric: a rank-based smooth test on the quantile bins (two orthonormal components on the
  pooled mid-ranks: the first is a Wilcoxon-Mann-Whitney test of *location*, the second a
  Mood-type test of *scale*), a Pearson chi-square on the bins for any other *shape* change
  (cells with fewer than 10 expected rows merged with their neighbours), and a two-proportion
  test of the *missing* rate;
- categorical: a Pearson chi-square on the tracked levels (rare ones merged), or on hash
  buckets when the reference tracks only its most frequent levels; a test of levels seen in
  one sample only (*new levels*, vanished ones); and the missing-rate test;
- dependence (when the reference was fitted from data): the change of every pairwise
  correlation of the numeric features on a bounded scale, standardised with its delta-method
  variance; the sum of their squares is referred to a scaled chi-square (Satterthwaite:
  pairs sharing a feature are correlated). It catches correlation changes that leave every
  marginal distribution as it was.

The components of one feature are combined with the Cauchy combination test (valid under
any dependence between them; the missing-rate test and a numeric feature's omnibus
chi-square weigh 0.2 each, the other components share the rest), and the features with a
Holm-Šidák step-down, so that the dataset-level false-alarm rate is ``alpha``.

Relevance uses effect sizes with simultaneous (Bonferroni) lower confidence bounds, built
from the per-cell normal intervals, so they hold whatever the number of cells: the
Wasserstein-1 distance on the reference's quantile scale for numeric features, the total
variation distance for categorical ones, the change of the missing rate, and the largest
change of a correlation.

Everything is closed form on bin counts: a check costs microseconds per feature, whatever
the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._profile import CategoricalProfile, NumericProfile, Profile
from modelkit.exceptions import UsageError
from modelkit.monitoring.report import DriftReport, FeatureDrift

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from modelkit.monitoring.summary import JointReference, JointSums, Reference, WindowSummary

__all__ = ["DEFAULT_MARGINS", "DriftConfig", "check_drift"]

DEFAULT_MARGINS: Mapping[str, float] = {
    "wasserstein": 0.02,
    "tv": 0.01,
    "missing": 0.02,
    "correlation": 0.1,
}
"""Relevance margins by effect size: a Wasserstein-1 distance of 0.02 on the quantile scale
is about a 0.07sd mean shift of a normal feature; a total variation of 0.01 is one point of
probability moved between levels; 0.02 more (or fewer) missing values; 0.1 of correlation."""

MIN_EXPECTED = 10.0
"""Chi-square cells are merged until each expects at least this many rows in both samples
(the chi-square approximation must hold far in the tail, at the Šidák-corrected level)."""
SMOOTH_COMPONENTS = 2
MODES = ("auto", "significance", "relevance")


def _check_alpha(_: Any, __: Any, value: float) -> None:
    if not 0 < value < 1:
        raise UsageError(f"alpha must be between 0 and 1 (exclusive), got {value!r}")


def _check_mode(_: Any, __: Any, value: str) -> None:
    if value not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {value!r}")


def _check_positive(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise UsageError(f"{attribute.name} must be an integer >= 2, got {value!r}")


def _margins(value: Mapping[str, float] | None) -> dict[str, float]:
    margins = dict(DEFAULT_MARGINS)
    for key, margin in (value or {}).items():
        if key not in DEFAULT_MARGINS:
            raise UsageError(
                f"unknown relevance margin {key!r}; the margins are "
                f"{', '.join(sorted(DEFAULT_MARGINS))}"
            )
        if not isinstance(margin, int | float) or not 0 <= margin < 1:
            raise UsageError(f"margin {key!r} must be a number in [0, 1), got {margin!r}")
        margins[key] = float(margin)
    return margins


@attrs.frozen(kw_only=True)
class DriftConfig:
    """How drift is decided.

    ``alpha``: the dataset-level false-alarm rate of the significance verdict, and one minus
    the simultaneous confidence of the relevance bounds. ``mode``: ``"significance"``,
    ``"relevance"``, or ``"auto"`` (relevance when the window has more than
    ``relevance_above`` rows). ``margins``: relevance margins by effect size (see
    :data:`DEFAULT_MARGINS`; give only those to change). ``min_rows``: fewer current or
    reference rows (or non-missing values, for one feature) give "insufficient data".
    """

    alpha: float = attrs.field(default=0.05, validator=_check_alpha)
    mode: str = attrs.field(default="auto", validator=_check_mode)
    relevance_above: int = 10_000
    margins: Mapping[str, float] = attrs.field(factory=dict, converter=_margins)
    min_rows: int = attrs.field(default=30, validator=_check_positive)

    def mode_for(self, n_current: int) -> str:
        """The mode that decides for a window of ``n_current`` rows."""
        if self.mode != "auto":
            return self.mode
        return "relevance" if n_current > self.relevance_above else "significance"


# -- small statistics ------------------------------------------------------------------------


def _chi2_sf(statistic: float, df: float) -> float:
    from scipy.special import chdtrc

    if df <= 0:
        return 1.0
    return float(chdtrc(df, max(statistic, 0.0)))


def _normal_sf(z: float) -> float:
    from scipy.special import ndtr

    return float(ndtr(-z))


def _normal_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def cauchy_combination(p_values: list[float], weights: list[float] | None = None) -> float:
    """Combine p-values of possibly dependent tests (the Cauchy combination test).

    ``weights`` (default equal) must be positive; they are normalised to sum to one.
    """
    if not p_values:
        return 1.0
    if len(p_values) == 1:
        return p_values[0]
    w = np.ones(len(p_values)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    p = np.clip(np.asarray(p_values, dtype=np.float64), 1e-300, 1 - 1e-15)
    small = p < 1e-15
    terms = np.where(small, 1 / (p * math.pi), 1 / np.tan(np.minimum(p, 0.5) * math.pi))
    big = p > 0.5
    terms[big] = np.tan((0.5 - p[big]) * math.pi)
    statistic = float(np.sum(w * terms))
    if statistic > 1e15:
        return min(1.0, 1 / (statistic * math.pi))
    return float(min(1.0, max(0.0, 0.5 - math.atan(statistic) / math.pi)))


def holm_sidak(p_values: list[float]) -> list[float]:
    """Holm-Šidák step-down adjusted p-values (family-wise error control)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        p = p_values[i]
        value = -math.expm1((m - rank) * math.log1p(-p)) if p < 1 else 1.0
        running = max(running, p, min(1.0, value))
        adjusted[i] = running
    return adjusted


def _groups(pooled: NDArray[np.float64], threshold: float) -> NDArray[np.intp]:
    """Group ids merging consecutive cells until each group's pooled mass >= threshold."""
    ids = np.zeros(pooled.size, dtype=np.intp)
    group, mass = 0, 0.0
    for k, value in enumerate(pooled.tolist()):
        ids[k] = group
        mass += value
        if mass >= threshold:
            group, mass = group + 1, 0.0
    if mass < threshold and group > 0:  # a short last group joins the previous one
        ids[ids == group] = group - 1
    return ids


def _chi_square(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    n: float,
    m: float,
    ids: NDArray[np.intp],
    *,
    quantile_bins: bool = False,
) -> tuple[float, int, float]:
    """Two-sample Pearson chi-square on grouped cells: statistic, df, p.

    ``quantile_bins``: the cells are quantile bins of the reference itself. Their true
    masses are then spacings of the reference sample (Dirichlet, about ``n / K`` rows each)
    rather than multinomial counts: the same variance, but a fourth moment larger by
    ``3 / a`` per cell (``a`` the reference rows per cell). The statistic is compared with a
    chi-square scaled to that variance (Satterthwaite), weighted by the reference's share of
    the sampling variance; it matters when the reference is much smaller than the window.
    """
    size = int(ids.max()) + 1 if ids.size else 0
    ga = np.bincount(ids, weights=a, minlength=size)
    gb = np.bincount(ids, weights=b, minlength=size)
    pooled = (ga + gb) / (n + m)
    keep = pooled > 0
    diff = gb[keep] / m - ga[keep] / n
    statistic = float(np.sum(diff * diff / pooled[keep]) / (1 / n + 1 / m))
    df = int(keep.sum()) - 1
    if quantile_bins and df > 0:
        share = (1 / n) / (1 / n + 1 / m)
        alpha = max(float(np.mean(ga[keep])), 1.0)
        scale = 1 + 3 / alpha * share * share
        return statistic, df, _chi2_sf(statistic / scale, df / scale)
    return statistic, df, _chi2_sf(statistic, df)


@attrs.frozen
class _Component:
    aspect: str
    p: float
    weight: float  # how strongly it moved, for the aspect attribution


@attrs.frozen
class _Effect:
    metric: str
    value: float
    low: float
    high: float


def _missing(
    ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int, z: float
) -> tuple[_Component | None, _Effect]:
    n, m = ref_rows, cur_rows
    ra, rb = ref_missing / n, cur_missing / m
    diff = rb - ra
    pooled = (ref_missing + cur_missing) / (n + m)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    effect = _Effect(
        "missing", abs(diff), max(0.0, abs(diff) - z * se), min(1.0, abs(diff) + z * se)
    )
    if ref_missing + cur_missing == 0 or pooled >= 1:
        return None, effect
    statistic = abs(diff) / se
    return _Component("missing", 2 * _normal_sf(statistic), statistic), effect


def _smooth(
    a: NDArray[np.float64], b: NDArray[np.float64], n: float, m: float
) -> tuple[float, list[float]]:
    """The rank-based smooth test: p-value and the standardised components (location,
    scale)."""
    pooled = (a + b) / (n + m)
    keep = pooled > 0
    pooled, a, b = pooled[keep], a[keep], b[keep]
    if pooled.size < 2:
        return 1.0, []
    mid = np.cumsum(pooled) - pooled / 2 - 0.5
    basis: list[NDArray[np.float64]] = []
    for power in range(1, min(SMOOTH_COMPONENTS, pooled.size - 1) + 1):
        h = mid**power
        h = h - np.sum(pooled * h)
        for g in basis:
            h = h - np.sum(pooled * h * g) * g
        norm = math.sqrt(float(np.sum(pooled * h * h)))
        if norm < 1e-12:
            break
        basis.append(h / norm)
    diff = b / m - a / n
    scale = math.sqrt(1 / n + 1 / m)
    components = [float(np.sum(h * diff)) / scale for h in basis]
    statistic = sum(u * u for u in components)
    return _chi2_sf(statistic, len(components)), components


def _wasserstein(
    a: NDArray[np.float64], b: NDArray[np.float64], n: float, m: float, z: float
) -> _Effect:
    """Wasserstein-1 distance on the reference's quantile scale, with simultaneous bounds."""
    pooled = (a + b) / (n + m)
    keep = pooled > 0
    a, b, pooled = a[keep], b[keep], pooled[keep]
    if a.size < 2:
        return _Effect("wasserstein", 0.0, 0.0, 0.0)
    p, q = a / n, b / m
    cp, cq, cpool = np.cumsum(p)[:-1], np.cumsum(q)[:-1], np.cumsum(pooled)[:-1]
    mids = np.cumsum(p) - p / 2
    width = np.diff(mids)
    diff = np.abs(cq - cp)
    se = np.sqrt(np.clip(cpool * (1 - cpool), 0, None) * (1 / n + 1 / m))
    z_cells = z if diff.size <= 1 else _normal_quantile(1 - (1 - _normal_cdf(z)) / diff.size)
    low = float(np.sum(width * np.maximum(diff - z_cells * se, 0)))
    high = float(min(1.0, np.sum(width * (diff + z_cells * se))))
    return _Effect("wasserstein", float(np.sum(width * diff)), low, high)


def _normal_cdf(z: float) -> float:
    return 1 - _normal_sf(z)


def _total_variation(
    a: NDArray[np.float64], b: NDArray[np.float64], n: float, m: float, z: float
) -> _Effect:
    pooled = (a + b) / (n + m)
    keep = pooled > 0
    a, b, pooled = a[keep], b[keep], pooled[keep]
    diff = np.abs(b / m - a / n)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    z_cells = z if diff.size <= 1 else _normal_quantile(1 - (1 - _normal_cdf(z)) / diff.size)
    return _Effect(
        "tv",
        float(diff.sum() / 2),
        float(np.maximum(diff - z_cells * se, 0).sum() / 2),
        float(min(1.0, (diff + z_cells * se).sum() / 2)),
    )


# -- one feature -----------------------------------------------------------------------------


@attrs.frozen
class _Result:
    p: float | None
    aspect: str
    effect: _Effect
    margin: float
    detail: str
    relevant: bool


def _pick_effect(effects: list[_Effect], margins: Mapping[str, float]) -> tuple[_Effect, float]:
    """The effect whose lower bound is largest relative to its margin."""

    def ratio(effect: _Effect) -> tuple[float, float]:
        margin = margins[effect.metric]
        return (effect.low - margin, effect.value - margin)

    best = max(effects, key=ratio)
    return best, margins[best.metric]


MISSING_WEIGHT = 0.2
"""Share of the missing-rate test in a feature's combined p-value (the distribution tests
share the rest): missing-rate changes worth an alarm are large, so they need little weight,
and the distribution tests keep most of the power."""


SHAPE_WEIGHT = 0.2
"""Share of a numeric feature's omnibus chi-square (*shape*) in its combined p-value: the
location and scale components carry the power against the common shifts, and the omnibus,
whose tail is a little heavy when the reference is much smaller than the window, only
backs them up."""


def _weights(components: list[_Component]) -> list[float]:
    fixed = {"missing": MISSING_WEIGHT, "shape": SHAPE_WEIGHT}
    present = [c.aspect for c in components]
    if all(aspect in fixed for aspect in present) or not any(a in fixed for a in present):
        return [1.0] * len(components)
    rest = 1 - sum(fixed[a] for a in present if a in fixed)
    others = sum(a not in fixed for a in present)
    return [fixed.get(a, rest / others) for a in present]


def _missing_parts(
    ref_missing: int, cur_missing: int, rows: tuple[int, int], z: float
) -> tuple[list[_Component], list[_Effect]]:
    """The missing-rate test and effect, as the first entries of a feature's lists."""
    missing, effect = _missing(ref_missing, rows[0], cur_missing, rows[1], z)
    return ([] if missing is None else [missing]), [effect]


def _combine(
    components: list[_Component], effects: list[_Effect], margins: Mapping[str, float], detail: str
) -> _Result:
    effect, margin = _pick_effect(effects, margins)
    relevant = any(e.low > margins[e.metric] for e in effects)
    if not components:
        return _Result(1.0, "-", effect, margin, detail, relevant)
    p = cauchy_combination([c.p for c in components], _weights(components))
    aspect = min(components, key=lambda c: (c.p, -c.weight)).aspect
    return _Result(p, aspect, effect, margin, detail, relevant)


def _numeric(
    ref: NumericProfile, cur: NumericProfile, z: float, config: DriftConfig, rows: tuple[int, int]
) -> _Result:
    margins = config.margins
    components, effects = _missing_parts(ref.missing, cur.missing, rows, z)
    n, m = ref.count, cur.count
    detail = ""
    if min(n, m) >= config.min_rows:
        a = np.asarray(ref.counts, dtype=np.float64)
        b = np.asarray(cur.counts, dtype=np.float64)
        p_smooth, parts = _smooth(a, b, n, m)
        if parts:
            location = abs(parts[0])
            scale = abs(parts[1]) if len(parts) > 1 else 0.0
            aspect = "location" if location >= scale else "scale"
            components.append(_Component(aspect, p_smooth, max(location, scale)))
        pooled = (a + b) / (n + m)
        ids = _groups(pooled, MIN_EXPECTED / min(n, m))
        statistic, df, p_chi = _chi_square(a, b, n, m, ids, quantile_bins=True)
        if df > len(parts):
            components.append(_Component("shape", p_chi, statistic))
        effects.append(_wasserstein(a, b, n, m, z))
        detail = _numeric_detail(ref, cur)
    elif not components:
        return _Result(None, "-", effects[0], margins["missing"], "", False)
    return _combine(components, effects, margins, detail)


def _numeric_detail(ref: NumericProfile, cur: NumericProfile) -> str:
    if ref.n_finite == 0 or cur.n_finite == 0:
        return ""
    return f"mean {ref.mean:.4g} → {cur.mean:.4g}, sd {ref.std:.4g} → {cur.std:.4g}"


def _categorical(
    ref: CategoricalProfile,
    cur: CategoricalProfile,
    z: float,
    config: DriftConfig,
    rows: tuple[int, int],
    *,
    buckets: tuple[tuple[int, ...], tuple[int, ...]] | None,
    untracked: Mapping[str, int],
) -> _Result:
    margins = config.margins
    components, effects = _missing_parts(ref.missing, cur.missing, rows, z)
    n, m = ref.count, cur.count
    detail = ""
    if min(n, m) >= config.min_rows:
        a = np.asarray([*ref.counts, ref.other], dtype=np.float64)
        b = np.asarray([*cur.counts, cur.other], dtype=np.float64)
        pooled = (a + b) / (n + m)
        if buckets is not None:
            ta = np.asarray(buckets[0], dtype=np.float64)
            tb = np.asarray(buckets[1], dtype=np.float64)
        elif ref.other == 0:
            ta, tb = a[:-1], b[:-1]
            one_sided = _one_sided_levels(ref, cur, untracked)
            if one_sided is not None:
                components.append(one_sided)
        else:
            ta, tb = _trim_truncated(ref, a, b)
        if tb.sum() >= 1:
            statistic, df, p_chi = _sparse_chi_square(ta, tb, ta.sum(), tb.sum())
        else:
            statistic, df, p_chi = 0.0, 0, 1.0
        names = [*ref.levels, "other"]
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.nan_to_num(np.abs(b / m - a / n) / np.sqrt(pooled))
        top = int(np.argmax(residual))
        if df > 0:
            components.append(_Component("levels", p_chi, statistic))
        if buckets is not None or ref.other > 0:
            effects.append(_total_variation(ta, tb, ta.sum(), tb.sum(), z))
        else:
            effects.append(_total_variation(a, b, n, m, z))
        detail = f"{names[top]!r} {a[top] / n:.1%} → {b[top] / m:.1%}"
    elif not components:
        return _Result(None, "-", effects[0], margins["missing"], "", False)
    return _combine(components, effects, margins, detail)


def _sparse_chi_square(
    a: NDArray[np.float64], b: NDArray[np.float64], n: float, m: float
) -> tuple[float, int, float]:
    """Chi-square on unordered cells, the rarest merged until each expects enough rows."""
    pooled = (a + b) / (n + m)
    order = np.argsort(-pooled, kind="stable")
    ids = np.empty(pooled.size, dtype=np.intp)
    ids[order] = _groups(pooled[order], MIN_EXPECTED / min(n, m))
    return _chi_square(a, b, n, m, ids)


def _one_sided_levels(
    ref: CategoricalProfile, cur: CategoricalProfile, untracked: Mapping[str, int]
) -> _Component | None:
    """Test levels seen in one sample only: new levels, and levels that vanished.

    Given a level's pooled count ``c``, under no drift its rows fall in the current sample
    with probability ``m / (n + m)`` each, so all ``c`` land in the current one with
    probability ``(m / (n + m))^c`` (in the reference: ``(n / (n + m))^c``). The p-value is
    the smallest such probability, Bonferroni-corrected over the levels: exact and
    conservative, with no model of how many rare levels a sample misses. It needs the
    counts of the current's untracked values, which the window keeps.
    """
    n, m = ref.count, cur.count
    log_cur, log_ref = math.log(m / (n + m)), math.log(n / (n + m))
    logs = [c * log_cur for c in untracked.values() if c > 0]
    logs += [a * log_ref for a, b in zip(ref.counts, cur.counts, strict=True) if b == 0 and a]
    if not logs:
        return None
    levels = len(ref.levels) + len(untracked)
    smallest = min(logs)
    p = min(1.0, levels * math.exp(smallest))
    return _Component("new levels", p, -smallest)


def _trim_truncated(
    ref: CategoricalProfile, a: NDArray[np.float64], b: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cells to test when the reference tracks only its most frequent levels (and has no
    hash buckets): levels whose reference count is near the cut-off were chosen *because*
    their count was high, which biases the test, so they join ``other``."""
    if ref.other == 0 or not ref.counts:
        return a, b
    cut = min(ref.counts)
    keep = np.asarray(ref.counts, dtype=np.float64) >= max(4.0 * cut, cut + 25.0)
    kept = np.flatnonzero(keep)
    rest = np.flatnonzero(~keep)
    a_out = np.append(a[kept], a[rest].sum() + a[-1])
    b_out = np.append(b[kept], b[rest].sum() + b[-1])
    return a_out, b_out


def _dependence(
    joint: JointReference, sums: JointSums, z: float, config: DriftConfig
) -> _Result | None:
    k = len(joint.names)
    pairs = k * (k - 1) // 2
    if pairs == 0:
        return None
    current = sums.correlations()
    reference = np.asarray(joint.corr)
    se = np.sqrt(np.asarray(joint.variance) * (1 / joint.n_rows + 1 / max(sums.n, 1)))
    diff = current - reference
    valid = np.isfinite(diff)
    margin = config.margins["correlation"]
    if not valid.any():
        return _Result(None, "-", _Effect("correlation", 0.0, 0.0, 0.0), margin, "", False)
    statistic = np.where(valid, np.abs(np.nan_to_num(diff)) / se, 0.0)
    best = int(np.argmax(statistic))
    p = _sum_of_squares_p(statistic[valid], reference, valid, k)
    z_pairs = _normal_quantile(1 - (1 - _normal_cdf(z)) / int(valid.sum()))
    size = np.abs(np.nan_to_num(diff))
    lows = np.maximum(size - z_pairs * se, 0.0)
    top = int(np.argmax(np.where(valid, lows, -1.0)))
    if lows[top] <= 0:
        top = best
    rows, cols = np.triu_indices(k, 1)
    i, j = int(rows[best]), int(cols[best])
    detail = (
        f"{joint.names[i]} ~ {joint.names[j]}: {reference[best]:.3f} → {float(current[best]):.3f}"
    )
    effect = _Effect(
        "correlation",
        float(size[top]),
        float(lows[top]),
        float(min(2.0, size[top] + z_pairs * se[top])),
    )
    return _Result(p, "correlation", effect, margin, detail, effect.low > margin)


def _sum_of_squares_p(
    z: NDArray[np.float64], reference: NDArray[np.float64], valid: NDArray[np.bool_], k: int
) -> float:
    """p-value of ``Σ z²`` over the pairs, a scaled chi-square (Satterthwaite).

    Two pairs sharing a feature, ``(i, j)`` and ``(i, l)``, have correlated statistics when
    ``j`` and ``l`` are correlated: about ``rho_jl``. Hence the sum's variance is
    ``2 (P + 2 (k - 2) Σ rho²)`` instead of ``2P``, which the scale and degrees of freedom take
    into account.
    """
    pairs = int(valid.sum())
    shared = 2.0 * max(k - 2, 0) * float(np.sum(np.nan_to_num(reference[valid]) ** 2))
    trace2 = pairs + shared
    scale = trace2 / pairs
    df = pairs * pairs / trace2
    from scipy.special import chdtrc

    return float(chdtrc(df, float(np.sum(z * z)) / scale))


# -- the check -------------------------------------------------------------------------------


def _feature_rows(
    reference: Profile,
    current: Profile,
    role: str,
    z: float,
    config: DriftConfig,
    *,
    buckets: tuple[Mapping[str, tuple[int, ...]], Mapping[str, tuple[int, ...]]] = ({}, {}),
    untracked: Mapping[str, Mapping[str, int]] | None = None,
) -> list[tuple[str, str, str, int, int, _Result]]:
    untracked = untracked or {}
    out = []
    by_name = {f.name: f for f in current.features}
    rows = (reference.n_rows, current.n_rows)
    for ref in reference.features:
        cur = by_name[ref.name]
        if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
            result = _numeric(ref, cur, z, config, rows)
            out.append((ref.name, role, "numeric", ref.count, cur.count, result))
        elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
            pair = None
            if ref.name in buckets[0] and ref.name in buckets[1]:
                pair = (buckets[0][ref.name], buckets[1][ref.name])
            result = _categorical(
                ref, cur, z, config, rows, buckets=pair, untracked=untracked.get(ref.name, {})
            )
            out.append((ref.name, role, "categorical", ref.count, cur.count, result))
    return out


def check_drift(
    reference: Reference, window: WindowSummary, config: DriftConfig | None = None
) -> DriftReport:
    """Compare a window summary with the reference; see the module docstring for how.

    Never raises on odd data and never returns NaN: constant or all-missing features, a
    single category, infinities and tiny windows give either a finite answer or
    "insufficient data".
    """
    config = config or DriftConfig()
    mode = config.mode_for(window.n_rows)
    n_ref, n_cur = reference.n_rows, window.n_rows
    if min(n_ref, n_cur) < config.min_rows:
        return _insufficient(reference, window, config, mode)
    n_tests = len(reference.inputs.features) + (
        0 if reference.outputs is None or window.outputs is None else len(reference.outputs)
    )
    if reference.joint is not None and window.joint is not None:
        n_tests += 1
    z = _normal_quantile(1 - config.alpha / (2 * max(n_tests, 1)))
    entries = _feature_rows(
        reference.inputs,
        window.inputs,
        "input",
        z,
        config,
        buckets=(reference.buckets, window.buckets),
        untracked=window.untracked,
    )
    if reference.outputs is not None and window.outputs is not None:
        entries += _feature_rows(reference.outputs, window.outputs, "output", z, config)
    if reference.joint is not None and window.joint is not None:
        dependence = _dependence(reference.joint, window.joint, z, config)
        if dependence is not None:
            entries.append(("dependence", "joint", "dependence", n_ref, n_cur, dependence))
    tested = [i for i, entry in enumerate(entries) if entry[5].p is not None]
    adjusted = holm_sidak([entries[i][5].p for i in tested])  # type: ignore[misc]
    p_adjusted: dict[int, float] = dict(zip(tested, adjusted, strict=True))
    features = []
    for i, (name, role, kind, nr, nc, result) in enumerate(entries):
        p_adj = p_adjusted.get(i)
        significant = p_adj is not None and p_adj < config.alpha
        flagged = significant if mode == "significance" else result.relevant
        status = "insufficient data" if result.p is None else "drift" if flagged else "ok"
        features.append(
            FeatureDrift(
                name=name,
                role=role,
                kind=kind,
                status=status,
                n_reference=nr,
                n_current=nc,
                p_value=result.p,
                p_adjusted=p_adj,
                significant=significant,
                relevant=result.relevant,
                aspect=result.aspect,
                metric=result.effect.metric,
                effect=result.effect.value,
                effect_low=result.effect.low,
                effect_high=result.effect.high,
                margin=result.margin,
                detail=result.detail,
            )
        )
    if not tested:
        return _insufficient(reference, window, config, mode, features)
    significance_drift = any(f.significant for f in features)
    relevance_drift = any(f.relevant for f in features)
    drift = significance_drift if mode == "significance" else relevance_drift
    features.sort(key=_ranking(mode))
    return DriftReport(
        verdict="drift" if drift else "no drift",
        mode=mode,
        alpha=config.alpha,
        significance_drift=significance_drift,
        relevance_drift=relevance_drift,
        n_reference=n_ref,
        n_current=n_cur,
        features=features,
        start=window.start,
        end=window.end,
        examples=_examples(window),
    )


def _examples(window: WindowSummary) -> dict[str, tuple[str, ...]]:
    return {name: tuple(list(counts)[:10]) for name, counts in window.untracked.items() if counts}


def _ranking(mode: str) -> Any:
    def significance(f: FeatureDrift) -> tuple[float, float]:
        return (-f.evidence, -(f.effect / f.margin if f.margin else f.effect))

    def relevance(f: FeatureDrift) -> tuple[float, float]:
        return (-(f.effect_low - f.margin), -f.evidence)

    return significance if mode == "significance" else relevance


def _insufficient(
    reference: Reference,
    window: WindowSummary,
    config: DriftConfig,
    mode: str,
    features: list[FeatureDrift] | None = None,
) -> DriftReport:
    if features is None:
        features = [
            FeatureDrift(
                name=f.name,
                role="input",
                kind=f.kind,
                status="insufficient data",
                n_reference=f.count,
                n_current=0,
                p_value=None,
                p_adjusted=None,
                significant=False,
                relevant=False,
                aspect="-",
                metric="wasserstein" if f.kind == "numeric" else "tv",
                effect=0.0,
                effect_low=0.0,
                effect_high=0.0,
                margin=config.margins["wasserstein" if f.kind == "numeric" else "tv"],
            )
            for f in reference.inputs.features
        ]
        by_name = {f.name: f for f in window.inputs.features}
        features = [
            attrs.evolve(f, n_current=by_name[f.name].count) if f.name in by_name else f
            for f in features
        ]
    return DriftReport(
        verdict="insufficient data",
        mode=mode,
        alpha=config.alpha,
        significance_drift=False,
        relevance_drift=False,
        n_reference=reference.n_rows,
        n_current=window.n_rows,
        features=features,
        start=window.start,
        end=window.end,
        examples=_examples(window),
    )
