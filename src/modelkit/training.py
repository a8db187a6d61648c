"""Training and tuning: evaluate, fit, profile, save, register, and record the run.

:func:`train` takes an estimator from a notebook to a registered version in one call::

    result = modelkit.train(LogisticRegression(), X, y, name="churn", alias="staging")
    result.metrics          # {'accuracy': 0.93, 'f1': 0.91, 'roc_auc': 0.97}: 5-fold means
    result.run.cv_scores    # {'accuracy': [0.92, 0.95, ...], ...}: one score per fold
    result.version.uri      # 'models:/churn/4'

:func:`tune` searches hyper-parameters with scikit-learn's search classes, locally or on a
dask.distributed cluster, records every candidate as a child run, and registers the best::

    result = modelkit.tune(pipeline, {"clf__C": [0.1, 1, 10]}, X, y, name="churn",
                           search="halving", engine="dask", scheduler="tcp://10.0.0.5:8786")
    result.best_params      # {'clf__C': 1}
    len(result.children)    # one run per evaluated candidate

Metrics read naturally: errors are positive (``rmse``, not ``neg_root_mean_squared_error``)
and higher is better for everything else.
"""

from __future__ import annotations

import numbers
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from modelkit._manifest import json_safe, to_tags
from modelkit.data import Dataset
from modelkit.exceptions import ModelkitWarning, UsageError

if TYPE_CHECKING:
    from modelkit._profile import Profile
    from modelkit.model import Model
    from modelkit.registry import ModelVersion, Registry, Run

__all__ = [
    "CV_HOLDOUT",
    "DEFAULT_METRICS",
    "ENGINES",
    "METRIC_ALIASES",
    "SEARCHES",
    "TrainResult",
    "TuneResult",
    "train",
    "tune",
]

SEARCHES = ("grid", "random", "halving")
"""Search strategies of :func:`tune` (scikit-learn's Grid, Randomized and Halving searches)."""

ENGINES = ("local", "dask")
"""Where :func:`tune` runs: joblib on this machine, or joblib's dask backend on a cluster."""

CV_HOLDOUT = "holdout"
"""``cv="holdout"``: one shuffled train/test split of ``test_size`` instead of k folds."""

