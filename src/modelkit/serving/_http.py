"""HTTP machinery shared by the serving core and its codecs.

Errors that carry an HTTP status, header parsing, content negotiation, content encodings
(gzip / deflate, with a size limit on what a body may decompress to) and JSON encoding of
numpy results. Nothing here knows about models or routes.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelkit._json import ORJSON, finite
from modelkit.exceptions import ServingError

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "JSON_TYPE",
    "HTTPError",
    "HeaderMap",
    "ServingError",
    "accepts_gzip",
    "decode_body",
    "dumps",
    "gzip_body",
    "json_body",
    "jsonable",
    "make_headers",
    "media_type",
    "new_id",
]

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
"""Largest request body accepted (after decompression), in bytes: 64 MiB."""

JSON_TYPE = "application/json"

Headers = Mapping[str, str]
"""Request headers: lower-case names; repeated headers joined with ``", "``."""


class HTTPError(ServingError):
    """A request fails with ``status``; the client gets ``{"error": message}`` as JSON.

    ``headers`` are added to the error response (``Allow`` for 405, ``Retry-After`` for 503).
    """

    def __init__(
        self, status: int, message: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


class HeaderMap(dict[str, str]):
    """Request headers already normalised by :func:`make_headers` (never normalised twice)."""

    __slots__ = ()


def make_headers(pairs: Iterable[tuple[str, str]]) -> HeaderMap:
    """Build a request header mapping: names lower-cased, repeated values joined."""
    headers = HeaderMap()
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class _RandomBytes:
    """``os.urandom`` bytes, read 4 KiB at a time: one system call per 409 ids, not per id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:  # a forked child must not repeat its parent's ids
        self._buffer, self._at = b"", 0
        self._lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._buffer):
                self._buffer, self._at = os.urandom(4096), 0
            start = self._at
            self._at += count
            return self._buffer[start : start + count]


_RANDOM = _RandomBytes()


def new_id() -> str:
    """A new id: the hex of a version-7 UUID (RFC 9562), Unix milliseconds then 74 random bits.

    Ids that grow with time keep the registry's index of recorded predictions growing at its
    end: random (version-4) ids land on random pages of that index, and each insert costs
    more as the table grows (``benchmarks/serving/recorder.py``: 23 µs of the recorder's CPU
    per prediction over the first 100,000, 32 µs at 600,000, against a flat 12 µs).
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + _RANDOM.take(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


# -- content types ---------------------------------------------------------------------------


def media_type(headers: Headers) -> tuple[str, dict[str, str]]:
    """The request's media type (lower-case, ``""`` when absent) and its parameters."""
    raw = headers.get("content-type", "")
    kind, _, rest = raw.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def check_charset(params: Mapping[str, str]) -> None:
    """Refuse (415) a charset other than UTF-8 (or its ASCII subset)."""
    charset = params.get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8", "us-ascii", "ascii"}:
        raise HTTPError(415, f"unsupported charset {charset!r}: send the body as UTF-8")


def is_json_type(kind: str) -> bool:
    """``application/json``, ``*/*+json``, or no type at all (curl's ``-d`` habit aside)."""
    return kind in {"", JSON_TYPE} or kind.endswith("+json")


def require_json(headers: Headers) -> None:
    """Refuse (415) a request whose Content-Type is not JSON."""
    kind, params = media_type(headers)
    if not is_json_type(kind):
        raise HTTPError(
            415,
            f"unsupported Content-Type {kind!r}: send the body as application/json",
        )
    check_charset(params)


# -- content encodings -----------------------------------------------------------------------

_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})


def decode_body(body: bytes | bytearray, headers: Headers, limit: int) -> bytes | bytearray:
    """Undo the request's ``Content-Encoding`` (gzip, deflate), refusing more than ``limit``.

    Unknown encodings are a 415; corrupt data a 400; data that decompresses to more than
    ``limit`` bytes a 413, detected without decompressing beyond the limit.
    """
    raw = headers.get("content-encoding")
    if not raw:
        return body
    codings = [c.strip().lower() for c in raw.split(",") if c.strip()]
    unknown = [c for c in codings if c not in _ENCODINGS]
    if unknown:
        raise HTTPError(
            415,
            f"unsupported Content-Encoding {', '.join(unknown)}: send gzip, deflate or identity",
        )
    for coding in reversed(codings):  # the last applied is undone first
        if coding != "identity":
            body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes | bytearray, coding: str, limit: int) -> bytes:
    out = bytearray()
    remaining = memoryview(data)
    while True:
        engine = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        try:
            chunk = engine.decompress(remaining, limit + 1 - len(out))
        except zlib.error as exc:
            raise HTTPError(400, f"request body is not valid {coding} data: {exc}") from exc
        out += chunk
        if len(out) > limit or engine.unconsumed_tail:
            raise HTTPError(
                413,
                f"request body decompresses to more than {limit} bytes (the server's limit)",
            )
        if not engine.eof:
            raise HTTPError(400, f"request body is truncated {coding} data")
        if not engine.unused_data:
            return bytes(out)
        remaining = memoryview(engine.unused_data)  # another gzip member follows


