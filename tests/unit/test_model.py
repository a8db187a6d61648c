"""Model: exact delegation to the estimator, input forms, events and scikit-learn settings."""

from __future__ import annotations

import functools
import math
import warnings
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelkit.exceptions import (
    HookFailedWarning,
    PluginError,
    SignatureError,
    UnsupportedModelError,
)
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.signature import Signature

if TYPE_CHECKING:
    import pluggy

# -- fitted estimators, each with held-out rows -----------------------------------------------


def _classification(n_features: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=n_features, random_state=42)
    return X[:250], y[:250], X[250:]


def logistic() -> tuple[Any, Any, Any]:
    X, y, test = _classification()
    return LogisticRegression(solver="liblinear").fit(X, y), X, test


def scaled_pipeline() -> tuple[Any, Any, Any]:
    X, y, test = _classification()
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X, test


def forest() -> tuple[Any, Any, Any]:
    X, y, test = _classification()
    return RandomForestClassifier(n_estimators=15, random_state=0).fit(X, y), X, test


def regressor() -> tuple[Any, Any, Any]:
    X, y = make_regression(n_samples=300, n_features=8, noise=0.5, random_state=1)
    return Ridge(alpha=0.3).fit(X[:250], y[:250]), X[:250], X[250:]


def boosting_with_nan() -> tuple[Any, Any, Any]:
    X, y, test = _classification(n_features=6)
    rng = np.random.default_rng(3)
    X = np.where(rng.random(X.shape) < 0.15, np.nan, X)
    test = np.where(rng.random(test.shape) < 0.15, np.nan, test)
    return HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y), X, test


def people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "visits": rng.integers(0, 9, n),
        }
    )


def column_transformer() -> tuple[Any, Any, Any]:
    train = people(300, seed=0)
    y = (train["age"] > 40) ^ (train["color"] == "red")
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(), ["color"]), (StandardScaler(), ["age", "visits"])
        ),
        LogisticRegression(),
    )
    return pipeline.fit(train, y), train, people(40, seed=1)


def logistic_on_a_float_dataframe() -> tuple[Any, Any, Any]:
    X, y, test = _classification()
    names = [f"x{j}" for j in range(X.shape[1])]
    train = pd.DataFrame({name: X[:, j] for j, name in enumerate(names)})
    held_out = pd.DataFrame({name: test[:, j] for j, name in enumerate(names)})
    return LogisticRegression().fit(train, y), train, held_out


FITTED = {
    "logistic": logistic,
    "scaled pipeline": scaled_pipeline,
    "random forest": forest,
    "ridge regressor": regressor,
    "boosting with NaN": boosting_with_nan,
    "column transformer on a DataFrame": column_transformer,
    "logistic on a float DataFrame": logistic_on_a_float_dataframe,
}


@functools.cache
def fitted(name: str) -> tuple[Any, Any, Any]:
    return FITTED[name]()


def forms(test: Any) -> dict[str, Any]:
    """The same rows as a list of lists (JSON-like, None for NaN), dicts, array, DataFrame."""
    if isinstance(test, pd.DataFrame):
        return {
            "dataframe": test,
            "list of lists": test.to_numpy(dtype=object).tolist(),
            "list of dicts": test.to_dict("records"),
            "object array": test.to_numpy(dtype=object),
        }
    names = [f"f{j}" for j in range(test.shape[1])]
    json_rows = [[None if math.isnan(v) else v for v in row] for row in test.tolist()]
    return {
        "ndarray": test,
        "list of lists": json_rows,
        "list of dicts": [dict(zip(names, row, strict=True)) for row in json_rows],
        "dataframe": pd.DataFrame(test, columns=names),
    }


# -- exact delegation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FITTED)
def test_every_method_equals_the_raw_estimator_exactly_without_the_fast_path(name: str) -> None:
    estimator, train, test = fitted(name)
    model = attrs.evolve(Model.wrap(estimator, sample=train), fast=False)
    assert model.methods
    for method in model.methods:
        raw = getattr(estimator, method)(test)
        for form, data in forms(test).items():
            ours = getattr(model, method)(data)
            assert ours.dtype == raw.dtype, (method, form)
            assert np.array_equal(ours, raw), (method, form)


