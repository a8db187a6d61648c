"""Numpy kernels for the estimators whose prediction is a few array operations.

For small requests, scikit-learn's own input checks cost more than the arithmetic: a
``LogisticRegression.predict`` of one row spends ~100 µs checking and ~3 µs computing. Once
:class:`~modelkit.Signature` has checked the input (a C-contiguous float64 array, finite),
:func:`compile_kernel` gives a function computing the same result directly:

- linear classifiers (``LogisticRegression``, ``LinearSVC``, ``SGDClassifier``, ``Perceptron``,
  …): ``decision_function`` and ``predict``; ``predict_proba`` for ``LogisticRegression``;
- linear regressors (``LinearRegression``, ``Ridge``, ``Lasso``, ``ElasticNet``, …): ``predict``;
- a :class:`~sklearn.pipeline.Pipeline` of ``StandardScaler`` steps ending in one of those.

A kernel is chosen only when the estimator's method is scikit-learn's own implementation (a
subclass overriding it keeps its override), and it applies the same operations in the same
order, with one difference: dot products are computed row by row (``np.einsum``), where
scikit-learn calls BLAS. BLAS rounds a row differently
depending on how many rows come with it, so scikit-learn's answer for a row can change in
the last bit when it is predicted alone or in a batch; a kernel's answer cannot. That is what
lets a server batch requests together and still answer each exactly as if it came alone.
Labels equal scikit-learn's; scores and probabilities agree to within a few ulps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Kernel", "compile_kernel"]

Kernel = Callable[[np.ndarray], Any]
"""A compiled method: checked float64 rows in, the method's result out."""


def compile_kernel(estimator: Any, method: str) -> Kernel | None:
    """A kernel computing ``estimator.<method>(X)`` for checked float64 ``X``, or ``None``.

    ``None`` means the estimator (or this method of it) has no kernel: call it as usual.
    """
    try:
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return None
    steps: list[Any] = []
    final = estimator
    if isinstance(estimator, Pipeline):
        if type(estimator) is not Pipeline:  # a subclass may predict otherwise
            return None
        *steps, final = [step for _, step in estimator.steps if step not in (None, "passthrough")]
    transforms = [_scaler(step) for step in steps]
    if any(transform is None for transform in transforms):
        return None
    compute = _final(final, method)
    if compute is None:
        return None
    if not transforms:
        return compute
    chain = [t for t in transforms if t is not None]

    def pipeline(X: np.ndarray) -> Any:
        for transform in chain:
            X = transform(X)
        return compute(X)

    return pipeline


# -- transformers ----------------------------------------------------------------------------


def _scaler(step: Any) -> Kernel | None:
    from sklearn.preprocessing import StandardScaler

    if not isinstance(step, StandardScaler) or type(step).transform is not StandardScaler.transform:
        return None
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None
    if getattr(step, "_sklearn_output_config", {}).get("transform", "default") != "default":
        return None

    def transform(X: np.ndarray) -> np.ndarray:
        X = X.copy()
        if mean is not None:
            X -= mean
        if scale is not None:
            X /= scale
        return X

    return transform


# -- final estimators ------------------------------------------------------------------------


def _final(estimator: Any, method: str) -> Kernel | None:
    from sklearn.linear_model._base import LinearClassifierMixin, LinearModel

    if isinstance(estimator, LinearClassifierMixin):
        return _classifier(estimator, method, LinearClassifierMixin)
    if isinstance(estimator, LinearModel) and method == "predict":
        return _regressor(estimator, LinearModel)
    return None


def _dense(estimator: Any) -> tuple[np.ndarray, Any] | None:
    coef = getattr(estimator, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim not in (1, 2):
        return None  # unfitted, sparsified (sparsify()) or another dtype
    intercept = getattr(estimator, "intercept_", 0.0)
    return np.ascontiguousarray(coef), intercept


def _scores(coef: np.ndarray, intercept: Any) -> Kernel:
    """``X @ coef.T + intercept``, row by row (see the module docstring).

    ``np.einsum`` (without ``optimize``) runs its own loops, not BLAS: each row's dot products
    are summed the same way however many rows come with it.
    """
    if coef.ndim == 1:
        return lambda X: np.add(np.einsum("ij,j->i", X, coef), intercept)
    if coef.shape[0] == 1:
        row = coef[0]
        return lambda X: np.add(np.einsum("ij,j->i", X, row), intercept).reshape(-1, 1)

    def scores(X: np.ndarray) -> np.ndarray:
        result: np.ndarray = np.add(np.einsum("ij,kj->ik", X, coef), intercept)
        return result

    return scores


def _classifier(estimator: Any, method: str, base: type) -> Kernel | None:
    from sklearn.linear_model import LogisticRegression

    dense = _dense(estimator)
    classes = getattr(estimator, "classes_", None)
    if dense is None or not isinstance(classes, np.ndarray):
        return None
    kind = type(estimator)
    if kind.decision_function is not base.decision_function:  # type: ignore[attr-defined]
        return None
    raw = _scores(*dense)

    def decision(X: np.ndarray) -> np.ndarray:
        scores: np.ndarray = raw(X)
        return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores

    if method == "decision_function":
        return decision
    if method == "predict" and _plain_predict(estimator, base):

        def predict(X: np.ndarray) -> np.ndarray:
            scores = decision(X)
            one = scores.ndim == 1
            indices = (scores > 0).astype(np.intp) if one else scores.argmax(axis=1)
            taken: np.ndarray = classes.take(indices, axis=0)
            return taken

        return predict
    if (
        method == "predict_proba"
        and isinstance(estimator, LogisticRegression)
        and kind.predict_proba is LogisticRegression.predict_proba
    ):
        return _logistic_proba(decision, binary=classes.size <= 2)
    return None


def _plain_predict(estimator: Any, base: type) -> bool:
    """Whether the classifier's predict is the linear one (thresholds or argmax of scores)."""
    from sklearn.linear_model._ridge import _RidgeClassifierMixin

    kind = type(estimator)
    if kind.predict is base.predict:  # type: ignore[attr-defined]
        return True
    # RidgeClassifier thresholds otherwise only for multilabel targets
    binarizer = getattr(estimator, "_label_binarizer", None)
    return (
        kind.predict is _RidgeClassifierMixin.predict
        and binarizer is not None
        and not str(binarizer.y_type_).startswith("multilabel")
    )


def _logistic_proba(decision: Kernel, *, binary: bool) -> Kernel:
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    if binary:

        def proba(X: np.ndarray) -> np.ndarray:
            prob = expit(decision(X))
            return np.stack([1 - prob, prob], axis=1)

        return proba
    return lambda X: softmax(decision(X), copy=False)


def _regressor(estimator: Any, base: type) -> Kernel | None:
    from sklearn.linear_model import Ridge
    from sklearn.linear_model._base import MultiOutputLinearModel

    kind = type(estimator)
    # Ridge.predict only calls LinearModel.predict
    plain = (base.predict, MultiOutputLinearModel.predict, Ridge.predict)  # type: ignore[attr-defined]
    if kind.predict not in plain:
        return None
    if kind._decision_function is not base._decision_function:  # type: ignore[attr-defined]
        from sklearn.linear_model import ElasticNet

        # the coordinate-descent models only add a sparse branch
        if not (
            isinstance(estimator, ElasticNet)
            and kind._decision_function is ElasticNet._decision_function
        ):
            return None
    dense = _dense(estimator)
    if dense is None:
        return None
    return _scores(*dense)
