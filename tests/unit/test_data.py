"""Tests of modelkit.data: Dataset, fingerprint and Profile."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.strategies import (
    OBJECT_VALUES,
    numeric_arrays,
    split_points,
    strided_views,
    tables,
)

from modelkit import _fingerprint
from modelkit.data import (
    CategoricalProfile,
    Dataset,
    NumericProfile,
    Profile,
    fingerprint,
)
from modelkit.exceptions import SignatureError

# -- helpers ----------------------------------------------------------------------------------

_DTYPES = {"float": "float64", "int": "int64", "text": "object"}


def _frame(table: dict[str, list[Any]]) -> pd.DataFrame:
    """A DataFrame of a `tables()` draw, with the dtype of each column fixed by its kind."""
    return pd.DataFrame(
        {
            name: pd.Series(values, dtype=_DTYPES[name.rstrip("0123456789")])
            for name, values in table.items()
        }
    )


def _close(a: float, b: float, scale: float, n: int) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(n, 1) * scale)


def assert_profiles_match(actual: Profile, expected: Profile) -> None:
    """Counts and extremes exactly equal, moments equal within float tolerance."""
    assert actual.n_rows == expected.n_rows
    assert actual.feature_names == expected.feature_names
    for got, want in zip(actual, expected, strict=True):
        assert type(got) is type(want)
        if isinstance(got, CategoricalProfile):
            assert got == want
            continue
        assert isinstance(want, NumericProfile)
        assert (got.edges, got.counts, got.missing) == (want.edges, want.counts, want.missing)
        assert (got.n_infinite, got.min, got.max) == (want.n_infinite, want.min, want.max)
        scale = max(abs(want.min or 0.0), abs(want.max or 0.0), 1.0)
        assert _close(got.mean, want.mean, scale, 1)
        assert _close(got.m2, want.m2, scale * scale, want.n_finite)


def _shards(frame: pd.DataFrame, cuts: list[int], reference: Profile) -> list[Profile]:
    bounds = [0, *cuts, len(frame)]
    return [
        Profile.from_data(frame.iloc[start:stop], edges_from=reference)
        for start, stop in pairwise(bounds)
    ]


def _other_value(old: Any) -> Any:
    """A value that differs from ``old`` (NaN-aware) and fits any numeric dtype."""
    return next(c for c in (0, 1, 2) if old != c)


# -- fingerprint: format and determinism ------------------------------------------------------


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    value = fingerprint(np.arange(6.0).reshape(2, 3))
    assert value.startswith("sha256:")
    digest = value.removeprefix("sha256:")
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


@given(strided_views())
def test_non_contiguous_views_hash_as_their_c_order_bytes(view: np.ndarray) -> None:
    expected = fingerprint(np.ascontiguousarray(view))
    assert fingerprint(view) == expected
    assert fingerprint(np.asfortranarray(view)) == expected


@given(numeric_arrays())
def test_byte_order_does_not_change_the_fingerprint(array: np.ndarray) -> None:
    swapped = array.astype(array.dtype.newbyteorder(">"))
    assert fingerprint(swapped) == fingerprint(array)


def test_views_spanning_many_chunks_and_huge_rows_hash_like_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    array = np.random.default_rng(1).standard_normal((64, 5, 7))
    expected = fingerprint(np.ascontiguousarray(array[:, ::-1, ::2]))
    monkeypatch.setattr(_fingerprint, "CHUNK_BYTES", 40)  # smaller than one row
    assert fingerprint(array[:, ::-1, ::2]) == expected
    monkeypatch.setattr(_fingerprint, "CHUNK_BYTES", 1000)
    assert fingerprint(array[:, ::-1, ::2]) == expected


def test_non_contiguous_views_are_streamed_without_a_full_copy() -> None:
    base = np.random.default_rng(2).standard_normal((400_000, 10))
    view = base[:, ::2]  # 16 MB of non-contiguous values
    tracemalloc.start()
    try:
        fingerprint(view)
        fingerprint(base.T)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < view.nbytes / 2


def test_lists_of_numbers_hash_like_the_equivalent_array() -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    assert fingerprint(rows) == fingerprint(np.array(rows))
    with pytest.warns(PendingDeprecationWarning):
        matrix = np.asmatrix(rows)
    assert fingerprint(matrix) == fingerprint(np.array(rows))
    assert fingerprint([[1.5, 2.0]]) == fingerprint(np.array([[1.5, 2.0]]))


@pytest.mark.integration
def test_same_data_gives_the_same_fingerprint_in_another_process() -> None:
    script = textwrap.dedent(
        """
        import json, numpy as np, pandas as pd
        from modelkit.data import fingerprint

        def inputs():
            rng = np.random.default_rng(7)
            x = rng.standard_normal((300, 6))
            frame = pd.DataFrame({
                "num": rng.standard_normal(5),
                "text": ["a", None, "é", "nan", float("nan")],
                "cat": pd.Categorical(["u", "v", "u", None, "w"]),
                "nullable": pd.array([1, None, 3, 4, 5], dtype="Int64"),
                "when": pd.to_datetime(["2024-01-01"] * 5).tz_localize("Europe/Paris"),
                "mixed": [1, 2.5, True, b"x", "text"],
            })
            return [
                fingerprint(x),
                fingerprint(x[::3, ::-2]),
                fingerprint(x, x[:, 0] > 0),
                fingerprint(frame),
                fingerprint(frame, frame["num"]),
                fingerprint([[1, "a", None], [2.5, "b", float("nan")]]),
            ]

        print(json.dumps(inputs()))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        ).stdout
        for env in (env, {**env, "PYTHONHASHSEED": "999"})
    ]
    assert json.loads(runs[0]) == json.loads(runs[1])
    namespace: dict[str, Any] = {}
    exec(script.replace("print(json.dumps(inputs()))", ""), namespace)
    assert namespace["inputs"]() == json.loads(runs[0])


