"""A loaded predictor: :class:`Model` holds a fitted estimator and its :class:`Signature`.

``Model`` is the one object serving, batch jobs and user code call. It never becomes an
estimator itself: it validates and coerces the input, then delegates to the estimator::

    model = Model.wrap(fitted_pipeline, sample=X_train, name="churn")
    model.predict([[0.1, 2.0, ...]])             # list of rows, as JSON brings them
    model.predict_proba([{"age": 41, ...}])      # dicts keyed by feature name
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._kernels import Kernel, compile_kernel
from modelkit.exceptions import PluginError, UnsupportedModelError
from modelkit.plugins import get_plugin_manager, notify
from modelkit.signature import PREDICT_METHODS, Signature

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

__all__ = ["Model"]


def _has_predict(_: Any, __: attrs.Attribute[Any], estimator: Any) -> None:
    if not callable(getattr(estimator, "predict", None)):
        raise UnsupportedModelError(
            f"an object of type {type(estimator).__qualname__} cannot be a model's estimator: "
            "it has no callable predict(X); use Model.wrap, which asks the installed plugins"
        )


@attrs.define(repr=False)
class Model:
    """A fitted estimator with its signature: validated, coerced, fast predictions.

    Any object with a scikit-learn style ``predict(X)`` works, Pipelines included;
    ``predict_proba`` and ``decision_function`` are available when the estimator has them.
    Every method accepts what :meth:`Signature.validate` accepts: a list of rows, a list of
    dicts keyed by feature name, one row as a flat list or 1-D array (a 1-D input is one row
    when the model has several features, and a column of rows when it has exactly one), a
    numpy array or a pandas DataFrame. Bad input raises
    :class:`~modelkit.exceptions.SignatureError` naming the feature and the (0-based) row.

    Linear models (and ``StandardScaler`` pipelines ending in one) are computed by numpy
    kernels instead of the estimator's method, unless ``fast=False``: same labels, scores
    within a few ulps, and a row's answer does not depend on which rows come with it (see
    :mod:`modelkit._kernels`). A 1-row ``predict`` then costs microseconds, not the ~100 µs
    of scikit-learn's input checks.

    After validation, which includes the finiteness check, other estimators run under
    scikit-learn's ``assume_finite`` and ``skip_parameter_validation`` settings, so that it
    does not check the same things again; input with missing values (where the signature
    allows them) runs with scikit-learn's own checks on. Each successful call is reported to
    the ``on_prediction`` event hook.

    Build one with :meth:`wrap` (which asks the ``make_model`` plugins) or directly with
    ``Model(estimator, signature, name=...)``.
    """

    estimator: Any = attrs.field(validator=_has_predict)
    signature: Signature = attrs.field(validator=attrs.validators.instance_of(Signature))
    name: str | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(attrs.validators.instance_of(str)),
    )
    fast: bool = attrs.field(default=True, kw_only=True, converter=bool)
    _kernels: dict[str, Kernel | None] = attrs.field(factory=dict, init=False, repr=False, eq=False)
    _methods: tuple[str, ...] | None = attrs.field(default=None, init=False, repr=False, eq=False)

    @classmethod
    def wrap(
        cls,
        obj: Any,
        *,
        signature: Signature | None = None,
        sample: Any = None,
        name: str | None = None,
    ) -> Model:
        """Wrap a fitted object as a Model, through the ``make_model`` plugin hook.

        ``signature`` is used as given; otherwise it is inferred from ``sample`` (example
        input, ideally the training data), or from the fitted estimator alone. The built-in
        plugin wraps anything with a callable ``predict``; other plugins can wrap other
        objects and run first. A Model is returned as is (with ``signature`` / ``name``
        replaced when given).

        Raises :class:`~modelkit.exceptions.UnsupportedModelError` when no plugin can wrap
        ``obj``.
        """
        if isinstance(obj, Model):
            changes: dict[str, Any] = {}
            if signature is not None:
                changes["signature"] = signature
            if name is not None:
                changes["name"] = name
            return attrs.evolve(obj, **changes) if changes else obj
        model = get_plugin_manager().hook.make_model(obj=obj, signature=signature, sample=sample)
        if model is None:
            raise UnsupportedModelError(
                f"cannot use an object of type {type(obj).__qualname__} as a model: it has no "
                "predict(X) method and no installed plugin wraps it; pass a fitted estimator, "
                "or install a plugin that implements make_model for it"
            )
        if not isinstance(model, Model):
            raise PluginError(
                f"a make_model plugin returned a {type(model).__name__} for a "
                f"{type(obj).__name__}, expected a modelkit Model or None"
            )
        if name is not None and model.name != name:
            model = attrs.evolve(model, name=name)
        return model

    # -- facts -------------------------------------------------------------------------------

    @property
    def classes(self) -> np.ndarray | None:
        """The class labels of a classifier (the estimator's ``classes_``), else ``None``."""
        fitted = getattr(self.estimator, "classes_", None)
        if isinstance(fitted, np.ndarray):
            return fitted
        return None if self.signature.classes is None else np.asarray(self.signature.classes)

    @property
    def methods(self) -> tuple[str, ...]:
        """Which of predict, predict_proba, decision_function the estimator has."""
        methods = self._methods
        if methods is None:  # a Model's estimator is fixed: look once
            methods = self._methods = tuple(
                m for m in PREDICT_METHODS if callable(getattr(self.estimator, m, None))
            )
        return methods

    def __repr__(self) -> str:
        sig = self.signature
        return (
            f"Model(name={self.name!r}, estimator={type(self.estimator).__name__}, "
            f"kind={sig.kind!r}, features={sig.n_features}, methods={self.methods!r})"
        )

    # -- predictions -------------------------------------------------------------------------

    def validate(self, X: Any) -> np.ndarray | pd.DataFrame:
        """Return ``X`` validated and coerced exactly as the estimator will see it.

        See :meth:`Signature.validate` for what is accepted and checked.
        """
        return self.signature.validate(X)

    def predict(self, X: Any) -> Any:
        """Validate ``X`` and return the estimator's ``predict(X)``."""
        return self._call("predict", X)

    def predict_proba(self, X: Any) -> Any:
        """Validate ``X`` and return the estimator's ``predict_proba(X)``.

        Raises :class:`~modelkit.exceptions.UnsupportedModelError` (listing the methods the
        estimator has) when it has no ``predict_proba``.
        """
        return self._call("predict_proba", X)

    def decision_function(self, X: Any) -> Any:
        """Validate ``X`` and return the estimator's ``decision_function(X)``.

        Raises :class:`~modelkit.exceptions.UnsupportedModelError` (listing the methods the
        estimator has) when it has no ``decision_function``.
        """
        return self._call("decision_function", X)

    def call(
        self, method: str, data: Any, *, has_missing: bool = False, observed: bool = True
    ) -> Any:
        """Run ``method`` on ``data`` that :meth:`Signature.check` has already checked.

        ``has_missing`` is the flag ``check`` returned with ``data``. This is what
        :meth:`predict` and the others do after validation; servers and batch jobs call it
        to check requests one by one and predict them together. Reports the call to the
        ``on_prediction`` event hook, unless ``observed=False`` (a warm-up, not a prediction).
        """
        function = getattr(self.estimator, method, None)
        if not callable(function):
            raise UnsupportedModelError(
                f"{type(self.estimator).__name__} has no {method}; "
                f"this model offers {', '.join(self.methods)}"
            )
        kernel = self._kernel(method) if self.fast and not has_missing else None
        block = None if kernel is None else self._float_rows(data)
        if kernel is not None and block is not None:
            outputs = kernel(block)
        else:
            outputs = _run(function, data, assume_finite=not has_missing)
        if observed:
            notify("on_prediction", model=self, method=method, inputs=data, outputs=outputs)
        return outputs

    def _float_rows(self, data: Any) -> np.ndarray | None:
        """Checked data as the float64 rows a kernel takes (``None``: it cannot take them):
        a float64 array as it is, a DataFrame of numeric columns converted, when its columns
        are in the order the estimator was fitted on.

        scikit-learn turns such a frame into the same float64 array before computing; going
        straight to the kernel skips its DataFrame path (name checks, conversions), which
        costs more than the arithmetic.
        """
        if isinstance(data, np.ndarray):
            return data if data.dtype == np.float64 else None
        columns = getattr(data, "columns", None)
        dtypes = getattr(data, "dtypes", None)
        if columns is None or dtypes is None or any(d.kind not in "fi" for d in dtypes):
            return None
        fitted = getattr(self.estimator, "feature_names_in_", None)
        if fitted is not None and list(columns) != list(fitted):
            return None
        return np.ascontiguousarray(data.to_numpy(dtype=np.float64))

    def _kernel(self, method: str) -> Kernel | None:
        try:
            return self._kernels[method]
        except KeyError:
            kernel = self._kernels[method] = compile_kernel(self.estimator, method)
            return kernel

    def _call(self, method: str, data: Any) -> Any:
        if not callable(getattr(self.estimator, method, None)):
            raise UnsupportedModelError(
                f"{type(self.estimator).__name__} has no {method}; "
                f"this model offers {', '.join(self.methods)}"
            )
        checked, has_missing = self.signature.check(data)
        return self.call(method, checked, has_missing=has_missing)


def _run(function: Callable[[Any], Any], data: Any, *, assume_finite: bool) -> Any:
    """Call ``function(data)`` without scikit-learn re-checking what modelkit just checked."""
    from sklearn import config_context

    with config_context(assume_finite=assume_finite, skip_parameter_validation=True):
        return function(data)