@pytest.mark.parametrize("name", FITTED)
def test_the_fast_path_gives_the_same_labels_and_scores_within_ulps(name: str) -> None:
    estimator, train, test = fitted(name)
    model = Model.wrap(estimator, sample=train)
    for method in model.methods:
        raw = getattr(estimator, method)(test)
        answers = {form: getattr(model, method)(data) for form, data in forms(test).items()}
        first = next(iter(answers.values()))
        for form, ours in answers.items():
            assert ours.dtype == raw.dtype, (method, form)
            assert np.array_equal(ours, first), (method, form)  # every form, bit for bit
        if method == "predict" and raw.dtype.kind != "f":
            assert np.array_equal(first, raw), method
        else:
            np.testing.assert_allclose(first, raw, rtol=1e-12, atol=1e-13, err_msg=method)


@pytest.mark.parametrize("name", FITTED)
def test_wrapping_without_a_sample_predicts_the_same(name: str) -> None:
    estimator, _, test = fitted(name)
    model = Model.wrap(estimator)
    ours, raw = model.predict(test), estimator.predict(test)
    if raw.dtype.kind == "f":  # a linear regressor's kernel: within ulps
        np.testing.assert_allclose(ours, raw, rtol=1e-12, atol=1e-9)
    else:
        assert np.array_equal(ours, raw)


def test_validate_returns_exactly_what_the_estimator_receives() -> None:
    estimator, train, test = fitted("column transformer on a DataFrame")
    model = Model.wrap(estimator, sample=train)
    coerced = model.validate(test.to_dict("records"))
    assert isinstance(coerced, pd.DataFrame)
    pd.testing.assert_frame_equal(coerced, test)
    assert np.array_equal(estimator.predict(coerced), model.predict(test))


@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=20, max_size=20), min_size=1, max_size=5))
def test_all_input_forms_give_identical_predictions(rows: list[list[float]]) -> None:
    estimator, train, _ = fitted("logistic")
    model = Model(estimator, Signature.infer(train, estimator=estimator))
    expected = estimator.predict(np.array(rows))
    for form, data in forms(np.array(rows)).items():
        assert np.array_equal(model.predict(data), expected), form


@given(
    st.lists(
        st.tuples(st.floats(0, 100), st.sampled_from(["red", "green", "blue"]), st.integers(0, 20)),
        min_size=1,
        max_size=5,
    )
)
def test_all_input_forms_give_identical_predictions_on_a_dataframe_model(
    rows: list[tuple[float, str, int]],
) -> None:
    estimator, train, _ = fitted("column transformer on a DataFrame")
    model = Model(estimator, Signature.infer(train, estimator=estimator))
    frame = pd.DataFrame(rows, columns=["age", "color", "visits"])
    expected = estimator.predict_proba(frame)
    for form, data in forms(frame).items():
        assert np.array_equal(model.predict_proba(data), expected), form


# -- what a Model offers -------------------------------------------------------------------


def test_a_model_exposes_classes_methods_and_name() -> None:
    estimator, train, _ = fitted("logistic")
    model = Model.wrap(estimator, sample=train, name="seed")
    assert model.name == "seed"
    assert model.classes is estimator.classes_
    assert model.methods == ("predict", "predict_proba", "decision_function")
    assert model.signature.n_features == 20
    assert repr(model) == (
        "Model(name='seed', estimator=LogisticRegression, kind='classification', "
        "features=20, methods=('predict', 'predict_proba', 'decision_function'))"
    )
    ridge = Model.wrap(fitted("ridge regressor")[0])
    assert ridge.classes is None
    assert ridge.methods == ("predict",)


def test_a_missing_method_is_an_error_naming_the_available_ones() -> None:
    model = Model.wrap(fitted("ridge regressor")[0])
    with pytest.raises(
        UnsupportedModelError, match="Ridge has no predict_proba; this model offers predict"
    ):
        model.predict_proba([[0.0] * 8])
    with pytest.raises(TypeError, match="no decision_function"):
        model.decision_function([[0.0] * 8])


