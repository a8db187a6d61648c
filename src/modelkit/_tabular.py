"""Turn user input into a table in a signature's column order, and check its values.

Machinery behind :meth:`modelkit.Signature.validate`. Inputs come as numpy arrays, lists of
rows, lists of dicts keyed by feature name, a single row, or pandas DataFrames; everything here
turns them into 2-D numpy arrays (or a reordered DataFrame) and checks them with whole-array
numpy operations. Only once a check has failed do the functions walk the data in Python to name
the exact feature and row at fault. Row numbers in messages are 0-based.

pandas is never imported here: a DataFrame is recognised through ``sys.modules``, so code that
never imported pandas never pays for it.
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelkit.exceptions import SignatureError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "as_float",
    "check_categorical",
    "check_finite",
    "describe",
    "frame_columns",
    "frame_values",
    "is_dataframe",
    "missing_objects",
    "plural",
    "quote",
    "to_grid",
]

NUMERIC_KINDS = frozenset("biuf")
"""numpy dtype kinds modelkit treats as numeric: bool, signed and unsigned int, float."""

_F64 = np.dtype(np.float64)
_NUMBER_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)
_SEQUENCE_TYPES = (list, tuple, np.ndarray)


# -- small helpers -------------------------------------------------------------------------


def is_dataframe(obj: object) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _is_series(obj: object) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.Series)


def is_missing(value: object) -> bool:
    """Whether one value means "missing": ``None``, NaN, or pandas' ``NA`` / ``NaT``."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return type(value).__name__ in {"NAType", "NaTType"}


def describe(value: object, limit: int = 40) -> str:
    """Show a value in a message: its repr, numpy scalars as plain Python, cut to ``limit``."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    """``"1 feature"``, ``"20 features"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def quote(values: Sequence[object], limit: int = 10) -> str:
    """``'a', 'b', 'c'``: a readable list for messages, cut after ``limit`` items."""
    shown = ", ".join(describe(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", … ({len(values)} in all)"
    return shown


def _first_true(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first ``True`` of ``mask`` in row-major order."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


# -- shapes: from any input to a 2-D grid --------------------------------------------------


def to_grid(data: Any, names: Sequence[str], *, keep_objects: bool) -> np.ndarray:
    """Turn a non-DataFrame input into a 2-D array with one column per feature of ``names``.

    Accepted: a numpy array; a list (or tuple) of rows; a list of dicts keyed by feature name;
    one dict; one row as a flat list or 1-D array. A 1-D input is one row when there are several
    features, and a column of rows when there is exactly one feature. ``keep_objects`` builds
    lists as object arrays so that Python values keep their types (needed when some features
    are categorical); otherwise numpy picks the dtype and strings force an object array so the
    exact offending value can be reported.
    """
    n = len(names)
    grid = _as_array(data, names, keep_objects=keep_objects)
    if grid.ndim == 1:
        if grid.size == 0:
            raise SignatureError("expected at least one row, got none")
        grid = grid.reshape(-1, 1) if n == 1 else grid.reshape(1, -1)
    elif grid.ndim != 2:
        what = "a single value" if grid.ndim == 0 else f"a {grid.ndim}-D array"
        raise SignatureError(
            f"expected a 2-D table of rows with {plural(n, 'feature')}, got {what}"
        )
    if grid.shape[1] != n:
        raise SignatureError(f"expected {plural(n, 'feature')}, got {grid.shape[1]}")
    if grid.shape[0] == 0:
        raise SignatureError("expected at least one row, got none")
    return grid


def _as_array(data: Any, names: Sequence[str], *, keep_objects: bool) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, Mapping):
        return _records([data], names, keep_objects=keep_objects)
    if isinstance(data, list | tuple):
        if data and isinstance(data[0], Mapping):
            return _records(data, names, keep_objects=keep_objects)
        return _from_rows(data, names, keep_objects=keep_objects)
    if _is_series(data):
        index = data.index.tolist()
        if index and all(isinstance(label, str) for label in index):
            record = dict(zip(index, data.tolist(), strict=True))
            return _records([record], names, keep_objects=True)
        return np.asarray(data.to_numpy())
    raise SignatureError(
        "expected rows as a list of lists, a list of dicts, a numpy array or a DataFrame, "
        f"got {type(data).__name__}"
    )


def _from_rows(rows: Sequence[Any], names: Sequence[str], *, keep_objects: bool) -> np.ndarray:
    try:
        grid = np.array(rows, dtype=object) if keep_objects else np.asarray(rows)
    except ValueError as exc:  # rows of different lengths, or a value that is a sequence
        raise _ragged(rows, names) from exc
    if grid.ndim > 2 or (
        grid.ndim == 1
        and grid.size
        and grid.dtype.kind == "O"
        and isinstance(grid[0], _SEQUENCE_TYPES)
    ):
        raise _ragged(rows, names)  # some value is itself a list, or rows differ in length
    if grid.dtype.kind in "US":
        # numpy turned every value into text; rebuild with the original Python objects so the
        # check can tell 1.5 from "1.5" and name the offending value.
        return np.array(rows, dtype=object)
    return grid


def _ragged(rows: Sequence[Any], names: Sequence[str]) -> SignatureError:
    n = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, str):
            if n == 1:
                continue
            return SignatureError(
                f"row {i} is a {type(row).__name__}, expected a list of {n} feature values"
            )
        if len(row) != n:
            return SignatureError(f"expected {plural(n, 'feature')}, got {len(row)} at row {i}")
        for j, value in enumerate(row):
            if isinstance(value, (*_SEQUENCE_TYPES, Mapping)):
                return SignatureError(
                    f"feature {names[j]!r} must be a single value, got {describe(value)} at row {i}"
                )
    return SignatureError(f"expected a 2-D table of rows with {plural(n, 'feature')}")


def _records(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], *, keep_objects: bool
) -> np.ndarray:
    """Pick ``names`` out of every dict, in order; unknown or missing keys are errors."""
    getter = operator.itemgetter(*names)
    try:
        values = list(map(getter, rows))
    except (KeyError, TypeError) as exc:
        raise _bad_record(rows, names) from exc
    n = len(names)
    if set(map(len, rows)) != {n}:  # every name is present, so a longer dict has extra keys
        known = set(names)
        for i, row in enumerate(rows):
            unknown = [key for key in row if key not in known]
            if unknown:
                raise SignatureError(
                    f"unknown features: {quote(unknown)} at row {i} (expected {quote(names)})"
                )
    if n == 1:  # itemgetter gave bare values: make them one-value rows
        values = list(zip(values))
    return _from_rows(values, names, keep_objects=keep_objects)


