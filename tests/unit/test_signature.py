"""Signature: inference, storage, and the validation every prediction goes through."""

from __future__ import annotations

import json
import math
import pickle
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from tests.strategies import (
    FEATURE_NAMES,
    NOT_NUMBERS,
    corrupted_rows,
    mixed_records,
    numeric_rows,
)

from modelkit._tabular import describe
from modelkit.exceptions import ArtifactFormatError, SignatureError
from modelkit.signature import MAX_LEVELS, Signature


@pytest.fixture(scope="module")
def seed() -> tuple[np.ndarray, np.ndarray, LogisticRegression]:
    X, y = make_classification(n_samples=200, n_features=20, random_state=42)
    return X, y, LogisticRegression(solver="liblinear").fit(X, y)


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, 60),
            "color": rng.choice(["red", "green", "blue"], 60),
            "visits": rng.integers(0, 5, 60),
        }
    )


def mixed_signature(**changes: Any) -> Signature:
    fields: dict[str, Any] = {
        "names": ["age", "color", "visits"],
        "dtypes": ["float64", "object", "float64"],
        "levels": {"color": ["blue", "green", "red"]},
    }
    fields.update(changes)
    return Signature(**fields)


def error_of(sig: Signature, data: Any) -> str:
    with pytest.raises(SignatureError) as info:
        sig.validate(data)
    return str(info.value)


# -- inference ------------------------------------------------------------------------------


def test_an_array_gives_generated_names_float_dtypes_and_the_estimators_outputs(seed) -> None:
    X, y, estimator = seed
    sig = Signature.infer(X, y, estimator=estimator)
    assert sig.names == tuple(f"f{j}" for j in range(20))
    assert sig.dtypes == ("float64",) * 20
    assert sig.n_features == 20
    assert sig.categorical == ()
    assert sig.input_type == "ndarray"
    assert sig.allow_nan is False
    assert sig.kind == "classification"
    assert sig.classes == (0, 1)
    assert sig.methods == ("predict", "predict_proba", "decision_function")


def test_a_list_of_lists_infers_like_the_array(seed) -> None:
    X, y, estimator = seed
    assert Signature.infer(X.tolist(), y, estimator=estimator) == Signature.infer(
        X, y, estimator=estimator
    )


def test_a_dataframe_gives_names_dtypes_and_sorted_levels(people: pd.DataFrame) -> None:
    estimator = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(), ["color"]), (StandardScaler(), ["age", "visits"])
        ),
        LogisticRegression(),
    ).fit(people, people["visits"] > 2)
    sig = Signature.infer(people, estimator=estimator)
    assert sig.names == ("age", "color", "visits")
    assert sig.dtypes == tuple(str(dtype) for dtype in people.dtypes)
    assert sig.categorical == ("color",)
    assert sig.levels == {"color": ("blue", "green", "red")}
    assert sig.input_type == "dataframe"
    assert sig.classes == (False, True)


def test_a_dataframe_sample_for_an_array_fitted_estimator_keeps_names_but_feeds_arrays(
    people: pd.DataFrame,
) -> None:
    numbers = people[["age", "visits"]]
    estimator = LinearRegression().fit(numbers.to_numpy(), numbers["age"])
    sig = Signature.infer(numbers, estimator=estimator)
    assert sig.names == ("age", "visits")
    assert sig.input_type == "ndarray"
    assert sig.kind == "regression"
    assert sig.classes is None
    assert sig.methods == ("predict",)


def test_without_an_estimator_a_dataframe_is_fed_as_a_dataframe(people: pd.DataFrame) -> None:
    assert Signature.infer(people).input_type == "dataframe"
    assert Signature.infer(people.to_numpy()).input_type == "ndarray"


def test_an_object_array_tells_numeric_columns_from_categorical_ones(
    people: pd.DataFrame,
) -> None:
    sig = Signature.infer(people.to_numpy(dtype=object))
    assert sig.dtypes == ("float64", "object", "float64")
    assert sig.levels == {"f1": ("blue", "green", "red")}


def test_a_list_of_dicts_takes_its_names_from_the_keys() -> None:
    sig = Signature.infer([{"b": 1.0, "a": "x"}, {"b": 2.0, "a": "y"}])
    assert sig.names == ("b", "a")
    assert sig.levels == {"a": ("x", "y")}


