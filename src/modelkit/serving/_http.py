"""HTTP machinery shared by the serving core and its codecs.

Errors that carry an HTTP status, header parsing, content negotiation, content encodings
(gzip / deflate, with a size limit on what a body may decompress to) and JSON encoding of
numpy results. Nothing here knows about models or routes.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelkit.exceptions import ServingError

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "JSON_TYPE",
    "HTTPError",
    "ServingError",
    "accepts_gzip",
    "decode_body",
    "dumps",
    "gzip_body",
    "json_body",
    "jsonable",
    "make_headers",
    "media_type",
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


def make_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Build a request header mapping: names lower-cased, repeated values joined."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


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
    raw = headers.get("content-encoding", "")
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
    """Parse JSON, or fail with a 400 saying where the document is broken."""
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

    NaN and ±inf, which JSON cannot represent, are written as ``null``.
    """
    try:
        text = _ENCODER.encode(document)
    except ValueError:  # a non-finite float somewhere: the slow path replaces it
        text = _ENCODER.encode(_finite(document))
    return text.encode()


_ENCODER = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


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
