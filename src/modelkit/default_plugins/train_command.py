"""``modelkit train``: fit an estimator on a CSV or Parquet file and register it.

::

    modelkit train --data train.csv --target churned \\
        --estimator sklearn.linear_model:LogisticRegression --param solver=liblinear \\
        --name churn --alias production

The estimator is named as ``module:Class`` or ``module.Class``; only that module is imported.
``--param KEY=VALUE`` values are JSON when they parse (``C=0.5``, ``max_iter=200``,
``class_weight=null``, ``hidden_layer_sizes=[10,5]``) and strings otherwise
(``solver=liblinear``); ``step__param`` keys are set with ``set_params`` after construction.
Registered by :mod:`modelkit.default_plugins.registry_commands`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelkit.default_plugins.registry_commands import (
    add_common_options,
    format_duration,
    metrics_table,
    one_line,
    open_registry,
    parse_key_values,
    parse_param_value,
    print_fields,
    print_json,
)
from modelkit.exceptions import ModelkitError

if TYPE_CHECKING:
    from modelkit._io import TrainingTable
    from modelkit.registry import Registry, Run
    from modelkit.training import TrainResult

__all__ = ["TrainCommand", "build_estimator", "load_factory"]


def _cv(text: str) -> int | str:
    if text == "holdout":
        return text
    if text.isdigit() and int(text) >= 2:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a number of folds >= 2 or 'holdout', got {text!r}")


def _test_size(text: str) -> float | int:
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction (0.2) or a number of rows (50), got {text!r}"
        ) from None


def _close(word: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=3)
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


# -- the estimator ---------------------------------------------------------------------------


def _split_spec(spec: str) -> tuple[str, str]:
    module, sep, attribute = spec.partition(":")
    if not sep:
        module, _, attribute = spec.rpartition(".")
    if not module or not attribute:
        raise ModelkitError(
            f"--estimator {spec!r} must name a module and a class: MODULE:CLASS or "
            "MODULE.CLASS (e.g. sklearn.linear_model:LogisticRegression)"
        )
    return module, attribute


def _import(spec: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if missing == module or module.startswith(f"{missing}."):
            parent_name, _, leaf = missing.rpartition(".")
            parent = sys.modules.get(parent_name)
            hint = ""
            if parent is not None and hasattr(parent, "__path__"):
                hint = _close(leaf, [m.name for m in pkgutil.iter_modules(parent.__path__)])
            elif not parent_name:
                hint = " (is it installed?)"
            raise ModelkitError(f"--estimator {spec!r}: no module named {missing!r}{hint}") from exc
        raise ModelkitError(
            f"--estimator {spec!r}: importing {module!r} failed: {one_line(exc)}"
        ) from exc
    except Exception as exc:  # a user's module may raise anything while importing
        raise ModelkitError(
            f"--estimator {spec!r}: importing {module!r} failed: "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from exc


def load_factory(spec: str) -> Callable[..., Any]:
    """The class (or factory) ``spec`` names: ``module:Class``, ``module:Outer.Inner`` or
    ``module.Class``. Only ``module`` is imported.

    Raises ModelkitError naming what failed: the syntax, the module, or the attribute.
    """
    module_name, attribute = _split_spec(spec)
    obj: Any = _import(spec, module_name)
    where = module_name
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ModelkitError(
                f"--estimator {spec!r}: {where!r} has no attribute {part!r}{_close(part, public)}"
            ) from None
        where = f"{where}.{part}"
    if not callable(obj):
        raise ModelkitError(
            f"--estimator {spec!r} is a {type(obj).__name__}, not a class: name an estimator "
            "class such as sklearn.linear_model:LogisticRegression"
        )
    return obj  # type: ignore[no-any-return]


def _describe_call(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> str:
    name = getattr(factory, "__name__", repr(factory))
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def _unknown_keywords(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> str:
    """Suggestions for keywords ``factory`` does not take (empty when unsure)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return ""
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return ""
    names = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [k for k in kwargs if k not in names]
    return "".join(f"; unknown parameter {k!r}{_close(k, names)}" for k in unknown)


def build_estimator(spec: str, params: Mapping[str, Any]) -> Any:
    """Create the estimator ``spec`` names with ``params``.

    Plain keys go to the constructor; ``step__param`` keys are applied with ``set_params``
    afterwards (pipelines, meta-estimators). The result must have a ``fit`` method.
    """
    factory = load_factory(spec)
    direct = {k: v for k, v in params.items() if "__" not in k}
    nested = {k: v for k, v in params.items() if "__" in k}
    try:
        estimator = factory(**direct)
    except (TypeError, ValueError) as exc:
        raise ModelkitError(
            f"cannot create {_describe_call(factory, direct)}: {one_line(exc)}"
            f"{_unknown_keywords(factory, direct)}"
        ) from exc
    if nested:
        try:
            estimator.set_params(**nested)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ModelkitError(
                f"cannot set {', '.join(nested)} on {type(estimator).__name__}: {one_line(exc)}"
            ) from exc
    if not callable(getattr(estimator, "fit", None)):
        raise ModelkitError(
            f"--estimator {spec!r} made a {type(estimator).__name__}, which has no fit "
            "method: name a scikit-learn estimator"
        )
    return estimator