def test_category_columns_keep_their_category_order() -> None:
    df = pd.DataFrame({"size": pd.Categorical(["s", "l"], categories=["s", "m", "l"])})
    sig = Signature.infer(df)
    assert sig.dtypes == ("category",)
    assert sig.levels == {"size": ("s", "m", "l")}


def test_more_levels_than_the_cap_leave_the_feature_unchecked() -> None:
    many = pd.DataFrame({"id": [f"user{i}" for i in range(MAX_LEVELS + 1)]})
    sig = Signature.infer(many)
    assert sig.levels == {"id": None}
    assert sig.validate([["never seen"]])["id"].tolist() == ["never seen"]
    few = Signature.infer(many.iloc[:MAX_LEVELS])
    assert few.levels["id"] is not None
    assert len(few.levels["id"]) == MAX_LEVELS


def test_mixed_type_levels_are_sorted_by_type_then_value() -> None:
    sig = Signature.infer(np.array([["b", 1.0], [2, 1.0], ["a", 2.0], [1, 3.0]], dtype=object))
    assert sig.levels == {"f0": (1, 2, "a", "b")}


@pytest.mark.parametrize(
    ("estimator", "allow_nan"),
    [
        (LogisticRegression(), False),
        (HistGradientBoostingClassifier(max_iter=5), True),
        (make_pipeline(StandardScaler(), LogisticRegression()), False),
        (make_pipeline(SimpleImputer(), LogisticRegression()), True),
        (make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=5)), True),
    ],
)
def test_the_nan_policy_follows_the_estimators_tags(estimator: Any, allow_nan: bool) -> None:
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    estimator.fit(X, y)
    assert Signature.infer(X, y, estimator=estimator).allow_nan is allow_nan


def test_without_tags_the_nan_policy_follows_the_training_data() -> None:
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert Signature.infer(X).allow_nan is False
    X[0, 1] = np.nan
    assert Signature.infer(X).allow_nan is True


@pytest.mark.parametrize(
    ("y", "kind", "classes"),
    [
        (["a", "b", "a"], "classification", ("a", "b")),
        ([0, 2, 1], "classification", (0, 1, 2)),
        ([0.5, 1.25, 3.0], "regression", None),
        (None, "other", None),
    ],
)
def test_without_an_estimator_the_outputs_come_from_y(
    y: Any, kind: str, classes: tuple[Any, ...] | None
) -> None:
    sig = Signature.infer([[1.0], [2.0], [3.0]], y)
    assert (sig.kind, sig.classes, sig.methods) == (kind, classes, ("predict",))


def test_methods_follow_what_the_estimator_really_has() -> None:
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    svc = make_pipeline(StandardScaler(), SVC()).fit(X, y)
    assert Signature.infer(X, estimator=svc).methods == ("predict", "decision_function")


def test_the_sample_must_match_the_estimators_width_and_names(people: pd.DataFrame) -> None:
    numbers = people[["age", "visits"]]
    estimator = LinearRegression().fit(numbers, numbers["age"])
    with pytest.raises(
        SignatureError, match="the data has 1 feature, but the estimator was fitted on 2"
    ):
        Signature.infer(numbers[["age"]], estimator=estimator)
    renamed = numbers.rename(columns={"visits": "calls"})
    with pytest.raises(SignatureError, match="missing 'visits'; unknown 'calls'"):
        Signature.infer(renamed, estimator=estimator)
    swapped = Signature.infer(numbers[["visits", "age"]], estimator=estimator)
    assert swapped.names == ("age", "visits")


def test_an_array_sample_for_a_dataframe_fitted_estimator_takes_its_names(
    people: pd.DataFrame,
) -> None:
    numbers = people[["age", "visits"]]
    estimator = LinearRegression().fit(numbers, numbers["age"])
    sig = Signature.infer(numbers.to_numpy(), estimator=estimator)
    assert (sig.names, sig.input_type) == (("age", "visits"), "dataframe")


def test_training_data_must_be_two_dimensional() -> None:
    with pytest.raises(SignatureError, match=r"must be 2-D .* got 1-D"):
        Signature.infer([1.0, 2.0])
    with pytest.raises(SignatureError, match="same length"):
        Signature.infer([[1.0, 2.0], [3.0]])


# -- from_estimator ---------------------------------------------------------------------------


