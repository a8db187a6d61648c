"""train and tune: evaluation, search, progress, and what lands in the registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from modelkit import _search, training
from modelkit.data import Dataset
from modelkit.exceptions import DataError, ModelkitWarning, NotFoundError
from modelkit.registry import Registry
from modelkit.training import TrainResult, TuneResult, train, tune

# -- data and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=120, n_features=4, n_informative=3, n_redundant=1, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=150, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=1
    )
    return X, np.array(["ant", "bee", "cat"])[y]


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=80, n_features=3, noise=5.0, random_state=2)
    return X, y


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(str(tmp_path / "reg")) as reg:
        yield reg


class Untouchable:
    """A registry stand-in that fails the test if anything is asked of it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the registry was used ({name}) although the arguments were bad")


class NoScores(ClassifierMixin, BaseEstimator):
    """A classifier with predict only: neither predict_proba nor decision_function."""

    def fit(self, X: Any, y: Any) -> NoScores:
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), self.majority_)


class Broken(ClassifierMixin, BaseEstimator):
    """A classifier whose fit fails as user code does."""

    def fit(self, X: Any, y: Any) -> Broken:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    def predict(self, X: Any) -> np.ndarray:  # pragma: no cover - never fitted
        return np.zeros(len(X))


def metric_names(metrics: Any, estimator: Any, y: Any) -> list[str]:
    return [m.name for m in training._resolve_metrics(metrics, estimator, y)]


def score(metrics: Any, name: str, estimator: Any, X: Any, y: Any) -> float:
    """One resolved metric, computed on (X, y) with the fitted estimator, sign applied."""
    (metric,) = [m for m in training._resolve_metrics(metrics, estimator, y) if m.name == name]
    return metric.sign * metric.scorer(estimator, X, y)


# -- metrics ------------------------------------------------------------------------------


def test_default_metrics_by_task(binary: Any, multiclass: Any, regression: Any) -> None:
    assert metric_names(None, LogisticRegression(), binary[1]) == ["accuracy", "f1", "roc_auc"]
    assert metric_names(None, LogisticRegression(), multiclass[1]) == [
        "accuracy",
        "f1",
        "roc_auc",
    ]
    assert metric_names(None, Ridge(), regression[1]) == ["rmse", "mae", "r2"]


def test_auc_is_left_out_when_the_estimator_cannot_score(binary: Any, multiclass: Any) -> None:
    assert metric_names(None, NoScores(), binary[1]) == ["accuracy", "f1"]
    assert metric_names(None, SVC(), binary[1]) == ["accuracy", "f1", "roc_auc"]  # decision_fn
    # one-vs-rest AUC over several classes needs probabilities
    assert metric_names(None, RidgeClassifier(), multiclass[1]) == ["accuracy", "f1"]
    with pytest.raises(ValueError, match=r"'roc_auc' cannot be computed: NoScores has neither"):
        training._resolve_metrics(["accuracy", "roc_auc"], NoScores(), binary[1])


def test_multiclass_metrics_are_macro_f1_and_ovr_auc(multiclass: Any) -> None:
    X, y = multiclass
    fitted = LogisticRegression().fit(X, y)
    predicted = fitted.predict(X)
    assert score(None, "f1", fitted, X, y) == pytest.approx(f1_score(y, predicted, average="macro"))
    assert score(None, "roc_auc", fitted, X, y) == pytest.approx(
        roc_auc_score(y, fitted.predict_proba(X), multi_class="ovr")
    )


def test_binary_f1_takes_the_greater_label_as_positive(binary: Any) -> None:
    X, y = binary
    labels = np.array(["no", "yes"])[y]
    fitted = LogisticRegression().fit(X, labels)
    assert score(None, "f1", fitted, X, labels) == pytest.approx(
        f1_score(labels, fitted.predict(X), pos_label="yes")
    )


