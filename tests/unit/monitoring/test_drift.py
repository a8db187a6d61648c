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

from modelkit.exceptions import UsageError
from modelkit.monitoring import DriftConfig, Reference, check_drift
from modelkit.monitoring.drift import cauchy_combination, holm_sidak
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
