"""Encoding recorded rows: orjson when installed, json otherwise, the same values either way."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkit import _json

values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


def expected(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [expected(item) for item in value]
    return value


@pytest.mark.parametrize("orjson", [True, False])
@given(rows=st.lists(values, max_size=6))
def test_rows_read_back_as_the_same_values(orjson: bool, rows: list[object]) -> None:
    saved = _json.ORJSON
    try:
        if not orjson:
            _json.ORJSON = None
        text = _json.rows_json(rows)
    finally:
        _json.ORJSON = saved
    assert json.loads(text) == expected(rows)  # floats bit for bit; NaN and ±inf as null


def test_orjson_is_used_when_installed() -> None:
    pytest.importorskip("orjson")
    assert _json.ORJSON is not None
    assert _json.rows_json([[0.1, None, "é"]]) == '[[0.1,null,"é"]]'
