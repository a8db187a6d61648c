"""The built-in make_model plugin, and how third-party make_model plugins take precedence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.default_plugins import sklearn_model
from modelkit.exceptions import UnsupportedModelError
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.signature import Signature

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pluggy


@pytest.fixture(scope="module")
def seed() -> tuple[LogisticRegression, np.ndarray]:
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    return LogisticRegression().fit(X, y), X


def test_objects_without_predict_are_left_to_other_plugins() -> None:
    assert sklearn_model.make_model(obj=object(), signature=None, sample=None) is None
    assert sklearn_model.make_model(obj=len, signature=None, sample=[[1]]) is None

    class NotCallable:
        predict = "yes"

    assert sklearn_model.make_model(obj=NotCallable(), signature=None, sample=None) is None


def test_the_signature_is_inferred_from_the_sample(seed) -> None:
    estimator, X = seed
    model = sklearn_model.make_model(obj=estimator, signature=None, sample=X)
    assert isinstance(model, Model)
    assert model.estimator is estimator
    assert model.signature == Signature.infer(X, estimator=estimator)


def test_without_a_sample_the_fitted_attributes_give_the_signature(seed) -> None:
    estimator, _ = seed
    model = sklearn_model.make_model(obj=estimator, signature=None, sample=None)
    assert model is not None
    assert model.signature == Signature.from_estimator(estimator)
    assert model.signature.names == ("f0", "f1", "f2", "f3", "f4")


def test_a_given_signature_is_used_as_is(seed) -> None:
    estimator, X = seed
    sig = Signature(names=list("abcde"))
    model = sklearn_model.make_model(obj=estimator, signature=sig, sample=X)
    assert model is not None
    assert model.signature is sig


def test_it_is_registered_by_default_and_runs_last(plugin_manager: pluggy.PluginManager) -> None:
    impls = plugin_manager.hook.make_model.get_hookimpls()
    assert sklearn_model in [impl.plugin for impl in impls]
    assert next(impl for impl in impls if impl.plugin is sklearn_model).trylast


def test_without_it_nothing_wraps_an_estimator(
    plugin_manager: pluggy.PluginManager, seed: Any
) -> None:
    plugin_manager.unregister(sklearn_model)
    with pytest.raises(UnsupportedModelError, match="no installed plugin wraps it"):
        Model.wrap(seed[0])


class FunctionModel:
    """Adapts a plain function of a 2-D array into something with predict."""

    def __init__(self, function: Callable[[np.ndarray], np.ndarray]) -> None:
        self.function = function

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.function(X)


class FunctionPlugin:
    """A third-party plugin: wraps plain functions, and claims every LogisticRegression."""

    @hookimpl
    def make_model(self, obj: Any, signature: Signature | None, sample: Any) -> Model | None:
        if isinstance(obj, LogisticRegression):
            return Model(obj, signature or Signature.from_estimator(obj), name="claimed")
        if callable(obj) and not hasattr(obj, "predict"):
            return Model(FunctionModel(obj), signature or Signature.infer(sample))
        return None


def test_a_third_party_plugin_wraps_a_plain_function(plugin_manager: pluggy.PluginManager) -> None:
    plugin_manager.register(FunctionPlugin())

    def total(X: np.ndarray) -> np.ndarray:
        return X.sum(axis=1)

    model = Model.wrap(total, sample=[[1.0, 2.0], [3.0, 4.0]], name="total")
    assert model.name == "total"
    assert model.predict([[1, 2], [3, 4]]).tolist() == [3.0, 7.0]
    assert model.predict([{"f1": 2, "f0": 1}]).tolist() == [3.0]
    with pytest.raises(ValueError, match="expected 2 features, got 3"):
        model.predict([1, 2, 3])


def test_a_third_party_plugin_wins_over_the_default(
    plugin_manager: pluggy.PluginManager, seed: Any
) -> None:
    estimator, X = seed
    assert Model.wrap(estimator, sample=X).name is None
    plugin_manager.register(FunctionPlugin())
    assert Model.wrap(estimator, sample=X).name == "claimed"
