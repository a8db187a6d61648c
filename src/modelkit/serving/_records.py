"""The records of the serving core: a request, a response, a served model, a route."""

from __future__ import annotations

import http
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import attrs

from modelkit.serving._http import JSON_TYPE, HeaderMap, dumps, make_headers, new_id

if TYPE_CHECKING:
    from modelkit.artifact import Artifact
    from modelkit.model import Model
    from modelkit.serving.auth import Identity
    from modelkit.serving.batching import Call
    from modelkit.serving.core import App

__all__ = ["REQUEST_ID_HEADER", "Handler", "Request", "Response", "Route", "ServedModel"]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")


def _header_map(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> Mapping[str, str]:
    if type(value) is HeaderMap:
        return value
    pairs = value.items() if isinstance(value, Mapping) else value
    return make_headers(pairs)


@attrs.frozen
class Request:
    """One HTTP request, as an adapter hands it to :meth:`App.handle`.

    ``path`` is the path below the mount point (``/predict``, not ``/ml/predict``), already
    percent-decoded; ``query`` the raw query string; ``headers`` a mapping or pairs (names
    are lower-cased, repeated headers joined with ``", "``); ``body`` the raw body bytes,
    still content-encoded. ``id`` is set by :meth:`App.handle` unless given (the client's
    ``X-Request-ID`` when it sent a usable one, else a new version-7 UUID's hex), and so is
    ``identity``: who sent the request, when it was authenticated.
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_header_map)
    body: bytes | bytearray = b""
    id: str = ""
    identity: Identity | None = None

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        if not self.query:
            return None
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


def _pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(value)


@attrs.frozen
class Response:
    """An HTTP response: status, header pairs and body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def reason(self) -> str:
        """The status line's reason phrase (``"OK"``, ``"Not Found"``…)."""
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"

    @classmethod
    def json(cls, status: int, document: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A JSON response (numpy values are converted, NaN and ±inf become ``null``)."""
        return cls(status, (("content-type", JSON_TYPE), *headers), dumps(document))

    @classmethod
    def text(
        cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        """A plain-text response."""
        return cls(status, (("content-type", content_type),), text.encode())

    @classmethod
    def error(cls, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """The error shape of every route: ``{"error": message}``."""
        return cls.json(status, {"error": message}, headers)


@attrs.frozen
class ServedModel:
    """A model as served: its name, version, origin and load time.

    ``version`` is the registry version as a string (``"3"``), or ``None`` for a model
    passed in-process: such a model has no version on the wire (``null`` in JSON, absent
    where the protocol makes it optional, and every ``/versions/{v}`` path is a 404).
    ``artifact`` is the verified artifact a registry model was loaded from (its profile is the
    reference of its monitor, its metrics the baseline of its performance), else ``None``.
    """

    name: str
    model: Model
    version: str | None = None
    uri: str | None = None
    sha256: str | None = None
    load_seconds: float = 0.0
    artifact: Artifact | None = attrs.field(default=None, repr=False, eq=False)


Handler = Callable[["App", Request, Mapping[str, str]], "Response | Call"]
"""A route's handler: the response, or the model work to compute before answering."""


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


@attrs.frozen
class Route:
    """One route: method, path template (``/v2/models/{name}/infer``) and handler.

    ``models`` routes need the models loaded: they answer 503 (with ``Retry-After``) unless
    the application is ready.
    """

    method: str
    template: str
    handler: Handler = attrs.field(repr=False, eq=False)
    summary: str = ""
    models: bool = False
    pattern: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "pattern", _pattern(self.template))


def request_id(headers: Mapping[str, str]) -> str:
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return new_id()