DEFAULT_METRICS = {
    "binary": ("accuracy", "f1", "roc_auc"),
    "multiclass": ("accuracy", "f1", "roc_auc"),
    "classification": ("accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}
"""Metrics used when none are given, by task (``roc_auc`` only when the estimator scores)."""

METRIC_ALIASES = {
    "rmse": "neg_root_mean_squared_error",
    "mse": "neg_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "log_loss": "neg_log_loss",
}
"""Short names for scikit-learn's negated error scorers; they are reported as positive errors."""

_NEGATED_NAMES = {scorer.removeprefix("neg_"): short for short, scorer in METRIC_ALIASES.items()}


# -- results ------------------------------------------------------------------------------


@attrs.frozen
class TrainResult:
    """What :func:`train` produced.

    ``run`` is the finished run record, ``version`` the registered version (linked to the
    run), ``model`` the fitted estimator as a :class:`~modelkit.Model` (fitted on all the
    data), and ``metrics`` the evaluation means (also in ``run.metrics``; the per-fold scores
    are in ``run.cv_scores``).
    """

    run: Run
    version: ModelVersion
    model: Model
    metrics: Mapping[str, float]


@attrs.frozen
class TuneResult:
    """What :func:`tune` produced.

    ``run`` is the tuning run (its metrics are the best candidate's), ``children`` one run per
    evaluated candidate (``parent_id == run.id``, in evaluation order), ``version`` the
    registered best model, ``model`` that model refitted on all the data, ``best_params`` the
    winning parameters and ``best_score`` its mean score on the first metric (errors positive).
    """

    run: Run
    children: list[Run]
    version: ModelVersion
    model: Model
    best_params: Mapping[str, Any]
    best_score: float


# -- metrics ------------------------------------------------------------------------------


@attrs.frozen
class _Metric:
    """A scikit-learn scorer (higher is better) and the sign that makes it read naturally."""

    name: str
    scorer: Any
    sign: float = 1.0


@attrs.frozen
class _Task:
    kind: str | None  # "binary", "multiclass", "classification", "regression" or None
    classes: Any = None  # sorted class labels of a binary or multiclass target

    @property
    def is_classification(self) -> bool:
        return self.kind in ("binary", "multiclass", "classification")


def _task_of(estimator: Any, y: Any) -> _Task:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        import numpy as np
        from sklearn.utils.multiclass import type_of_target

        kind = None if y is None else type_of_target(y)
        if kind in ("binary", "multiclass"):
            return _Task(kind, np.unique(np.asarray(y)))
        return _Task("classification")
    if is_regressor(estimator):
        return _Task("regression")
    return _Task(None)


def _has(estimator: Any, method: str) -> bool:
    return callable(getattr(estimator, method, None))


def _auc_problem(task: _Task, estimator: Any) -> str | None:
    """Why ROC AUC cannot be computed for this estimator and target, or None if it can."""
    who = type(estimator).__name__
    if task.kind == "binary":
        if _has(estimator, "predict_proba") or _has(estimator, "decision_function"):
            return None
        return f"{who} has neither predict_proba nor decision_function"
    if task.kind == "multiclass":
        if _has(estimator, "predict_proba"):
            return None
        return f"{who} has no predict_proba, which one-vs-rest AUC over several classes needs"
    return "ROC AUC needs a binary or multiclass target"


def _named_metric(spec: str, task: _Task, estimator: Any) -> tuple[str, Any, float]:
    """``(reported name, scorer, sign)`` for a metric name."""
    from sklearn.metrics import f1_score, get_scorer, get_scorer_names, make_scorer

    if spec == "f1" and task.kind == "binary":
        return "f1", make_scorer(f1_score, pos_label=task.classes[-1]), 1.0
    if spec == "f1" and task.is_classification:
        return "f1", get_scorer("f1_macro"), 1.0
    if spec == "roc_auc" and task.is_classification:
        problem = _auc_problem(task, estimator)
        if problem is not None:
            raise UsageError(
                f"metric 'roc_auc' cannot be computed: {problem}; drop it from the metrics or "
                "use an estimator that gives scores (e.g. SVC(probability=True))"
            )
        return "roc_auc", get_scorer("roc_auc" if task.kind == "binary" else "roc_auc_ovr"), 1.0
    scorer_name = METRIC_ALIASES.get(spec, spec)
    if scorer_name not in get_scorer_names():
        known = sorted(set(get_scorer_names()) | set(METRIC_ALIASES) | {"f1", "roc_auc"})
        import difflib

        hint = difflib.get_close_matches(spec, known, n=3)
        suggestion = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
        raise UsageError(
            f"unknown metric {spec!r}{suggestion}; use {', '.join(map(repr, METRIC_ALIASES))}, "
            "'f1', 'roc_auc', any name in sklearn.metrics.get_scorer_names(), or a mapping of "
            "name to scorer callable"
        )
    if scorer_name.startswith("neg_"):
        bare = scorer_name.removeprefix("neg_")
        return _NEGATED_NAMES.get(bare, bare), get_scorer(scorer_name), -1.0
    return scorer_name, get_scorer(scorer_name), 1.0


def _from_mapping(metrics: Mapping[Any, Any], task: _Task, estimator: Any) -> list[_Metric]:
    chosen = []
    for key, spec in metrics.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"metric names must be non-empty strings, got {key!r}")
        if isinstance(spec, str):
            _, scorer, sign = _named_metric(spec, task, estimator)
            chosen.append(_Metric(key, scorer, sign))
        elif callable(spec):
            chosen.append(_Metric(key, spec))
        else:
            raise TypeError(
                f"metrics[{key!r}] must be a scorer name or a callable "
                f"scorer(estimator, X, y) -> float, got {spec!r}"
            )
    return chosen


def _from_names(metrics: Iterable[Any], task: _Task, estimator: Any) -> list[_Metric]:
    chosen = []
    for spec in metrics:
        if not isinstance(spec, str):
            raise TypeError(
                f"metrics must be names of scorers, got {spec!r}; give callables in a "
                "mapping of name to scorer instead"
            )
        chosen.append(_Metric(*_named_metric(spec, task, estimator)))
    return chosen


def _resolve_metrics(metrics: Any, estimator: Any, y: Any) -> tuple[_Metric, ...]:
    """Turn ``metrics`` (None, names, or a mapping of name to scorer) into scorers."""
    task = _task_of(estimator, y)
    if metrics is None:
        if task.kind is None:
            raise UsageError(
                f"cannot choose default metrics for a {type(estimator).__name__}: it is neither "
                "a classifier nor a regressor; pass metrics=['name', ...] or a mapping of name "
                "to scorer"
            )
        defaults = DEFAULT_METRICS[task.kind]
        if _auc_problem(task, estimator) is not None:
            defaults = tuple(n for n in defaults if n != "roc_auc")
        return tuple(_Metric(*_named_metric(n, task, estimator)) for n in defaults)
    if isinstance(metrics, str):
        chosen = _from_names([metrics], task, estimator)
    elif isinstance(metrics, Mapping):
        chosen = _from_mapping(metrics, task, estimator)
    elif isinstance(metrics, Iterable):
        chosen = _from_names(metrics, task, estimator)
    else:
        raise TypeError(f"metrics must be names or a mapping of name to scorer, got {metrics!r}")
    if not chosen:
        raise UsageError("metrics is empty: give at least one metric, or None for the defaults")
    names = [m.name for m in chosen]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"metrics name the same metric twice: {repeated}")
    return tuple(chosen)