# -- fingerprint: what changes it -------------------------------------------------------------


@given(numeric_arrays(), st.data())
def test_changing_one_value_changes_the_fingerprint(array: np.ndarray, data: st.DataObject) -> None:
    index = data.draw(st.tuples(*(st.integers(0, side - 1) for side in array.shape)))
    changed = array.copy()
    changed[index] = _other_value(array[index])
    assert fingerprint(changed) != fingerprint(array)


@given(numeric_arrays(min_dims=2, max_dims=2))
def test_reordering_columns_changes_the_fingerprint(array: np.ndarray) -> None:
    assume(array.shape[1] >= 2)
    assume(array[:, 0].tobytes() != array[:, 1].tobytes())
    swapped = array[:, [1, 0, *range(2, array.shape[1])]]
    assert fingerprint(swapped) != fingerprint(array)


@given(numeric_arrays())
def test_reshaping_changes_the_fingerprint(array: np.ndarray) -> None:
    reshaped = array.reshape(-1, 1) if array.ndim != 2 else array.reshape(-1)
    assert fingerprint(reshaped) != fingerprint(array)


@pytest.mark.parametrize(
    ("before", "after"),
    [("int64", "int32"), ("float64", "float32"), ("int64", "float64"), ("bool", "uint8")],
)
def test_changing_the_dtype_changes_the_fingerprint(before: str, after: str) -> None:
    array = np.array([[0, 1], [1, 0]], dtype=before)
    assert fingerprint(array.astype(after)) != fingerprint(array)


def test_feature_names_are_part_of_an_arrays_fingerprint() -> None:
    array = np.arange(6.0).reshape(3, 2)
    named = fingerprint(array, feature_names=["a", "b"])
    assert named != fingerprint(array)
    assert named != fingerprint(array, feature_names=["b", "a"])
    assert named == fingerprint(array, feature_names=("a", "b"))
    with pytest.raises(ValueError, match="feature_names has 3 names"):
        fingerprint(array, feature_names=["a", "b", "c"])


def test_y_is_part_of_the_fingerprint() -> None:
    X = np.arange(6.0).reshape(3, 2)
    assert fingerprint(X, np.array([0, 1, 0])) != fingerprint(X)
    assert fingerprint(X, np.array([0, 1, 0])) != fingerprint(X, np.array([0, 1, 1]))
    # moving the boundary between X and y changes the hash even though the bytes are the same
    assert fingerprint(X[:, :1], X[:, 1:]) != fingerprint(X[:, 1:], X[:, :1])


def _key(value: Any) -> tuple[str, str]:
    return type(value).__name__, repr(value)


@given(st.lists(OBJECT_VALUES, max_size=8), st.data())
def test_object_values_collide_only_when_equal_with_type(
    values: list[Any], data: st.DataObject
) -> None:
    other = list(values)
    if other and data.draw(st.booleans()):
        other[data.draw(st.integers(0, len(other) - 1))] = data.draw(OBJECT_VALUES)
    same = [_key(v) for v in values] == [_key(v) for v in other]
    left = fingerprint(np.array([*values, "end"], dtype=object))
    right = fingerprint(np.array([*other, "end"], dtype=object))
    assert (left == right) == same


@given(st.lists(st.text(), min_size=1, max_size=6), st.lists(st.text(), min_size=1, max_size=6))
def test_text_boundaries_are_part_of_the_fingerprint(a: list[str], b: list[str]) -> None:
    assume(a != b and len(a) == len(b))
    assert fingerprint(np.array(a, dtype=object)) != fingerprint(np.array(b, dtype=object))