def test_error_metrics_are_positive_under_short_names(regression: Any) -> None:
    X, y = regression
    fitted = Ridge().fit(X, y)
    predicted = fitted.predict(X)
    names = ["neg_root_mean_squared_error", "mae", "neg_median_absolute_error", "r2"]
    assert metric_names(names, fitted, y) == ["rmse", "mae", "median_absolute_error", "r2"]
    assert score(names, "rmse", fitted, X, y) == pytest.approx(
        root_mean_squared_error(y, predicted)
    )
    assert score(names, "mae", fitted, X, y) == pytest.approx(mean_absolute_error(y, predicted))
    assert score(names, "r2", fitted, X, y) == pytest.approx(r2_score(y, predicted))


def test_a_mapping_names_metrics_and_takes_callables(regression: Any) -> None:
    X, y = regression
    fitted = Ridge().fit(X, y)

    def max_error(estimator: Any, X: Any, y: Any) -> float:
        return float(np.max(np.abs(estimator.predict(X) - y)))

    metrics = {"error": "neg_mean_absolute_error", "worst": max_error}
    assert metric_names(metrics, fitted, y) == ["error", "worst"]
    assert score(metrics, "error", fitted, X, y) == pytest.approx(
        mean_absolute_error(y, fitted.predict(X))
    )
    assert score(metrics, "worst", fitted, X, y) == pytest.approx(max_error(fitted, X, y))


@pytest.mark.parametrize(
    ("metrics", "error", "message"),
    [
        (["acuracy"], ValueError, r"unknown metric 'acuracy' \(did you mean 'accuracy'"),
        ([], ValueError, "metrics is empty"),
        ({}, ValueError, "metrics is empty"),
        (["accuracy", "accuracy"], ValueError, r"the same metric twice: \['accuracy'\]"),
        ([len], TypeError, "give callables in a mapping"),
        ({"x": 3}, TypeError, r"metrics\['x'\] must be a scorer name or a callable"),
        (3, TypeError, "metrics must be names or a mapping"),
    ],
)
def test_bad_metrics_say_what_to_give(metrics: Any, error: type, message: str, binary: Any) -> None:
    with pytest.raises(error, match=message):
        training._resolve_metrics(metrics, LogisticRegression(), binary[1])


def test_one_name_and_other_classification_targets(binary: Any) -> None:
    X, y = binary
    assert metric_names("balanced_accuracy", LogisticRegression(), y) == ["balanced_accuracy"]
    labels = np.column_stack([y, 1 - y, X[:, 0] > 0]).astype(int)  # multilabel
    assert metric_names(None, KNeighborsClassifier(), labels) == ["accuracy", "f1"]
    with pytest.raises(ValueError, match="needs a binary or multiclass target"):
        training._resolve_metrics(["roc_auc"], KNeighborsClassifier(), labels)
    with pytest.raises(TypeError, match="metric names must be non-empty strings"):
        training._resolve_metrics({"": "accuracy"}, LogisticRegression(), y)


def test_no_default_metrics_for_an_estimator_of_unknown_task(binary: Any) -> None:
    with pytest.raises(ValueError, match="neither a classifier nor a regressor; pass metrics="):
        training._resolve_metrics(None, KMeans(n_init=1), binary[1])
    assert metric_names(["accuracy"], KMeans(n_init=1), binary[1]) == ["accuracy"]


# -- cross-validation ---------------------------------------------------------------------


def cv_for(cv: Any, y: Any, *, random_state: Any = None, test_size: Any = 0.2) -> Any:
    task = training._task_of(LogisticRegression(), y)
    return training._resolve_cv(cv, y, task=task, test_size=test_size, random_state=random_state)


def test_folds_are_stratified_and_shuffled_only_with_a_seed(binary: Any) -> None:
    X, y = binary
    plain = cv_for(3, y)
    assert isinstance(plain, StratifiedKFold)
    assert not plain.shuffle
    seeded = [test.tolist() for _, test in cv_for(3, y, random_state=7).split(X, y)]
    again = [test.tolist() for _, test in cv_for(3, y, random_state=7).split(X, y)]
    assert seeded == again
    assert seeded != [test.tolist() for _, test in plain.split(X, y)]


