"""A native HTTP/1.1 server for an :class:`~modelkit.serving.App`: asyncio + httptools.

:func:`serve` answers HTTP/1.1 on a bound socket with one :class:`asyncio.Protocol` per
connection and the httptools parser, calling the core directly (no ASGI messages in
between): each request goes through :meth:`App.begin <modelkit.serving.App.begin>`, its
model work through the application's
:class:`~modelkit.serving.batching.AsyncBatcher` (so that the requests of every connection
are micro-batched together), then :meth:`App.end <modelkit.serving.App.end>`; its answer is
written with one ``transport.write``. The ``native`` server backend
(:class:`~modelkit.default_plugins.native_server.NativeServer`) runs it on uvloop when it is
installed::

    loop.run_until_complete(serve(app, bind_socket("127.0.0.1", 8000), stop=stop))

HTTP/1.1 as clients use it: keep-alive (HTTP/1.0 too, with ``Connection: keep-alive``),
``Connection: close``, pipelining (answers in order), chunked request bodies, ``Expect:
100-continue``, ``HEAD``. A request that cannot be parsed gets a 400, a head over
:attr:`Limits.max_header_size` a 431 and a body over the application's ``max_body_size``
a 413, each closing the connection; idle connections close after
:attr:`Limits.keep_alive` seconds. Bodies over
:data:`~modelkit.serving.asgi.INLINE_BODY_SIZE` are handled in worker threads, so that
decoding them never holds up the event loop.

When ``stop`` is set, the listener closes at once (new connections are refused, those the
kernel had already queued are answered), readiness turns 503, the requests already received
are answered (the last answer on each connection says ``connection: close``), idle
connections close, and after at most the application's ``drain_timeout`` seconds the
application is drained and :func:`serve` returns.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import attrs
import httptools

from modelkit.serving._http import HTTPError, dumps, make_headers
from modelkit.serving._records import request_id
from modelkit.serving.asgi import INLINE_BODY_SIZE, answer_in_thread
from modelkit.serving.core import App, Exchange, Request, Response

if TYPE_CHECKING:
    from modelkit.serving.batching import Outcome

__all__ = ["Limits", "serve"]

logger = logging.getLogger("modelkit.serving")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


@attrs.frozen(kw_only=True)
class Limits:
    """How the native server treats its connections.

    ``keep_alive``: seconds an idle connection stays open; ``max_header_size``: bytes of a
    request's URL and headers (431 beyond); ``backlog``: the listen queue's length;
    ``pipeline``: requests a connection may have waiting for their answers before the
    server stops reading from it; ``stop_grace``: seconds a connection idle when the server
    stops may still send one more request (answered, then the connection closes), so that
    a client that picked it just then is not reset.
    """

    keep_alive: float = attrs.field(default=5.0, validator=_positive)
    max_header_size: int = attrs.field(default=64 * 1024, validator=_positive)
    backlog: int = attrs.field(default=1024, validator=_positive)
    pipeline: int = attrs.field(default=32, validator=_positive)
    stop_grace: float = attrs.field(default=0.1, validator=_positive)


# -- writing responses -----------------------------------------------------------------------


@functools.cache
def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


_SERVER = b"server: modelkit\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_date: list[Any] = [0, b""]
_LINGER = 2.0
"""Seconds a connection closed after an error keeps reading (and dropping) its input."""


def _date_header() -> bytes:
    """``date: …`` and ``server: modelkit`` lines, the date computed once per second."""
    now = int(time.time())
    if _date[0] != now:
        _date[0] = now
        _date[1] = f"date: {formatdate(now, usegmt=True)}\r\n".encode("latin-1") + _SERVER
    cached: bytes = _date[1]
    return cached


def encode(response: Response, *, close: bool = False, keep_alive: bool = False) -> bytes:
    """``response`` as the bytes of an HTTP/1.1 answer: status line, headers, body.

    Adds ``date``, ``server: modelkit`` and ``connection: close`` (``close``) or
    ``connection: keep-alive`` (``keep_alive``, for an HTTP/1.0 client that asked for it).
    A header holding a line break is refused (the answer becomes a 500).
    """
    headers = response.headers
    block = "".join([f"{name}: {value}\r\n" for name, value in headers])
    try:
        if block.count("\n") != len(headers):
            raise ValueError("a response header holds a line break")
        raw = block.encode("latin-1")
    except (ValueError, UnicodeError) as exc:
        logger.error("could not write the answer's headers %r: %s", headers, exc)
        body = dumps({"error": "the server could not write its answer's headers"})
        raw = f"content-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        return b"".join((_status_line(500), raw, _date_header(), _CLOSE, b"\r\n", body))
    connection = _CLOSE if close else _KEEP_ALIVE if keep_alive else b""
    return b"".join(
        (_status_line(response.status), raw, _date_header(), connection, b"\r\n", response.body)
    )


def _error(status: int, message: str) -> bytes:
    """A JSON error answer that closes the connection (no request reached the core)."""
    body = dumps({"error": message})
    response = Response(
        status,
        (("content-type", "application/json"), ("content-length", str(len(body)))),
        body,
    )
    return encode(response, close=True)


def split_url(url: bytes) -> tuple[str, str]:
    """The percent-decoded path (UTF-8) and the raw query string of a request target.

    As ASGI servers fill ``scope["path"]`` and ``scope["query_string"]``; an absolute URL
    (``http://host/path``) gives its path. Raises :class:`HTTPError` (400) for a target that
    is not a URL.
    """
    if url[:1] == b"/" and b"#" not in url:
        raw, _, query = url.partition(b"?")
    else:
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError as exc:
            raise HTTPError(400, f"invalid request target {url[:200]!r}") from exc
        raw, query = parsed.path or b"/", parsed.query or b""
    try:
        path = raw.decode("utf-8")
    except UnicodeError:
        path = raw.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    return path, query.decode("latin-1")


# -- one connection --------------------------------------------------------------------------


class _Slot:
    """One answer on its way: written, in order, once it is known."""

    __slots__ = ("close", "data", "keep_alive", "response", "task")

    def __init__(self, close: bool, keep_alive: bool = False) -> None:
        self.close = close
        self.keep_alive = keep_alive
        self.response: Response | None = None
        self.data: bytes | None = None
        self.task: asyncio.Task[None] | None = None


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.accepted = 0.0
        self.last = 0.0
        self.pending: collections.deque[_Slot] = collections.deque()
        self.closed = False
        self.stopping = False
        self.paused = False
        self.write_paused = False
        self.eof = False
        # the request being received
        self.in_message = False
        self.in_head = False
        self.head_size = 0
        self.head_bulk = 0
        self.url: list[bytes] = []
        self.header_pairs: list[tuple[str, str]] = []
        self.headers: dict[str, str] = {}
        self.method = ""
        self.keep = True
        self.keep_alive_10 = False
        self.body: list[bytes] = []
        self.size = 0
        self.discard = False

    # -- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        self.accepted = time.perf_counter()
        self.last = self.loop.time()
        self.server.connections.add(self)
        if self.server.stopping:
            self.stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.lost(self)

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.closed:
            return None
        if self.pending or self.in_message:
            return True  # answer what was received, then close
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume()

    def data_received(self, data: bytes) -> None:
        if (self.discard and not self.in_message) or self.closed:
            return
        self.last = self.loop.time()
        was_in_head = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
        except httptools.HttpParserError as exc:
            self._refuse(400, f"the request could not be parsed as HTTP/1.1: {exc}")
            return
        if self.in_head and not self.discard:
            if was_in_head:  # this whole chunk is part of the head
                self.head_bulk += len(data)
            if self.head_bulk > self.limits.max_header_size:
                self._too_long()

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = self.in_head = True
        self.head_size = self.head_bulk = self.size = 0
        self.url = []
        self.header_pairs = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url.append(url)
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))
        self.head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.discard:
            return
        parser = self.parser
        self.method = parser.get_method().decode("latin-1")
        self.keep = parser.should_keep_alive()
        version = parser.get_http_version()
        self.keep_alive_10 = self.keep and version == "1.0"
        if self.head_size > self.limits.max_header_size:
            self._too_long()
            return
        headers = self.headers = make_headers(self.header_pairs)
        error = self.app.check_length(headers)
        if error is not None:
            self.discard = True  # the body is not read: the connection closes
            self._dispatch(b"", error, close=True)
            return
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and version == "1.1":
            slot = _Slot(False)
            slot.data = _CONTINUE
            self.pending.append(slot)
            self._flush()

    def on_body(self, body: bytes) -> None:
        if self.discard or self.method != "POST":  # no route reads another method's body
            return
        self.size += len(body)
        if self.size > self.app.max_body_size:
            self.discard = True
            self._dispatch(b"", self.app.too_large(), close=True)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.discard:
            return
        parts = self.body
        body = b"" if not parts else parts[0] if len(parts) == 1 else b"".join(parts)
        self.body = []
        self._dispatch(body, None, close=not self.keep or self.eof)

    # -- answering -------------------------------------------------------------------------

    def _dispatch(self, body: bytes, error: HTTPError | None, *, close: bool) -> None:
        """Answer the request just received: now, or once the batcher has computed its work."""
        app = self.app
        try:
            path, query = split_url(b"".join(self.url))
        except HTTPError as exc:
            self._refuse(exc.status, exc.message)
            return
        slot = _Slot(close, self.keep_alive_10)
        self.pending.append(slot)
        headers = self.headers
        request = Request(self.method, path, query, headers, body, request_id(headers))
        if error is None and len(body) > INLINE_BODY_SIZE and self.method == "POST":
            slot.task = self.loop.create_task(self._answer(slot, request))
        else:
            exchange = app.begin(request, error=error, accepted=self.accepted)
            if exchange.work is None:
                slot.response = app.end(exchange)
                self._flush()
            else:
                self._submit(slot, exchange)
        if len(self.pending) >= self.limits.pipeline:
            self._pause()

    def _submit(self, slot: _Slot, exchange: Exchange) -> None:
        """Queue the exchange's work; its answer is written when the batcher calls back."""
        work = exchange.work
        assert work is not None
        try:
            self.app.async_batcher.submit(work, functools.partial(self._computed, slot, exchange))
        except Exception as exc:  # a full queue: 503
            self._answered(slot, exchange, exc)

    def _computed(self, slot: _Slot, exchange: Exchange) -> None:
        work = exchange.work
        assert work is not None
        try:
            outcome: Outcome | BaseException = work.result()
        except Exception as exc:
            outcome = exc
        self._answered(slot, exchange, outcome)

    def _answered(self, slot: _Slot, exchange: Exchange, outcome: Outcome | BaseException) -> None:
        self.app.complete(exchange, outcome)
        slot.response = self.app.end(exchange)
        self._flush()

    async def _answer(self, slot: _Slot, request: Request) -> None:
        """A large body, handled whole in a worker thread; past its deadline, a 504."""
        slot.response = await answer_in_thread(self.app, request, accepted=self.accepted)
        self._flush()

    def _flush(self) -> None:
        """Write the answers that are ready, in the order of their requests."""
        transport = self.transport
        pending = self.pending
        if transport is None or self.closed:
            return
        while pending:
            slot = pending[0]
            if slot.data is not None:
                pending.popleft()
                transport.write(slot.data)
                if slot.close:
                    self._close()
                    return
                continue
            response = slot.response
            if response is None:
                break
            pending.popleft()
            last = not pending and not self.in_message
            close = slot.close or (last and (self.stopping or self.eof))
            transport.write(encode(response, close=close, keep_alive=slot.keep_alive))
            if close:
                self._close()
                return
        if not pending:
            self.last = self.loop.time()
            if self.eof and not self.in_message:
                self._close()
                return
        if self.paused and len(pending) < self.limits.pipeline:
            self._resume()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` after the answers already due, then close: the stream is lost."""
        self.discard = True
        self.in_message = self.in_head = False
        slot = _Slot(True)
        slot.data = _error(status, message)
        self.pending.append(slot)
        self._pause()
        self._flush()

    def _too_long(self) -> None:
        self._refuse(
            431,
            f"the request's URL and headers are larger than {self.limits.max_header_size} "
            "bytes (the server's limit); send fewer or shorter headers",
        )

    def _upgraded(self) -> None:
        """The request asked to switch protocols: it is answered in HTTP/1.1, then close."""
        self.discard = True
        self.in_message = self.in_head = False
        if self.pending:
            self.pending[-1].close = True
            self._pause()
            self._flush()
        else:
            self._close()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.write_paused and not self.discard and not self.closed:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    def _close(self) -> None:
        transport = self.transport
        if self.closed or transport is None:
            return
        self.closed = True
        if self.discard and transport.can_write_eof():
            # What the client is still sending is read and dropped for a moment: closing
            # with unread data would reset the connection and could lose the answer.
            transport.write_eof()
            transport.resume_reading()
            self.loop.call_later(_LINGER, transport.close)
        else:
            transport.close()

    # -- the server's requests -------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing received and not answered: the connection can close without a loss."""
        return not self.pending and not self.in_message

    def stop(self) -> None:
        """Answer what was received, then close; an idle connection closes shortly."""
        self.stopping = True
        if self.idle:
            self.loop.call_later(self.limits.stop_grace, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.idle:
            self._close()

    def abort(self) -> None:
        """Close at once, dropping what is not answered yet."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


# -- the server ------------------------------------------------------------------------------


class _Server:
    """The connections of one :func:`serve` call."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, limits: Limits) -> None:
        self.app = app
        self.loop = loop
        self.limits = limits
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.emptied = asyncio.Event()
        self.sweeper: asyncio.TimerHandle | None = None

    def connection(self) -> _Connection:
        return _Connection(self)

    def lost(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if self.stopping and not self.connections:
            self.emptied.set()

    def sweep(self) -> None:
        """Close the connections idle for longer than the keep-alive timeout."""
        keep_alive = self.limits.keep_alive
        now = self.loop.time()
        for connection in list(self.connections):
            if not connection.pending and now - connection.last > keep_alive:
                connection._close()
        self.sweeper = self.loop.call_later(min(1.0, keep_alive / 4), self.sweep)


async def serve(
    app: App,
    sock: socket.socket,
    *,
    stop: asyncio.Event,
    force: asyncio.Event | None = None,
    on_ready: Callable[[str], object] | None = None,
    limits: Limits | None = None,
) -> None:
    """Answer HTTP/1.1 on ``sock`` (bound, not listening) with ``app`` until ``stop`` is set.

    ``app`` must be started. ``on_ready(url)`` is called once connections are accepted.
    Once ``stop`` is set, the server stops gracefully (see the module documentation) and
    returns when every connection is closed and ``app`` is drained, after at most
    ``app.drain_timeout`` seconds; ``force`` (a second Ctrl-C) stops waiting for the
    requests in flight.
    """
    from modelkit.servers import server_url

    loop = asyncio.get_running_loop()
    limits = limits or Limits()
    state = _Server(app, loop, limits)
    listener = await loop.create_server(state.connection, sock=sock, backlog=limits.backlog)
    state.sweeper = loop.call_later(min(1.0, limits.keep_alive / 4), state.sweep)
    try:
        if on_ready is not None and not stop.is_set():
            on_ready(server_url(sock))
        await stop.wait()
        await _stop_listening(state, listener, sock)
        deadline = loop.time() + app.drain_timeout
        state.stopping = True
        app.begin_drain()  # readiness 503; requests on the open connections are answered
        for connection in list(state.connections):
            connection.stop()
        if state.connections:
            await _wait_either(state.emptied, force, deadline - loop.time())
        if state.connections:
            logger.warning(
                "closing %d connections with requests still unanswered", len(state.connections)
            )
            for connection in list(state.connections):
                connection.abort()
        forced = force is not None and force.is_set()
        remaining = 0.0 if forced else max(0.0, deadline - loop.time())
        await asyncio.to_thread(app.drain, remaining)
    finally:
        if state.sweeper is not None:
            state.sweeper.cancel()
        listener.close()


async def _stop_listening(state: _Server, listener: asyncio.Server, sock: socket.socket) -> None:
    """Close the listener; the connections the kernel already queued are still answered."""
    queued: list[socket.socket] = []
    try:
        while True:
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # out of descriptors, or a connection reset while queued
                break
            client.setblocking(False)
            queued.append(client)
    finally:
        listener.close()
        sock.close()  # uvloop listens on a duplicate: close ours too
    for client in queued:
        try:
            await state.loop.connect_accepted_socket(state.connection, client)
        except OSError:
            client.close()


async def _wait_either(event: asyncio.Event, other: asyncio.Event | None, timeout: float) -> None:
    """Wait until ``event`` (or ``other``) is set, for at most ``timeout`` seconds."""
    waiters = {asyncio.ensure_future(event.wait())}
    if other is not None:
        waiters.add(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