def test_text_with_and_without_nul_characters_is_told_apart() -> None:
    variants = [["a\x00", "b"], ["a", "\x00b"], ["a", "b"], ["a\x00b", ""], ["", "a\x00b"]]
    prints = {fingerprint(np.array(v, dtype=object)) for v in variants}
    assert len(prints) == len(variants)
    assert fingerprint(np.array(["x", None], dtype=object)) != fingerprint(
        np.array(["x", "None"], dtype=object)
    )


def test_missing_markers_and_their_spellings_are_told_apart() -> None:
    markers = [None, math.nan, pd.NA, pd.NaT, "None", "nan", "", 0, False]
    prints = {fingerprint(np.array([m, "x"], dtype=object)) for m in markers}
    assert len(prints) == len(markers)


def test_a_change_after_the_first_object_block_changes_the_fingerprint() -> None:
    values = np.array([f"v{i}" for i in range(_fingerprint.OBJECT_BLOCK + 10)], dtype=object)
    changed = values.copy()
    changed[-1] = "other"
    assert fingerprint(changed) != fingerprint(values)


def test_values_without_a_deterministic_encoding_are_refused() -> None:
    values = np.array(["a", {"k": 1}], dtype=object)
    with pytest.raises(TypeError, match=r"type 'dict'.*position 1"):
        fingerprint(values)
    with pytest.raises(TypeError, match="must be an ndarray"):
        fingerprint({"a": [1, 2]})
    with pytest.raises(TypeError, match="structured dtype"):
        fingerprint(np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))


def test_ragged_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="not rectangular"):
        fingerprint([[1, 2], [3]])


def test_dates_times_and_decimals_in_object_columns_are_hashed_by_value() -> None:
    import decimal

    values = [
        dt.datetime(2024, 1, 2, 3, 4),
        dt.date(2024, 1, 2),
        dt.time(5, 6),
        dt.timedelta(days=1),
        decimal.Decimal("1.10"),
        np.datetime64("2024-01-02"),
        3 + 4j,
    ]
    first = fingerprint(np.array(values, dtype=object))
    assert first == fingerprint(np.array(list(values), dtype=object))
    values[4] = decimal.Decimal("1.1")
    assert fingerprint(np.array(values, dtype=object)) != first


# -- fingerprint: DataFrames ------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31.0, 45.5, 27.0],
            "city": ["Paris", None, "Lyon"],
            "plan": pd.Categorical(["a", "b", "a"]),
            "visits": pd.array([3, None, 1], dtype="Int64"),
        }
    )


def test_frame_column_names_order_and_dtypes_are_part_of_the_fingerprint(
    frame: pd.DataFrame,
) -> None:
    base = fingerprint(frame)
    assert fingerprint(frame.copy()) == base
    assert fingerprint(frame.rename(columns={"age": "AGE"})) != base
    assert fingerprint(frame[["city", "age", "plan", "visits"]]) != base
    assert fingerprint(frame.astype({"age": "float32"})) != base
    assert fingerprint(frame.astype({"plan": "object"})) != base
    assert fingerprint(frame.astype({"visits": "float64"})) != base


def test_frame_index_is_not_part_of_the_content(frame: pd.DataFrame) -> None:
    assert fingerprint(frame.set_axis([10, 20, 30])) == fingerprint(frame)


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [("age", 0, 31.5), ("city", 1, "Nice"), ("city", 0, None), ("plan", 2, "b"), ("visits", 1, 0)],
)
def test_one_changed_frame_cell_changes_the_fingerprint(
    frame: pd.DataFrame, column: str, row: int, value: Any
) -> None:
    changed = frame.copy()
    changed.loc[row, column] = value
    assert fingerprint(changed) != fingerprint(frame)


def test_missing_values_in_text_columns_are_told_apart() -> None:
    nan = pd.Series(["a", math.nan], dtype=object)
    none = pd.Series(["a", None], dtype=object)
    na = pd.Series(["a", pd.NA], dtype=object)
    assert len({fingerprint(nan), fingerprint(none), fingerprint(na)}) == 3


def test_timezone_aware_columns_keep_their_zone() -> None:
    instants = pd.to_datetime(["2024-03-01 12:00"]).tz_localize("UTC")
    utc = pd.DataFrame({"t": instants})
    paris = pd.DataFrame({"t": instants.tz_convert("Europe/Paris")})
    assert fingerprint(utc) != fingerprint(paris)
    assert fingerprint(utc) == fingerprint(pd.DataFrame({"t": instants}))