# -- the command -----------------------------------------------------------------------------


def _metric_names(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _newest_run_id(registry: Registry, name: str) -> str | None:
    runs = registry.runs(name, limit=1)
    return runs[0].id if runs else None


def _failed_run(registry: Registry, name: str, before: str | None) -> Run | None:
    """The run this attempt recorded as failed, if it got that far."""
    try:
        runs = registry.runs(name, limit=1)
    except Exception:  # only decorates the message of the real error
        return None
    if runs and runs[0].id != before and runs[0].status == "failed":
        return runs[0]
    return None


class TrainCommand:
    """``modelkit train``: fit, evaluate and register an estimator from a data file."""

    help = "train an estimator on a CSV or Parquet file and register it as a new version"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data",
            required=True,
            metavar="FILE",
            help="the training table: .csv, .csv.gz, .parquet (pandas reads any column type; "
            "without it, CSV features must be numeric)",
        )
        parser.add_argument(
            "--target", required=True, metavar="COLUMN", help="the column to predict"
        )
        parser.add_argument(
            "--estimator",
            required=True,
            metavar="MODULE:CLASS",
            help="e.g. sklearn.linear_model:LogisticRegression or "
            "sklearn.ensemble.RandomForestClassifier",
        )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an estimator parameter (repeat); JSON values when they parse (C=0.5, "
            "class_weight=null, hidden_layer_sizes=[10,5]), else strings (solver=liblinear)",
        )
        parser.add_argument("--name", required=True, help="the model name to register under")
        parser.add_argument("--alias", help="point this alias at the new version")
        parser.add_argument(
            "--cv",
            type=_cv,
            default=5,
            metavar="FOLDS|holdout",
            help="k-fold cross-validation (default: 5) or one holdout split",
        )
        parser.add_argument(
            "--test-size",
            type=_test_size,
            default=0.2,
            metavar="FRACTION",
            help="the holdout share with --cv holdout (default: 0.2)",
        )
        parser.add_argument(
            "--random-state", type=int, metavar="SEED", help="shuffle the folds with this seed"
        )
        parser.add_argument(
            "--metric",
            action="append",
            metavar="NAME",
            help="a metric to report (repeat, or comma-separate); default by task: accuracy, "
            "f1, roc_auc for classifiers, rmse, mae, r2 for regressors",
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a tag on the run and the version (repeat)",
        )
        add_common_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        from modelkit._io import read_training_table
        from modelkit.training import train

        params = parse_key_values(args.param, option="--param", convert=parse_param_value)
        tags = parse_key_values(args.tag, option="--tag")
        estimator = build_estimator(args.estimator, params)
        table = read_training_table(args.data, args.target)
        with open_registry(args) as registry:
            before = _newest_run_id(registry, args.name)
            try:
                result = train(
                    estimator,
                    table.X,
                    table.y,
                    name=args.name,
                    registry=registry,
                    cv=args.cv,
                    metrics=_metric_names(args.metric),
                    tags=tags,
                    alias=args.alias,
                    test_size=args.test_size,
                    random_state=args.random_state,
                )
            except ModelkitError:
                raise
            except (TypeError, ValueError) as exc:
                failed = _failed_run(registry, args.name, before)
                message = one_line(exc)
                if failed is not None:  # it got as far as starting the run
                    message = f"training failed (run {failed.id} recorded as failed): {message}"
                raise ModelkitError(message) from exc
        if args.json:
            print_json(
                {
                    "run": result.run.to_dict(),
                    "version": result.version.to_dict(),
                    "metrics": result.run.to_dict()["metrics"],
                    "alias": args.alias,
                }
            )
        else:
            _print_result(args, table, result)
        return 0


def _print_result(args: argparse.Namespace, table: TrainingTable, result: TrainResult) -> None:
    run, version = result.run, result.version
    n_rows = len(table.y)
    n_features = len(table.feature_names)
    if args.cv == "holdout":
        evaluation = f"holdout split ({args.test_size:g} for testing)"
    else:
        evaluation = f"{args.cv}-fold cross-validation"
    fields: list[tuple[str, object]] = [
        ("run", run.id),
        ("version", f"{version.name}/{version.version}  ({version.uri})"),
    ]
    if args.alias:
        fields.append(("alias", f"{version.name}@{args.alias} -> {version.version}"))
    fields += [
        ("data", f"{args.data}: {n_rows} rows x {n_features} features"),
        ("evaluation", evaluation),
        ("fit time", format_duration(run.fit_time)),
    ]
    print_fields(fields)
    print()
    print(metrics_table(run.metrics, run.cv_scores))