def test_from_estimator_reads_the_fitted_attributes(seed) -> None:
    X, y, estimator = seed
    assert Signature.from_estimator(estimator) == Signature.infer(X, y, estimator=estimator)


def test_from_estimator_finds_categories_learned_by_a_leading_encoder(
    people: pd.DataFrame,
) -> None:
    def fitted(handle_unknown: str) -> Any:
        encoder = OneHotEncoder(handle_unknown=handle_unknown)
        pipeline = make_pipeline(
            make_column_transformer(
                (make_pipeline(SimpleImputer(strategy="most_frequent"), encoder), ["color"]),
                remainder="passthrough",
            ),
            LogisticRegression(),
        )
        return pipeline.fit(people, people["visits"] > 2)

    strict = Signature.from_estimator(fitted("error"))
    assert strict.names == ("age", "color", "visits")
    assert strict.dtypes == ("float64", "object", "float64")
    assert strict.levels == {"color": ("blue", "green", "red")}
    assert strict.input_type == "dataframe"
    assert Signature.from_estimator(fitted("ignore")).levels == {"color": None}


def test_from_estimator_needs_a_fitted_estimator() -> None:
    with pytest.raises(SignatureError, match=r"no n_features_in_ \(is it fitted\?\)"):
        Signature.from_estimator(LogisticRegression())


# -- construction and storage -------------------------------------------------------------


def test_dtypes_default_to_float64_and_levels_list_every_categorical_feature() -> None:
    assert Signature(names=["a", "b"]).dtypes == ("float64", "float64")
    sig = Signature(names=["a", "b"], dtypes=["float64", "object"])
    assert sig.levels == {"b": None}
    assert sig == Signature(names=["a", "b"], dtypes=["float64", "object"], levels={"b": None})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"names": []}, "at least one feature"),
        ({"names": ["a", "a"]}, "duplicate feature names: 'a'"),
        ({"names": ["a", ""]}, "non-empty strings"),
        ({"names": ["a"], "dtypes": ["float64", "float64"]}, r"one dtype per feature \(1\), got 2"),
        ({"names": ["a"], "levels": {"a": ["x"]}}, "not categorical: 'a'"),
    ],
)
def test_invalid_signatures_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        Signature(**fields)


def test_the_dict_is_plain_json_and_round_trips(people: pd.DataFrame) -> None:
    sig = mixed_signature(allow_nan=True, kind="classification", classes=["no", "yes"])
    data = sig.to_dict()
    assert data == {
        "inputs": {
            "type": "ndarray",
            "names": ["age", "color", "visits"],
            "dtypes": ["float64", "object", "float64"],
            "levels": {"color": ["blue", "green", "red"]},
            "allow_nan": True,
        },
        "outputs": {"kind": "classification", "classes": ["no", "yes"], "methods": ["predict"]},
    }
    again = Signature.from_dict(json.loads(json.dumps(data)))
    assert again == sig
    assert again.validate([[1, "red", 2]]).tolist() == [[1.0, "red", 2.0]]
    inferred = Signature.infer(people)
    assert Signature.from_dict(json.loads(json.dumps(inferred.to_dict()))) == inferred


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("outputs"), "missing key 'outputs'"),
        (lambda d: d["inputs"].pop("names"), "missing key 'names'"),
        (lambda d: d["inputs"].update(allow_nan="yes"), "allow_nan"),
        (lambda d: d["inputs"].update(type="tensor"), "type|input_type"),
        (lambda d: d["inputs"].update(levels={"color": "abc"}), "levels of 'color'"),
    ],
)
def test_a_malformed_dict_is_an_artifact_format_error(mutate: Any, message: str) -> None:
    data = mixed_signature().to_dict()
    mutate(data)
    with pytest.raises(ArtifactFormatError, match=message):
        Signature.from_dict(data)


def test_signatures_pickle_and_compare() -> None:
    sig = mixed_signature()
    again = pickle.loads(pickle.dumps(sig))
    assert again == sig
    assert again.validate([[1, "red", 2]]).tolist() == [[1.0, "red", 2.0]]
    assert sig != mixed_signature(levels={"color": ["red"]})


# -- validation: what comes out -----------------------------------------------------------