def test_non_string_column_labels_are_kept_apart_from_their_text() -> None:
    values = np.arange(4.0).reshape(2, 2)
    assert fingerprint(pd.DataFrame(values, columns=[0, 1])) != fingerprint(
        pd.DataFrame(values, columns=["0", "1"])
    )


def test_feature_names_cannot_rename_a_frame(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column names are used"):
        fingerprint(frame, feature_names=["a", "b", "c", "d"])


# -- Dataset ----------------------------------------------------------------------------------


def test_dataset_of_an_array() -> None:
    X = np.arange(12.0).reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    ds = Dataset(X, y, name="train")
    assert (ds.n_rows, ds.n_features) == (4, 3)
    assert ds.feature_names == ("f0", "f1", "f2")
    assert ds.fingerprint == fingerprint(X, y)
    assert ds.profile() == Profile.from_data(X, y)
    assert "train" in repr(ds)
    assert "12.0" not in repr(ds)


def test_dataset_of_a_frame_uses_its_columns(frame: pd.DataFrame) -> None:
    ds = Dataset(frame)
    assert ds.feature_names == ("age", "city", "plan", "visits")
    assert ds.fingerprint == fingerprint(frame)
    assert ds.profile().feature_names == ds.feature_names
    assert Dataset(frame, feature_names=list(frame.columns)).feature_names == ds.feature_names
    with pytest.raises(ValueError, match="differ from the DataFrame's columns"):
        Dataset(frame, feature_names=["a", "b", "c", "d"])


def test_dataset_of_a_list_of_rows_matches_the_array() -> None:
    rows = [[1.0, 2.0], [3.0, 4.0]]
    assert Dataset(rows).fingerprint == Dataset(np.array(rows)).fingerprint
    assert isinstance(Dataset(rows).X, np.ndarray)


def test_dataset_feature_names_name_the_columns_and_enter_the_fingerprint() -> None:
    X = np.ones((2, 2))
    named = Dataset(X, feature_names=["a", "b"])
    assert named.feature_names == ("a", "b")
    assert named.fingerprint == fingerprint(X, feature_names=["a", "b"])
    assert named.fingerprint != Dataset(X).fingerprint
    assert named.profile().feature_names == ("a", "b")


def test_dataset_of_an_array_profiled_against_a_named_reference() -> None:
    reference = Dataset(pd.DataFrame({"age": [1.0, 5.0], "income": [10.0, 20.0]})).profile()
    live = Dataset(np.array([[2.0, 15.0], [9.0, 12.0]])).profile(edges_from=reference)
    assert live.feature_names == ("age", "income")
    assert live["age"].counts[-1] == 1  # 9.0 is above the reference's range


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": np.ones(3)}, "must be 2-D"),
        ({"X": np.ones((3, 2)), "y": np.ones(2)}, "y has 2 rows but X has 3"),
        ({"X": np.ones((3, 2)), "feature_names": ["a"]}, "1 feature_names for 2 columns"),
        ({"X": np.ones((3, 2)), "feature_names": ["a", "a"]}, "repeated: \\['a'\\]"),
        ({"X": np.ones((3, 1)), "feature_names": ["__target__"]}, "reserved"),
        ({"X": pd.Series([1, 2])}, "to_frame"),
        ({"X": np.ones((3, 2)), "y": np.ones((3, 1, 1))}, "y must be 1-D or 2-D"),
    ],
)
def test_dataset_rejects_inconsistent_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dataset(**kwargs)


def test_dataset_fingerprint_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = fingerprint

    def counting(*args: Any, **kwargs: Any) -> str:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("modelkit.data.fingerprint", counting)
    ds = Dataset(np.ones((3, 2)))
    assert ds.fingerprint == ds.fingerprint == real(np.ones((3, 2)))
    assert len(calls) == 1