def test_a_model_holds_an_estimator_and_is_not_one() -> None:
    model = Model.wrap(fitted("logistic")[0])
    assert not isinstance(model, BaseEstimator)
    assert not hasattr(model, "fit")
    assert not hasattr(model, "get_params")


class Constant:
    """A minimal non-scikit-learn predictor that records what it was given."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value
        self.seen: list[Any] = []
        self.config: list[dict[str, Any]] = []

    def predict(self, X: Any) -> np.ndarray:
        self.seen.append(X)
        self.config.append(sklearn.get_config())
        return np.full(len(X), self.value)


def test_the_estimator_must_have_predict() -> None:
    sig = Signature(names=["a"])
    with pytest.raises(UnsupportedModelError, match="object of type object cannot be"):
        Model(object(), sig)
    with pytest.raises(TypeError):
        Model(Constant(), sig, name=3)  # type: ignore[arg-type]
    model = Model(Constant(), sig)
    with pytest.raises(UnsupportedModelError):
        model.estimator = object()


def test_bad_input_never_reaches_the_estimator() -> None:
    estimator = Constant()
    model = Model(estimator, Signature(names=["a", "b"]))
    with pytest.raises(SignatureError, match="feature 'b' must be numeric, got 'x' at row 0"):
        model.predict([[1, "x"]])
    assert estimator.seen == []


def test_classes_fall_back_to_the_signature() -> None:
    model = Model(Constant(), Signature(names=["a"], kind="classification", classes=["a", "b"]))
    assert model.classes.tolist() == ["a", "b"]


# -- scikit-learn settings around the call ---------------------------------------------------


def test_checked_input_runs_without_scikit_learns_own_checks() -> None:
    estimator = Constant()
    model = Model(estimator, Signature(names=["a", "b"], allow_nan=True))
    before = sklearn.get_config()
    model.predict([[1.0, 2.0]])
    inside = estimator.config[-1]
    assert inside["assume_finite"] is True
    assert inside["skip_parameter_validation"] is True
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        assert inside == sklearn.get_config()
    assert sklearn.get_config() == before


def test_input_with_missing_values_keeps_the_finiteness_checks_on() -> None:
    estimator = Constant()
    model = Model(estimator, Signature(names=["a", "b"], allow_nan=True))
    model.predict([[None, 2.0]])
    assert estimator.config[-1]["assume_finite"] is False
    assert estimator.config[-1]["skip_parameter_validation"] is True


def test_the_settings_are_restored_when_the_estimator_raises() -> None:
    class Broken(Constant):
        def predict(self, X: Any) -> np.ndarray:
            raise RuntimeError("boom")

    before = sklearn.get_config()
    with pytest.raises(RuntimeError, match="boom"):
        Model(Broken(), Signature(names=["a"])).predict([1.0])
    assert sklearn.get_config() == before


def test_a_pipeline_still_rejects_nan_its_inner_steps_cannot_take() -> None:
    X, y, _ = _classification(n_features=4)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    model = Model(pipeline, attrs.evolve(Signature.infer(X, estimator=pipeline), allow_nan=True))
    with pytest.raises(ValueError, match="NaN"):
        model.predict([[np.nan, 0.0, 0.0, 0.0]])


# -- events -------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def on_prediction(self, model: Model, method: str, inputs: Any, outputs: Any) -> None:
        self.calls.append({"model": model, "method": method, "inputs": inputs, "outputs": outputs})


def test_each_prediction_is_reported_with_the_validated_inputs(
    plugin_manager: pluggy.PluginManager,
) -> None:
    recorder = Recorder()
    plugin_manager.register(recorder)
    estimator, train, _ = fitted("logistic")
    model = Model.wrap(estimator, sample=train)
    rows = train[:3].tolist()
    proba = model.predict_proba(rows)
    labels = model.predict(rows)
    with pytest.raises(SignatureError):
        model.predict([[1.0]])
    assert [call["method"] for call in recorder.calls] == ["predict_proba", "predict"]
    first, second = recorder.calls
    assert first["model"] is model
    assert first["inputs"].dtype == np.float64
    assert np.array_equal(first["inputs"], train[:3])
    assert first["outputs"] is proba
    assert second["outputs"] is labels


def test_a_failing_hook_warns_and_the_prediction_goes_on(
    plugin_manager: pluggy.PluginManager,
) -> None:
    class Failing:
        @hookimpl
        def on_prediction(self, model: Model, method: str, inputs: Any, outputs: Any) -> None:
            raise RuntimeError("monitor down")

    plugin_manager.register(Failing())
    model = Model(Constant(7.0), Signature(names=["a"]))
    with pytest.warns(HookFailedWarning, match="monitor down"):
        assert model.predict([1.0, 2.0]).tolist() == [7.0, 7.0]


# -- wrap -----------------------------------------------------------------------------------------


def test_wrapping_a_model_returns_it_or_a_copy_with_the_changes() -> None:
    model = Model(Constant(), Signature(names=["a"]))
    assert Model.wrap(model) is model
    renamed = Model.wrap(model, name="prod")
    assert (renamed.name, model.name) == ("prod", None)
    other = Signature(names=["b"])
    assert Model.wrap(model, signature=other).signature is other


def test_wrap_uses_a_given_signature_as_is() -> None:
    estimator, _, _ = fitted("logistic")
    sig = Signature(names=[f"x{j}" for j in range(20)], kind="classification")
    model = Model.wrap(estimator, signature=sig, name="given")
    assert model.signature is sig
    assert model.name == "given"


def test_wrap_refuses_what_no_plugin_can_wrap() -> None:
    with pytest.raises(UnsupportedModelError, match="object of type dict as a model") as info:
        Model.wrap({"weights": [1, 2]})
    assert isinstance(info.value, TypeError)


def test_a_plugin_returning_something_else_than_a_model_is_a_plugin_error(
    plugin_manager: pluggy.PluginManager,
) -> None:
    class Confused:
        @hookimpl
        def make_model(self, obj: Any, signature: Any, sample: Any) -> Any:
            return "a model"

    plugin_manager.register(Confused())
    with pytest.raises(PluginError, match="returned a str"):
        Model.wrap(Constant())


def test_no_warning_is_emitted_on_the_happy_path() -> None:
    estimator, train, test = fitted("column transformer on a DataFrame")
    model = Model.wrap(estimator, sample=train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(test.to_dict("records"))
        model.predict(test.to_numpy(dtype=object))


# -- models fitted on named columns ---------------------------------------------------------


def test_a_linear_model_on_named_numeric_columns_takes_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelkit import model as model_module

    X, y = make_classification(n_samples=300, n_features=5, random_state=3)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["x4"] = (X[:, 4] * 10).astype("int64")  # integer columns are numbers too
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    model = Model.wrap(estimator, sample=frame)
    raw = {method: getattr(estimator, method)(frame) for method in model.methods}

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the estimator's own method ran")

    monkeypatch.setattr(model_module, "_run", refused)
    for method, expected in raw.items():
        ours = getattr(model, method)(frame)
        if method == "predict":
            assert np.array_equal(ours, expected)
        else:
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-13, err_msg=method)
        rows = frame.head(7).to_dict("records")  # the same rows from JSON-like records
        assert np.array_equal(getattr(model, method)(rows), ours[:7])


def test_only_numeric_columns_in_the_fitted_order_go_to_the_kernel() -> None:
    X, y = make_classification(n_samples=200, n_features=3, n_redundant=0, random_state=4)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = Model(LogisticRegression().fit(frame, y), Signature(names=["a", "b", "c"]))
    assert model._float_rows(frame[["c", "b", "a"]]) is None  # not the fitted order
    assert model._float_rows(frame.astype({"a": "object"})) is None  # not numeric
    block = model._float_rows(frame)
    assert block is not None
    assert block.flags.c_contiguous
    assert np.array_equal(block, X)
