"""Machinery of :func:`modelkit.tune`: search spaces, search classes, progress and engines.

This module imports scikit-learn and joblib at import time; :mod:`modelkit.training` imports it
only inside :func:`~modelkit.training.tune`. The search classes live at module level so that
they pickle: scikit-learn sends the search object along with every fit task it dispatches.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import joblib
import numpy as np
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - enables the import below
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    ParameterGrid,
    ParameterSampler,
    RandomizedSearchCV,
)

from modelkit.exceptions import MissingDependencyError, UsageError

__all__ = [
    "HALVING_KINDS",
    "attach_progress",
    "candidate_results",
    "check_progress",
    "check_space",
    "dask_backend",
    "describe_space",
    "make_search",
    "n_candidates",
    "progress_bar",
]

HALVING_KINDS = ("halving_grid", "halving_random")
"""Search kinds run by successive halving: single-metric, evaluated iteration by iteration."""

_PROGRESS = "_modelkit_progress"
"""Instance attribute holding the progress bar; dropped when the search object is pickled."""


# -- search spaces --------------------------------------------------------------------------


def _is_distribution(value: Any) -> bool:
    return callable(getattr(value, "rvs", None))


def _is_values(value: Any) -> bool:
    """A list of values to try: any non-string sequence or 1-D array."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _unknown_parameter(key: str, valid: Sequence[str], estimator: Any) -> ValueError:
    folded = {name.lower(): name for name in valid}
    hint = [folded[key.lower()]] if key.lower() in folded else []
    hint = hint or difflib.get_close_matches(key, valid, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    shown = ", ".join(valid[:30]) + (", …" if len(valid) > 30 else "")
    return ValueError(
        f"params: {key!r} is not a parameter of {type(estimator).__name__}{did_you_mean}; "
        f"its parameters are: {shown}"
    )


def _check_values(
    where: str, key: Any, values: Any, *, search: str, valid: list[str], estimator: Any
) -> bool:
    """Check one entry of a search space; return whether it is a distribution."""
    if not isinstance(key, str):
        raise TypeError(f"{where}: parameter names must be strings, got {key!r}")
    if valid and key not in valid:
        raise _unknown_parameter(key, valid, estimator)
    if _is_distribution(values):
        if search == "grid":
            raise UsageError(
                f"{where}[{key!r}] is a distribution, which a grid search cannot "
                "enumerate; give a list of values, or use search='random' or 'halving'"
            )
        return True
    if not _is_values(values):
        raise TypeError(
            f"{where}[{key!r}] must be a list of values to try, got {values!r}; "
            f"write {{{key!r}: [{values!r}]}} to try that one value"
        )
    if len(values) == 0:
        raise UsageError(f"{where}[{key!r}] has no values to try; give at least one")
    return False


def check_space(params: Any, search: str, estimator: Any) -> tuple[list[dict[str, Any]], str]:
    """Validate a search space; return it as a list of dicts and the search kind to run.

    ``search`` is ``"grid"``, ``"random"`` or ``"halving"``; the kind is ``"grid"``,
    ``"random"``, ``"halving_grid"`` or ``"halving_random"`` (halving samples at random as soon
    as one parameter is given a distribution). Parameter names are checked against the
    estimator's ``get_params(deep=True)``.
    """
    if isinstance(params, Mapping):
        grids = [params]
    elif isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        grids = list(params)
    else:
        raise TypeError(
            "params must map parameter names to the values to try, e.g. {'C': [0.1, 1, 10]}, "
            f"or be a list of such mappings; got {type(params).__name__}"
        )
    if not grids:
        raise UsageError("params is an empty list: give at least one mapping of values to try")
    get_params = getattr(estimator, "get_params", None)
    valid = sorted(get_params(deep=True)) if callable(get_params) else []
    sampled = False
    for index, grid in enumerate(grids):
        where = "params" if len(grids) == 1 else f"params[{index}]"
        if not isinstance(grid, Mapping):
            raise TypeError(f"{where} must be a mapping of parameter names to values to try")
        if not grid:
            raise UsageError(
                f"{where} is empty: there is nothing to search; give the values to try, "
                "e.g. {'C': [0.1, 1, 10]}, or use modelkit.train for a single fit"
            )
        for key, values in grid.items():
            sampled |= _check_values(
                where, key, values, search=search, valid=valid, estimator=estimator
            )
    space = [dict(grid) for grid in grids]
    if search == "halving":
        return space, "halving_random" if sampled else "halving_grid"
    return space, search


def describe_space(space: list[dict[str, Any]]) -> Any:
    """The search space as JSON data: distributions become ``name(args)``, others their repr."""
    from modelkit._manifest import json_safe

    def describe(value: Any) -> Any:
        if _is_distribution(value):
            dist = getattr(value, "dist", None)
            name = getattr(dist, "name", None)
            if name is not None:
                args = [repr(arg) for arg in getattr(value, "args", ())]
                args += [f"{k}={v!r}" for k, v in getattr(value, "kwds", {}).items()]
                return f"{name}({', '.join(args)})"
        return repr(value)

    described = [json_safe(grid, other=describe, nonfinite=repr) for grid in space]
    return described[0] if len(described) == 1 else described


# -- progress -------------------------------------------------------------------------------


def check_progress(progress: bool | None) -> bool:
    """Whether to show a bar: ``None`` means when stderr is a terminal (and tqdm is installed).

    Raises ImportError naming the ``progress`` extra when a bar is forced without tqdm.
    """
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (auto), got {progress!r}")
    auto = progress is None
    if not (sys.stderr.isatty() if auto else progress):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError as exc:
        if auto:
            return False
        raise MissingDependencyError(
            "progress=True needs tqdm, which is not installed; "
            "install it with: pip install 'modelkit[progress]'"
        ) from exc
    return True


def n_candidates(
    kind: str, space: list[dict[str, Any]], n_iter: int, random_state: Any
) -> int | None:
    """How many candidates a grid or random search evaluates (None: halving decides as it goes)."""
    if kind == "grid":
        return len(ParameterGrid(space))
    if kind == "random":
        return len(ParameterSampler(space, n_iter, random_state=random_state))
    return None


@contextmanager
def progress_bar(show: bool, *, desc: str, total: int | None, unit: str) -> Iterator[Any]:
    """A tqdm bar on stderr (closed on exit), or ``None`` when ``show`` is false."""
    if not show:
        yield None
        return
    from tqdm import tqdm

    # mininterval=0: redraw on every update, which comes at most once per chunk of fits
    bar = tqdm(
        desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0
    )
    try:
        yield bar
    finally:
        bar.close()


# -- search classes -------------------------------------------------------------------------


def _forward(callback_ctx: Any) -> dict[str, Any]:
    """scikit-learn >= 1.9 passes a callback context to ``_run_search``; older ones do not."""
    return {} if callback_ctx is None else {"callback_ctx": callback_ctx}


class _ProgressMixin:
    """Keeps the bar out of the pickled state (scikit-learn ships the search to its workers)."""

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()  # type: ignore[misc] # BaseEstimator's
        state.pop(_PROGRESS, None)
        return state


class _ChunkedMixin(_ProgressMixin):
    """Grid and random search that evaluate their candidates in chunks, updating the bar.

    Without a bar the parent class runs unchanged. With one, candidates go to
    ``evaluate_candidates`` in chunks of as many candidates as there are parallel workers, so
    every worker stays busy and the bar moves candidate by candidate; the results are the same
    since every chunk sees the same splits.
    """

    def _candidates(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _run_search(
        self, evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None
    ) -> None:
        bar = getattr(self, _PROGRESS, None)
        if bar is None:
            super()._run_search(evaluate_candidates, **_forward(callback_ctx))  # type: ignore[misc]
            return
        candidates = self._candidates()
        if bar.total != len(candidates):
            bar.reset(total=len(candidates))
        size = max(1, joblib.effective_n_jobs(getattr(self, "n_jobs", None)))
        for start in range(0, len(candidates), size):
            chunk = candidates[start : start + size]
            evaluate_candidates(chunk)
            bar.update(len(chunk))


class GridSearch(_ChunkedMixin, GridSearchCV):  # type: ignore[misc] # untyped base class
    """scikit-learn's GridSearchCV with a per-candidate progress bar."""

    def _candidates(self) -> list[dict[str, Any]]:
        return list(ParameterGrid(self.param_grid))


class RandomSearch(_ChunkedMixin, RandomizedSearchCV):  # type: ignore[misc] # untyped base class
    """scikit-learn's RandomizedSearchCV with a per-candidate progress bar."""

    def _candidates(self) -> list[dict[str, Any]]:
        sampler = ParameterSampler(
            self.param_distributions, self.n_iter, random_state=self.random_state
        )
        return list(sampler)


class _IterationMixin(_ProgressMixin):
    """Successive halving with the bar moving once per halving iteration."""

    def _run_search(
        self, evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None
    ) -> None:
        bar = getattr(self, _PROGRESS, None)
        if bar is None:
            super()._run_search(evaluate_candidates, **_forward(callback_ctx))  # type: ignore[misc]
            return

        def counted(*args: Any, **kwargs: Any) -> Any:
            results = evaluate_candidates(*args, **kwargs)
            bar.set_postfix(
                candidates=self.n_candidates_[-1],  # type: ignore[attr-defined]
                resources=self.n_resources_[-1],  # type: ignore[attr-defined]
                refresh=False,
            )
            bar.update(1)
            return results

        super()._run_search(counted, **_forward(callback_ctx))  # type: ignore[misc]


class HalvingGridSearch(_IterationMixin, HalvingGridSearchCV):  # type: ignore[misc] # untyped base
    """scikit-learn's HalvingGridSearchCV with a per-iteration progress bar."""


class HalvingRandomSearch(_IterationMixin, HalvingRandomSearchCV):  # type: ignore[misc]
    """scikit-learn's HalvingRandomSearchCV with a per-iteration progress bar."""


def make_search(
    kind: str,
    estimator: Any,
    space: list[dict[str, Any]],
    scorers: Mapping[str, Any],
    *,
    cv: Any,
    n_iter: int,
    random_state: Any,
    n_jobs: int | None,
) -> Any:
    """Build the search object; the first scorer picks the best candidate (halving: the only).

    ``n_iter`` is the number of candidates drawn by a random search, and the number drawn for
    the first iteration of a random halving search.
    """
    primary = next(iter(scorers))
    common: dict[str, Any] = {"cv": cv, "n_jobs": n_jobs, "error_score": np.nan}
    if kind == "grid":
        return GridSearch(estimator, space, scoring=dict(scorers), refit=primary, **common)
    if kind == "random":
        return RandomSearch(
            estimator,
            space,
            n_iter=n_iter,
            random_state=random_state,
            scoring=dict(scorers),
            refit=primary,
            **common,
        )
    halving: dict[str, Any] = {"scoring": scorers[primary], "random_state": random_state}
    if kind == "halving_grid":
        return HalvingGridSearch(estimator, space, **halving, **common)
    return HalvingRandomSearch(estimator, space, n_candidates=n_iter, **halving, **common)


def attach_progress(search: Any, bar: Any) -> None:
    """Give the search its bar (``None``: none) for the next ``fit``."""
    setattr(search, _PROGRESS, bar)


# -- results --------------------------------------------------------------------------------


def candidate_results(search: Any, signs: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every evaluated candidate of a fitted search, as keyword arguments for the run records.

    ``signs`` maps each metric name to the sign that makes it read naturally (``-1`` turns
    scikit-learn's negated errors back into positive ones). Each entry has ``params``,
    ``metrics`` (``<name>`` = mean and ``<name>_std`` over the folds), ``cv_scores`` (per
    fold), ``fit_time`` (mean seconds per fold), ``status``, ``error`` and ``tags`` (the
    iteration and resources of a halving search).
    """
    results = search.cv_results_
    n_splits = int(search.n_splits_)
    halving = isinstance(search, (HalvingGridSearchCV, HalvingRandomSearchCV))
    keys = dict.fromkeys(signs, "score") if halving else {name: name for name in signs}
    means: dict[str, list[float]] = {}
    stds: dict[str, list[float]] = {}
    folds: dict[str, list[list[float]]] = {}
    for name, key in keys.items():
        sign = signs[name]
        means[name] = (sign * np.asarray(results[f"mean_test_{key}"], dtype=float) + 0.0).tolist()
        stds[name] = np.asarray(results[f"std_test_{key}"], dtype=float).tolist()
        split = np.column_stack(
            [np.asarray(results[f"split{k}_test_{key}"], dtype=float) for k in range(n_splits)]
        )
        folds[name] = (sign * split + 0.0).tolist()
    primary = next(iter(keys))
    failed = np.isnan(np.asarray(folds[primary], dtype=float)).sum(axis=1).tolist()
    fit_times = np.asarray(results["mean_fit_time"], dtype=float).tolist()
    out = []
    for i, params in enumerate(results["params"]):
        metrics: dict[str, float] = {}
        for name in keys:
            metrics[name] = means[name][i]
            metrics[f"{name}_std"] = stds[name][i]
        tags = {}
        if halving:
            tags = {
                "iteration": str(results["iter"][i]),
                "n_resources": str(results["n_resources"][i]),
            }
        out.append(
            {
                "params": params,
                "metrics": metrics,
                "cv_scores": {name: folds[name][i] for name in keys},
                "fit_time": fit_times[i],
                "status": "failed" if failed[i] else "finished",
                "error": (
                    f"FitFailed: no {primary} score in {failed[i]} of {n_splits} folds (the fit "
                    "or the scoring raised; the FitFailedWarning of the search has the errors)"
                    if failed[i]
                    else None
                ),
                "tags": tags,
            }
        )
    return out


# -- engines --------------------------------------------------------------------------------


@contextmanager
def dask_backend(client: Any, scheduler: str | None) -> Iterator[Any]:
    """Run joblib (hence scikit-learn's search) on a dask.distributed cluster.

    ``client`` is used as given; otherwise one is connected to ``scheduler`` (and closed on
    exit); otherwise the current default client is used.
    """
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            "engine='dask' needs dask.distributed, which is not installed; "
            "install it with: pip install 'modelkit[dask]'"
        ) from exc
    owned = None
    if client is None and scheduler is not None:
        client = owned = distributed.Client(scheduler)  # type: ignore[no-untyped-call]
    elif client is None:
        try:
            client = distributed.get_client()
        except ValueError as exc:
            raise UsageError(
                "engine='dask' needs a cluster: pass client=distributed.Client(...) or "
                "scheduler='tcp://host:8786'"
            ) from exc
    try:
        with joblib.parallel_config(backend="dask", client=client):
            yield client
    finally:
        if owned is not None:
            owned.close()  # type: ignore[no-untyped-call]