@pytest.mark.integration
def test_dataset_does_not_import_pandas_for_arrays() -> None:
    script = (
        "import sys, numpy as np\n"
        "from modelkit.data import Dataset\n"
        "ds = Dataset(np.ones((4, 2)), [0, 1, 0, 1])\n"
        "ds.fingerprint, ds.profile()\n"
        "ds = Dataset([[1, 'a'], [2, None]])\n"
        "ds.fingerprint, ds.profile()\n"
        "print('pandas' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- Profile: numeric features ----------------------------------------------------------------


def test_numeric_profile_summarises_the_column() -> None:
    values = np.random.default_rng(3).normal(10.0, 2.0, size=5000)
    feature = Profile.from_data(values.reshape(-1, 1), bins=10)["f0"]
    assert isinstance(feature, NumericProfile)
    assert len(feature.edges) == 11
    assert feature.edges[0] == values.min()
    assert feature.edges[-1] == values.max()
    assert np.all(np.diff(feature.edges) > 0)
    counts = np.array(feature.counts)
    assert counts[0] == counts[-1] == 0  # the reference lies within its own edges
    assert counts.sum() == feature.count == 5000
    assert counts[1:-1].min() > 5000 / 10 * 0.8  # quantile bins hold similar counts
    assert feature.mean == pytest.approx(values.mean())
    assert feature.std == pytest.approx(values.std())
    assert (feature.min, feature.max, feature.missing, feature.missing_rate) == (
        values.min(),
        values.max(),
        0,
        0.0,
    )


def test_bins_follow_the_documented_closure() -> None:
    reference = Profile.from_data(np.array([[0.0], [1.0], [2.0], [3.0], [10.0]]), bins=2)
    edges = reference["f0"].edges
    probe = np.array([[edges[0] - 1], [edges[0]], [edges[1]], [edges[-1]], [edges[-1] + 1]])
    against = Profile.from_data(probe, edges_from=reference)["f0"]
    # under, [e0, e1) gets e0, [e1, e2] gets e1 and e2, over
    assert against.counts == (1, 1, 2, 1)


def test_missing_and_infinite_values() -> None:
    column = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0, np.nan])
    feature = Profile.from_data(column.reshape(-1, 1))["f0"]
    assert isinstance(feature, NumericProfile)
    assert (feature.missing, feature.count, feature.n_infinite, feature.n_finite) == (2, 5, 2, 3)
    assert feature.counts[0] == 1
    assert feature.counts[-1] == 1
    assert (feature.mean, feature.min, feature.max) == (2.0, 1.0, 3.0)
    assert feature.missing_rate == pytest.approx(2 / 7)


def test_constant_and_all_missing_columns() -> None:
    data = np.array([[5.0, np.nan], [5.0, np.nan], [5.0, np.nan]])
    profile = Profile.from_data(data)
    constant, empty = profile["f0"], profile["f1"]
    assert isinstance(constant, NumericProfile)
    assert isinstance(empty, NumericProfile)
    assert len(constant.edges) == 2
    assert constant.edges[0] == 5.0 < constant.edges[1]
    assert constant.counts == (0, 3, 0)
    assert constant.std == 0.0
    assert (empty.edges, empty.counts, empty.missing, empty.min) == ((), (0,), 3, None)
    assert math.isnan(empty.std)


def test_few_distinct_values_get_one_bin_each() -> None:
    values = np.array([0, 0, 0, 1, 2, 2, 7] * 10).reshape(-1, 1)
    feature = Profile.from_data(values)["f0"]
    assert isinstance(feature, NumericProfile)
    assert feature.counts == (0, 30, 10, 20, 10, 0)
    flags = Profile.from_data(np.array([[True], [False], [True]]))["f0"]
    assert flags.counts == (0, 1, 2, 0)


def test_extreme_constant_values_keep_finite_edges() -> None:
    big = np.finfo(np.float64).max
    feature = Profile.from_data(np.array([[big], [big]]))["f0"]
    assert isinstance(feature, NumericProfile)
    assert all(math.isfinite(e) for e in feature.edges)
    assert feature.counts == (0, 2, 0)


@settings(max_examples=50)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.integers(1, 50))
def test_edges_are_strictly_increasing_and_cover_the_reference(
    values: list[float], bins: int
) -> None:
    feature = Profile.from_data(np.array(values).reshape(-1, 1), bins=bins)["f0"]
    assert isinstance(feature, NumericProfile)
    assert np.all(np.diff(feature.edges) > 0)
    assert len(feature.edges) <= bins + 1
    assert feature.counts[0] == feature.counts[-1] == 0
    assert sum(feature.counts) == len(values)


def test_edges_of_a_large_column_come_from_its_quantiles() -> None:
    values = np.random.default_rng(4).exponential(size=300_000)
    feature = Profile.from_data(values.reshape(-1, 1), bins=10)["f0"]
    assert isinstance(feature, NumericProfile)
    fractions = np.array(feature.counts[1:-1]) / values.size
    assert np.allclose(fractions, 0.1, atol=0.01)
    assert (feature.edges[0], feature.edges[-1]) == (values.min(), values.max())


def test_integer_and_nullable_columns_are_numeric() -> None:
    frame = pd.DataFrame(
        {"n": [1, 2, 3], "flag": [True, False, True], "opt": pd.array([1, None, 3], "Int64")}
    )
    profile = Profile.from_data(frame)
    assert all(isinstance(f, NumericProfile) for f in profile)
    assert profile["opt"].missing == 1


# -- Profile: categorical features ------------------------------------------------------------


