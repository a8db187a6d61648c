"""Read a training table from a CSV or Parquet file into ``(X, y, feature_names)``.

Behind ``modelkit train --data FILE --target COLUMN``. The format comes from the file name:
``.csv`` (also ``.csv.gz``) or ``.parquet`` / ``.pq``.

- With pandas installed (extra ``pandas``), ``X`` is a DataFrame of every column but the
  target and ``y`` a Series: any column type pandas reads works, and the model's signature
  keeps the column names and types.
- Without pandas, a CSV file is read with the :mod:`csv` module and converted with numpy:
  every feature column must be numeric (empty cells and ``NA``-like markers become NaN); the
  target may hold numbers or labels. ``X`` is a 2-D float64 array.
- Parquet needs pyarrow (extra ``parquet``) either way.

Every problem a user can fix (no such file, no such column, an empty or ragged file, a
non-numeric column without pandas, missing targets) is a :class:`~modelkit.exceptions.DataError`
or :class:`~modelkit.exceptions.NotFoundError` naming the file, the column and the row.
Rows are counted from 0, the header excluded.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import importlib.util
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from modelkit.exceptions import DataError, MissingDependencyError, NotFoundError

__all__ = ["FORMATS", "NA_VALUES", "TrainingTable", "read_training_table"]

FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""File name endings this module reads, and the format each means."""

