"""Drift verdicts: what each test catches, attribution, both modes, and odd data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.monitoring.helpers import Make, mixed

from modelkit._profile import NumericProfile
from modelkit.exceptions import UsageError
from modelkit.monitoring import DriftConfig, Reference, check_drift
from modelkit.monitoring.drift import (
    _Component,
    _conditional_p,
    _design_chi_square,
    _design_variance,
    _feature_p,
    _quantile_design,
    _shape,
    _sum_of_squares_p,
    cauchy_combination,
    holm_sidak,
)
from modelkit.monitoring.report import DriftReport

REFERENCE = Reference.fit(mixed(5000, 0))
SIGNIFICANCE = DriftConfig(mode="significance")


def check(frame: pd.DataFrame, config: DriftConfig = SIGNIFICANCE) -> DriftReport:
    return check_drift(REFERENCE, REFERENCE.summarize(frame), config)


def _finite(report: DriftReport) -> None:
    json.dumps(report.to_dict(), allow_nan=False)
    for f in report.features:
        for value in (f.effect, f.effect_low, f.effect_high, f.margin):
            assert math.isfinite(value), f
        for p in (f.p_value, f.p_adjusted):
            assert p is None or 0 <= p <= 1, f


def test_the_same_distribution_is_no_drift(make: Make) -> None:
    report = check(make(5000, 1))
    _finite(report)
    assert report.verdict == "no drift"
    assert not report.drift
    assert not report.drifted
    assert not report.significance_drift
    assert not report.relevance_drift
    assert {f.name for f in report.features} == {*REFERENCE.feature_names, "dependence"}


@pytest.mark.parametrize(
    ("shift", "feature", "aspect"),
    [
        ({"shift": 0.15}, "x", "location"),
        ({"scale": 1.2}, "x", "scale"),
        ({"rho": 0.4}, "dependence", "correlation"),
        ({"new_level": 0.03}, "color", "new levels"),
        ({"missing": 0.10}, "skewed", "missing"),
    ],
)
def test_each_kind_of_shift_is_caught_and_ranked_first(
    make: Make, shift: dict[str, float], feature: str, aspect: str
) -> None:
    report = check(make(5000, 2, **shift))
    _finite(report)
    assert report.verdict == "drift"
    top = report.features[0]
    assert (top.name, top.aspect, top.status) == (feature, aspect, "drift")
    assert top.p_adjusted is not None
    assert top.p_adjusted < 0.05
    assert report.drifted[0] is top


def test_a_new_level_is_named_in_the_report(make: Make) -> None:
    report = check(make(3000, 3, new_level=0.05))
    assert report.examples["color"] == ("new",)
    assert "'other'" in report.features[0].detail


def test_the_correlated_pair_is_named(make: Make) -> None:
    report = check(make(5000, 4, rho=0.3))
    assert report.features[0].detail.startswith("a ~ b: 0.8")
    assert report.features[0].metric == "correlation"


def test_relevance_ignores_a_tiny_shift_that_significance_flags() -> None:
    reference = Reference.fit(mixed(200_000, 5))
    window = reference.summarize(mixed(200_000, 6, shift=0.03))
    report = check_drift(reference, window)  # auto: relevance above 10,000 rows
    assert report.mode == "relevance"
    assert report.significance_drift
    assert not report.relevance_drift
    assert report.verdict == "no drift"
    x = next(f for f in report.features if f.name == "x")
    assert x.significant
    assert not x.relevant
    assert x.status == "ok"
    assert x.effect_low <= x.effect <= x.effect_high < x.margin


def test_relevance_flags_a_large_shift(make: Make) -> None:
    report = check(make(20_000, 7, shift=0.5), DriftConfig())
    assert report.mode == "relevance"
    assert report.verdict == "drift"
    assert report.features[0].name == "x"
    assert report.features[0].effect_low > report.features[0].margin


def test_the_mode_switches_at_relevance_above() -> None:
    config = DriftConfig(relevance_above=100)
    assert config.mode_for(100) == "significance"
    assert config.mode_for(101) == "relevance"
    assert DriftConfig(mode="relevance").mode_for(5) == "relevance"


def _with(frame: pd.DataFrame, **columns: object) -> pd.DataFrame:
    frame = frame.copy()
    for name, value in columns.items():
        frame[name] = value
    return frame


EDGE_CASES = {
    "nan and inf": lambda f: _with(f, x=np.where(np.arange(len(f)) % 5 == 0, np.inf, f["x"])),
    "minus inf": lambda f: _with(f, count=-np.inf),
    "all missing": lambda f: _with(f, skewed=np.nan, color=None),
    "one category": lambda f: _with(f, color="red"),
    "constant": lambda f: _with(f, a=1.0),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_odd_live_data_gives_finite_answers(make: Make, case: str) -> None:
    report = check(EDGE_CASES[case](make(1000, 8)))
    _finite(report)
    assert report.verdict == "drift"  # each of these is a real change


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_odd_reference_data_gives_finite_answers(make: Make, case: str) -> None:
    frame = EDGE_CASES[case](make(1000, 9))
    reference = Reference.fit(frame)
    report = check_drift(reference, reference.summarize(EDGE_CASES[case](make(1000, 10))))
    _finite(report)
    assert report.verdict == "no drift"


@pytest.mark.parametrize("rows", [0, 1, 29])
def test_fewer_than_30_rows_is_insufficient_data(make: Make, rows: int) -> None:
    report = check(make(1000, 11).iloc[:rows])
    _finite(report)
    assert report.verdict == "insufficient data"
    assert not report.drift
    assert all(f.status == "insufficient data" for f in report.features)
    assert "insufficient data" in report.to_text()


def test_a_tiny_reference_is_insufficient_data(make: Make) -> None:
    reference = Reference.fit(make(20, 12))
    report = check_drift(reference, reference.summarize(make(1000, 13)))
    assert report.verdict == "insufficient data"


def test_a_feature_with_too_few_values_is_insufficient_alone(make: Make) -> None:
    frame = make(1000, 14)
    frame.loc[20:, "x"] = np.nan
    reference = Reference.fit(frame)
    report = check_drift(reference, reference.summarize(frame), SIGNIFICANCE)
    x = next(f for f in report.features if f.name == "x")
    assert x.kind == "numeric"
    assert x.metric == "missing"  # only the missing rate can be tested
    assert report.verdict == "no drift"
    empty = Reference.fit(_with(make(1000, 15), x=np.nan))
    top = check_drift(empty, empty.summarize(make(500, 16)), SIGNIFICANCE).features[0]
    assert (top.name, top.aspect, top.status) == ("x", "missing", "drift")
    assert top.effect == 1.0  # every value missing before, none now


def test_output_drift_is_checked_when_the_reference_has_outputs(make: Make) -> None:
    frame = make(3000, 17)
    reference = Reference.fit(frame, outputs=(frame["x"] > 0).astype(int))
    live = make(3000, 18, shift=0.8)
    report = check_drift(
        reference, reference.summarize(live, (live["x"] > 0).astype(int)), SIGNIFICANCE
    )
    roles = {f.name: f.role for f in report.features}
    assert roles["prediction"] == "output"
    assert roles["dependence"] == "joint"
    assert next(f for f in report.features if f.name == "prediction").status == "drift"


def test_a_truncated_profile_without_buckets_still_calibrates(make: Make) -> None:
    reference = Reference.from_profile(Reference.fit(make(3000, 19)).inputs)
    report = check_drift(reference, reference.summarize(make(3000, 20)), SIGNIFICANCE)
    assert report.verdict == "no drift"
    assert "dependence" not in {f.name for f in report.features}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"mode": "vibes"}, "mode"),
        ({"margins": {"psi": 0.1}}, "unknown relevance margin"),
        ({"margins": {"tv": 2}}, "margin 'tv'"),
        ({"min_rows": 1}, "min_rows"),
    ],
)
def test_bad_configurations_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        DriftConfig(**options)  # type: ignore[arg-type]


def test_margins_merge_with_the_defaults() -> None:
    config = DriftConfig(margins={"tv": 0.05})
    assert config.margins["tv"] == 0.05
    assert config.margins["wasserstein"] == 0.02


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_sidak_adjusts_upwards_within_zero_and_one(p_values: list[float]) -> None:
    adjusted = holm_sidak(p_values)
    assert all(p <= a <= 1 for p, a in zip(p_values, adjusted, strict=True))
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    ranked = [adjusted[i] for i in order]
    assert ranked == sorted(ranked)  # step-down: monotone in the raw p-values


@given(st.lists(st.floats(0, 1), min_size=1, max_size=10))
def test_the_cauchy_combination_is_a_p_value(p_values: list[float]) -> None:
    combined = cauchy_combination(p_values)
    assert 0 <= combined <= 1
    if min(p_values) < 1e-20:
        assert combined < 1e-15 * len(p_values) + 1e-18


def test_the_cauchy_combination_of_equal_p_values_is_that_p_value() -> None:
    assert cauchy_combination([0.01, 0.01, 0.01]) == pytest.approx(0.01, rel=1e-9)
    assert cauchy_combination([]) == 1.0
    assert cauchy_combination([0.3]) == 0.3


# -- calibration of the single tests -----------------------------------------------------------


def _numeric_reference(values: np.ndarray) -> NumericProfile:
    feature = Reference.fit(pd.DataFrame({"v": values})).inputs["v"]
    assert isinstance(feature, NumericProfile)
    return feature


def test_bins_made_from_the_reference_quantiles_have_known_masses() -> None:
    rng = np.random.default_rng(0)
    reference = _numeric_reference(rng.standard_normal(1000))
    masses = _quantile_design(reference)
    assert masses is not None
    assert masses.sum() == pytest.approx(1.0)
    assert masses[0] == masses[-1] == pytest.approx(1 / 1002)  # the open ends: one spacing
    assert masses[1:-1] == pytest.approx(np.asarray(reference.counts[1:-1]) / 1002)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).poisson(3.0, 1000).astype(float),  # one bin per value
        np.where(np.random.default_rng(2).random(1000) < 0.6, 0.0, 1.0 + np.arange(1000.0)),
        np.append(np.random.default_rng(3).standard_normal(999), np.inf),
        np.random.default_rng(4).standard_normal(100_000),  # edges from a sample
    ],
    ids=["discrete", "atom", "infinite", "sampled edges"],
)
def test_other_bins_are_tested_as_multinomial_counts(values: np.ndarray) -> None:
    assert _quantile_design(_numeric_reference(values)) is None


@pytest.mark.parametrize(("size", "cells"), [(1000, 20), (100, 20), (50, 5)])
def test_the_design_variance_is_the_dirichlet_pearson_variance(size: int, cells: int) -> None:
    """With a huge window the statistic is the Pearson sum of the bins' Dirichlet masses:
    its variance must match that of simulated masses (not the chi-square's 2 (K - 1))."""
    rng = np.random.default_rng(size)
    pi = np.full(cells, 1 / cells)
    total = size + 1.0
    masses = rng.dirichlet(total * pi, size=200_000)
    statistic = (total + 1) * ((masses - pi) ** 2 / pi).sum(axis=1)
    assert statistic.mean() == pytest.approx(cells - 1, rel=0.01)
    expected = _design_variance(pi, 1e15, total)
    assert statistic.var() == pytest.approx(expected, rel=0.03)
    if (size, cells) == (100, 20):  # few rows per bin: a plain chi-square is too light
        assert expected > 1.1 * 2 * (cells - 1)


def test_the_shape_test_is_calibrated_when_the_reference_is_much_smaller() -> None:
    """A 1,000-row reference against 10,000-row windows: the statistic's mean is K - 1 and
    p < 0.05 about 5% of the time."""
    from scipy.stats import binom

    rng = np.random.default_rng(5)
    excess, alarms, runs = [], 0, 300
    for _ in range(runs):
        reference = Reference.fit(pd.DataFrame({"v": rng.standard_normal(1000)}))
        window = reference.summarize(pd.DataFrame({"v": rng.standard_normal(10_000)}))
        feature = reference.inputs["v"]
        assert isinstance(feature, NumericProfile)
        masses = _quantile_design(feature)
        assert masses is not None
        counts = np.asarray(window.inputs["v"].counts, dtype=np.float64)  # type: ignore[union-attr]
        statistic, df, p = _design_chi_square(counts, 10_000, masses, 1000)
        excess.append(statistic - df)
        alarms += p < 0.05
    assert abs(np.mean(excess)) < 3 * math.sqrt(2 * 19 / runs)
    assert binom.ppf(0.0005, runs, 0.05) <= alarms <= binom.isf(0.0005, runs, 0.05)


@pytest.mark.parametrize("n_cur", [500, 1000, 1001, 10_000])
def test_the_known_masses_are_used_only_when_the_reference_is_the_smaller_sample(
    n_cur: int,
) -> None:
    rng = np.random.default_rng(n_cur)
    reference = Reference.fit(pd.DataFrame({"v": rng.standard_normal(1000)}))
    feature = reference.inputs["v"]
    assert isinstance(feature, NumericProfile)
    masses = _quantile_design(feature)
    assert masses is not None
    window = reference.summarize(pd.DataFrame({"v": rng.standard_normal(n_cur) * 1.05}))
    a = np.asarray(feature.counts, dtype=np.float64)
    b = np.asarray(window.inputs["v"].counts, dtype=np.float64)  # type: ignore[union-attr]
    shape = _shape(feature, a, b, 1000, n_cur)
    assert (shape == _design_chi_square(b, n_cur, masses, 1000)) == (n_cur > 1000)


def test_the_missing_rate_test_is_exact_in_the_tail_of_unbalanced_samples() -> None:
    """10,000 reference rows against 1,000, 2% missing: the conditional test's p-values stay
    at or below nominal far in the tail (the normal approximation gave 1.2x at 0.001)."""
    rng = np.random.default_rng(6)
    runs = 20_000
    a = rng.binomial(10_000, 0.02, runs)
    b = rng.binomial(1000, 0.02, runs)
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    table = {(x, y): _conditional_p(y, x + y, 11_000, 1000) for x, y in pairs}
    p = np.array([table[int(x), int(y)] for x, y in zip(a, b, strict=True)])
    assert (p > 0).all()
    assert (p <= 1).all()
    for level in (0.05, 0.01, 0.002):
        assert np.mean(p < level) <= level * 1.15


def test_equal_missing_rates_do_not_hide_a_moved_category() -> None:
    """Both samples miss exactly 20 values: the missing-rate test says nothing (p = 1), and
    the levels that moved must still be flagged."""
    levels = np.array(["a", "b", "c"])
    reference = pd.DataFrame({"c": pd.Series(levels[np.arange(2000) % 3], dtype=object)})
    current = pd.DataFrame({"c": pd.Series(np.where(np.arange(2000) % 4 == 0, "a", "b"))})
    reference.loc[:19, "c"] = None
    current.loc[:19, "c"] = None
    fitted = Reference.fit(reference)
    [feature] = check_drift(fitted, fitted.summarize(current), SIGNIFICANCE).features
    assert feature.p_value is not None
    assert feature.p_value < 1e-10
    assert feature.aspect == "levels"


def test_the_feature_p_value_is_a_weighted_bonferroni_of_its_parts() -> None:
    parts = [_Component("missing", 1.0, 0.0), _Component("levels", 0.001, 30.0)]
    assert _feature_p(parts) == pytest.approx(0.001 / 0.8)
    parts.append(_Component("new levels", 0.0001, 9.0))
    assert _feature_p(parts) == pytest.approx(0.0001 / 0.2)
    assert _feature_p([_Component("missing", 0.3, 1.0)]) == 0.3


def test_the_dependence_check_accounts_for_noisy_variances() -> None:
    """Heavy tails make the reference's fourth moments, hence each pair's variance, noisy:
    fewer degrees of freedom, a larger variance of the sum, a larger p-value."""
    rng = np.random.default_rng(7)
    heavy = Reference.fit(pd.DataFrame(rng.standard_t(3, (500, 4)), columns=list("abcd")))
    light = Reference.fit(pd.DataFrame(rng.standard_normal((500, 4)), columns=list("abcd")))
    assert heavy.joint is not None
    assert light.joint is not None
    assert np.median(heavy.joint.dof) < np.median(light.joint.dof)
    assert 100 < np.median(light.joint.dof) < 400  # 2 / CV² of a mean of z²z² over 500 rows
    z = np.full(6, 2.0)
    valid = np.ones(6, dtype=bool)
    reference = np.zeros(6)
    exact = _sum_of_squares_p(z, reference, valid, 4)
    noisy = _sum_of_squares_p(z, reference, valid, 4, np.full(6, 20.0))
    assert exact < noisy