def test_categorical_profile_counts_levels_exactly() -> None:
    column = ["b", "a", "b", None, "c", "b", "a", math.nan]
    feature = Profile.from_data(pd.DataFrame({"c": column}))["c"]
    assert isinstance(feature, CategoricalProfile)
    assert (feature.levels, feature.counts) == (("b", "a", "c"), (3, 2, 1))
    assert (feature.other, feature.missing, feature.count) == (0, 2, 6)


def test_levels_beyond_the_limit_count_as_other() -> None:
    column = np.array(["x"] * 5 + ["y"] * 3 + ["a", "b", "z"], dtype=object).reshape(-1, 1)
    feature = Profile.from_data(column, max_levels=3)["f0"]
    assert isinstance(feature, CategoricalProfile)
    assert (feature.levels, feature.counts, feature.other) == (("x", "y", "a"), (5, 3, 1), 2)


def test_long_values_are_never_tracked_levels() -> None:
    long_value = "x" * 65
    column = np.array([long_value] * 10 + ["short"], dtype=object).reshape(-1, 1)
    feature = Profile.from_data(column)["f0"]
    assert isinstance(feature, CategoricalProfile)
    assert (feature.levels, feature.other) == (("short",), 10)


def test_pandas_categories_and_mixed_objects_are_counted_as_text() -> None:
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["u", "v", None, "u", "u", "v"], categories=["u", "v", "never"]),
            "mixed": pd.Series([1, "1", 2.5, None, b"\xff", b"\xff"], dtype=object),
        }
    )
    profile = Profile.from_data(frame)
    assert profile["cat"] == CategoricalProfile(
        name="cat", levels=("u", "v"), counts=(3, 2), other=0, missing=1
    )
    assert profile["mixed"] == CategoricalProfile(
        name="mixed", levels=("1", "b'\\xff'", "2.5"), counts=(2, 2, 1), other=0, missing=1
    )


def test_profiles_stay_small_whatever_the_number_of_rows() -> None:
    n = 1_000_000
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(size=n),
            "user": np.char.add("user-with-a-fairly-long-identifier-", np.arange(n).astype(str)),
            "text": np.array(["é\u0001" * 30 + str(i % 997) for i in range(n)], dtype=object),
        }
    )
    profile = Profile.from_data(frame, rng.integers(0, 2, n), max_levels=200)
    for feature in profile.to_dict()["features"]:
        assert len(json.dumps(feature).encode()) <= 4096


# -- Profile: profiling against a reference, and merging --------------------------------------


def test_new_data_is_binned_against_the_reference() -> None:
    reference = Profile.from_data(
        pd.DataFrame({"x": np.linspace(0.0, 1.0, 101), "c": ["a", "b"] * 50 + ["a"]})
    )
    live = pd.DataFrame({"x": [-5.0, 0.5, 9.0], "c": ["a", "zzz", None]})
    profile = Profile.from_data(live, edges_from=reference)
    x, c = profile["x"], profile["c"]
    assert isinstance(x, NumericProfile)
    assert isinstance(c, CategoricalProfile)
    assert x.edges == reference["x"].edges
    assert (x.counts[0], x.counts[-1], sum(x.counts)) == (1, 1, 3)
    assert (c.levels, c.counts, c.other, c.missing) == (("a", "b"), (1, 0), 1, 1)


def test_rows_profiled_against_a_reference_take_its_names_and_kinds() -> None:
    reference = Profile.from_data(pd.DataFrame({"age": [1.0, 2.0], "city": ["a", "b"]}))
    live = Profile.from_data([[3.0, "a"], [None, "b"], [1, None]], edges_from=reference)
    assert live.feature_names == ("age", "city")
    age, city = live["age"], live["city"]
    assert isinstance(age, NumericProfile)
    assert isinstance(city, CategoricalProfile)
    assert (age.counts, age.missing, age.mean) == ((0, 1, 0, 1), 1, 2.0)
    assert (city.counts, city.missing) == ((1, 1), 1)
    with pytest.raises(SignatureError, match=r"values of type \['str'\]"):
        Profile.from_data([["3.0", "a"]], edges_from=reference)


@given(tables(min_rows=1), st.data())
def test_merging_shard_profiles_gives_the_profile_of_the_whole(
    table: dict[str, list[Any]], data: st.DataObject
) -> None:
    frame = _frame(table)
    reference = Profile.from_data(frame)
    whole = Profile.from_data(frame, edges_from=reference)
    assert whole == reference
    shards = _shards(frame, data.draw(split_points(len(frame))), reference)
    assert_profiles_match(functools.reduce(Profile.merge, shards), whole)