def test_holdout_is_one_stratified_split_of_test_size(binary: Any) -> None:
    X, y = binary
    ((train_rows, test_rows),) = list(
        cv_for("holdout", y, random_state=0, test_size=0.25).split(X, y)
    )
    assert len(test_rows) == 30
    assert len(train_rows) == 90
    assert y[test_rows].mean() == pytest.approx(y.mean(), abs=0.05)


def test_splitters_and_split_lists_pass_through(binary: Any) -> None:
    X, y = binary
    splitter = KFold(4)
    assert cv_for(splitter, y) is splitter
    splits = list(KFold(3).split(X))
    assert cv_for(iter(splits), y) == splits


@pytest.mark.parametrize(
    ("cv", "test_size", "error", "message"),
    [
        (1, 0.2, ValueError, "too few folds: give at least 2, or cv='holdout'"),
        (True, 0.2, TypeError, "cv must be a number of folds"),
        ("loo", 0.2, ValueError, "unknown cv 'loo'; use a number of folds"),
        ([], 0.2, ValueError, "empty list of splits"),
        (2.5, 0.2, TypeError, "cv must be a number of folds, 'holdout', a scikit-learn splitter"),
        ("holdout", 1.5, ValueError, "test_size must be a fraction between 0 and 1"),
        ("holdout", 0, ValueError, "test_size must be at least 1 row"),
        ("holdout", "a", TypeError, "test_size must be a fraction or a number of rows"),
    ],
)
def test_bad_cv_says_what_to_give(
    cv: Any, test_size: Any, error: type, message: str, binary: Any
) -> None:
    with pytest.raises(error, match=message):
        cv_for(cv, binary[1], test_size=test_size)


# -- search spaces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "search", "error", "message"),
    [
        ({}, "grid", ValueError, "params is empty: there is nothing to search"),
        ([], "grid", ValueError, "params is an empty list"),
        ([{"C": [1]}, {}], "grid", ValueError, r"params\[1\] is empty"),
        ({"C": []}, "grid", ValueError, r"params\['C'\] has no values to try"),
        ({"C": 1.0}, "grid", TypeError, r"must be a list of values.*write \{'C': \[1.0\]\}"),
        ({"C": "ab"}, "random", TypeError, "must be a list of values"),
        ({"c": [1.0]}, "grid", ValueError, r"not a parameter of .*did you mean 'C'"),
        ({"C": loguniform(0.1, 1)}, "grid", ValueError, "a grid search cannot enumerate"),
        ("C", "grid", TypeError, "params must map parameter names to the values to try"),
        ([3], "grid", TypeError, "params must be a mapping"),
        ({1: [1]}, "grid", TypeError, "parameter names must be strings"),
    ],
)
def test_bad_search_spaces_say_what_to_give(
    params: Any, search: str, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _search.check_space(params, search, LogisticRegression())


def test_search_kinds_and_nested_parameter_names() -> None:
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    space = {"clf__C": [0.1, 1.0], "scale__with_mean": (True, False)}
    assert _search.check_space(space, "grid", pipeline) == ([space], "grid")
    assert _search.check_space([space], "random", pipeline)[1] == "random"
    assert _search.check_space(space, "halving", pipeline)[1] == "halving_grid"
    as_array = {"clf__C": np.array([0.1, 1.0])}
    assert _search.check_space(as_array, "grid", pipeline)[1] == "grid"
    with pytest.raises(TypeError, match="must be a list of values"):
        _search.check_space({"clf__C": np.ones((2, 2))}, "grid", pipeline)
    sampled = {"clf__C": loguniform(0.01, 10)}
    assert _search.check_space(sampled, "halving", pipeline)[1] == "halving_random"
    assert _search.describe_space([sampled]) == {"clf__C": "loguniform(0.01, 10)"}


# -- progress -----------------------------------------------------------------------------


def test_progress_is_off_when_stderr_is_not_a_terminal() -> None:
    assert _search.check_progress(None) is False
    assert _search.check_progress(False) is False
    assert _search.check_progress(True) is True
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        _search.check_progress("yes")  # type: ignore[arg-type]


def test_forced_progress_without_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'modelkit\[progress\]'"):
        _search.check_progress(True)


def test_auto_progress_on_a_terminal_without_tqdm_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _search.check_progress(None) is True
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert _search.check_progress(None) is False


# -- argument errors come before any run --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"search": "bayes"},
            ValueError,
            "unknown search 'bayes'; use one of 'grid', 'random', 'halving'",
        ),
        ({"engine": "ray"}, ValueError, "unknown engine 'ray'; use one of 'local', 'dask'"),
        ({"client": object()}, ValueError, "apply to engine='dask' only"),
        ({"engine": "dask", "client": object(), "scheduler": "tcp://x:1"}, ValueError, "not both"),
        ({"n_iter": 0}, ValueError, "n_iter must be a positive number"),
        ({"name": " churn"}, ValueError, "invalid model name ' churn'"),
        ({"alias": "3"}, ValueError, "invalid alias '3'"),
        ({"progress": 1}, TypeError, "progress must be True, False or None"),
    ],
)
def test_bad_tune_arguments_fail_before_the_registry_is_used(
    kwargs: dict[str, Any], error: type, message: str, binary: Any
) -> None:
    X, y = binary
    options: dict[str, Any] = {"name": "m", "registry": Untouchable(), **kwargs}
    with pytest.raises(error, match=message):
        tune(LogisticRegression(), {"C": [1.0]}, X, y, **options)