# -- cross-validation ---------------------------------------------------------------------


def _check_test_size(test_size: Any) -> None:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction or a number of rows, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        if test_size < 1:
            raise UsageError(f"test_size must be at least 1 row, got {test_size}")
    elif not 0.0 < float(test_size) < 1.0:
        raise UsageError(f"test_size must be a fraction between 0 and 1, got {test_size}")


def _resolve_cv(cv: Any, y: Any, *, task: _Task, test_size: Any, random_state: Any) -> Any:
    """A scikit-learn splitter (or a list of splits) for ``cv``."""
    from sklearn.model_selection import (
        ShuffleSplit,
        StratifiedShuffleSplit,
        check_cv,
    )

    if isinstance(cv, bool):
        raise TypeError(f"cv must be a number of folds, 'holdout' or a splitter, got {cv!r}")
    if isinstance(cv, numbers.Integral):
        if cv < 2:
            raise UsageError(
                f"cv={cv} is too few folds: give at least 2, or cv='holdout' for one "
                "train/test split"
            )
        splitter = check_cv(int(cv), y, classifier=task.is_classification)
        if random_state is not None:  # seeded: shuffle before splitting into folds
            splitter = type(splitter)(n_splits=int(cv), shuffle=True, random_state=random_state)
        return splitter
    if isinstance(cv, str):
        if cv != CV_HOLDOUT:
            raise UsageError(
                f"unknown cv {cv!r}; use a number of folds (e.g. cv=5), cv='holdout' for one "
                "train/test split, or a scikit-learn splitter such as KFold(...)"
            )
        _check_test_size(test_size)
        stratify = task.kind in ("binary", "multiclass")
        cls = StratifiedShuffleSplit if stratify else ShuffleSplit
        return cls(n_splits=1, test_size=test_size, random_state=random_state)
    if _has(cv, "split") and _has(cv, "get_n_splits"):
        return cv
    if isinstance(cv, Iterable):
        splits = list(cv)
        if not splits:
            raise UsageError("cv is an empty list of splits; give (train, test) index pairs")
        return splits
    raise TypeError(
        f"cv must be a number of folds, 'holdout', a scikit-learn splitter or a list of "
        f"(train, test) index pairs, got {type(cv).__name__}"
    )


