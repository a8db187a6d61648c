"""The WSGI adapter: :func:`wsgi_app` builds a WSGI callable that serves models.

Mount it anywhere a WSGI application goes, e.g. under a prefix of a Flask app::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/ml": wsgi_app(model)})

Models are loaded (registry URIs resolved and hash-verified) when :func:`wsgi_app` is
called, so a broken model fails the start-up, not the first request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modelkit.serving._http import HTTPError
from modelkit.serving._records import request_id
from modelkit.serving.core import App, Request

if TYPE_CHECKING:
    from modelkit.model import Model

__all__ = ["ACCEPTED_KEY", "WSGIApp", "wsgi_app"]

StartResponse = Callable[..., Any]

ACCEPTED_KEY = "modelkit.accepted"
"""The WSGI environ key where a server puts when it accepted the request's connection
(``time.perf_counter()``): such a request is answered even if a drain began since."""

_CHUNK = 1 << 16


class WSGIApp:
    """A WSGI application answering through an :class:`~modelkit.serving.App`.

    ``app`` is the core application (its state, models and metrics; ``app.drain()`` for a
    graceful stop).
    """

    def __init__(self, app: App) -> None:
        """Serve ``app`` (started by the caller, or by :func:`wsgi_app`)."""
        self.app = app

    def __repr__(self) -> str:
        """``WSGIApp(App(...))``."""
        return f"WSGIApp({self.app!r})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one WSGI request."""
        app = self.app
        headers = _headers(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        error = app.check_length(headers)
        body = b""
        if error is None and method == "POST":  # no route reads the body of another method
            try:
                body = _read(environ, headers, app)
            except HTTPError as exc:
                error = exc
        request = Request(
            method,
            _path(environ),
            environ.get("QUERY_STRING", ""),
            headers,
            body,
            request_id(headers),
        )
        response = app.handle(request, error=error, accepted=environ.get(ACCEPTED_KEY))
        start_response(f"{response.status} {response.reason}", list(response.headers))
        return [response.body]


def wsgi_app(
    *models: Model | str | Mapping[str, Model | str],
    **options: Any,
) -> WSGIApp:
    """Build a WSGI callable serving one or several models, loaded now.

    Each model is a :class:`~modelkit.Model` with a name, a registry URI
    (``"churn@production"``, ``"fraud/7"``), or a ``{name: model or URI}`` mapping;
    ``name=model`` keywords add more. The first is the default model. See
    :class:`~modelkit.serving.App` for the options (``registry``, ``max_body_size``,
    ``auth``, ``request_timeout``, …), passed on as they are. Raises what loading raises (unknown
    URI, hash mismatch, duplicate names).
    """
    app = App(*models, **options)
    app.start()
    return WSGIApp(app)


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value:
            headers[key.replace("_", "-").lower()] = value
    return headers


def _path(environ: Mapping[str, Any]) -> str:
    raw = environ.get("PATH_INFO", "") or "/"
    try:  # PEP 3333 hands the path over as latin-1; URLs are UTF-8
        return str(raw.encode("latin-1").decode("utf-8"))
    except UnicodeError:
        return str(raw)


def _read(environ: Mapping[str, Any], headers: Mapping[str, str], app: App) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    declared = headers.get("content-length")
    if declared is not None:
        length = int(declared)  # checked by App.check_length
        body = stream.read(length) if length else b""
        if len(body) != length:
            raise HTTPError(400, f"the body ended after {len(body)} of {length} bytes")
        return bytes(body)
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if not (environ.get("wsgi.input_terminated") or chunked):
        return b""  # no length and no terminated stream: PEP 3333 says there is no body
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > app.max_body_size:
            raise app.too_large()
        parts.append(chunk)