def test_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch, binary: Any) -> None:
    X, y = binary
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'modelkit\[dask\]'"):
        tune(
            LogisticRegression(),
            {"C": [1.0]},
            X,
            y,
            name="m",
            engine="dask",
            registry=Untouchable(),
        )


def test_dask_without_a_cluster_says_how_to_give_one(binary: Any) -> None:
    X, y = binary
    with pytest.raises(ValueError, match=r"pass client=distributed.Client\(...\) or scheduler="):
        tune(
            LogisticRegression(),
            {"C": [1.0]},
            X,
            y,
            name="m",
            engine="dask",
            registry=Untouchable(),
        )


def test_bad_train_arguments_fail_before_the_registry_is_used(binary: Any) -> None:
    X, y = binary
    with pytest.raises(TypeError, match="expected an unfitted scikit-learn estimator"):
        train(object(), X, y, name="m", registry=Untouchable())
    for kwargs in ({"cv": 1}, {"metrics": ["nope"]}, {"tags": {"a": 1}}, {"name": ""}):
        options: dict[str, Any] = {"name": "m", "registry": Untouchable(), **kwargs}
        with pytest.raises((ValueError, TypeError)):
            train(LogisticRegression(), X, y, **options)
    with pytest.raises(ValueError, match="X has no rows"):
        train(LogisticRegression(), X[:0], y[:0], name="m", registry=Untouchable())


def test_length_mismatch_fails_before_any_run(registry: Registry, binary: Any) -> None:
    X, y = binary
    with pytest.raises(DataError, match="y has 119 rows but X has 120"):
        train(LogisticRegression(), X, y[:-1], name="m", registry=registry)
    with pytest.raises(DataError, match="y has 119 rows but X has 120"):
        tune(LogisticRegression(), {"C": [1.0]}, X, y[:-1], name="m", registry=registry)
    assert registry.runs() == []


# -- train, through a real registry -------------------------------------------------------