def test_numeric_input_of_every_form_becomes_the_same_float64_array() -> None:
    sig = Signature(names=["a", "b", "c"])
    expected = np.array([[1.0, 0.0, 2.5], [3.0, 1.0, -1.0]])
    forms: list[Any] = [
        [[1, False, 2.5], [3, True, -1.0]],
        ((1, 0, 2.5), (3, 1, -1)),
        np.array([[1, 0, 2.5], [3, 1, -1]], dtype=np.float32),
        np.array([[1, 0, 2.5], [3, 1, -1]], dtype=object),
        [{"c": 2.5, "b": 0, "a": 1}, {"a": 3, "b": 1, "c": -1.0}],
        pd.DataFrame(expected, columns=["a", "b", "c"]),
        pd.DataFrame(expected[:, [2, 0, 1]], columns=["c", "a", "b"]),
        pd.DataFrame(expected),  # no string labels: by position
    ]
    for data in forms:
        out = sig.validate(data)
        assert out.dtype == np.float64
        assert np.array_equal(out, expected), data


def test_a_float64_array_passes_through_without_a_copy() -> None:
    data = np.ones((3, 2))
    assert Signature(names=["a", "b"]).validate(data) is data


def test_a_1d_input_is_one_row_with_several_features_and_a_column_with_one() -> None:
    assert Signature(names=["a", "b", "c"]).validate([1, 2, 3]).shape == (1, 3)
    assert Signature(names=["a", "b", "c"]).validate(np.arange(3)).shape == (1, 3)
    assert Signature(names=["a"]).validate([1, 2, 3]).tolist() == [[1.0], [2.0], [3.0]]
    assert Signature(names=["a"]).validate([{"a": 1}, {"a": 2}]).tolist() == [[1.0], [2.0]]


def test_one_dict_is_one_row() -> None:
    assert Signature(names=["a", "b"]).validate({"b": 2, "a": 1}).tolist() == [[1.0, 2.0]]


def test_a_series_with_feature_names_is_one_row() -> None:
    row = pd.Series({"b": 2.0, "a": 1.0})
    assert Signature(names=["a", "b"]).validate(row).tolist() == [[1.0, 2.0]]


def test_missing_values_become_nan_when_allowed() -> None:
    sig = Signature(names=["a", "b"], allow_nan=True)
    out = sig.validate([[None, 1], [2, math.nan]])
    assert np.array_equal(out, [[np.nan, 1.0], [2.0, np.nan]], equal_nan=True)
    frame = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1.0, 2.0]})
    assert np.array_equal(sig.validate(frame), [[1.0, 1.0], [np.nan, 2.0]], equal_nan=True)


def test_ints_beyond_int64_are_numbers_too() -> None:
    out = Signature(names=["a", "b"]).validate([[2**70, 1], [-(2**65), 0.5]])
    assert out.tolist() == [[float(2**70), 1.0], [float(-(2**65)), 0.5]]


def test_mixed_input_becomes_an_object_array_for_array_fitted_models() -> None:
    sig = mixed_signature()
    expected = [[41.0, "red", 2.0], [3.5, "blue", 0.0]]
    for data in (
        [[41, "red", 2], [3.5, "blue", False]],
        [{"color": "red", "age": 41, "visits": 2}, {"visits": 0, "age": 3.5, "color": "blue"}],
        np.array([[41, "red", 2], [3.5, "blue", 0]], dtype=object),
        pd.DataFrame({"color": ["red", "blue"], "age": [41, 3.5], "visits": [2, 0]}),
    ):
        out = sig.validate(data)
        assert out.dtype == object
        assert out.tolist() == expected


def test_dataframe_models_get_a_dataframe_in_training_order_and_dtypes(
    people: pd.DataFrame,
) -> None:
    sig = Signature.infer(people)
    rows = people.head(3)
    for data in (rows.to_dict("records"), rows.to_numpy(dtype=object).tolist(), rows.iloc[:, ::-1]):
        out = sig.validate(data)
        assert isinstance(out, pd.DataFrame)
        assert out.columns.tolist() == ["age", "color", "visits"]
        assert out.dtypes.tolist() == people.dtypes.tolist()
        pd.testing.assert_frame_equal(out.reset_index(drop=True), rows.reset_index(drop=True))


def test_a_dataframe_already_in_shape_is_handed_over_as_is(people: pd.DataFrame) -> None:
    assert Signature.infer(people).validate(people) is people


