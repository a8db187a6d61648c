"""Predict one chunk: assemble the model's features, set bad rows aside, compute the outputs.

The fast path hands the chunk's feature columns to :meth:`modelkit.Model.predict` as one
float64 block (or an object block when some features are categorical), so the model's
:class:`~modelkit.Signature` checks every value exactly as it does for in-process and served
calls. Only when that check fails and the job keeps going past bad rows (``on_error="skip"`` or
``"quarantine"``) are the rows checked one column at a time, to find each bad row and say why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._tabular import NUMERIC_KINDS, describe, missing_objects
from modelkit.batch._records import CONSTANT_COLUMNS, ChunkOutput, Quarantined, str_tuple
from modelkit.exceptions import DataError, SignatureError, UsageError

if TYPE_CHECKING:
    from modelkit.batch.sources import Chunk
    from modelkit.model import Model

__all__ = ["ON_ERROR", "OUTPUTS", "Plan", "output_column", "predict_chunk"]

ON_ERROR = ("fail", "skip", "quarantine")
"""What a job does with a row its model's signature refuses."""

OUTPUTS = ("predict", "predict_proba", "decision_function")
"""The model methods a job may write the results of."""

GENERATED_KEY = "row"
"""The key column's name when rows are keyed by their number in the source."""

_NOT_WORD = re.compile(r"\W+")

_TILE_ROWS = 4096
"""Rows of the feature block filled at a time (4096 rows of 20 floats: 640 KB)."""


def output_column(prefix: str, label: object) -> str:
    """``proba_<label>`` with anything but letters, digits and ``_`` replaced by ``_``."""
    return f"{prefix}_{_NOT_WORD.sub('_', str(label)).strip('_') or 'x'}"


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise UsageError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


