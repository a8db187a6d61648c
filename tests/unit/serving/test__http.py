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
    json_body,
    jsonable,
    make_headers,
    media_type,
    new_id,
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


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**80).map(lambda n: -n if n % 2 else n)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@given(document=JSON_VALUES, spaced=st.booleans())
def test_every_document_means_the_same_whichever_parser_reads_it(
    document: object, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    body = json.dumps(document, separators=separators).encode()
    parsed = json_body(body)
    assert json.dumps(parsed) == json.dumps(json.loads(body))  # ints stay ints, exactly


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1180591620717411303424]", [1180591620717411303424]),
        (b'{"a": -11805916207174113034}', {"a": -11805916207174113034}),
        (b"[0.00000000000000000000001, 3]", [1e-23, 3]),
        (b"[NaN, Infinity]", None),
    ],
)
def test_long_integers_and_nan_literals_parse_as_pythons_json_does(
    body: bytes, expected: object
) -> None:
    parsed = json_body(body)
    if expected is None:
        assert json.dumps(parsed) == "[NaN, Infinity]"
    else:
        assert parsed == expected


def test_ids_are_distinct_version_7_uuids_also_across_a_fork() -> None:
    import os
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]  # several buffers of random bytes
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).hex == i for i in ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)  # their creation time
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_id()  # the child drew its own bytes, not the parent's next ones