def _cross_validate(
    estimator: Any, X: Any, y: Any, *, metrics: Sequence[_Metric], cv: Any, n_jobs: int | None
) -> dict[str, list[float]]:
    """Per-fold scores of each metric (errors positive); any failure raises."""
    import numpy as np
    from sklearn.model_selection import cross_validate

    scores = cross_validate(
        estimator,
        X,
        y,
        cv=cv,
        scoring={m.name: m.scorer for m in metrics},
        n_jobs=n_jobs,
        error_score="raise",
    )
    return {
        m.name: (m.sign * np.asarray(scores[f"test_{m.name}"], dtype=float) + 0.0).tolist()
        for m in metrics
    }


def _means(cv_scores: Mapping[str, Sequence[float]]) -> dict[str, float]:
    import numpy as np

    return {name: float(np.mean(scores)) for name, scores in cv_scores.items()}


# -- registry and run bookkeeping ---------------------------------------------------------


@contextmanager
def _opened(registry: Registry | str | os.PathLike[str] | None) -> Iterator[Registry]:
    """The registry to use; one opened here (from None or a URL) is closed on exit."""
    if registry is not None and not isinstance(registry, (str, os.PathLike)):
        yield registry
        return
    from modelkit.registry import Registry

    opened = Registry(None if registry is None else os.fspath(registry))
    try:
        yield opened
    finally:
        opened.close()