def _check_outputs(_inst: object, _attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = [name for name in value if name not in OUTPUTS]
    if unknown or not value:
        raise UsageError(f"outputs must be some of {OUTPUTS}, got {list(value)}")


@attrs.frozen(kw_only=True)
class Plan:
    """What a job computes for each chunk, decided once before the first one."""

    model: Model
    key: str | None = None
    carry: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    outputs: tuple[str, ...] = attrs.field(
        default=("predict",), converter=str_tuple, validator=_check_outputs
    )
    on_error: str = attrs.field(default="fail", validator=_one_of(ON_ERROR))

    @property
    def features(self) -> tuple[str, ...]:
        """The model's feature names, in its column order."""
        return self.model.signature.names

    @property
    def key_name(self) -> str:
        """The output's key column: the source's key column, or ``row``."""
        return self.key if self.key is not None else GENERATED_KEY

    def read_columns(self) -> list[str]:
        """The source columns a job reads: the key, the features, the carried columns."""
        wanted = [] if self.key is None else [self.key]
        for name in (*self.features, *self.carry):
            if name not in wanted:
                wanted.append(name)
        return wanted

    def check_columns(self, available: Sequence[str], where: str) -> None:
        """Raise :class:`~modelkit.exceptions.DataError` naming what ``where`` lacks."""
        have = set(available)
        if self.key is not None and self.key in self.features:
            raise UsageError(
                f"the key column {self.key!r} is one of the model's features; a key identifies "
                "rows and is never fed to the model: pick another column, or none"
            )
        for role, names in (
            ("key column", [] if self.key is None else [self.key]),
            ("feature", list(self.features)),
            ("carried column", list(self.carry)),
        ):
            missing = [name for name in names if name not in have]
            if missing:
                shown = ", ".join(repr(c) for c in list(available)[:20])
                raise DataError(
                    f"{where} has no {role} {', '.join(repr(m) for m in missing)}; its columns "
                    f"are: {shown or 'none'}"
                )
        if self.key_name in CONSTANT_COLUMNS:
            raise UsageError(
                f"the key column {self.key_name!r} has the name of a column every output row "
                f"has ({', '.join(CONSTANT_COLUMNS)}): rename it in the input"
            )
        reserved = {self.key_name, *_reserved_outputs(self), *CONSTANT_COLUMNS}
        clash = [name for name in self.carry if name in reserved]
        if clash:
            raise UsageError(
                f"carried columns {clash} would clash with the output's columns: carry other "
                "columns, or rename them in the input"
            )

    def column_types(self) -> dict[str, str]:
        """How a text source should read each column: the numeric features as float64."""
        signature = self.model.signature
        categorical = set(signature.categorical)
        types = dict.fromkeys(categorical, "str")
        types.update({name: "float64" for name in signature.names if name not in categorical})
        return types


def _reserved_outputs(plan: Plan) -> list[str]:
    fixed = {"predict": "prediction", "decision_function": "decision"}
    return [fixed[output] for output in plan.outputs if output in fixed]


# -- features -------------------------------------------------------------------------------


def _block(plan: Plan, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The features as one 2-D array in the signature's order (float64 when all numeric)."""
    values = [columns[name] for name in plan.features]
    if all(v.dtype.kind in NUMERIC_KINDS for v in values):
        block = np.empty((n, len(values)), dtype=np.float64)
    else:
        block = np.empty((n, len(values)), dtype=object)
    # row tiles that fit in the CPU cache: a whole column at a time writes one value per
    # cache line, and each of the next columns fetches every line again
    for top in range(0, n, _TILE_ROWS):
        bottom = min(top + _TILE_ROWS, n)
        tile = block[top:bottom]
        for j, column in enumerate(values):
            tile[:, j] = column[top:bottom]
    return block


def _as_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers from a column that may hold text; also a mask of the cells that are not numbers."""
    if values.dtype.kind in NUMERIC_KINDS:
        return values.astype(np.float64, copy=False), np.zeros(len(values), dtype=bool)
    missing = missing_objects(values.astype(object, copy=False))
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~missing).tolist():
        value = values[i]
        if isinstance(value, str):
            text = value.strip()
            if not text:
                continue
            try:
                out[i] = float(text)
            except ValueError:
                bad[i] = True
        elif (
            isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool)
        ) or isinstance(value, bool | np.bool_):
            out[i] = float(value)
        else:
            bad[i] = True
    return out, bad


def _problems(
    plan: Plan, columns: Mapping[str, np.ndarray], n: int
) -> tuple[np.ndarray, list[str | None], dict[str, np.ndarray]]:
    """Each row's first problem (``None``: fine) and the columns with numbers parsed."""
    signature = plan.model.signature
    categorical = set(signature.categorical)
    reasons: list[str | None] = [None] * n
    bad = np.zeros(n, dtype=bool)
    cleaned: dict[str, np.ndarray] = {}

    def mark(mask: np.ndarray, reason: Any) -> None:
        for i in np.flatnonzero(mask & ~bad).tolist():
            reasons[i] = reason(i)
        bad[mask] = True

    for name in signature.names:
        values = columns[name]
        if name in categorical:
            objects = values.astype(object, copy=False)
            missing = missing_objects(objects)
            if not signature.allow_nan:
                mark(missing, lambda _i, name=name: f"feature {name!r} is missing")
            levels = signature.levels.get(name)
            if levels is not None:
                unknown = ~np.isin(objects, np.asarray(levels, dtype=object)) & ~missing
                mark(
                    unknown,
                    lambda i, name=name, objects=objects: (
                        f"feature {name!r} has the unknown level {describe(objects[i])}"
                    ),
                )
            cleaned[name] = objects
            continue
        numbers, not_number = _as_floats(values)
        mark(
            not_number,
            lambda i, name=name, values=values: (
                f"feature {name!r} must be numeric, got {describe(values[i])}"
            ),
        )
        mark(np.isinf(numbers), lambda _i, name=name: f"feature {name!r} must be finite")
        if not signature.allow_nan:
            mark(
                np.isnan(numbers) & ~not_number,
                lambda _i, name=name: f"feature {name!r} is missing",
            )
        cleaned[name] = numbers
    return bad, reasons, cleaned


# -- outputs --------------------------------------------------------------------------------


def _labels(model: Model, width: int) -> list[Any]:
    classes = model.classes
    if classes is not None and len(classes) == width:
        return list(classes.tolist())
    return list(range(width))


def _outputs(plan: Plan, X: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    model = plan.model
    for method in plan.outputs:
        result = np.asarray(getattr(model, method)(X))
        if method == "predict":
            if result.ndim == 1:
                out["prediction"] = result
            else:
                for j in range(result.shape[1]):
                    out[f"prediction_{j}"] = result[:, j]
        elif method == "predict_proba":
            for j, label in enumerate(_labels(model, result.shape[1])):
                out[output_column("proba", label)] = result[:, j]
        elif result.ndim == 1:
            out["decision"] = result
        else:
            for j, label in enumerate(_labels(model, result.shape[1])):
                out[output_column("decision", label)] = result[:, j]
    return out


def _row_data(plan: Plan, columns: Mapping[str, np.ndarray], i: int) -> str:
    data = {}
    for name in plan.features:
        value = columns[name][i]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None if math.isnan(value) else str(value)
        data[name] = value if isinstance(value, str | int | float | bool | None) else str(value)
    return json.dumps(data, separators=(",", ":"))


def _missing_keys(plan: Plan, keys: np.ndarray, start: int) -> np.ndarray | None:
    """The rows without a key (``None`` when every row has one); raises
    :class:`~modelkit.exceptions.DataError` for the first when the job fails on bad rows."""
    if plan.key is None or keys.dtype.kind not in "fO":
        return None
    missing = np.isnan(keys) if keys.dtype.kind == "f" else missing_objects(keys)
    if not missing.any():
        return None
    if plan.on_error == "fail":
        row = int(np.flatnonzero(missing)[0]) + start
        raise DataError(
            f"row {row} has no value in the key column {plan.key!r}: every row needs a key to "
            "identify its prediction; fix the input, or pass on_error='skip' / 'quarantine'"
        )
    return np.asarray(missing, dtype=bool)


@attrs.frozen(eq=False)
class _Sorted:
    """A chunk's rows sorted out one column at a time: which to write, their features and
    predictions, and the rows set aside."""

    good: np.ndarray
    features: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    quarantined: Quarantined | None
    skipped: int


def _sort_out(plan: Plan, chunk: Chunk, keys: np.ndarray, no_key: np.ndarray | None) -> _Sorted:
    """Find each bad row and why; predict the others (``on_error`` is not ``"fail"``)."""
    columns = chunk.columns
    bad, reasons, cleaned = _problems(plan, columns, chunk.n_rows)
    if no_key is not None:
        for i in np.flatnonzero(no_key & ~bad).tolist():
            reasons[i] = f"the key column {plan.key!r} is missing"
        bad |= no_key
    good = ~bad
    rows = np.flatnonzero(bad)
    quarantined = None
    if plan.on_error == "quarantine":
        quarantined = Quarantined(
            keys=keys[rows],
            rows=rows.astype(np.int64) + chunk.start,
            reasons=[str(reasons[i]) for i in rows.tolist()],
            data=[_row_data(plan, columns, i) for i in rows.tolist()],
        )
    features = {name: cleaned[name][good] for name in plan.features}
    n_good = int(good.sum())
    predictions = _outputs(plan, _block(plan, features, n_good)) if n_good else {}
    return _Sorted(
        good=good,
        features=features,
        predictions=predictions,
        quarantined=quarantined,
        skipped=0 if quarantined is not None else int(rows.size),
    )


def _has_text_numbers(plan: Plan, columns: Mapping[str, np.ndarray]) -> bool:
    """Whether a numeric feature holds text cells in a job that sets bad rows aside (a CSV
    cell that is not a number): the chunk is then checked one column at a time at once,
    rather than converted cell by cell to fail the whole-block check first."""
    if plan.on_error == "fail":
        return False
    categorical = set(plan.model.signature.categorical)
    return any(columns[name].dtype.kind == "O" for name in plan.features if name not in categorical)


def predict_chunk(
    plan: Plan,
    chunk: Chunk,
    *,
    on_features: Callable[[Mapping[str, np.ndarray], int], None] | None = None,
) -> ChunkOutput:
    """Run the model on one chunk and return the rows to write (and the rows set aside).

    ``on_features`` is called with the features of the rows the model predicted (as numbers,
    when text cells had to be read) and their count: what a job's drift summary describes.
    """
    n = chunk.n_rows
    columns = chunk.columns
    if plan.key is None:
        keys = np.arange(chunk.start, chunk.start + n, dtype=np.int64)
    else:
        keys = columns[plan.key]
    no_key = _missing_keys(plan, keys, chunk.start)
    sorted_out: _Sorted | None = None
    if no_key is None and not _has_text_numbers(plan, columns):
        try:
            predictions = _outputs(plan, _block(plan, columns, n))
        except SignatureError:
            if plan.on_error == "fail":
                raise
            sorted_out = _sort_out(plan, chunk, keys, no_key)
    else:
        sorted_out = _sort_out(plan, chunk, keys, no_key)
    out: dict[str, np.ndarray] = {}
    if sorted_out is None:
        out[plan.key_name] = keys
        out.update({name: columns[name] for name in plan.carry})
        out.update(predictions)
        if on_features is not None:
            on_features(columns, n)
        return ChunkOutput(
            chunk_id=chunk.chunk_id,
            start=chunk.start,
            rows_in=n,
            columns=out,
            rows_out=n,
            keys_are_rows=plan.key is None,
        )
    good = sorted_out.good
    n_good = int(good.sum())
    out[plan.key_name] = keys[good]
    out.update({name: columns[name][good] for name in plan.carry})
    out.update(sorted_out.predictions)
    if on_features is not None and n_good:
        on_features(sorted_out.features, n_good)
    return ChunkOutput(
        chunk_id=chunk.chunk_id,
        start=chunk.start,
        rows_in=n,
        columns=out,
        rows_out=n_good,
        quarantined=sorted_out.quarantined,
        rows_skipped=sorted_out.skipped,
        row_numbers=np.flatnonzero(good).astype(np.int64) + chunk.start,
        keys_are_rows=plan.key is None,
    )
