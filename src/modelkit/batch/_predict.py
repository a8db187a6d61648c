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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._tabular import NUMERIC_KINDS, describe, missing_objects
from modelkit.batch.sinks import ChunkOutput, Quarantined, str_tuple
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
        reserved = {self.key_name, *_reserved_outputs(self)}
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
    for j, column in enumerate(values):
        block[:, j] = column
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


def predict_chunk(plan: Plan, chunk: Chunk) -> ChunkOutput:
    """Run the model on one chunk and return the rows to write (and the rows set aside)."""
    n = chunk.n_rows
    columns = chunk.columns
    if plan.key is None:
        keys = np.arange(chunk.start, chunk.start + n, dtype=np.int64)
    else:
        keys = columns[plan.key]
    block = _block(plan, columns, n)
    try:
        predictions = _outputs(plan, block)
    except SignatureError:
        if plan.on_error == "fail":
            raise
        good = None
    else:
        good = np.ones(n, dtype=bool)
    quarantined: Quarantined | None = None
    skipped = 0
    if good is None:
        bad, reasons, cleaned = _problems(plan, columns, n)
        good = ~bad
        rows = np.flatnonzero(bad)
        if plan.on_error == "quarantine":
            quarantined = Quarantined(
                keys=keys[rows],
                rows=rows.astype(np.int64) + chunk.start,
                reasons=[str(reasons[i]) for i in rows.tolist()],
                data=[_row_data(plan, columns, i) for i in rows.tolist()],
            )
        else:
            skipped = int(rows.size)
        subset = {name: cleaned[name][good] for name in plan.features}
        n_good = int(good.sum())
        predictions = _outputs(plan, _block(plan, subset, n_good)) if n_good else {}
        keys = keys[good]
    out: dict[str, np.ndarray] = {plan.key_name: keys}
    for name in plan.carry:
        out[name] = columns[name] if good.all() else columns[name][good]
    out.update(predictions)
    return ChunkOutput(
        chunk_id=chunk.chunk_id,
        start=chunk.start,
        rows_in=n,
        columns=out,
        rows_out=len(keys),
        quarantined=quarantined,
        rows_skipped=skipped,
    )