NA_VALUES = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
    | {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
"""Cells read as missing without pandas: the markers pandas' ``read_csv`` uses by default."""

_NUMERIC_KINDS = frozenset("biuf")


class TrainingTable(NamedTuple):
    """Features, targets and feature names read from a file (unpacks as ``X, y, names``)."""

    X: Any
    """A pandas DataFrame, or a 2-D float64 ndarray when read without pandas."""
    y: Any
    """A pandas Series, or a 1-D ndarray (int64, float64, or str labels)."""
    feature_names: list[str]
    """The feature columns in file order (every column but the target)."""


def pandas_available() -> bool:
    """Whether pandas can be imported (without importing it)."""
    return importlib.util.find_spec("pandas") is not None


def file_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name; a :class:`DataError` otherwise."""
    name = path.name.lower()
    for ending, kind in FORMATS.items():
        if name.endswith(ending):
            return kind
    raise DataError(
        f"cannot tell the format of {str(path)!r} from its name; use a file ending in "
        f"{', '.join(FORMATS)}"
    )


def read_training_table(
    path: str | os.PathLike[str],
    target: str,
    *,
    use_pandas: bool | None = None,
) -> TrainingTable:
    """Read ``path`` and split it into features and the ``target`` column.

    ``use_pandas`` chooses the reader: ``None`` (default) uses pandas when it is installed,
    ``False`` forces the pandas-free reader, ``True`` requires pandas.

    Raises:
        NotFoundError: the file does not exist.
        DataError: unknown file type, unreadable or empty file, no ``target`` column, no
            feature column, ragged CSV rows, missing targets, or (without pandas) a
            non-numeric feature column.
        ModelkitError: a library the format needs is not installed (the message names the
            extra to install).
    """
    path = Path(path)
    kind = file_format(path)
    if not path.exists():
        raise NotFoundError(f"no such file: {str(path)!r}")
    if use_pandas is None:
        use_pandas = pandas_available()
    if use_pandas:
        return _read_with_pandas(path, kind, target)
    if kind == "parquet":
        return _read_parquet_with_pyarrow(path, target)
    return _read_csv(path, target)


# -- shared checks -------------------------------------------------------------------------


def _split_columns(path: Path, columns: Sequence[str], target: str) -> list[str]:
    """The feature columns; errors for duplicates, a missing target or no features."""
    repeated = sorted(name for name, count in Counter(columns).items() if count > 1)
    if repeated:
        raise DataError(f"{path.name} repeats column names {repeated}; give each column one name")
    if target not in columns:
        close = difflib.get_close_matches(target, list(columns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = ", ".join(repr(c) for c in columns[:20]) + (", …" if len(columns) > 20 else "")
        raise DataError(
            f"no target column {target!r} in {path.name}{hint}; its columns are: {shown}"
        )
    features = [c for c in columns if c != target]
    if not features:
        raise DataError(
            f"{path.name} has no feature columns besides the target {target!r}; "
            "add the columns to train on"
        )
    return features


def _check_targets_present(path: Path, target: str, missing: np.ndarray) -> None:
    """Refuse rows whose target is missing, naming the first ones."""
    rows = np.flatnonzero(missing)
    if rows.size:
        shown = ", ".join(str(r) for r in rows[:5]) + (", …" if rows.size > 5 else "")
        raise DataError(
            f"target column {target!r} of {path.name} is missing in {rows.size} "
            f"row{'s' if rows.size > 1 else ''} ({shown}); fill or drop those rows"
        )


def _check_rows(path: Path, n_rows: int) -> None:
    if n_rows == 0:
        raise DataError(f"{path.name} has a header but no rows: there is nothing to train on")


def _missing_dependency(
    what: str, module: str, extra: str, exc: ImportError
) -> MissingDependencyError:
    return MissingDependencyError(
        f"{what} needs {module}, which is not installed: pip install 'modelkit[{extra}]' ({exc})"
    )


# -- pandas --------------------------------------------------------------------------------


def _read_with_pandas(path: Path, kind: str, target: str) -> TrainingTable:
    try:
        import pandas as pd
    except ImportError as exc:
        raise _missing_dependency(
            f"reading {path.name} with pandas", "pandas", "pandas", exc
        ) from exc
    if kind == "parquet":
        _require_pyarrow(path)
        frame = _pandas_read(path, lambda: pd.read_parquet(path))
    else:
        frame = _pandas_read(path, lambda: pd.read_csv(path))
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    features = _split_columns(path, columns, target)
    _check_rows(path, len(frame))
    y = frame[target]
    _check_targets_present(path, target, y.isna().to_numpy())
    return TrainingTable(frame[features], y, features)


def _pandas_read(path: Path, read: Any) -> Any:
    import pandas as pd

    try:
        return read()
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path.name} is empty: expected a header line and rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow.parquet  # noqa: F401 - imported to check it is there
    except ImportError as exc:
        raise _missing_dependency(f"reading {path.name}", "pyarrow", "parquet", exc) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- without pandas: Parquet through pyarrow -------------------------------------------------


def _read_parquet_with_pyarrow(path: Path, target: str) -> TrainingTable:
    _require_pyarrow(path)
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors subclass these
        raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc
    columns = [str(c) for c in table.column_names]
    features = _split_columns(path, columns, target)
    _check_rows(path, table.num_rows)
    arrays = [table.column(i).to_numpy() for i in range(table.num_columns)]
    by_name = dict(zip(columns, arrays, strict=True))
    for name in features:
        if by_name[name].dtype.kind not in _NUMERIC_KINDS:
            raise _not_numeric(path, name, by_name[name])
    X = np.column_stack([by_name[name].astype(np.float64) for name in features])
    missing = table.column(target).is_null(nan_is_null=True).to_numpy()
    _check_targets_present(path, target, np.asarray(missing, dtype=bool))
    return TrainingTable(X, by_name[target], features)


def _not_numeric(path: Path, name: str, values: np.ndarray) -> DataError:
    example = next((v for v in values if v is not None and not _is_number(v)), None)
    found = f" (e.g. {example!r})" if example is not None else ""
    return DataError(
        f"column {name!r} of {path.name} is not numeric{found}: without pandas every feature "
        "must be a number; install pandas for text and categorical columns: "
        "pip install 'modelkit[pandas]'"
    )


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


# -- without pandas: CSV through the csv module ---------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the non-blank rows of a CSV file."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc
    if not header:
        raise DataError(f"{path.name} is empty: expected a header line and rows")
    return [name.strip() for name in header], rows


def _read_csv(path: Path, target: str) -> TrainingTable:
    columns, rows = _csv_rows(path)
    features = _split_columns(path, columns, target)
    _check_rows(path, len(rows))
    lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
    ragged = np.flatnonzero(lengths != len(columns))
    if ragged.size:
        row = int(ragged[0])
        raise DataError(
            f"row {row} of {path.name} has {lengths[row]} fields but the header has "
            f"{len(columns)} ({ragged.size} such row{'s' if ragged.size > 1 else ''}); "
            "every row needs one value per column"
        )
    cells = np.char.strip(np.array(rows, dtype=str))
    missing = np.isin(cells, list(NA_VALUES))
    index = {name: i for i, name in enumerate(columns)}
    feature_idx = [index[name] for name in features]
    numbers = np.where(missing[:, feature_idx], "nan", cells[:, feature_idx])
    try:
        X = numbers.astype(np.float64)
    except ValueError:
        raise _first_non_numeric(path, features, numbers) from None
    t = index[target]
    _check_targets_present(path, target, missing[:, t])
    return TrainingTable(X, _targets(cells[:, t]), features)


def _first_non_numeric(path: Path, features: Sequence[str], numbers: np.ndarray) -> DataError:
    """Walk the columns (an error path) to name the first cell that is not a number."""
    for j, name in enumerate(features):
        column = numbers[:, j]
        bad = [i for i, value in enumerate(column) if not _is_number(value)]
        if bad:
            return DataError(
                f"column {name!r} of {path.name} is not numeric (row {bad[0]}: "
                f"{str(column[bad[0]])!r}): without pandas every feature must be a number; "
                "install pandas for text and categorical columns: pip install 'modelkit[pandas]'"
            )
    return DataError(f"{path.name} has values that are not numbers")  # pragma: no cover


def _targets(values: np.ndarray) -> np.ndarray:
    """Integer labels if every target is an integer, else floats, else the text labels."""
    for dtype in (np.int64, np.float64):
        try:
            return values.astype(dtype)
        except (ValueError, OverflowError):
            continue
    return values.astype(str)