def _describe_error(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@attrs.define
class _RunGuard:
    """Records the run as failed (with the error, and the version if one was registered) when
    the block raises; the exception propagates unchanged."""

    registry: Any
    run_id: str
    version: int | None = None

    def __enter__(self) -> _RunGuard:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        try:
            self.registry.finish_run(
                self.run_id, status="failed", error=_describe_error(exc), version=self.version
            )
        except Exception as record_exc:  # never hide the original error behind this one
            warnings.warn(
                f"run {self.run_id} failed ({_describe_error(exc)}) and could not be recorded "
                f"as failed: {_describe_error(record_exc)}",
                ModelkitWarning,
                stacklevel=3,
            )


def _json_params(estimator: Any) -> dict[str, Any]:
    """``get_params(deep=False)`` as JSON data; anything JSON cannot hold becomes its repr."""
    params = estimator.get_params(deep=False)
    return {str(k): json_safe(v, other=repr, nonfinite=repr) for k, v in params.items()}


def _check_estimator(estimator: Any) -> None:
    missing = [m for m in ("fit", "get_params", "set_params") if not _has(estimator, m)]
    if missing:
        raise TypeError(
            f"expected an unfitted scikit-learn estimator, got a {type(estimator).__name__} "
            f"without {', '.join(missing)}; wrap it in a class deriving from "
            "sklearn.base.BaseEstimator"
        )


def _check_names(name: Any, alias: Any) -> str:
    """The registry's rules for model and alias names, checked before any work is done."""
    from modelkit.registry import check_alias, check_model_name

    if alias is not None:
        check_alias(alias)
    return check_model_name(name)


def _check_choice(what: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(
            f"unknown {what} {value!r}; use one of {', '.join(repr(c) for c in choices)}"
        )
    return str(value)


def _check_rows(dataset: Dataset) -> None:
    if dataset.n_rows == 0:
        raise UsageError("X has no rows: there is nothing to train on")


def _register(
    registry: Registry,
    guard: _RunGuard,
    *,
    name: str,
    fitted: Any,
    dataset: Dataset,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    alias: str | None,
    run_id: str,
) -> tuple[ModelVersion, Model]:
    """Profile the data, write the artifact, register it for the run, move the alias."""
    from modelkit.artifact import Artifact
    from modelkit.model import Model

    model = Model.wrap(fitted, sample=dataset.X, name=name)
    artifact = Artifact.from_model(
        model,
        name=name,
        sample=dataset.X,
        metrics=metrics,
        profile=_reference_profile(dataset, model),
        fingerprint=dataset.fingerprint,
        tags=tags,
    )
    version = registry.register(name, artifact, tags=tags, run=run_id)
    guard.version = version.version
    if alias is not None:
        registry.set_alias(name, alias, version.version, reason=f"registered by run {run_id}")
    return version, artifact.model


def _reference_profile(dataset: Dataset, model: Model) -> Profile:
    """The training data's profile with the model's outputs on it: the reference of output
    drift. A model that cannot predict its own training data gets a profile without outputs
    (and a warning) rather than a failed run."""
    try:
        outputs = model.predict(dataset.X)
    except Exception as exc:
        warnings.warn(
            f"{model.name or 'the model'} could not predict its training data "
            f"({type(exc).__name__}: {exc}); the artifact gets no reference of its outputs, "
            "so monitors built from it will not check output drift",
            ModelkitWarning,
            stacklevel=3,
        )
        return dataset.profile()
    return dataset.profile(outputs=outputs)


# -- train --------------------------------------------------------------------------------


def train(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    name: str,
    registry: Registry | str | os.PathLike[str] | None = None,
    cv: int | str | Any = 5,
    metrics: Sequence[str] | Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    alias: str | None = None,
    test_size: float = 0.2,
    random_state: Any = None,
    n_jobs: int | None = None,
) -> TrainResult:
    """Evaluate, fit and register ``estimator``, recording everything as a run.

    Steps, all recorded in one run of the registry (``registry.runs(name)``):

    1. start the run with the estimator's ``get_params(deep=False)`` (JSON-safe: values JSON
       cannot hold are kept as their ``repr``) and the fingerprint of ``(X, y)``;
    2. evaluate a clone of ``estimator`` with ``cv``: ``cv=5`` folds (stratified for
       classifiers, scikit-learn's ``cross_validate``), ``"holdout"`` (one shuffled split
       keeping ``test_size`` for testing, stratified for classifiers), or any scikit-learn
       splitter or list of ``(train, test)`` index pairs. With ``random_state`` the folds are
       shuffled with that seed;
    3. fit a clone on all the data (``estimator`` itself stays unfitted), timing the fit;
    4. profile the data (the reference for drift monitoring), write the
       :class:`~modelkit.Artifact` (metrics, fingerprint, profile, signature inferred from
       ``X``), register it as a new version linked to the run and, with ``alias``, point the
       alias at it;
    5. finish the run with the per-fold scores (``run.cv_scores``), their means
       (``run.metrics``), the fit time and the version.

    ``metrics`` defaults by task: ``accuracy``, ``f1`` and ``roc_auc`` for classifiers (macro F1
    and one-vs-rest AUC for several classes; AUC is left out when the estimator has neither
    ``predict_proba`` nor ``decision_function``), ``rmse``, ``mae`` and ``r2`` for regressors.
    Otherwise give names (``"rmse"``, ``"mae"``, ``"mse"``, ``"log_loss"``, ``"f1"``,
    ``"roc_auc"`` or any of ``sklearn.metrics.get_scorer_names()``) or a mapping of your name to
    a scorer name or a callable ``scorer(estimator, X, y)``. Errors are reported positive:
    ``"neg_mean_absolute_error"`` is reported as ``mae``.

    ``registry`` is a :class:`~modelkit.Registry`, a registry URL or directory, or ``None``
    for the default registry (``$MODELKIT_HOME`` or ``./.modelkit``). ``n_jobs`` runs the
    folds in parallel (joblib).

    Bad arguments (X and y of different lengths, unknown metric or cv) raise before any run is
    started. If evaluation, fitting or registration fails, the run is finished as
    ``"failed"`` with the error (``"TypeError: …"``) and the exception propagates.
    """
    from sklearn.base import clone

    name = _check_names(name, alias)
    _check_estimator(estimator)
    tag_map = to_tags(tags)
    dataset = Dataset(X, y)
    _check_rows(dataset)
    X, y = dataset.X, dataset.y
    chosen = _resolve_metrics(metrics, estimator, y)
    task = _task_of(estimator, y)
    splitter = _resolve_cv(cv, y, task=task, test_size=test_size, random_state=random_state)
    params = _json_params(estimator)

    with _opened(registry) as reg:
        run = reg.start_run(
            name, params=params, tags=tag_map, dataset_fingerprint=dataset.fingerprint
        )
        with _RunGuard(reg, run.id) as guard:
            cv_scores = _cross_validate(estimator, X, y, metrics=chosen, cv=splitter, n_jobs=n_jobs)
            means = _means(cv_scores)
            fitted = clone(estimator)
            started = time.perf_counter()
            fitted.fit(X, y)
            fit_time = time.perf_counter() - started
            version, model = _register(
                reg,
                guard,
                name=name,
                fitted=fitted,
                dataset=dataset,
                metrics=means,
                tags=tag_map,
                alias=alias,
                run_id=run.id,
            )
            finished = reg.finish_run(
                run.id,
                status="finished",
                metrics=means,
                cv_scores=cv_scores,
                fit_time=fit_time,
                version=version.version,
            )
    return TrainResult(run=finished, version=version, model=model, metrics=means)


# -- tune ---------------------------------------------------------------------------------


def _check_n_iter(n_iter: Any) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise UsageError(f"n_iter must be a positive number of candidates, got {n_iter!r}")
    return int(n_iter)


@contextmanager
def _engine(engine: str, client: Any, scheduler: str | None) -> Iterator[None]:
    if engine == "local":
        yield
        return
    from modelkit._search import dask_backend

    with dask_backend(client, scheduler):
        yield


def tune(
    estimator: Any,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    X: Any,
    y: Any,
    *,
    name: str,
    registry: Registry | str | os.PathLike[str] | None = None,
    search: str = "grid",
    engine: str = "local",
    scheduler: str | None = None,
    client: Any = None,
    cv: int | str | Any = 5,
    scoring: Sequence[str] | Mapping[str, Any] | None = None,
    n_iter: int = 10,
    random_state: Any = None,
    n_jobs: int | None = None,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
    progress: bool | None = None,
    test_size: float = 0.2,
) -> TuneResult:
    """Search ``params`` for ``estimator``, record every candidate, register the best.

    ``params`` maps parameter names (``"C"``, or ``"clf__C"`` inside a Pipeline) to the values
    to try, or is a list of such mappings. ``search`` chooses scikit-learn's search:

    - ``"grid"``: every combination (``GridSearchCV``);
    - ``"random"``: ``n_iter`` combinations drawn with ``random_state``; values may be lists
      or scipy distributions (``RandomizedSearchCV``);
    - ``"halving"``: successive halving, which evaluates many candidates on a little data and
      the best on more (``HalvingGridSearchCV``, or ``HalvingRandomSearchCV`` drawing
      ``n_iter`` candidates when a value is a distribution). It optimises the first metric
      only.

    ``engine="local"`` runs the fits with joblib on this machine (``n_jobs`` workers).
    ``engine="dask"`` runs them on a dask.distributed cluster through joblib's dask backend:
    pass ``client=`` (a ``distributed.Client``) or ``scheduler="tcp://host:8786"`` (a client is
    connected for the search and closed after), or have a default client. The results are the
    same as with the local engine.

    ``cv``, ``test_size``, ``scoring`` (metric names or a mapping, as ``metrics`` in
    :func:`train`), ``random_state``, ``alias`` and ``tags`` work as in :func:`train`; the
    first metric picks the best candidate.

    The tuning run records the estimator's params plus ``tune.search``, ``tune.engine`` and
    ``tune.space``. Each evaluated candidate becomes a child run (``parent_id`` = the tuning
    run) with its params, ``<metric>`` and ``<metric>_std`` over the folds, its per-fold
    scores, its mean fit time per fold and its status (``"failed"`` when a fold could not be
    fitted or scored); halving candidates are tagged with their ``iteration`` and
    ``n_resources``. The best candidate is refitted on all the data, registered (linked to the
    tuning run), and the tuning run finished with its scores and the refit time.

    ``progress``: a progress bar on stderr, by candidate (by iteration for halving); ``None``
    shows it when stderr is a terminal and tqdm is installed, ``True`` forces it (install
    ``modelkit[progress]``), ``False`` never.
    """
    from modelkit import _search

    name = _check_names(name, alias)
    _check_choice("search", search, SEARCHES)
    _check_choice("engine", engine, ENGINES)
    if engine != "dask" and (client is not None or scheduler is not None):
        raise UsageError("client= and scheduler= apply to engine='dask' only; add engine='dask'")
    if client is not None and scheduler is not None:
        raise UsageError("give client= or scheduler=, not both")
    n_iter = _check_n_iter(n_iter)
    _check_estimator(estimator)
    tag_map = to_tags(tags)
    dataset = Dataset(X, y)
    _check_rows(dataset)
    X, y = dataset.X, dataset.y
    space, kind = _search.check_space(params, search, estimator)
    chosen = _resolve_metrics(scoring, estimator, y)
    if kind in _search.HALVING_KINDS:
        chosen = chosen[:1]
    task = _task_of(estimator, y)
    splitter = _resolve_cv(cv, y, task=task, test_size=test_size, random_state=random_state)
    show_progress = _search.check_progress(progress)

    from sklearn.model_selection import check_cv

    # The same splits for every chunk of candidates, whatever the splitter's own randomness.
    splits = list(check_cv(splitter, y, classifier=task.is_classification).split(X, y))
    searcher = _search.make_search(
        kind,
        estimator,
        space,
        {m.name: m.scorer for m in chosen},
        cv=splits,
        n_iter=n_iter,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    run_params = _json_params(estimator)
    run_params.update(
        {"tune.search": kind, "tune.engine": engine, "tune.space": _search.describe_space(space)}
    )
    if kind in ("random", "halving_random"):
        run_params["tune.n_iter"] = n_iter

    with _engine(engine, client, scheduler), _opened(registry) as reg:
        run = reg.start_run(
            name, params=run_params, tags=tag_map, dataset_fingerprint=dataset.fingerprint
        )
        with _RunGuard(reg, run.id) as guard:
            halving = kind in _search.HALVING_KINDS
            with _search.progress_bar(
                show_progress,
                desc=f"tuning {name}",
                total=_search.n_candidates(kind, space, n_iter, random_state),
                unit=" iterations" if halving else " candidates",
            ) as bar:
                _search.attach_progress(searcher, bar)
                try:
                    searcher.fit(X, y)
                finally:
                    _search.attach_progress(searcher, None)
            candidates = _search.candidate_results(searcher, {m.name: m.sign for m in chosen})
            children = [_record_child(reg, name, run.id, c, tag_map) for c in candidates]
            best = candidates[searcher.best_index_]
            means = {m.name: best["metrics"][m.name] for m in chosen}
            version, model = _register(
                reg,
                guard,
                name=name,
                fitted=searcher.best_estimator_,
                dataset=dataset,
                metrics=means,
                tags=tag_map,
                alias=alias,
                run_id=run.id,
            )
            finished = reg.finish_run(
                run.id,
                status="finished",
                metrics=means,
                cv_scores=best["cv_scores"],
                fit_time=float(searcher.refit_time_),
                version=version.version,
            )
    best_score = chosen[0].sign * float(searcher.best_score_) + 0.0
    return TuneResult(
        run=finished,
        children=children,
        version=version,
        model=model,
        best_params=dict(searcher.best_params_),
        best_score=best_score,
    )


def _record_child(
    registry: Registry,
    name: str,
    parent_id: str,
    candidate: Mapping[str, Any],
    tags: Mapping[str, str],
) -> Run:
    """Record one evaluated candidate as a finished (or failed) child run."""
    child = registry.start_run(
        name,
        params={
            str(k): json_safe(v, other=repr, nonfinite=repr) for k, v in candidate["params"].items()
        },
        tags={**tags, **candidate["tags"]},
        parent_id=parent_id,
    )
    return registry.finish_run(
        child.id,
        status=candidate["status"],
        metrics=candidate["metrics"],
        cv_scores=candidate["cv_scores"],
        fit_time=candidate["fit_time"],
        error=candidate["error"],
    )