def test_train_records_the_run_and_registers_a_loadable_version(
    registry: Registry, binary: Any
) -> None:
    X, y = binary
    estimator = LogisticRegression(C=0.5)
    result = train(estimator, X, y, name="churn", registry=registry, cv=4, alias="production")

    assert isinstance(result, TrainResult)
    run = registry.get_run(result.run.id)
    assert run.status == "finished"
    assert run.name == "churn"
    assert run.params["C"] == 0.5
    assert run.dataset_fingerprint == Dataset(X, y).fingerprint
    assert sorted(run.cv_scores) == ["accuracy", "f1", "roc_auc"]
    assert all(len(scores) == 4 for scores in run.cv_scores.values())
    expected = [
        accuracy_score(y[test], clone(estimator).fit(X[train], y[train]).predict(X[test]))
        for train, test in StratifiedKFold(4).split(X, y)
    ]
    assert run.cv_scores["accuracy"] == pytest.approx(expected)
    assert run.metrics == pytest.approx({k: np.mean(v) for k, v in run.cv_scores.items()})
    assert result.metrics == pytest.approx(run.metrics)
    assert run.fit_time is not None
    assert run.fit_time >= 0
    assert run.version == result.version.version
    assert run.error is None

    version = registry.resolve("churn@production")
    assert version.version == result.version.version
    assert version.run_id == run.id
    assert version.metrics == pytest.approx(run.metrics)
    loaded = registry.load("churn@production")
    np.testing.assert_array_equal(loaded.predict(X), result.model.estimator.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), result.model.estimator.predict_proba(X))
    assert not hasattr(estimator, "coef_"), "the caller's estimator stays unfitted"
    artifact = registry.load_artifact("churn@production")
    assert artifact.fingerprint == run.dataset_fingerprint
    assert artifact.profile is not None
    expected = Dataset(X, y).profile(outputs=result.model.predict(X))
    assert artifact.profile.to_dict() == expected.to_dict()


def test_train_holdout_regression_reports_positive_errors(
    registry: Registry, regression: Any
) -> None:
    X, y = regression
    result = train(
        Ridge(), X, y, name="price", registry=registry, cv="holdout", test_size=0.25, random_state=3
    )
    ((train_rows, test_rows),) = list(ShuffleSplit(1, test_size=0.25, random_state=3).split(X))
    predicted = Ridge().fit(X[train_rows], y[train_rows]).predict(X[test_rows])
    assert result.run.cv_scores == {
        "rmse": [pytest.approx(root_mean_squared_error(y[test_rows], predicted))],
        "mae": [pytest.approx(mean_absolute_error(y[test_rows], predicted))],
        "r2": [pytest.approx(r2_score(y[test_rows], predicted))],
    }
    assert result.metrics["rmse"] > 0
    assert registry.get_run(result.run.id).metrics == pytest.approx(result.metrics)


def test_train_on_a_dataframe_with_string_labels(registry: Registry, multiclass: Any) -> None:
    pd = pytest.importorskip("pandas")
    X, y = multiclass
    frame = pd.DataFrame(X, columns=[f"col{i}" for i in range(X.shape[1])])
    result = train(LogisticRegression(), frame, y, name="zoo", registry=registry, cv=3)
    assert sorted(result.metrics) == ["accuracy", "f1", "roc_auc"]
    loaded = registry.load(f"zoo/{result.version.version}")
    np.testing.assert_array_equal(loaded.predict(frame), result.model.estimator.predict(frame))
    assert loaded.signature.names == tuple(frame.columns)


def test_a_failed_fit_is_a_failed_run_and_the_error_propagates(
    registry: Registry, binary: Any
) -> None:
    X, y = binary
    with pytest.raises(TypeError, match="unsupported operand"):
        train(Broken(), X, y, name="broken", registry=registry, metrics=["accuracy"])
    (run,) = registry.runs("broken")
    assert run.status == "failed"
    assert run.error == "TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    assert run.version is None
    assert run.ended_at is not None
    with pytest.raises(NotFoundError):
        registry.resolve("broken")


def test_train_opens_a_registry_from_a_url_or_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Any
) -> None:
    X, y = binary
    result = train(LogisticRegression(), X, y, name="a", registry=str(tmp_path / "by-url"), cv=2)
    with Registry(str(tmp_path / "by-url")) as reopened:
        assert reopened.get_run(result.run.id).version == result.version.version
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / "home"))
    result = train(LogisticRegression(), X, y, name="b", cv=2, tags={"team": "risk"})
    with Registry(str(tmp_path / "home")) as default:
        assert default.resolve("b").version == result.version.version
        assert default.resolve("b").tags == {"team": "risk"}
        assert default.get_run(result.run.id).tags == {"team": "risk"}


