"""Hypothesis strategies shared by the test suite, one section per area."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# -- datasets and profiles --

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
"""Finite floats of a magnitude where merged moments can be compared with a tolerance."""

NUMERIC_DTYPES = st.sampled_from(
    [np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_, np.complex128]
)


@st.composite
def numeric_arrays(draw: st.DrawFn, *, min_dims: int = 1, max_dims: int = 3) -> np.ndarray:
    """Arrays of any numeric dtype and shape (values may include NaN and inf)."""
    dtype = draw(NUMERIC_DTYPES)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=6))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def strided_views(draw: st.DrawFn) -> np.ndarray:
    """Non-contiguous views (steps, reversals, transposes) of numeric 2-D or 3-D arrays."""
    base = draw(numeric_arrays(min_dims=2, max_dims=3))
    view = base.T if draw(st.booleans()) else base
    slices = tuple(
        slice(None, None, draw(st.sampled_from([1, 2, -1, -2]))) for _ in range(view.ndim)
    )
    return view[slices]


OBJECT_VALUES = st.one_of(
    st.text(max_size=6),
    st.none(),
    st.just(math.nan),
    st.integers(min_value=-(2**70), max_value=2**70),
    FINITE,
    st.booleans(),
    st.binary(max_size=4),
)
"""Python values an object column may hold, every kind the fingerprint tells apart."""


@st.composite
def column_values(draw: st.DrawFn, n: int, kind: str) -> list[Any]:
    """``n`` values of one column: ``float`` (with NaN/inf), ``int``, ``text`` (with None)."""
    if kind == "float":
        special = st.sampled_from([math.nan, math.inf, -math.inf])
        return draw(st.lists(st.one_of(FINITE, FINITE, FINITE, special), min_size=n, max_size=n))
    if kind == "int":
        return draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    levels = st.sampled_from(["a", "b", "c", "d", "e", "long level " * 3, None])
    return draw(st.lists(st.one_of(levels, st.text(max_size=3)), min_size=n, max_size=n))


@st.composite
def tables(draw: st.DrawFn, *, min_rows: int = 0, max_rows: int = 40) -> dict[str, list[Any]]:
    """A small mixed table as ``{column name: values}`` (float, int and text columns)."""
    n = draw(st.integers(min_rows, max_rows))
    kinds = draw(st.lists(st.sampled_from(["float", "int", "text"]), min_size=1, max_size=4))
    return {f"{kind}{j}": draw(column_values(n, kind)) for j, kind in enumerate(kinds)}


@st.composite
def split_points(draw: st.DrawFn, n: int, *, max_parts: int = 4) -> list[int]:
    """Sorted cut positions in ``0..n`` cutting ``n`` rows into shards (some may be empty)."""
    cuts = draw(st.lists(st.integers(0, n), max_size=max_parts - 1))
    return sorted(cuts)


# -- signatures and model inputs --

FEATURE_NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=6, unique=True
)
"""One to six distinct feature names."""

NUMBERS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
"""Values a numeric feature accepts: bool, int (beyond int64 too) and finite float."""

NOT_NUMBERS = st.one_of(
    st.text(max_size=5),
    st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True),
    st.sampled_from([math.inf, -math.inf]),
    st.lists(st.integers(-3, 3), min_size=1, max_size=2),
)
"""Values a numeric feature rejects: text (numeric-looking too), ±inf, nested lists."""

LEVELS = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4, unique=True)
"""The levels of one categorical feature."""


@st.composite
def numeric_rows(
    draw: st.DrawFn,
    n_features: int,
    *,
    min_rows: int = 1,
    max_rows: int = 6,
    missing: bool = False,
) -> list[list[Any]]:
    """Rows (lists) of ``n_features`` accepted numeric values; ``None``/NaN too if ``missing``."""
    value = st.one_of(NUMBERS, st.none(), st.just(math.nan)) if missing else NUMBERS
    row = st.lists(value, min_size=n_features, max_size=n_features)
    return draw(st.lists(row, min_size=min_rows, max_size=max_rows))


@st.composite
def corrupted_rows(
    draw: st.DrawFn, n_features: int, bad: st.SearchStrategy[Any] = NOT_NUMBERS
) -> tuple[list[list[Any]], int, int]:
    """``(rows, i, j)``: valid numeric rows whose cell at row ``i``, feature ``j`` is ``bad``."""
    rows = draw(numeric_rows(n_features))
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, n_features - 1))
    rows[i][j] = draw(bad)
    return rows, i, j


@st.composite
def mixed_records(
    draw: st.DrawFn, *, min_rows: int = 1, max_rows: int = 6
) -> tuple[dict[str, list[str] | None], list[dict[str, Any]]]:
    """``(features, rows)`` with numeric and categorical features.

    ``features`` maps each name, in column order, to its levels (``None`` for a numeric
    feature); there is at least one of each kind. ``rows`` are dicts of accepted values.
    """
    names = draw(FEATURE_NAMES.filter(lambda names: len(names) >= 2))
    categorical = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    categorical[:2] = [True, False]
    order = draw(st.permutations(range(len(names))))
    features = {names[k]: draw(LEVELS) if categorical[k] else None for k in order}
    n_rows = draw(st.integers(min_rows, max_rows))
    rows = [
        {
            name: draw(NUMBERS) if levels is None else draw(st.sampled_from(levels))
            for name, levels in features.items()
        }
        for _ in range(n_rows)
    ]
    return features, rows