@given(tables(min_rows=1), st.data())
def test_merge_is_associative_and_empty_shards_are_the_identity(
    table: dict[str, list[Any]], data: st.DataObject
) -> None:
    frame = _frame(table)
    reference = Profile.from_data(frame)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(frame)), min_size=2, max_size=2)))
    a, b, c = _shards(frame, cuts, reference)
    assert_profiles_match(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert_profiles_match(a.merge(b), b.merge(a))
    empty = Profile.from_data(frame.iloc[:0], edges_from=reference)
    assert a.merge(empty) == a
    assert empty.merge(a) == a


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.data())
def test_merged_moments_match_numpy(values: list[float], data: st.DataObject) -> None:
    column = np.array(values).reshape(-1, 1)
    reference = Profile.from_data(column, np.array(values))
    cut = data.draw(st.integers(0, len(values)))
    left = Profile.from_data(column[:cut], np.array(values[:cut]), edges_from=reference)
    right = Profile.from_data(column[cut:], np.array(values[cut:]), edges_from=reference)
    merged = left.merge(right)
    for feature in merged:
        assert isinstance(feature, NumericProfile)
        scale = max(1.0, float(np.abs(column).max()))
        assert _close(feature.mean, float(np.mean(values)), scale, 1)
        assert _close(feature.var, float(np.var(values)), scale * scale, 1)


def test_profiles_with_different_edges_or_features_do_not_merge() -> None:
    first = Profile.from_data(np.array([[1.0], [2.0], [3.0]]))
    second = Profile.from_data(np.array([[1.0], [5.0], [9.0]]))
    with pytest.raises(ValueError, match=r"different bin edges.*edges_from=reference"):
        first.merge(second)
    with pytest.raises(ValueError, match="different levels"):
        Profile.from_data([["a"]]).merge(Profile.from_data([["b"]]))
    with pytest.raises(ValueError, match=r"missing: \['f0'\], unexpected: \['g'\]"):
        first.merge(Profile.from_data(np.ones((3, 1)), feature_names=["g"]))
    with pytest.raises(ValueError, match="numeric in one profile and categorical"):
        first.merge(Profile.from_data([["a"], ["b"], ["c"]]))
    with pytest.raises(ValueError, match="different features 'f0' and 'g'"):
        first["f0"].merge(Profile.from_data(np.ones((3, 1)), feature_names=["g"])["g"])


def test_profiling_against_a_reference_checks_the_features() -> None:
    reference = Profile.from_data(pd.DataFrame({"age": [1.0, 2.0], "city": ["a", "b"]}))
    with pytest.raises(SignatureError, match=r"missing: \['city'\]"):
        Profile.from_data(pd.DataFrame({"age": [1.0]}), edges_from=reference)
    with pytest.raises(SignatureError, match="expected 2 features"):
        Profile.from_data(np.ones((2, 3)), edges_from=reference)
    with pytest.raises(SignatureError, match="'age' is numeric in the reference"):
        Profile.from_data(pd.DataFrame({"age": ["old"], "city": ["a"]}), edges_from=reference)
    with pytest.raises(ValueError, match="come from edges_from"):
        Profile.from_data(np.ones((2, 2)), edges_from=reference, bins=5)


def test_categorical_reference_counts_numbers_as_their_text() -> None:
    reference = Profile.from_data(pd.DataFrame({"code": ["1", "2", "2"]}))
    live = pd.DataFrame({"code": pd.Series([2, 3, None], dtype=object)})
    assert Profile.from_data(live, edges_from=reference)["code"] == CategoricalProfile(
        name="code", levels=("2", "1"), counts=(1, 0), other=1, missing=1
    )


# -- Profile: targets, options, serialisation -------------------------------------------------


def test_targets_are_profiled_as_extra_features() -> None:
    X = np.arange(8.0).reshape(4, 2)
    profile = Profile.from_data(X, ["yes", "no", "yes", "yes"])
    assert profile.feature_names == ("f0", "f1", "__target__")
    assert [f.name for f in profile.targets] == ["__target__"]
    assert [f.name for f in profile.inputs] == ["f0", "f1"]
    assert profile["__target__"].counts == (3, 1)
    two = Profile.from_data(X, np.zeros((4, 2)))
    assert two.feature_names[-2:] == ("__target__[0]", "__target__[1]")
    with pytest.raises(ValueError, match="y has 3 rows but X has 4"):
        Profile.from_data(X, [1, 2, 3])
    with pytest.raises(ValueError, match="1-D or 2-D"):
        Profile.from_data(X, np.zeros((4, 1, 1)))


@pytest.mark.parametrize("options", [{"bins": 0}, {"bins": 51}, {"max_levels": 0}])
def test_out_of_range_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"bins must be in 1\.\.50"):
        Profile.from_data(np.ones((3, 1)), **options)