def test_integer_columns_stay_integer_only_when_nothing_is_lost() -> None:
    sig = Signature(names=["n", "flag"], dtypes=["int64", "bool"], input_type="dataframe")
    exact = sig.validate([[3, 1], [4, 0]])
    assert exact.dtypes.tolist() == [np.dtype("int64"), np.dtype("bool")]
    assert exact.to_numpy().tolist() == [[3, True], [4, False]]
    lossy = sig.validate([[3.5, 2]])
    assert lossy.dtypes.tolist() == [np.dtype("float64"), np.dtype("float64")]
    assert lossy.to_numpy().tolist() == [[3.5, 2.0]]


def test_category_columns_are_rebuilt_with_the_training_categories() -> None:
    df = pd.DataFrame({"size": pd.Categorical(["s", "l"], categories=["s", "m", "l"])})
    sig = Signature.infer(df)
    out = sig.validate([["l"], ["m"]])
    assert out["size"].cat.categories.tolist() == ["s", "m", "l"]
    assert out["size"].cat.codes.tolist() == [2, 1]
    other_codes = pd.DataFrame({"size": pd.Categorical(["l", "m"], categories=["l", "m", "s"])})
    rebuilt = sig.validate(other_codes)
    assert rebuilt is not other_codes
    assert rebuilt["size"].cat.codes.tolist() == [2, 1]


# -- validation: what is refused, and how it is said ------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([[1.0] * 19], "expected 20 features, got 19"),
        ([[1.0] * 20, [1.0] * 19], "expected 20 features, got 19 at row 1"),
        ([1.0] * 21, "expected 20 features, got 21"),
        (np.ones((2, 20, 1)), "expected a 2-D table of rows with 20 features, got a 3-D array"),
        (np.array(1.0), "got a single value"),
        ([], "expected at least one row, got none"),
        (np.ones((0, 20)), "expected at least one row, got none"),
        ("1,2,3", "expected rows as a list of lists, .* got str"),
        ([[1.0] * 19 + ["abc"]], "feature 'f19' must be numeric, got 'abc' at row 0"),
        (
            [[0.0] * 20, [0.0] * 3 + ["1.5"] + [0.0] * 16],
            "feature 'f3' must be numeric, got '1.5' at row 1",
        ),
        (np.array([["1"] * 20]), "feature 'f0' must be numeric, got '1' at row 0"),
        ([[0.0] * 4 + [math.inf] + [0.0] * 15], "feature 'f4' must be finite, got inf at row 0"),
        ([[0.0] * 20, [-math.inf] + [0.0] * 19], "feature 'f0' must be finite, got -inf at row 1"),
        (
            [[0.0] * 19 + [None]],
            r"feature 'f19' is missing \(NaN\) at row 0, but the model does not accept",
        ),
        ([[0.0] * 5 + [math.nan] + [0.0] * 14], r"feature 'f5' is missing \(NaN\) at row 0"),
        (
            [[0.0] * 5 + [[1, 2]] + [0.0] * 14],
            "feature 'f5' must be a single value, got \\[1, 2\\] at row 0",
        ),
        ([[0.0] * 20, "a" * 20], "row 1 is a str, expected a list of 20 feature values"),
    ],
)
def test_numeric_errors_name_the_feature_the_row_and_the_values(data: Any, message: str) -> None:
    assert re.search(message, error_of(Signature(names=[f"f{j}" for j in range(20)]), data))


def test_inf_is_refused_even_where_nan_is_allowed() -> None:
    sig = Signature(names=["a", "b"], allow_nan=True)
    assert (
        error_of(sig, [[math.nan, 1], [1, math.inf]])
        == "feature 'b' must be finite, got inf at row 1"
    )


def test_named_inputs_must_have_exactly_the_features() -> None:
    sig = Signature(names=["age", "income"])
    assert (
        error_of(sig, [{"age": 1, "income": 2}, {"age": 1}])
        == "missing features: 'income' at row 1"
    )
    assert error_of(sig, [{"age": 1, "income": 2, "zip": 3}]) == (
        "unknown features: 'zip' at row 0 (expected 'age', 'income')"
    )
    assert error_of(sig, [{"age": 1, "income": 2}, [1, 2]]) == (
        "row 1 is a list, expected a dict keyed by feature name"
    )
    assert error_of(sig, pd.DataFrame({"age": [1.0]})) == "missing features: 'income'"
    assert error_of(sig, pd.DataFrame({"age": [1.0], "income": [2.0], "zip": [3]})) == (
        "unknown features: 'zip'"
    )
    assert error_of(sig, pd.DataFrame([[1.0, 2.0, 3.0]])) == "expected 2 features, got 3"
    assert (
        error_of(sig, pd.DataFrame({"age": [], "income": []}))
        == "expected at least one row, got none"
    )
    twice = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["age", "age", "income"])
    assert error_of(sig, twice) == "duplicate columns: 'age'"


