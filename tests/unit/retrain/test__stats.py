"""The gate's paired comparisons: exact McNemar mid-p and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkit.exceptions import UsageError
from modelkit.retrain import compare, mcnemar_midp
from modelkit.retrain._stats import metric_value, paired_bootstrap


def test_mcnemar_midp_matches_the_binomial_tail_by_hand() -> None:
    # c=5 of n=5 discordant pairs favour B: P(X>5)=0, P(X=5)=1/32, mid-p = 1/64
    assert mcnemar_midp(0, 5) == pytest.approx(1 / 64)
    # c=3 of n=4: P(X>3) = 1/16, P(X=3) = 4/16 -> 1/16 + 2/16
    assert mcnemar_midp(1, 3) == pytest.approx(3 / 16)
    assert mcnemar_midp(0, 0) == 1.0
    with pytest.raises(UsageError):
        mcnemar_midp(-1, 2)


def test_mcnemar_midp_agrees_with_scipy_binomtest() -> None:
    stats = pytest.importorskip("scipy.stats")
    b, c = 31, 52
    n = b + c
    exact = stats.binomtest(c, n, 0.5, alternative="greater").pvalue
    mid = exact - 0.5 * stats.binom.pmf(c, n, 0.5)
    assert mcnemar_midp(b, c) == pytest.approx(mid, rel=1e-9)


@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_midp_is_a_probability_that_falls_as_b_wins_more(b: int, c: int) -> None:
    p = mcnemar_midp(b, c)
    assert 0.0 <= p <= 1.0
    assert mcnemar_midp(b, c + 1) <= p + 1e-12
    if b == c and b > 0:
        assert p == pytest.approx(0.5)


def test_compare_accuracy_counts_the_discordant_rows() -> None:
    y = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    a = np.array([1, 0, 0, 0, 0, 0, 1, 0])  # 4 right
    b = np.array([1, 0, 1, 1, 0, 1, 1, 0])  # 7 right
    got = compare("accuracy", y, a, b)
    assert (got.a, got.b, got.n) == (4 / 8, 7 / 8, 8)
    assert (got.a_only, got.b_only) == (0, 3)
    assert got.improvement == pytest.approx(0.375)
    assert got.p_value == pytest.approx(mcnemar_midp(0, 3))
    assert got.test == "mcnemar-midp"
    assert got.ci is None


def test_compare_an_error_metric_counts_lower_as_better() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    close = y + rng.normal(scale=0.1, size=400)
    far = y + rng.normal(scale=1.0, size=400)
    got = compare("rmse", y, far, close, n_resamples=300)
    assert got.b < got.a
    assert got.improvement > 0.5
    assert got.p_value < 0.01
    assert got.ci is not None
    assert 0 < got.ci[0] <= got.improvement <= got.ci[1]
    worse = compare("rmse", y, close, far, n_resamples=300)
    assert worse.improvement < 0
    assert worse.p_value > 0.99


def test_the_bootstrap_finds_no_difference_between_identical_predictions() -> None:
    y = np.array([0, 1] * 50)
    p = np.array([0, 1, 1, 0] * 25)
    p_value, low, high = paired_bootstrap("f1", y, p, p, n_resamples=200)
    assert p_value == 1.0
    assert low == high == 0.0


def test_metrics_read_as_usually_reported() -> None:
    y = np.array([1, 1, 0, 0], dtype=object)
    p = np.array([1, 0, 0, 0], dtype=object)
    assert metric_value("accuracy", y, p) == 0.75
    assert metric_value("f1", y, p, positive=1) == pytest.approx(2 / 3)
    assert metric_value("mae", np.array([1.0, 3.0]), np.array([2.0, 1.0])) == 1.5
    assert metric_value("r2", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert math.isnan(metric_value("r2", np.array([1.0, 1.0]), np.array([1.0, 2.0])))
    with pytest.raises(UsageError, match="metric must be one of"):
        metric_value("auc", y, p)


def test_compare_refuses_unpaired_or_empty_predictions() -> None:
    with pytest.raises(UsageError, match="one value per row"):
        compare("accuracy", [1, 0], [1], [1, 0])
    with pytest.raises(UsageError, match="no rows"):
        compare("accuracy", [], [], [])
    with pytest.raises(UsageError, match="metric must be one of"):
        compare("auc", [1], [1], [1])
    assert compare("accuracy", [1], [1], [0]).to_dict()["ci"] is None