def test_profile_lookup_and_iteration() -> None:
    profile = Profile.from_data(np.ones((2, 2)), feature_names=["a", "b"])
    assert len(profile) == 2
    assert [f.name for f in profile] == ["a", "b"]
    with pytest.raises(KeyError, match="no feature 'c'"):
        profile["c"]


@given(tables(), st.data())
def test_profiles_round_trip_through_json_exactly(
    table: dict[str, list[Any]], data: st.DataObject
) -> None:
    frame = _frame(table)
    y = data.draw(st.lists(st.floats(allow_nan=True), min_size=len(frame), max_size=len(frame)))
    profile = Profile.from_data(frame, np.array(y))
    restored = Profile.from_dict(json.loads(json.dumps(profile.to_dict(), allow_nan=False)))
    assert restored == profile
    assert restored.to_dict() == profile.to_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "not a profile"),
        (lambda d: d.update(version=99), "unsupported profile version 99"),
        (lambda d: d.pop("n_rows"), "malformed profile"),
        (lambda d: d["features"][0].update(kind="histogram"), "malformed profile"),
        (lambda d: d["features"][0].update(edges=[2.0, 1.0]), "strictly increasing"),
        (lambda d: d["features"][0].update(counts=[1, 2]), "expected 3 counts"),
        (lambda d: d["features"][0].update(missing=-1), "must be non-negative"),
        (lambda d: d["features"][0].update(n_infinite=9), "n_infinite must be between"),
        (lambda d: d["features"][0].update(min=None), "min/max must be given"),
        (lambda d: d["features"][0].update(mean=math.nan), "mean must be finite"),
        (lambda d: d["features"][0].update(counts=[0, 1.5, 0]), "malformed profile"),
        (lambda d: d["features"][0].update(name=3), "malformed profile"),
        (lambda d: d.update(n_rows=5), "expected 5 rows"),
        (lambda d: d["features"][1].update(levels=["a", "a"]), "levels must be distinct"),
        (lambda d: d["features"][1].update(counts=[1]), "one count per level"),
        (lambda d: d["features"][1].update(levels=[1, 2]), "levels must be strings"),
        (lambda d: d["features"].append(d["features"][0]), "names must be distinct"),
    ],
)
def test_malformed_profile_dicts_are_refused(mutate: Any, message: str) -> None:
    data = Profile.from_data(pd.DataFrame({"x": [1.0, 1.0], "c": ["a", "b"]})).to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        Profile.from_dict(data)


def test_pandas_targets_and_datetime_features() -> None:
    when = np.array(["2024-01-01", "NaT", "2024-01-01"], dtype="datetime64[s]")
    X = pd.DataFrame({"when": when, "x": [1.0, 2.0, 3.0]})
    profile = Profile.from_data(X, pd.Series([0, 1, 1]))
    assert profile["when"] == CategoricalProfile(
        name="when", levels=("2024-01-01T00:00:00",), counts=(2,), other=0, missing=1
    )
    assert profile["__target__"].counts == (0, 1, 2, 0)
    both = Profile.from_data(X, pd.DataFrame({"a": [0, 1, 1], "b": ["u", "v", "v"]}))
    assert [f.name for f in both.targets] == ["__target__[0]", "__target__[1]"]
    reference = Profile.from_data(pd.DataFrame({"when": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]}))
    with pytest.raises(SignatureError, match=r"'when' is numeric.*dtype datetime64"):
        Profile.from_data(X, edges_from=reference)


def test_numbers_profiled_against_a_categorical_reference_count_as_text() -> None:
    reference = Profile.from_data(np.array([["1.5"], ["2.0"], [None]], dtype=object))
    live = Profile.from_data(np.array([[1.5], [np.nan], [7.0]]), edges_from=reference)
    assert live["f0"] == CategoricalProfile(
        name="f0", levels=("1.5", "2.0"), counts=(1, 0), other=1, missing=1
    )


def test_fingerprint_of_scalars_strings_and_odd_labels() -> None:
    assert fingerprint(np.float64(3.0)) != fingerprint(np.array([3.0]))
    words = ["a", "bb", "é"]
    from numpy.dtypes import StringDType

    assert fingerprint(np.array(words, dtype=StringDType())) == fingerprint(
        np.array(words, dtype=object)
    )
    labels = pd.DataFrame([[1, 2, 3]], columns=[1.5, math.nan, np.int64(4)])
    assert fingerprint(labels) != fingerprint(labels.set_axis([1.5, math.inf, 4], axis=1))
    with pytest.raises(TypeError, match="not one string"):
        Dataset(np.ones((2, 2)), feature_names="ab")