def test_dataframe_values_are_checked_like_any_other() -> None:
    sig = Signature(names=["age", "income"])
    frame = pd.DataFrame({"age": [1.0, 2.0], "income": ["10", "x"]})
    assert error_of(sig, frame) == "feature 'income' must be numeric, got '10' at row 0"
    assert error_of(sig, pd.DataFrame({"age": [1.0, np.inf], "income": [1.0, 2.0]})) == (
        "feature 'age' must be finite, got inf at row 1"
    )


def test_categorical_errors_name_the_feature_the_row_and_the_levels() -> None:
    sig = mixed_signature()
    rows = [[1, "red", 2]] * 4 + [[1, "purple", 2]]
    assert error_of(sig, rows) == (
        "feature 'color' has unknown level 'purple' at row 4 "
        "(expected one of 'blue', 'green', 'red')"
    )
    assert error_of(sig, [[1, "red", 2], [1, None, 2]]) == (
        "feature 'color' is missing at row 1, but the model does not accept missing values; "
        "fill it in first"
    )
    assert error_of(sig, [[1, ["red"], 2]]) == (
        "feature 'color' has unknown level ['red'] at row 0 "
        "(expected one of 'blue', 'green', 'red')"
    )
    assert error_of(sig, [[1, "red", "2"]]) == "feature 'visits' must be numeric, got '2' at row 0"
    frame = pd.DataFrame({"age": [1.0, 2.0], "color": ["red", "teal"], "visits": [1, 2]})
    assert error_of(sig, frame) == (
        "feature 'color' has unknown level 'teal' at row 1 (expected one of 'blue', 'green', 'red')"
    )


def test_missing_categories_are_accepted_when_nan_is() -> None:
    sig = mixed_signature(allow_nan=True)
    out = sig.validate([[1, None, 2], [np.nan, "red", 3]])
    assert out[0, 1] is None
    assert math.isnan(out[1, 0])


def test_long_level_lists_are_cut_in_messages() -> None:
    levels = [f"l{i:02d}" for i in range(30)]
    sig = Signature(names=["code"], dtypes=["object"], levels={"code": levels})
    assert error_of(sig, [["zz"]]).endswith("'l08', 'l09', … (30 in all))")


# -- properties ------------------------------------------------------------------------------


@given(
    FEATURE_NAMES.flatmap(
        lambda names: st.tuples(st.just(names), numeric_rows(len(names), missing=True))
    )
)
def test_validate_of_valid_rows_equals_numpys_float_conversion(case: Any) -> None:
    names, rows = case
    out = Signature(names=names, allow_nan=True).validate(rows)
    assert out.dtype == np.float64
    assert np.array_equal(out, np.array(rows, dtype=np.float64), equal_nan=True)


@given(
    FEATURE_NAMES.flatmap(
        lambda names: st.tuples(
            st.just(names),
            corrupted_rows(len(names), st.one_of(NOT_NUMBERS, st.none(), st.just(math.nan))),
        )
    )
)
def test_any_single_bad_cell_is_reported_with_its_feature_and_row(case: Any) -> None:
    names, (rows, i, j) = case
    sig = Signature(names=names)
    message = error_of(sig, rows)
    assert f"feature {names[j]!r} " in message
    assert message.endswith(f"at row {i}") or f"at row {i}," in message
    records = [dict(zip(names, row, strict=True)) for row in rows]
    assert error_of(sig, records) == message


@given(mixed_records(), st.data())
def test_mixed_rows_validate_and_an_unknown_level_is_reported(
    case: Any, data: st.DataObject
) -> None:
    features, records = case
    names = list(features)
    sig = Signature(
        names=names,
        dtypes=["float64" if levels is None else "object" for levels in features.values()],
        levels={name: levels for name, levels in features.items() if levels is not None},
    )
    rows = [[record[name] for name in names] for record in records]
    out = sig.validate(records)
    assert out.tolist() == sig.validate(rows).tolist()
    for j, (name, levels) in enumerate(features.items()):
        expected = [row[j] if levels else float(row[j]) for row in rows]
        assert out[:, j].tolist() == expected, name

    i = data.draw(st.integers(0, len(records) - 1))
    name = data.draw(st.sampled_from([name for name, levels in features.items() if levels]))
    level = data.draw(st.text(max_size=4).filter(lambda text: text not in features[name]))
    records[i][name] = level
    assert error_of(sig, records).startswith(
        f"feature {name!r} has unknown level {describe(level)} at row {i} (expected one of"
    )


