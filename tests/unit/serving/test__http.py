"""HTTP machinery: content encodings with limits, negotiation, JSON of numpy results."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkit.serving._http import (
    HTTPError,
    accepts_gzip,
    decode_body,
    dumps,
    gzip_body,
    jsonable,
    make_headers,
    media_type,
)


@given(
    st.binary(max_size=2000),
    st.sampled_from(["gzip", "x-gzip", "deflate", "identity", "gzip, identity"]),
)
def test_decoding_round_trips(data: bytes, coding: str) -> None:
    encoded = data
    if "gzip" in coding:
        encoded = gzip.compress(data)
    elif coding == "deflate":
        encoded = zlib.compress(data)
    assert decode_body(encoded, {"content-encoding": coding}, limit=2000) == data


def test_decoding_multi_member_gzip_and_stacked_codings() -> None:
    data = gzip.compress(b"abc") + gzip.compress(b"def")
    assert decode_body(data, {"content-encoding": "gzip"}, limit=6) == b"abcdef"
    with pytest.raises(HTTPError) as info:
        decode_body(data, {"content-encoding": "gzip"}, limit=5)
    assert info.value.status == 413
    twice = zlib.compress(gzip.compress(b"xyz"))
    assert decode_body(twice, {"content-encoding": "gzip, deflate"}, limit=100) == b"xyz"


@pytest.mark.parametrize(
    ("body", "coding", "status", "needle"),
    [
        (b"plain", "gzip", 400, "not valid gzip"),
        (gzip.compress(b"abcdef")[:-10], "gzip", 400, "truncated"),
        (gzip.compress(b"a" * 101), "gzip", 413, "more than 100 bytes"),
        (b"x", "br", 415, "br"),
        (b"x", "gzip, compress", 415, "compress"),
    ],
)
def test_decoding_errors(body: bytes, coding: str, status: int, needle: str) -> None:
    with pytest.raises(HTTPError) as info:
        decode_body(body, {"content-encoding": coding}, limit=100)
    assert info.value.status == status
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=abc", False),
        ("*", True),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding(header: str, expected: bool) -> None:
    assert accepts_gzip({"accept-encoding": header}) is expected


def test_headers_and_media_types() -> None:
    headers = make_headers([("Content-Type", 'Application/JSON; Charset="UTF-8"; x=1')])
    assert media_type(headers) == ("application/json", {"charset": "UTF-8", "x": "1"})
    assert media_type({}) == ("", {})
    assert gzip.decompress(gzip_body(b"hello")) == b"hello"


def test_jsonable_is_exact_and_json_safe() -> None:
    values = np.array([0.1, 1 / 3, np.nan, np.inf, -0.0])
    assert jsonable(values) == [0.1, 1 / 3, None, None, -0.0]
    assert json.loads(dumps(jsonable(values))) == [0.1, 1 / 3, None, None, -0.0]
    assert jsonable(np.array(["a", None, np.nan], dtype=object)) == ["a", None, None]
    assert jsonable(np.array([b"ab", b"\xff"])) == ["ab", "\ufffd"]
    assert jsonable(np.array(["2024-01-02"], dtype="datetime64[D]")) == ["2024-01-02"]
    assert jsonable(np.int64(3)) == 3
    document = {
        "a": np.float32(0.5),
        "b": np.array([1, 2]),
        "c": np.float64("nan"),
        "d": b"x",
        "e": {1},
    }
    assert json.loads(dumps(document)) == {"a": 0.5, "b": [1, 2], "c": None, "d": "x", "e": "{1}"}
    assert dumps({"x": [float("inf"), (1.0, float("nan"))]}) == b'{"x":[null,[1.0,null]]}'


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=50))
def test_float64_survives_json_exactly(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    back = np.array(json.loads(dumps(jsonable(array))), dtype=np.float64)
    assert back.tobytes() == array.tobytes()