# -- tune, through a real registry --------------------------------------------------------


def test_grid_tuning_records_every_candidate_and_registers_the_best(
    registry: Registry, binary: Any
) -> None:
    X, y = binary
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    grid = {"clf__C": [0.01, 0.1, 1.0], "clf__fit_intercept": [True, False]}
    result = tune(pipeline, grid, X, y, name="churn", registry=registry, cv=3, alias="staging")

    assert isinstance(result, TuneResult)
    reference = GridSearchCV(pipeline, grid, cv=StratifiedKFold(3), scoring="accuracy").fit(X, y)
    assert result.best_params == reference.best_params_
    assert result.best_score == pytest.approx(reference.best_score_)

    parent = registry.get_run(result.run.id)
    assert parent.status == "finished"
    assert parent.params["tune.search"] == "grid"
    assert parent.params["tune.space"] == {
        "clf__C": [0.01, 0.1, 1.0],
        "clf__fit_intercept": [True, False],
    }
    children = registry.runs("churn", parent_id=parent.id)
    assert len(children) == len(result.children) == 6
    by_params = {tuple(sorted(c.params.items())): c for c in children}
    for i, params in enumerate(reference.cv_results_["params"]):
        child = by_params[tuple(sorted(params.items()))]
        assert child.status == "finished"
        assert child.parent_id == parent.id
        assert child.metrics["accuracy"] == pytest.approx(
            reference.cv_results_["mean_test_score"][i]
        )
        assert child.metrics["accuracy_std"] == pytest.approx(
            reference.cv_results_["std_test_score"][i]
        )
        assert set(child.metrics) == {
            "accuracy",
            "accuracy_std",
            "f1",
            "f1_std",
            "roc_auc",
            "roc_auc_std",
        }
        assert len(child.cv_scores["roc_auc"]) == 3
        assert child.fit_time == pytest.approx(reference.cv_results_["mean_fit_time"][i], abs=1.0)
    best_child = by_params[tuple(sorted(result.best_params.items()))]
    assert parent.metrics == pytest.approx(
        {k: v for k, v in best_child.metrics.items() if not k.endswith("_std")}
    )
    assert sorted(parent.cv_scores) == sorted(best_child.cv_scores)
    for metric, fold_scores in parent.cv_scores.items():
        assert fold_scores == pytest.approx(best_child.cv_scores[metric])

    version = registry.resolve("churn@staging")
    assert version.run_id == parent.id
    assert parent.version == version.version
    loaded = registry.load("churn@staging")
    np.testing.assert_array_equal(loaded.predict(X), reference.best_estimator_.predict(X))
    assert loaded.estimator.get_params()["clf__C"] == result.best_params["clf__C"]


def test_random_and_halving_searches(registry: Registry, regression: Any) -> None:
    X, y = regression
    space = {"alpha": loguniform(1e-3, 1e2)}
    result = tune(
        Ridge(),
        space,
        X,
        y,
        name="price",
        registry=registry,
        search="random",
        n_iter=4,
        random_state=0,
        cv=3,
    )
    assert len(result.children) == 4
    assert len({c.params["alpha"] for c in result.children}) == 4
    assert result.run.params["tune.space"] == {"alpha": "loguniform(0.001, 100.0)"}
    assert result.run.params["tune.n_iter"] == 4
    best = min(result.children, key=lambda run: run.metrics["rmse"])
    assert result.best_params == {"alpha": best.params["alpha"]}
    assert result.best_score == pytest.approx(best.metrics["rmse"])

    halving = tune(
        Ridge(),
        {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]},
        X,
        y,
        name="price",
        registry=registry,
        search="halving",
        random_state=0,
        cv=3,
        scoring=["r2"],
    )
    iterations = [c.tags["iteration"] for c in halving.children]
    assert iterations[0] == "0"
    assert iterations[-1] != "0", "later iterations evaluate the survivors again"
    assert all("n_resources" in c.tags for c in halving.children)
    assert halving.run.params["tune.search"] == "halving_grid"
    assert set(halving.run.metrics) == {"r2"}
    assert halving.version.run_id == halving.run.id
    np.testing.assert_allclose(
        registry.load(halving.version.uri).predict(X), halving.model.estimator.predict(X)
    )

    drawn = tune(
        Ridge(),
        space,
        X,
        y,
        name="price",
        registry=registry,
        search="halving",
        n_iter=6,
        random_state=0,
        cv=3,
    )
    assert drawn.run.params["tune.search"] == "halving_random"
    assert [c.tags["iteration"] for c in drawn.children].count("0") == 6