# -- less common paths -----------------------------------------------------------------------


def test_pandas_na_in_rows_counts_as_missing() -> None:
    out = Signature(names=["a", "b"], allow_nan=True).validate([[pd.NA, 1], [2, 3]])
    assert np.array_equal(out, [[np.nan, 1.0], [2.0, 3.0]], equal_nan=True)


def test_numbers_in_a_categorical_feature_are_unknown_levels() -> None:
    sig = mixed_signature()
    message = error_of(sig, np.array([[1.0, 2.0, 3.0]]))
    assert message.startswith("feature 'color' has unknown level 2.0 at row 0")


def test_unknown_levels_are_found_past_missing_ones() -> None:
    sig = mixed_signature(allow_nan=True)
    message = error_of(sig, [[1, None, 2], [1, "red", 2], [1, "pink", 2]])
    assert message.startswith("feature 'color' has unknown level 'pink' at row 2")


def test_dataframes_that_differ_in_labels_or_dtypes_are_rebuilt(people: pd.DataFrame) -> None:
    numbers = people[["age", "visits"]]
    sig = Signature.infer(numbers)
    positional = pd.DataFrame(numbers.to_numpy())
    pd.testing.assert_frame_equal(sig.validate(positional), numbers)
    as_floats = numbers.astype(float)
    rebuilt = sig.validate(as_floats)
    assert rebuilt is not as_floats
    assert rebuilt.dtypes.tolist() == numbers.dtypes.tolist()


def test_nullable_and_narrow_dtypes_are_restored() -> None:
    sig = Signature(
        names=["n", "x", "k"],
        dtypes=["Int64", "float32", "int64"],
        input_type="dataframe",
        allow_nan=True,
    )
    out = sig.validate([[1, 0.1, None], [None, 2.5, 3]])
    assert [str(dtype) for dtype in out.dtypes] == ["Int64", "float32", "float64"]
    assert out["n"].isna().tolist() == [False, True]
    assert out["x"].tolist() == [np.float32(0.1), np.float32(2.5)]


def test_estimators_without_tags_fall_back_to_the_data() -> None:
    class Plain:
        def predict(self, X: Any) -> Any:
            return X

    X = np.array([[1.0, np.nan], [2.0, 3.0]])
    sig = Signature.infer(X, estimator=Plain())
    assert (sig.allow_nan, sig.kind, sig.methods) == (True, "other", ("predict",))


def test_multi_output_targets_are_classification_without_classes() -> None:
    sig = Signature.infer([[1.0], [2.0]], [[0, 1], [1, 2]])
    assert (sig.kind, sig.classes) == ("classification", None)


@pytest.mark.parametrize(
    ("columns", "levels"),
    [
        ([1], {"f1": ("blue", "green", "red")}),
        (np.array([False, True, False]), {"f1": ("blue", "green", "red")}),
        (slice(1, 2), {}),
    ],
)
def test_encoder_columns_may_be_given_by_position_or_mask(columns: Any, levels: Any) -> None:
    rng = np.random.default_rng(0)
    X = np.array(
        [[rng.normal(), rng.choice(["red", "green", "blue"]), rng.normal()] for _ in range(30)],
        dtype=object,
    )
    y = rng.integers(0, 2, 30)
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), columns), remainder="passthrough"),
        LogisticRegression(),
    ).fit(X, y)
    sig = Signature.from_estimator(pipeline)
    assert sig.levels == levels
    assert sig.input_type == "ndarray"


@pytest.mark.parametrize("empty", [[], (), np.empty((0,), dtype=object)])
def test_no_rows_with_categorical_features_is_a_signature_error(empty: Any) -> None:
    sig = Signature(names=["a", "b"], dtypes=["object", "float64"], levels={"a": ("x", "y")})
    assert error_of(sig, empty) == "expected at least one row, got none"