def _bad_record(rows: Sequence[Any], names: Sequence[str]) -> SignatureError:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            return SignatureError(
                f"row {i} is a {type(row).__name__}, expected a dict keyed by feature name"
            )
        missing = [name for name in names if name not in row]
        if missing:
            return SignatureError(f"missing features: {quote(missing)} at row {i}")
    return SignatureError("could not read the rows as dicts keyed by feature name")


def frame_columns(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Return ``df`` with exactly the columns ``names``, in that order.

    As in scikit-learn, a DataFrame whose column labels are all strings is matched by name
    (reordered when needed; missing or extra columns are errors); any other DataFrame is taken
    by position.
    """
    labels = df.columns.tolist()
    n = len(names)
    if labels and all(isinstance(label, str) for label in labels):
        if labels != list(names):
            if df.columns.has_duplicates:
                dupes = sorted({label for label in labels if labels.count(label) > 1})
                raise SignatureError(f"duplicate columns: {quote(dupes)}")
            present, known = set(labels), set(names)
            missing = [name for name in names if name not in present]
            unknown = [label for label in labels if label not in known]
            problems = []
            if missing:
                problems.append(f"missing features: {quote(missing)}")
            if unknown:
                problems.append(f"unknown features: {quote(unknown)}")
            if problems:
                raise SignatureError("; ".join(problems))
            df = df[list(names)]
    elif len(labels) != n:
        raise SignatureError(f"expected {plural(n, 'feature')}, got {len(labels)}")
    if len(df) == 0:
        raise SignatureError("expected at least one row, got none")
    return df


def frame_values(df: pd.DataFrame) -> np.ndarray:
    """The values of ``df`` as one 2-D array: float64 when every column is numeric.

    Otherwise an object array in which every missing value (NaN, ``None``, ``pd.NA``) is
    ``None``, ready for :func:`as_float` to check value by value.
    """
    dtypes = df.dtypes.tolist()
    values: np.ndarray
    if all(isinstance(dt, np.dtype) and dt.kind in NUMERIC_KINDS for dt in dtypes):
        values = df.to_numpy(dtype=_F64)
    elif all(dt.kind in NUMERIC_KINDS for dt in dtypes):  # nullable Int64, Float64, boolean
        values = df.to_numpy(dtype=_F64, na_value=np.nan)
    else:
        values = df.to_numpy(dtype=object, na_value=None)
    return values


# -- values: numbers -----------------------------------------------------------------------


def as_float(block: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Convert a 2-D block of numeric features to C-contiguous float64, exactly.

    One memory layout whatever the input form: BLAS may round differently on a Fortran-ordered
    array, and every form of the same rows must give bit-identical predictions.

    bool, int and float values convert; ``None`` (JSON ``null``) becomes NaN; anything else,
    including numeric-looking strings such as ``"1.5"``, is a :class:`SignatureError` naming
    the feature (``names[j]`` for column ``j``) and the row.
    """
    kind = block.dtype.kind
    if kind in NUMERIC_KINDS:
        return np.asarray(block, dtype=_F64, order="C")
    if kind == "O":
        return _objects_as_float(block, names)
    raise _not_numeric(block, names)


def _objects_as_float(block: np.ndarray, names: Sequence[str]) -> np.ndarray:
    try:
        missing = block == None  # noqa: E711 - elementwise comparison, not an identity test
        filled = np.where(missing, np.nan, block) if missing.any() else block
        converted = np.asarray(filled.tolist())
    except (TypeError, ValueError):  # a value that refuses comparison, or nested sequences
        converted = None
    if (
        converted is not None
        and converted.dtype.kind in NUMERIC_KINDS
        and converted.shape == block.shape
    ):
        return converted.astype(_F64, copy=False)
    # Some value is not a plain number: find it; or accept exotic but valid numbers (ints
    # beyond int64, pandas NA) one by one.
    out = np.empty(block.shape, dtype=_F64)
    for i, row in enumerate(block):
        for j, value in enumerate(row):
            if is_missing(value):
                out[i, j] = np.nan
            elif isinstance(value, _NUMBER_TYPES):
                try:
                    out[i, j] = float(value)
                except OverflowError as exc:
                    raise SignatureError(
                        f"feature {names[j]!r} must be a finite number, "
                        f"got {describe(value)} at row {i}"
                    ) from exc
            else:
                raise _not_numeric_at(names[j], value, i)
    return out


def _not_numeric(block: np.ndarray, names: Sequence[str]) -> SignatureError:
    for i, row in enumerate(block):
        for j, value in enumerate(row):
            if not (is_missing(value) or isinstance(value, _NUMBER_TYPES)):
                return _not_numeric_at(names[j], value, i)
    return SignatureError(f"expected numeric features, got values of dtype {block.dtype}")


def _not_numeric_at(name: str, value: object, row: int) -> SignatureError:
    return SignatureError(f"feature {name!r} must be numeric, got {describe(value)} at row {row}")


def check_finite(block: np.ndarray, names: Sequence[str], *, allow_nan: bool) -> bool:
    """Reject ±inf always and NaN unless ``allow_nan``; return whether any NaN is present.

    ``block`` is a 2-D float64 array whose column ``j`` is feature ``names[j]``.
    """
    if np.isfinite(block).all():
        return False
    if allow_nan:
        bad = np.isinf(block)
        if not bad.any():
            return True
    else:
        bad = ~np.isfinite(block)
    i, j = _first_true(bad)
    value = float(block[i, j])
    if math.isnan(value):
        raise SignatureError(
            f"feature {names[j]!r} is missing (NaN) at row {i}, but the model does not accept "
            "missing values; fill it in first"
        )
    raise SignatureError(f"feature {names[j]!r} must be finite, got {value} at row {i}")


# -- values: categories --------------------------------------------------------------------


def missing_objects(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the missing entries (``None``, NaN, ``pd.NA``) of a 1-D object array."""
    try:
        return np.asarray((values == None) | np.not_equal(values, values), dtype=bool)  # noqa: E711
    except (TypeError, ValueError):  # pd.NA and friends refuse to be compared
        return np.fromiter(map(is_missing, values), dtype=bool, count=len(values))


def check_categorical(
    values: np.ndarray,
    name: str,
    levels: frozenset[Any] | None,
    *,
    allow_missing: bool,
    missing: np.ndarray | None = None,
    expected: str = "",
) -> bool:
    """Check one categorical column; return whether it has missing values.

    ``levels`` is the set of accepted values (``None``: any value). ``missing`` is a
    precomputed missing-value mask (pandas gives one for free); ``expected`` is the rendered
    list of levels for the message.
    """
    if missing is None:
        kind = values.dtype.kind
        if kind == "O":
            missing = missing_objects(values)
        elif kind in "fc":
            missing = np.isnan(values)
        else:  # text or integers: nothing can be missing
            missing = np.zeros(len(values), dtype=bool)
    has_missing = bool(missing.any())
    if has_missing and not allow_missing:
        row = int(np.argmax(missing))
        raise SignatureError(
            f"feature {name!r} is missing at row {row}, but the model does not accept "
            "missing values; fill it in first"
        )
    if levels is None:
        return has_missing
    present = values[~missing] if has_missing else values
    try:
        unknown = set(present.tolist()) - levels
    except TypeError:  # an unhashable value, such as a list: found below
        unknown = {None}
    if unknown:
        for row, value in enumerate(values.tolist()):
            if missing[row]:
                continue
            try:
                known = value in levels
            except TypeError:
                known = False
            if not known:
                raise SignatureError(
                    f"feature {name!r} has unknown level {describe(value)} at row {row} "
                    f"(expected one of {expected})"
                )
    return has_missing
