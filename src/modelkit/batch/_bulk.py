"""A chunk's rows as one SQLite ``SELECT``: each column travels as one parameter.

``executemany`` binds every value from Python, about a microsecond per row with the GIL held.
Here each column of a chunk is packed into a single parameter with numpy and unpacked by SQLite
inside one statement, which runs without the GIL (so the next chunk is read and predicted
meanwhile). Row ``i`` of the chunk is row ``i`` of ``json_each(?1)``; each column is, for that
``i``:

- integers in arithmetic progression (generated row numbers, a sorted id, a constant):
  ``first + i * step``;
- other 64-bit integers and booleans: fixed-width decimal text in a BLOB, cut with ``substr``
  (byte offsets on a BLOB, so O(1)) and read with ``CAST(… AS INTEGER)``;
- finite floats, exactly: the integer significand and the power of two of each value
  (``m * pow(2.0, e)``, both exact in binary floating point), when this SQLite has ``pow``
  and it gives every power of two exactly (checked once);
- text: one column of ``str`` values, as the JSON array the statement iterates over.

A chunk with anything else (NaN, ``None``, mixed objects, two text columns) gets ``None``:
the caller binds it row by row instead.
"""

# ruff: noqa: S608
# (S608: the statement holds only parameter markers, numbers and the caller's SQL literals.)
from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

__all__ = ["Select", "select_rows"]

_MANTISSA_BITS = 52
_EXPONENT_MASK = 0x7FF


@attrs.frozen
class Select:
    """``SELECT <one expression per column> FROM json_each(?1)`` and its parameters."""

    sql: str
    params: tuple[Any, ...]


@functools.cache
def exact_powers_of_two() -> bool:
    """Whether this SQLite's ``pow(2.0, e)`` is exactly ``2**e`` for every exponent a finite
    float needs (-1074 to 971); ``False`` without math functions."""
    conn = sqlite3.connect(":memory:")
    try:
        rows = conn.execute(
            "WITH RECURSIVE e(x) AS (SELECT -1074 UNION ALL SELECT x + 1 FROM e WHERE x < 971) "
            "SELECT x, pow(2.0, x) FROM e"
        ).fetchall()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return len(rows) == 2046 and all(value == math.ldexp(1.0, x) for x, value in rows)


def _fixed_width(values: np.ndarray) -> tuple[bytes, int]:
    """int64 values as right-aligned decimal text, all ``width`` bytes wide (sign included)."""
    magnitude = np.abs(values)
    width = len(str(int(magnitude.max()))) + 1 if len(values) else 1
    out = np.empty((len(values), width), dtype=np.uint8)
    rest = magnitude.copy()
    for j in range(width - 1, 0, -1):
        out[:, j] = rest % 10 + 48
        rest //= 10
    out[:, 0] = np.where(values < 0, 45, 32)  # "-" or " ": CAST skips leading spaces
    # leading zeros are fine for CAST; blank them anyway so the text reads as numbers
    return out.tobytes(), width


def _progression(values: np.ndarray) -> tuple[int, int] | None:
    """``(first, step)`` when the integers are ``first + i * step``, else ``None``."""
    if len(values) == 0:
        return None
    first = int(values[0])
    if len(values) == 1:
        return first, 0
    step = int(values[1]) - first
    if not -(2**63) <= step < 2**63 or first + step * (len(values) - 1) != int(values[-1]):
        return None
    # differences wrap around in int64, but with both ends exact every value is exact
    return (first, step) if bool((np.diff(values) == np.int64(step)).all()) else None


def _as_int64(values: np.ndarray) -> np.ndarray | None:
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int64)
    if kind == "i":
        values = values.astype(np.int64, copy=False)
        if len(values) and int(values.min()) == np.iinfo(np.int64).min:  # no magnitude
            return None
        return values
    if kind == "u":
        if len(values) and int(values.max()) > np.iinfo(np.int64).max:
            return None
        return values.astype(np.int64)
    return None


def _text(values: np.ndarray) -> str | None:
    """The column as a JSON array of strings, or ``None`` unless every value is a ``str``
    without NUL characters."""
    if values.dtype.kind == "U":
        items: list[Any] = values.tolist()
    elif values.dtype.kind == "O":
        items = values.tolist()
        if not all(type(item) is str for item in items):
            return None
    else:
        return None
    payload = json.dumps(items)
    return None if "\\u0000" in payload else payload


class _Builder:
    def __init__(self) -> None:
        self.params: list[Any] = [None]  # ?1 is the array json_each iterates over

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"?{len(self.params)}"

    def integers(self, values: np.ndarray) -> str:
        progression = _progression(values)
        if progression is not None:
            first, step = progression
            return f"({self.param(first)} + key * {self.param(step)})"
        blob, width = _fixed_width(values)
        return f"CAST(substr({self.param(blob)}, key * {width} + 1, {width}) AS INTEGER)"

    def floats(self, values: np.ndarray) -> str:
        bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
        field = (bits >> _MANTISSA_BITS) & _EXPONENT_MASK
        fraction = bits & ((1 << _MANTISSA_BITS) - 1)
        significand = np.where(field == 0, fraction, fraction | (1 << _MANTISSA_BITS))
        significand = np.where(bits < 0, -significand, significand)
        exponent = np.where(field == 0, -1074, field - 1075)
        m_blob, m_width = _fixed_width(significand)
        e_blob, e_width = _fixed_width(exponent)
        m = f"CAST(substr({self.param(m_blob)}, key * {m_width} + 1, {m_width}) AS INTEGER)"
        e = f"CAST(substr({self.param(e_blob)}, key * {e_width} + 1, {e_width}) AS INTEGER)"
        return f"({m} * pow(2.0, {e}))"


def select_rows(
    columns: Sequence[np.ndarray], n: int, *, constants: Sequence[str] = ()
) -> Select | None:
    """A ``SELECT`` giving the ``n`` rows of ``columns`` (1-D arrays of ``n`` values), then
    the SQL expressions ``constants``, or ``None`` when some column cannot be packed (see the
    module's docstring)."""
    if n == 0 or sqlite3.sqlite_version_info < (3, 9, 0):  # json_each
        return None
    builder = _Builder()
    driver: str | None = None
    expressions: list[str] = []
    for values in columns:
        integers = _as_int64(values)
        if integers is not None:
            expressions.append(builder.integers(integers))
        elif values.dtype.kind == "f":
            if not (exact_powers_of_two() and bool(np.isfinite(values).all())):
                return None
            expressions.append(builder.floats(values))
        else:
            if driver is not None:
                return None
            driver = _text(values)
            if driver is None:
                return None
            expressions.append("value")
    if driver is None:  # nothing to iterate over: n zeros
        driver = "[" + "0," * (n - 1) + "0]"
    builder.params[0] = driver
    expressions.extend(constants)
    return Select(
        sql=f"SELECT {', '.join(expressions)} FROM json_each(?1)", params=tuple(builder.params)
    )
