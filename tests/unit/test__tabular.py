"""The helpers behind Signature.validate: reading input forms, spotting missing values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelkit import _tabular
from modelkit.exceptions import SignatureError


@pytest.mark.parametrize("value", [None, math.nan, np.float32("nan"), pd.NA, pd.NaT])
def test_missing_values_are_recognised(value: object) -> None:
    assert _tabular.is_missing(value)


@pytest.mark.parametrize("value", [0, 0.0, "", "nan", "NA", False, math.inf])
def test_present_values_are_not_missing(value: object) -> None:
    assert not _tabular.is_missing(value)


def test_missing_objects_copes_with_values_that_refuse_comparison() -> None:
    values = np.array(["a", None, math.nan, pd.NA, 3], dtype=object)
    assert _tabular.missing_objects(values).tolist() == [False, True, True, True, False]
    plain = np.array(["a", None, math.nan, 3], dtype=object)
    assert _tabular.missing_objects(plain).tolist() == [False, True, True, False]


def test_messages_quote_and_cut() -> None:
    assert _tabular.quote(["a", 1, np.int64(2)]) == "'a', 1, 2"
    assert _tabular.quote(list(range(12)), limit=3) == "0, 1, 2, … (12 in all)"
    assert _tabular.describe("x" * 100) == "'" + "x" * 38 + "…"
    assert _tabular.plural(1, "feature") == "1 feature"
    assert _tabular.plural(0, "row") == "0 rows"


def test_frame_values_are_float_when_every_column_is_numeric() -> None:
    nullable = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [0.5, 1.5]})
    values = _tabular.frame_values(nullable)
    assert values.dtype == np.float64
    assert np.array_equal(values, [[1.0, 0.5], [np.nan, 1.5]], equal_nan=True)
    mixed = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})
    assert _tabular.frame_values(mixed).tolist() == [[1.0, "x"], [None, None]]


def test_dataframes_are_recognised_without_being_special_cased_elsewhere() -> None:
    assert _tabular.is_dataframe(pd.DataFrame({"a": [1]}))
    assert not _tabular.is_dataframe(np.ones((1, 1)))
    assert not _tabular.is_dataframe([[1]])


def test_rows_can_be_tuples_and_a_plain_series_is_a_column() -> None:
    grid = _tabular.to_grid(((1, 2), (3, 4)), ["a", "b"], keep_objects=False)
    assert grid.tolist() == [[1, 2], [3, 4]]
    column = _tabular.to_grid(pd.Series([1.0, 2.0]), ["a"], keep_objects=False)
    assert column.tolist() == [[1.0], [2.0]]


def test_keep_objects_preserves_python_types() -> None:
    grid = _tabular.to_grid([[1, "1.5", True]], ["a", "b", "c"], keep_objects=True)
    assert grid.dtype == object
    assert [type(v) for v in grid[0]] == [int, str, bool]


def test_check_finite_reports_the_first_offender_in_row_order() -> None:
    block = np.asfortranarray([[0.0, 1.0], [0.0, np.nan], [np.inf, 0.0]])
    with pytest.raises(SignatureError, match="feature 'a' must be finite, got inf at row 2"):
        _tabular.check_finite(block, ["a", "b"], allow_nan=True)
    with pytest.raises(SignatureError, match=r"feature 'b' is missing \(NaN\) at row 1"):
        _tabular.check_finite(block, ["a", "b"], allow_nan=False)
    assert _tabular.check_finite(block[:2], ["a", "b"], allow_nan=True) is True
    assert _tabular.check_finite(block[:1], ["a", "b"], allow_nan=False) is False


def test_overflowing_ints_are_refused_by_name() -> None:
    with pytest.raises(SignatureError, match="feature 'a' must be a finite number, got 1"):
        _tabular.as_float(np.array([[10**400]], dtype=object), ["a"])