def test_a_failing_candidate_is_a_failed_child_run(registry: Registry, binary: Any) -> None:
    X, y = binary
    space = {"solver": ["lbfgs", "no-such-solver"]}
    with (
        pytest.warns(UserWarning, match="non-finite"),
        pytest.warns(FitFailedWarning, match="2 fits failed"),
    ):
        result = tune(LogisticRegression(), space, X, y, name="m", registry=registry, cv=2)
    status = {c.params["solver"]: c for c in result.children}
    assert status["lbfgs"].status == "finished"
    assert status["no-such-solver"].status == "failed"
    assert "2 of 2 folds" in (status["no-such-solver"].error or "")
    assert result.best_params == {"solver": "lbfgs"}


def test_a_search_where_everything_fails_is_a_failed_run(registry: Registry, binary: Any) -> None:
    X, y = binary
    with pytest.raises(ValueError, match="All the 2 fits failed"):
        tune(LogisticRegression(), {"solver": ["nope"]}, X, y, name="m", registry=registry, cv=2)
    (run,) = registry.runs("m")
    assert run.status == "failed"
    assert run.error.startswith("ValueError: ")


def test_progress_bar_when_forced_and_silence_otherwise(
    registry: Registry, binary: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = binary
    grid = {"C": [0.1, 1.0, 10.0]}
    quiet = tune(LogisticRegression(), grid, X, y, name="m", registry=registry, cv=2)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""

    loud = tune(LogisticRegression(), grid, X, y, name="m", registry=registry, cv=2, progress=True)
    err = capsys.readouterr().err
    assert "tuning m" in err
    assert "3/3" in err
    assert "1/3" in err, "the bar moves candidate by candidate"
    assert [c.metrics for c in loud.children] == [c.metrics for c in quiet.children]

    tune(
        LogisticRegression(),
        {"C": [0.01, 0.1, 1.0, 10.0]},
        X,
        y,
        name="m",
        registry=registry,
        cv=2,
        search="halving",
        progress=True,
    )
    assert "iterations" in capsys.readouterr().err


def test_a_failure_that_cannot_be_recorded_warns_and_the_error_still_propagates(
    registry: Registry, binary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = binary

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("database is gone")

    monkeypatch.setattr(Registry, "finish_run", unavailable)
    with (
        pytest.warns(ModelkitWarning, match=r"could not be recorded as failed: OSError: database"),
        pytest.raises(TypeError, match="unsupported operand"),
    ):
        train(Broken(), X, y, name="broken", registry=registry, metrics=["accuracy"])


def test_random_search_gives_the_same_candidates_with_and_without_a_bar(
    registry: Registry, binary: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = binary
    space = {"C": loguniform(0.01, 10)}
    options: dict[str, Any] = {"search": "random", "n_iter": 3, "random_state": 4, "cv": 2}
    quiet = tune(LogisticRegression(), space, X, y, name="m", registry=registry, **options)
    loud = tune(
        LogisticRegression(), space, X, y, name="m", registry=registry, progress=True, **options
    )
    assert "3/3" in capsys.readouterr().err
    assert [c.params for c in loud.children] == [c.params for c in quiet.children]
    assert [c.metrics for c in loud.children] == [c.metrics for c in quiet.children]
