"""The ASGI adapter: :func:`asgi_app` builds an ASGI callable that serves models.

Mount it in any ASGI application, e.g. Starlette or FastAPI::

    from starlette.routing import Mount
    ml = asgi_app(model, "churn@production")
    Starlette(routes=[Mount("/ml", app=ml)])   # load in the host's lifespan: ml.startup()

Lifespan is honoured: models are loaded (registry URIs resolved and hash-verified) at
``lifespan.startup`` (a failure is reported as ``lifespan.startup.failed``), and
``lifespan.shutdown`` drains: readiness turns 503, new predictions are refused, and the
requests in flight finish before shutdown completes. Under a server without lifespan, the
first request loads the models. Requests are decoded in the event loop and their model
work is micro-batched (:class:`~modelkit.serving.batching.AsyncBatcher`): a worker thread
computes one batch while the loop decodes the requests of the next, and keeps answering
health checks meanwhile. Bodies over 64 KiB are handled whole in worker threads. Request
bodies are read incrementally and refused (413) once over the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from modelkit.serving._http import HTTPError, make_headers
from modelkit.serving._records import request_id
from modelkit.serving.core import App, Request, Response

if TYPE_CHECKING:
    from modelkit.model import Model
    from modelkit.serving.batching import Outcome

__all__ = ["INLINE_BODY_SIZE", "ASGIApp", "answer_in_thread", "asgi_app"]

logger = logging.getLogger("modelkit.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


INLINE_BODY_SIZE = 64 * 1024
"""Bodies up to this size (bytes) are decoded in the event loop and their model work batched;
larger ones are handled in a worker thread, so that decoding them never holds up the loop."""


class _DisconnectedError(Exception):
    """The client went away before its body was read."""


class ASGIApp:
    """An ASGI 3 application answering through an :class:`~modelkit.serving.App`.

    ``app`` is the core application (its state, models and metrics).
    """

    def __init__(self, app: App) -> None:
        """Serve ``app``; it is started at lifespan start-up or by the first request."""
        self.app = app
        self._lifespan = False

    def __repr__(self) -> str:
        """``ASGIApp(App(...))``."""
        return f"ASGIApp({self.app!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection: ``http``, ``lifespan`` (``websocket`` is refused)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._run_lifespan(receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def startup(self) -> None:
        """Load the models now, off the event loop (what ``lifespan.startup`` does).

        For a host application that does not forward lifespan events to mounted apps
        (Starlette's ``Mount`` does not): call it from the host's own lifespan.
        """
        self._lifespan = True
        await _to_thread(self.app.start)

    async def shutdown(self) -> None:
        """Drain: refuse new predictions, wait for those in flight (``lifespan.shutdown``)."""
        await _to_thread(self.app.drain)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        self._lifespan = True
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("could not load the served models")
                    await send(
                        {
                            "type": "lifespan.startup.failed",
                            "message": f"{type(exc).__name__}: {exc}",
                        }
                    )
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app.state == "loading" and not self._lifespan:
            try:  # a server without lifespan: the first requests load the models
                await _to_thread(app.start)
            except Exception:
                logger.exception("could not load the served models")
        headers = make_headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        method = scope["method"]
        error = app.check_length(headers)
        body: bytes | bytearray = b""
        if error is None and method == "POST":  # no route reads the body of another method
            try:
                body = await _read(receive, app)
            except HTTPError as exc:
                error = exc
            except _DisconnectedError:
                return
        request = Request(
            method,
            _route_path(scope),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
            request_id(headers),
        )
        if method == "POST" and error is None and len(body) > INLINE_BODY_SIZE:
            response = await answer_in_thread(app, request)  # decoding it would hold the loop
        else:
            response = await _handle(app, request, error)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def asgi_app(
    *models: Model | str | Mapping[str, Model | str],
    **options: Any,
) -> ASGIApp:
    """Build an ASGI callable serving one or several models, loaded at start-up.

    Each model is a :class:`~modelkit.Model` with a name, a registry URI
    (``"churn@production"``, ``"fraud/7"``), or a ``{name: model or URI}`` mapping;
    ``name=model`` keywords add more. The first is the default model. Nothing is loaded
    here: the server's lifespan start-up (or the first request) does it. See
    :class:`~modelkit.serving.App` for the options (``registry``, ``max_body_size``,
    ``auth``, ``request_timeout``, …), passed on as they are.
    """
    return ASGIApp(App(*models, **options))


async def _read(receive: Receive, app: App) -> bytes | bytearray:
    limit = app.max_body_size
    body: bytes | bytearray = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk = message.get("body", b"")
        if chunk:
            if len(body) + len(chunk) > limit:
                raise app.too_large()
            if not body:
                body = chunk  # most bodies come in one message: no copy
            else:
                if isinstance(body, bytes):
                    body = bytearray(body)
                body += chunk
        if not message.get("more_body", False):
            return body


async def _handle(app: App, request: Request, error: HTTPError | None) -> Response:
    """Answer in the event loop; model work waits for its batch without holding the loop."""
    exchange = app.begin(request, error=error)
    work = exchange.work
    if work is not None:
        try:
            outcome: Outcome | BaseException = await app.async_batcher.run(work)
        except Exception as exc:
            outcome = exc
        app.complete(exchange, outcome)
    return app.end(exchange)


async def answer_in_thread(
    app: App, request: Request, *, accepted: float | None = None
) -> Response:
    """Handle a request (a large POST) in a worker thread; past its deadline, a 504 at once.

    For the event-loop servers (this adapter, the native server): decoding a large body
    would hold up the loop. The abandoned computation finishes in its thread (Python cannot
    stop it) and its answer is dropped; it still counts as in flight, so a drain waits for
    it. ``accepted`` is as for :meth:`App.handle <modelkit.serving.App.handle>`.
    """
    try:
        timeout = app.deadline(request)
    except HTTPError as exc:
        return app.handle(request, error=exc, accepted=accepted)
    import asyncio

    worker = asyncio.to_thread(app.handle, request, accepted=accepted)
    if timeout is None:
        return await worker
    try:
        return await asyncio.wait_for(worker, timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
        return app.timed_out(request, timeout)


async def _to_thread(function: Callable[..., T], /, *args: Any) -> T:
    """Run ``function`` in a worker thread (asyncio is imported on first use, not at import)."""
    import asyncio

    return await asyncio.to_thread(function, *args)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (``scope["root_path"]``), as Starlette computes it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in {"", "/"}:
        return path[len(root) :] or "/"
    return path