def accepts_gzip(headers: Headers) -> bool:
    """Whether the client's ``Accept-Encoding`` allows gzip (with a non-zero quality)."""
    for part in headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in {"gzip", "x-gzip", "*"}:
            continue
        quality = params.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def gzip_body(body: bytes) -> bytes:
    """Gzip a response body (a fast level: responses are small and latency matters)."""
    engine = zlib.compressobj(level=5, wbits=31)
    return engine.compress(body) + engine.flush()


# -- JSON ------------------------------------------------------------------------------------


def json_body(body: bytes | bytearray, what: str = "request body") -> Any:
    """Parse JSON, or fail with a 400 saying where the document is broken.

    orjson parses when it is installed (the ``serve`` extra); what it refuses (the NaN and
    Infinity literals Python's parser takes) goes to :mod:`json`, and so do documents with
    numbers of 19 digits or more (orjson turns integers beyond 64 bits into floats), so that
    every document means the same whichever parser reads it.
    """
    if ORJSON is not None and not _long_integer(body):
        try:
            return ORJSON.loads(body)
        except (ValueError, TypeError):
            pass
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPError(400, f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise HTTPError(400, f"{what} is nested too deeply") from exc


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value if not isinstance(value, bytes) else value.decode("utf-8", "replace")
    if isinstance(obj, np.ndarray):
        return jsonable(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def dumps(document: Any) -> bytes:
    """Encode a response document as compact UTF-8 JSON (numpy values included).

    NaN and ±inf, which JSON cannot represent, are written as ``null``. orjson encodes
    when it is installed (the ``serve`` extra), :mod:`json` otherwise.
    """
    if ORJSON is not None:
        try:
            encoded: bytes = ORJSON.dumps(document, default=_default)
        except TypeError:  # keys that are not strings, integers beyond 64 bits
            pass
        else:
            return encoded
    try:
        text = _ENCODER.encode(document)
    except ValueError:  # a non-finite float somewhere: the slow path replaces it
        text = _ENCODER.encode(finite(document))
    return text.encode()


def _long_integer(body: bytes | bytearray) -> bool:
    """Whether ``body`` holds an integer of 19 digits or more.

    A run of 19 digits or more after a ``.`` is a fraction, and one before ``.``, ``e`` or
    ``E`` a float's mantissa: either parser reads those alike.
    """
    masked = body.translate(_DIGITS_AS_ZEROS)  # runs of digits become runs of b"0"
    start = masked.find(_LONG_RUN)
    while start != -1:
        end = start + len(_LONG_RUN)
        while end < len(masked) and masked[end] == _ZERO:
            end += 1
        fraction = start > 0 and body[start - 1] == _DOT
        mantissa = end < len(body) and body[end] in _FLOAT_MARKS
        if not (fraction or mantissa):
            return True
        start = masked.find(_LONG_RUN, end)
    return False


_ZERO, _DOT = ord("0"), ord(".")
_DIGITS_AS_ZEROS = bytes(_ZERO if chr(i).isdigit() and i < 128 else 32 for i in range(256))
_LONG_RUN = b"0" * 19
_FLOAT_MARKS = frozenset(b".eE")

_ENCODER = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def jsonable(values: Any) -> Any:
    """Turn a prediction (array, list, scalar) into JSON values, exactly.

    float64 values keep every bit (JSON numbers are written with ``repr``); NaN and ±inf,
    which JSON cannot represent, become ``null``; numpy scalars inside object arrays become
    plain Python values (when the document is encoded with :func:`dumps`).
    """
    array = np.asarray(values)
    kind = array.dtype.kind
    missing = None
    if kind == "f":
        missing = ~np.isfinite(array)
    elif kind == "O":
        missing = np.not_equal(array, array)  # NaN is the only value unequal to itself
    elif kind == "S":
        array = np.char.decode(array, "utf-8", "replace")
    elif kind in "Mm":
        array = array.astype(str)
    if missing is not None and np.any(missing):
        array = array.astype(object)
        array[missing] = None
    return array.tolist()
