"""What a model takes and gives: :class:`Signature`.

A signature is inferred once, from the training data and the fitted estimator, stored in the
artifact manifest (:meth:`Signature.to_dict`), and enforced on every prediction
(:meth:`Signature.validate`), whether the rows come from Python code, an HTTP request or a
batch job::

    sig = Signature.infer(X_train, y_train, estimator=fitted)
    sig.validate([[0.1, 2.0, ...]])       # a float64 array, or a SignatureError naming
                                          # the feature, the row, the expected and the actual
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit import _tabular
from modelkit.exceptions import ArtifactFormatError, SignatureError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["INPUT_TYPES", "MAX_LEVELS", "PREDICT_METHODS", "Signature"]

MAX_LEVELS = 1000
"""Categorical features with more distinct values than this keep ``levels=None`` (unchecked)."""

INPUT_TYPES = ("ndarray", "dataframe")
"""What the estimator was fitted on, and so what :meth:`Signature.validate` rebuilds."""

PREDICT_METHODS = ("predict", "predict_proba", "decision_function")
"""The estimator methods a :class:`~modelkit.Model` exposes, in this order."""

_KINDS = {
    "classifier": "classification",
    "regressor": "regression",
    "clusterer": "clustering",
    "outlier_detector": "outlier_detection",
}
_JSON_SCALARS = (str, bool, int, float)


@functools.lru_cache(maxsize=256)
def _is_numeric_dtype(dtype: str) -> bool:
    """Whether a dtype name (numpy or pandas) holds numbers: bool, int, uint or float."""
    try:
        return np.dtype(dtype).kind in _tabular.NUMERIC_KINDS
    except TypeError:  # a pandas extension dtype such as "Int64", "boolean" or "category"
        lowered = dtype.lower()
        return lowered == "boolean" or lowered.startswith(("int", "uint", "float"))


# -- attrs converters and validators ---------------------------------------------------------


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"expected a sequence of strings, got the string {value!r}")
    return tuple(value)


def _levels_map(value: Any) -> dict[str, tuple[Any, ...] | None]:
    if not isinstance(value, Mapping):
        raise TypeError(f"levels must be a mapping of feature name to levels, got {value!r}")
    out: dict[str, tuple[Any, ...] | None] = {}
    for name, levels in value.items():
        if levels is not None and (
            isinstance(levels, str | bytes) or not isinstance(levels, Iterable)
        ):
            raise TypeError(
                f"levels of {name!r} must be a sequence of values or None, got {levels!r}"
            )
        out[name] = None if levels is None else tuple(levels)
    return out


def _optional_tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _check_names(_: Any, __: attrs.Attribute[Any], names: tuple[str, ...]) -> None:
    if not names:
        raise SignatureError("a signature needs at least one feature")
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise SignatureError(f"feature names must be non-empty strings, got {_tabular.quote(bad)}")
    if len(set(names)) != len(names):
        dupes = sorted({name for name in names if names.count(name) > 1})
        raise SignatureError(f"duplicate feature names: {_tabular.quote(dupes)}")


def _check_strings(_: Any, attribute: attrs.Attribute[Any], values: tuple[str, ...]) -> None:
    bad = [value for value in values if not isinstance(value, str) or not value]
    if bad:
        raise SignatureError(f"{attribute.name} must be non-empty strings, got {bad!r}")


def _default_dtypes(self: Signature) -> tuple[str, ...]:
    return ("float64",) * len(self.names)


# -- the plan: what validate() needs, computed once ------------------------------------------


@attrs.frozen
class _Plan:
    names: tuple[str, ...]
    name_list: list[str]
    dtype_list: list[str]
    numeric_only: bool
    numeric_idx: np.ndarray
    numeric_names: tuple[str, ...]
    categorical: tuple[tuple[int, str, frozenset[Any] | None, str], ...]
    as_frame: bool

    @classmethod
    def build(cls, sig: Signature) -> _Plan:
        numeric = [j for j, dtype in enumerate(sig.dtypes) if _is_numeric_dtype(dtype)]
        categorical: list[tuple[int, str, frozenset[Any] | None, str]] = []
        for j, (name, dtype) in enumerate(zip(sig.names, sig.dtypes, strict=True)):
            if _is_numeric_dtype(dtype):
                continue
            levels = sig.levels.get(name)
            if levels is None:
                categorical.append((j, name, None, ""))
            else:
                categorical.append((j, name, frozenset(levels), _tabular.quote(levels)))
        return cls(
            names=sig.names,
            name_list=list(sig.names),
            dtype_list=list(sig.dtypes),
            numeric_only=len(numeric) == len(sig.names),
            numeric_idx=np.asarray(numeric, dtype=np.intp),
            numeric_names=tuple(sig.names[j] for j in numeric),
            categorical=tuple(categorical),
            as_frame=sig.input_type == "dataframe",
        )


# -- Signature -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Signature:
    """The input contract and the outputs of a model.

    *Inputs*: ``names`` (one per feature, in the estimator's column order; ``f0``, ``f1``, …
    when the training data had none), ``dtypes`` (numpy or pandas dtype names), ``levels``
    (for each categorical feature, its accepted values, or ``None`` when there were more than
    :data:`MAX_LEVELS` or the estimator accepts unknown ones), ``allow_nan`` (whether missing
    values are accepted) and ``input_type`` (``"ndarray"`` or ``"dataframe"``: what the
    estimator was fitted on, and so what :meth:`validate` hands it).

    A feature is categorical when its dtype is not numeric (object, string, category, …).

    *Outputs*: ``kind`` (``"classification"``, ``"regression"``, ``"clustering"``,
    ``"outlier_detection"`` or ``"other"``), ``classes`` (a classifier's labels, else
    ``None``) and ``methods`` (which of ``predict``, ``predict_proba``,
    ``decision_function`` the estimator has).

    Build one with :meth:`infer` or :meth:`from_estimator`; store it with :meth:`to_dict` and
    read it back with :meth:`from_dict`.
    """

    names: tuple[str, ...] = attrs.field(converter=_str_tuple, validator=_check_names)
    dtypes: tuple[str, ...] = attrs.field(
        converter=_str_tuple,
        validator=_check_strings,
        default=attrs.Factory(_default_dtypes, takes_self=True),
    )
    levels: Mapping[str, tuple[Any, ...] | None] = attrs.field(
        factory=dict, converter=_levels_map, hash=False
    )
    allow_nan: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    input_type: str = attrs.field(default="ndarray", validator=attrs.validators.in_(INPUT_TYPES))
    kind: str = attrs.field(default="other", validator=attrs.validators.instance_of(str))
    classes: tuple[Any, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    methods: tuple[str, ...] = attrs.field(
        default=("predict",), converter=_str_tuple, validator=_check_strings
    )
    _plan: _Plan = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        if len(self.dtypes) != len(self.names):
            raise SignatureError(
                f"expected one dtype per feature ({len(self.names)}), got {len(self.dtypes)}"
            )
        categorical = [
            name
            for name, dtype in zip(self.names, self.dtypes, strict=True)
            if not _is_numeric_dtype(dtype)
        ]
        stray = sorted(set(self.levels) - set(categorical))
        if stray:
            raise SignatureError(
                f"levels are given for features that are not categorical: {_tabular.quote(stray)}"
            )
        # every categorical feature has an entry, so equal signatures have equal dicts
        levels = {name: self.levels.get(name) for name in categorical}
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "_plan", _Plan.build(self))

    # -- facts -------------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        """How many features a row has."""
        return len(self.names)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of the categorical (non-numeric) features, in column order."""
        return tuple(name for _, name, _, _ in self._plan.categorical)

    # -- validation --------------------------------------------------------------------------

    def validate(self, X: Any) -> np.ndarray | pd.DataFrame:
        """Check ``X`` against the signature and return it exactly as the estimator gets it.

        ``X`` may be a list of rows, a list of dicts keyed by feature name, one dict, one row
        as a flat list or 1-D array, a numpy array or a pandas DataFrame. A 1-D input is **one
        row** when the model has several features, and a **column of rows** when it has
        exactly one. DataFrames whose column labels are all strings, and dicts, are matched
        by feature name (and reordered); other DataFrames, lists and arrays by position.

        The result is a C-contiguous float64 array when every feature is numeric, an object
        array when some are categorical, or, for estimators fitted on a DataFrame, a DataFrame
        with the training column order and dtypes (a DataFrame that already has them is
        returned as is). One layout for every input form, so that every form of the same rows
        gets bit-identical predictions. Numeric features accept bool, int and float values
        (``None``/JSON ``null`` and NaN mean missing), never strings, not even ``"1.5"``;
        ±inf is always rejected, and missing values unless ``allow_nan``.

        Raises :class:`~modelkit.exceptions.SignatureError` naming the feature, the row
        (0-based), what was expected and what was found.
        """
        return self._validate(X)[0]

    def check(self, X: Any) -> tuple[np.ndarray | pd.DataFrame, bool]:
        """:meth:`validate` ``X``, also returning whether any value is missing.

        The pair is what :meth:`Model.call <modelkit.Model.call>` takes: the checked data and
        whether the estimator must be run with its own missing-value handling on.
        """
        return self._validate(X)

    def _validate(self, data: Any) -> tuple[Any, bool]:
        """:meth:`validate`, also returning whether any value is missing."""
        plan = self._plan
        if _tabular.is_dataframe(data):
            return self._validate_frame(data)
        grid = _tabular.to_grid(data, plan.names, keep_objects=not plan.numeric_only)
        if plan.numeric_only:
            block = _tabular.as_float(grid, plan.names)
            has_nan = _tabular.check_finite(block, plan.names, allow_nan=self.allow_nan)
            if plan.as_frame:
                return self._to_frame(block, [], None), has_nan
            return block, has_nan
        block = _tabular.as_float(grid[:, plan.numeric_idx], plan.numeric_names)
        has_missing = _tabular.check_finite(block, plan.numeric_names, allow_nan=self.allow_nan)
        columns = []
        for j, name, levels, expected in plan.categorical:
            values = grid[:, j]
            has_missing |= _tabular.check_categorical(
                values, name, levels, allow_missing=self.allow_nan, expected=expected
            )
            columns.append(values)
        return self._assemble(block, columns, None), has_missing

    def _validate_frame(self, df: pd.DataFrame) -> tuple[Any, bool]:
        plan = self._plan
        frame = _tabular.frame_columns(df, plan.names)
        if plan.numeric_only:
            block = _tabular.as_float(_tabular.frame_values(frame), plan.names)
            has_nan = _tabular.check_finite(block, plan.names, allow_nan=self.allow_nan)
            if not plan.as_frame:
                return block, has_nan
            if self._matches(frame):
                return frame, has_nan
            return self._to_frame(block, [], frame.index), has_nan
        numeric = frame.iloc[:, plan.numeric_idx]
        block = _tabular.as_float(_tabular.frame_values(numeric), plan.numeric_names)
        has_missing = _tabular.check_finite(block, plan.numeric_names, allow_nan=self.allow_nan)
        columns = []
        for j, name, levels, expected in plan.categorical:
            series = frame.iloc[:, j]
            values = series.to_numpy(dtype=object)
            has_missing |= _tabular.check_categorical(
                values,
                name,
                levels,
                allow_missing=self.allow_nan,
                missing=series.isna().to_numpy(),
                expected=expected,
            )
            columns.append(values)
        if plan.as_frame and self._matches(frame):
            return frame, has_missing
        return self._assemble(block, columns, frame.index), has_missing

    def _matches(self, frame: pd.DataFrame) -> bool:
        """Whether a validated DataFrame already has the training labels, order and dtypes."""
        plan = self._plan
        if frame.columns.tolist() != plan.name_list:
            return False
        if [str(dtype) for dtype in frame.dtypes.tolist()] != plan.dtype_list:
            return False
        for j, name, _, _ in plan.categorical:
            levels = self.levels[name]
            if (
                plan.dtype_list[j] == "category"
                and levels is not None
                and frame.iloc[:, j].cat.categories.tolist() != list(levels)
            ):
                return False  # same values, other codes: rebuild with the training codes
        return True

    def _assemble(self, block: np.ndarray, columns: list[np.ndarray], index: Any) -> Any:
        plan = self._plan
        if plan.as_frame:
            return self._to_frame(block, columns, index)
        out = np.empty((block.shape[0], len(plan.names)), dtype=object)
        if block.shape[1]:
            out[:, plan.numeric_idx] = block
        for (j, _, _, _), values in zip(plan.categorical, columns, strict=True):
            out[:, j] = values
        return out

    def _to_frame(self, block: np.ndarray, columns: list[np.ndarray], index: Any) -> pd.DataFrame:
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed wherever tested
            raise SignatureError(
                "this model was fitted on a pandas DataFrame and needs pandas to predict: "
                "pip install 'modelkit[pandas]'"
            ) from exc
        plan = self._plan
        if plan.numeric_only and all(dtype == "float64" for dtype in plan.dtype_list):
            # pandas keeps each dtype's columns as rows of one C-contiguous block, so a typical
            # DataFrame reaches the estimator as a Fortran-ordered array: build it that way so
            # that every input form rounds alike in BLAS.
            return pd.DataFrame(
                np.asfortranarray(block), columns=plan.name_list, index=index, copy=False
            )
        data: dict[str, Any] = {}
        for k, j in enumerate(plan.numeric_idx.tolist()):
            data[plan.names[j]] = _restore_numeric(block[:, k], plan.dtype_list[j])
        for (j, name, _, _), values in zip(plan.categorical, columns, strict=True):
            data[name] = _restore_categorical(values, plan.dtype_list[j], self.levels[name])
        return pd.DataFrame({name: data[name] for name in plan.names}, index=index)

    # -- inference ---------------------------------------------------------------------------

    @classmethod
    def infer(cls, X: Any, y: Any = None, *, estimator: Any = None) -> Signature:
        """Infer a signature from training data ``X`` (and ``y``) and the fitted ``estimator``.

        ``X`` is a 2-D numpy array, a list of rows, a list of dicts or a pandas DataFrame.
        Feature names come from the estimator's ``feature_names_in_``, else from the
        DataFrame's string column labels (or the dict keys), else ``f0``, ``f1``, …. Features
        of a non-numeric dtype are categorical; their levels are the distinct non-missing
        values (sorted; a pandas ``category`` column keeps its categories in order, since
        some estimators use the codes), or the categories learned by a leading encoder of
        the estimator when it has one, and ``None`` (unchecked) above :data:`MAX_LEVELS` or
        when that encoder accepts unknown categories.

        Missing values are accepted when the estimator's scikit-learn tags say it handles
        them (``allow_nan``; for a Pipeline, when its steps do up to an imputer), or when the
        training data had some (the estimator was fitted with them).

        The outputs come from the estimator (``classes_``, its estimator type and methods),
        or, without one, from ``y`` (its target type and labels).
        """
        names, columns, has_missing, named = _describe(X)
        n = len(columns)
        n_in = getattr(estimator, "n_features_in_", None)
        if n_in is not None and int(n_in) != n:
            raise SignatureError(
                f"the data has {_tabular.plural(n, 'feature')}, but the estimator was fitted "
                f"on {int(n_in)}"
            )
        fitted_names = _feature_names_in(estimator)
        if fitted_names is not None:
            if named and names != fitted_names:
                columns = _reorder(names, fitted_names, columns)
            names = fitted_names
            input_type = "dataframe"
        elif n_in is not None:
            input_type = "ndarray"
        else:
            input_type = "dataframe" if named and _tabular.is_dataframe(X) else "ndarray"
        if names is None:
            names = [f"f{j}" for j in range(n)]
        dtypes = [dtype for dtype, _ in columns]
        levels = {
            name: levels
            for name, (dtype, levels) in zip(names, columns, strict=True)
            if not _is_numeric_dtype(dtype)
        }
        for name, known in _encoder_levels(estimator, names).items():
            if name in levels:
                levels[name] = known
        tag = _nan_tag(estimator)
        kind, classes = _outputs(estimator, y)
        return cls(
            names=names,
            dtypes=dtypes,
            levels=levels,
            allow_nan=bool(tag) or has_missing,
            input_type=input_type,
            kind=kind,
            classes=classes,
            methods=_methods(estimator),
        )

    @classmethod
    def from_estimator(cls, estimator: Any) -> Signature:
        """Infer a signature from a fitted estimator alone, without example data.

        Uses ``n_features_in_`` and ``feature_names_in_``. Every feature is taken as numeric
        (float64), except columns that a leading ``OneHotEncoder`` / ``OrdinalEncoder`` (alone
        or in a ``ColumnTransformer`` at the head of a Pipeline) learned text categories for.
        Pass example data to :meth:`infer` instead when other features are categorical.
        """
        n_in = getattr(estimator, "n_features_in_", None)
        if n_in is None:
            raise SignatureError(
                f"cannot infer a signature for {type(estimator).__name__} without example data: "
                "it has no n_features_in_ (is it fitted?); pass a sample or a signature"
            )
        fitted_names = _feature_names_in(estimator)
        names = fitted_names or [f"f{j}" for j in range(int(n_in))]
        dtypes = ["float64"] * len(names)
        levels = _encoder_levels(estimator, names)
        for name in levels:
            dtypes[names.index(name)] = "object"
        kind, classes = _outputs(estimator, None)
        return cls(
            names=names,
            dtypes=dtypes,
            levels=levels,
            allow_nan=bool(_nan_tag(estimator)),
            input_type="ndarray" if fitted_names is None else "dataframe",
            kind=kind,
            classes=classes,
            methods=_methods(estimator),
        )

    # -- storage -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what artifact manifests store)::

        {"inputs": {"type": "ndarray", "names": ["f0", ...], "dtypes": ["float64", ...],
                    "levels": {"color": ["blue", "red"]}, "allow_nan": false},
         "outputs": {"kind": "classification", "classes": [0, 1],
                     "methods": ["predict", "predict_proba", "decision_function"]}}
        """
        return {
            "inputs": {
                "type": self.input_type,
                "names": list(self.names),
                "dtypes": list(self.dtypes),
                "levels": {
                    name: None if levels is None else list(levels)
                    for name, levels in self.levels.items()
                },
                "allow_nan": self.allow_nan,
            },
            "outputs": {
                "kind": self.kind,
                "classes": None if self.classes is None else list(self.classes),
                "methods": list(self.methods),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Rebuild a signature from :meth:`to_dict`'s output.

        Raises :class:`~modelkit.exceptions.ArtifactFormatError` when the dict is malformed.
        """
        try:
            inputs, outputs = data["inputs"], data["outputs"]
            return cls(
                names=inputs["names"],
                dtypes=inputs["dtypes"],
                levels=inputs.get("levels") or {},
                allow_nan=inputs["allow_nan"],
                input_type=inputs["type"],
                kind=outputs["kind"],
                classes=outputs.get("classes"),
                methods=outputs["methods"],
            )
        except KeyError as exc:
            raise ArtifactFormatError(f"invalid signature: missing key {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ArtifactFormatError(f"invalid signature: {exc}") from exc


# -- inference helpers -----------------------------------------------------------------------

_Column = tuple[str, "tuple[Any, ...] | None"]  # (dtype, levels)


def _describe(data: Any) -> tuple[list[str] | None, list[_Column], bool, bool]:
    """Names (or None), (dtype, levels) per column, whether any value is missing, named?"""
    if _tabular.is_dataframe(data):
        return _describe_frame(data)
    names: list[str] | None = None
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        names = [str(key) for key in data[0]]
        grid = _tabular.to_grid(data, names, keep_objects=True)
    else:
        try:
            grid = np.asarray(data)
        except ValueError as exc:
            raise SignatureError("training data rows must all have the same length") from exc
        if grid.ndim != 2:
            raise SignatureError(
                f"training data must be 2-D (rows of features), got {grid.ndim}-D; "
                "use X.reshape(-1, 1) for a single feature"
            )
        if grid.dtype.kind in "US":
            grid = np.array(data, dtype=object)
    if grid.dtype.kind in _tabular.NUMERIC_KINDS:
        has_nan = grid.dtype.kind == "f" and bool(np.isnan(grid).any())
        return names, [(str(grid.dtype), None)] * grid.shape[1], has_nan, names is not None
    columns: list[_Column] = []
    has_missing = False
    for j in range(grid.shape[1]):
        values = grid[:, j]
        try:
            numeric = _tabular.as_float(values.reshape(-1, 1), [str(j)])
        except SignatureError:
            missing = _tabular.missing_objects(values.astype(object, copy=False))
            has_missing |= bool(missing.any())
            columns.append(("object", _levels(values[~missing].tolist())))
        else:
            has_missing |= bool(np.isnan(numeric).any())
            columns.append(("float64", None))
    return names, columns, has_missing, names is not None


def _describe_frame(df: pd.DataFrame) -> tuple[list[str] | None, list[_Column], bool, bool]:
    labels = df.columns.tolist()
    named = bool(labels) and all(isinstance(label, str) for label in labels)
    columns: list[_Column] = []
    for j, dtype in enumerate(df.dtypes.tolist()):
        if dtype.kind in _tabular.NUMERIC_KINDS:
            columns.append((str(dtype), None))
            continue
        series = df.iloc[:, j]
        if str(dtype) == "category":
            categories = series.cat.categories.tolist()
            ok = len(categories) <= MAX_LEVELS and all(_is_json_level(v) for v in categories)
            columns.append(("category", tuple(categories) if ok else None))
        else:
            columns.append((str(dtype), _levels(series.dropna().tolist())))
    has_missing = bool(df.isna().to_numpy().any())
    return (labels if named else None), columns, has_missing, named


def _is_json_level(value: object) -> bool:
    return isinstance(value, _JSON_SCALARS) and not _tabular.is_missing(value)


def _levels(values: list[Any]) -> tuple[Any, ...] | None:
    """Sorted distinct values, or None when there are too many or they do not fit in JSON."""
    try:
        distinct = set(values)
    except TypeError:  # unhashable values: leave the feature unchecked
        return None
    if len(distinct) > MAX_LEVELS or not all(_is_json_level(v) for v in distinct):
        return None
    try:
        return tuple(sorted(distinct))
    except TypeError:  # mixed types: group by type name, then by value
        return tuple(sorted(distinct, key=lambda v: (type(v).__name__, v)))


def _reorder(names: list[str] | None, wanted: list[str], columns: list[_Column]) -> list[_Column]:
    assert names is not None
    if set(names) != set(wanted):
        missing = [name for name in wanted if name not in names]
        unknown = [name for name in names if name not in wanted]
        raise SignatureError(
            "the data's columns differ from the estimator's feature_names_in_: "
            f"missing {_tabular.quote(missing) or 'none'}; "
            f"unknown {_tabular.quote(unknown) or 'none'}"
        )
    by_name = dict(zip(names, columns, strict=True))
    return [by_name[name] for name in wanted]


def _feature_names_in(estimator: Any) -> list[str] | None:
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def _tags(estimator: Any) -> Any:
    try:
        return estimator.__sklearn_tags__()
    except Exception:  # not a scikit-learn estimator, or an old one
        return None


def _nan_tag(estimator: Any) -> bool | None:
    """Whether the estimator handles NaN per its tags; ``None`` when it has no tags."""
    if estimator is None:
        return None
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        return _pipeline_nan_tag([step for _, step in steps])
    tags = _tags(estimator)
    if tags is not None:
        return bool(tags.input_tags.allow_nan)
    try:  # scikit-learn < 1.6
        return bool(estimator._get_tags()["allow_nan"])
    except Exception:  # not a scikit-learn estimator
        return None


def _pipeline_nan_tag(steps: list[Any]) -> bool | None:
    """A Pipeline handles NaN when every step does, up to an imputer that removes them."""
    for step in steps:
        if step is None or isinstance(step, str):  # "passthrough"
            continue
        tag = _nan_tag(step)
        if not tag:
            return tag
        if type(step).__name__.endswith("Imputer"):
            break
    return True


def _outputs(estimator: Any, y: Any) -> tuple[str, tuple[Any, ...] | None]:
    kind = "other"
    classes: tuple[Any, ...] | None = None
    if estimator is not None:
        tags = _tags(estimator)
        estimator_type = (
            tags.estimator_type if tags is not None else getattr(estimator, "_estimator_type", None)
        )
        kind = _KINDS.get(str(estimator_type), "other")
        fitted = getattr(estimator, "classes_", None)
        if isinstance(fitted, np.ndarray) and fitted.ndim == 1:
            classes = tuple(fitted.tolist())
    if y is not None and (estimator is None or (kind == "classification" and classes is None)):
        from sklearn.utils.multiclass import type_of_target

        target = type_of_target(y)
        if target in {"binary", "multiclass"}:
            kind, classes = "classification", tuple(np.unique(np.asarray(y)).tolist())
        elif estimator is None:
            if target.startswith("continuous"):
                kind = "regression"
            elif target.startswith("multi"):
                kind = "classification"
    return kind, classes


def _methods(estimator: Any) -> tuple[str, ...]:
    if estimator is None:
        return ("predict",)
    return tuple(name for name in PREDICT_METHODS if callable(getattr(estimator, name, None)))


def _encoder_levels(estimator: Any, names: Sequence[str]) -> dict[str, tuple[Any, ...] | None]:
    """Text categories learned by an encoder that sees the raw input, by feature name.

    Looks at the estimator itself, or the first step of a Pipeline, and inside a
    ColumnTransformer at each transformer (or the first step of a transformer Pipeline,
    after imputers). ``None`` for a column whose encoder accepts unknown categories.
    """
    head = estimator
    while isinstance(getattr(head, "steps", None), list):
        steps = [step for _, step in head.steps if step is not None and not isinstance(step, str)]
        if not steps:
            return {}
        head = steps[0]
    transformers = getattr(head, "transformers_", None)
    if transformers is None:
        parts: list[tuple[Any, Any]] = [(head, list(names))]
    else:
        parts = [(transformer, columns) for _, transformer, columns in transformers]
    found: dict[str, tuple[Any, ...] | None] = {}
    for transformer, columns in parts:
        encoder = _leading_encoder(transformer)
        selected = _column_names(columns, names)
        if encoder is None or selected is None or len(selected) != len(encoder.categories_):
            continue
        open_ended = getattr(encoder, "handle_unknown", "error") != "error"
        for name, categories in zip(selected, encoder.categories_, strict=True):
            if categories.dtype.kind in _tabular.NUMERIC_KINDS:
                continue
            values = [v for v in categories.tolist() if not _tabular.is_missing(v)]
            found[name] = None if open_ended else _levels(values)
    return found


def _leading_encoder(transformer: Any) -> Any:
    steps = getattr(transformer, "steps", None)
    chain = [step for _, step in steps] if isinstance(steps, list) else [transformer]
    for step in chain:
        if isinstance(getattr(step, "categories_", None), list):
            return step
        if not type(step).__name__.endswith("Imputer"):
            return None
    return None


def _column_names(columns: Any, names: Sequence[str]) -> list[str] | None:
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice) or callable(columns):
        return None
    selected = np.asarray(columns)
    if selected.ndim != 1:
        return None
    if selected.dtype.kind == "b" and len(selected) == len(names):
        return [names[j] for j in np.flatnonzero(selected).tolist()]
    if selected.dtype.kind in "iu":
        return [names[j] for j in selected.tolist()]
    listed = selected.tolist()
    return listed if all(isinstance(v, str) for v in listed) else None


