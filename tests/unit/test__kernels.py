"""The numpy kernels: the estimator's labels, its scores within ulps, row-consistent."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC

from modelkit._kernels import compile_kernel

D = 6


def _classification(classes: int) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(
        n_samples=200, n_features=D, n_informative=4, n_redundant=0, n_classes=classes,
        random_state=3,
    )  # fmt: skip


def _regression(targets: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=200, n_features=D, n_targets=targets, random_state=3)
    return X, y


FITTED: dict[str, Any] = {
    "logistic binary liblinear": lambda: LogisticRegression(solver="liblinear"),
    "logistic multinomial": LogisticRegression,
    "logistic without intercept": lambda: LogisticRegression(fit_intercept=False),
    "linear svc": LinearSVC,
    "sgd": lambda: SGDClassifier(random_state=0),
    "perceptron multiclass": lambda: Perceptron(random_state=0),
    "ridge classifier": RidgeClassifier,
    "scaled logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    "scaled without mean": lambda: make_pipeline(
        StandardScaler(with_mean=False), LogisticRegression()
    ),
    "linear regression": LinearRegression,
    "ridge two targets": Ridge,
    "lasso": lambda: Lasso(alpha=0.1),
    "elastic net": lambda: ElasticNet(alpha=0.1),
    "scaled ridge": lambda: make_pipeline(StandardScaler(), Ridge()),
}
CLASSES = {"logistic multinomial": 3, "perceptron multiclass": 4, "ridge classifier": 3}
TARGETS = {"ridge two targets": 2}
REGRESSORS = {"linear regression", "ridge two targets", "lasso", "elastic net", "scaled ridge"}


@functools.cache
def fitted(name: str) -> Any:
    estimator = FITTED[name]()
    if name in REGRESSORS:
        X, y = _regression(TARGETS.get(name, 1))
    else:
        X, y = _classification(CLASSES.get(name, 2))
    return estimator.fit(X, y)


def _methods(estimator: Any) -> list[str]:
    names = ("predict", "predict_proba", "decision_function")
    return [name for name in names if callable(getattr(estimator, name, None))]


rows = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 40), st.just(D)),
    elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
)


@pytest.mark.parametrize("name", FITTED)
@settings(max_examples=25, deadline=None)
@given(X=rows)
def test_a_kernel_gives_the_estimators_answer(name: str, X: np.ndarray) -> None:
    estimator = fitted(name)
    compiled = 0
    for method in _methods(estimator):
        kernel = compile_kernel(estimator, method)
        if kernel is None:
            continue
        compiled += 1
        ours, theirs = kernel(X), getattr(estimator, method)(X)
        assert ours.shape == theirs.shape, method
        assert ours.dtype == theirs.dtype, method
        if method == "predict" and name not in REGRESSORS:
            assert np.array_equal(ours, theirs), method
        else:
            scale = np.maximum(np.abs(theirs), 1.0)
            assert np.all(np.abs(ours - theirs) <= 1e-12 * scale * D), method
    assert compiled >= 1


@pytest.mark.parametrize("name", FITTED)
@settings(max_examples=25, deadline=None)
@given(X=rows)
def test_a_rows_answer_does_not_depend_on_the_rows_with_it(name: str, X: np.ndarray) -> None:
    estimator = fitted(name)
    for method in _methods(estimator):
        kernel = compile_kernel(estimator, method)
        if kernel is None:
            continue
        together = kernel(X)
        for i in range(X.shape[0]):
            assert np.array_equal(kernel(X[i : i + 1])[0], together[i]), (method, i)


def test_predict_proba_has_a_kernel_only_for_logistic_regression() -> None:
    assert compile_kernel(fitted("logistic multinomial"), "predict_proba") is not None
    assert compile_kernel(fitted("sgd"), "predict_proba") is None


class _Overridden(LogisticRegression):
    def predict(self, X: Any) -> Any:
        return super().predict(X)[::-1]


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=2, random_state=0),
        make_pipeline(MinMaxScaler(), LogisticRegression()),
        _Overridden(),
    ],
    ids=["forest", "unknown transformer", "overridden predict"],
)
def test_other_estimators_have_no_kernel(estimator: Any) -> None:
    X, y = _classification(2)
    estimator.fit(X, y)
    assert compile_kernel(estimator, "predict") is None


def test_a_sparsified_model_has_no_kernel() -> None:
    X, y = _classification(2)
    sparse = LogisticRegression().fit(X, y).sparsify()
    assert compile_kernel(sparse, "predict") is None
    assert compile_kernel(LogisticRegression(), "predict") is None  # not fitted
