"""One ``SELECT`` per chunk gives SQLite exactly the values ``executemany`` would."""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelkit.batch._bulk import exact_powers_of_two, select_rows


def stored(columns: list[np.ndarray], n: int, *, bulk: bool) -> list[tuple[Any, ...]]:
    """The rows SQLite stores for ``columns``, with each value's storage class."""
    conn = sqlite3.connect(":memory:")
    names = [f"c{j}" for j in range(len(columns))]
    conn.execute(f"CREATE TABLE t (i INTEGER PRIMARY KEY, {', '.join(names)})")
    if bulk:
        select = select_rows(columns, n)
        assert select is not None
        conn.execute(f"INSERT INTO t ({', '.join(names)}) {select.sql}", select.params)
    else:
        conn.executemany(
            f"INSERT INTO t ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            zip(*(c.tolist() for c in columns), strict=True),
        )
    picks = ", ".join(f"{name}, typeof({name})" for name in names)
    return conn.execute(f"SELECT {picks} FROM t ORDER BY i").fetchall()


int64s = hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-(2**63) + 1, 2**63 - 1))
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(data=st.data(), ints=int64s)
def test_integers_floats_booleans_and_text_arrive_exactly(data: Any, ints: np.ndarray) -> None:
    n = len(ints)
    floats = data.draw(hnp.arrays(np.float64, n, elements=finite))
    flags = data.draw(hnp.arrays(np.bool_, n))
    text = np.array(data.draw(st.lists(st.text(), min_size=n, max_size=n)), dtype=object)
    text = np.array([t.replace("\x00", "") for t in text], dtype=object)
    columns = [ints, floats, flags, text]
    assert stored(columns, n, bulk=True) == stored(columns, n, bulk=False)


@given(first=st.integers(-(10**12), 10**12), step=st.integers(-1000, 1000), n=st.integers(1, 50))
def test_progressions_travel_as_two_numbers(first: int, step: int, n: int) -> None:
    values = first + step * np.arange(n, dtype=np.int64)
    select = select_rows([values], n)
    assert select is not None
    assert select.params[1:] == (first, step if n > 1 else 0)
    assert stored([values], n, bulk=True) == stored([values], n, bulk=False)


def test_floats_are_exact_down_to_subnormals() -> None:
    assert exact_powers_of_two()
    values = np.array([5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1, -0.0])
    got = [row[0] for row in stored([values], len(values), bulk=True)]
    assert np.array(got).view(np.int64).tolist()[:4] == values.view(np.int64).tolist()[:4]
    assert got[4] == 0.0


@pytest.mark.parametrize(
    "column",
    [
        np.array([1.0, np.nan]),
        np.array([1.0, np.inf]),
        np.array(["a", None], dtype=object),
        np.array([1, "a"], dtype=object),
        np.array([2**64 - 1, 1], dtype=np.uint64),
        np.array([-(2**63), 1], dtype=np.int64),
        np.array(["a\x00b", "c"], dtype=object),
    ],
)
def test_values_it_cannot_pack_are_left_to_executemany(column: np.ndarray) -> None:
    assert select_rows([column], len(column)) is None


def test_two_text_columns_are_left_to_executemany() -> None:
    text = np.array(["a", "b"], dtype=object)
    assert select_rows([text, text], 2) is None
    assert select_rows([text, np.array([1, 2])], 2) is not None