# -- rebuilding DataFrame columns ------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _pandas_dtype(name: str) -> Any:
    from pandas.api.types import pandas_dtype

    try:
        return pandas_dtype(name)
    except TypeError:
        return None


def _restore_numeric(values: np.ndarray, dtype: str) -> Any:
    """A float64 column in its training dtype, when that loses nothing; else float64."""
    target = None if dtype == "float64" else _pandas_dtype(dtype)
    if target is None:
        return values
    if not isinstance(target, np.dtype):  # nullable Int64 / Float64 / boolean
        import pandas as pd

        try:
            return pd.array(values, dtype=target)
        except (TypeError, ValueError):
            return values
    if target.kind == "f":
        lossless = True
    elif not np.isfinite(values).all():
        lossless = False
    elif target.kind == "b":
        lossless = bool(((values == 0) | (values == 1)).all())
    else:
        info = np.iinfo(target)
        lossless = (
            float(values.min()) >= info.min
            and float(values.max()) < float(int(info.max) + 1)
            and bool((values == np.trunc(values)).all())
        )
    return values.astype(target) if lossless else values


def _restore_categorical(values: np.ndarray, dtype: str, levels: tuple[Any, ...] | None) -> Any:
    """An object column in its training dtype (category with the training categories, …)."""
    if dtype == "object":
        return values
    target = _pandas_dtype(dtype)
    if target is None or isinstance(target, np.dtype):
        return values
    import pandas as pd

    if isinstance(target, pd.CategoricalDtype):
        return pd.Categorical(values, categories=None if levels is None else list(levels))
    try:
        return pd.array(values, dtype=target)
    except (TypeError, ValueError):
        return values
