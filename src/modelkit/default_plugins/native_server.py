"""The ``native`` server backend: modelkit's own HTTP/1.1 server on asyncio and httptools.

A :class:`modelkit.servers.Server` registered through ``register_servers``. It runs an
:class:`~modelkit.serving.App` directly on an :class:`asyncio.Protocol` with the httptools
parser (:mod:`modelkit.serving.native`), on uvloop when it is installed: no ASGI layer in
between, one ``write`` per answer, and the requests of every connection micro-batched
together. httptools and uvloop come with ``pip install 'modelkit[serve]'``; both are
imported only in ``run``.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.default_plugins.servers import reload_on_hangup, settle_memory
from modelkit.exceptions import ServingError
from modelkit.hookspecs import hookimpl
from modelkit.servers import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    bind_socket,
    check_workers,
    graceful_signals,
    require,
)

if TYPE_CHECKING:
    import asyncio

    from modelkit.servers import Server
    from modelkit.serving.core import App

__all__ = ["LOOPS", "NativeServer", "register_servers"]

LOOPS = ("auto", "uvloop", "asyncio")
"""The event loops :class:`NativeServer` can run on (``auto``: uvloop when installed)."""


@attrs.define
class NativeServer:
    """modelkit's own HTTP/1.1 server: asyncio, the httptools parser, uvloop when installed.

    One process, one event loop: requests are decoded in the loop and their model work is
    micro-batched across connections (a worker thread computes one batch while the loop
    decodes the next, and keeps answering health checks). Keep-alive, pipelining, chunked
    bodies and ``Expect: 100-continue`` are supported; ``keep_alive`` is how long (seconds)
    an idle connection stays open and ``max_header_size`` bounds a request's URL and
    headers (bytes). ``loop`` is ``"auto"`` (uvloop when installed), ``"uvloop"`` or
    ``"asyncio"``.

    SIGTERM or SIGINT (or :meth:`stop`) closes the listener at once (new connections, readiness
    probes included, are refused), turns readiness 503 on the open connections, answers
    every request already received (with ``connection: close``), closes idle connections,
    and drains the app within its ``drain_timeout``; a second Ctrl-C stops waiting. SIGHUP
    checks the served registry aliases now. One process only: for several, use ``gunicorn``.
    """

    name = "native"
    keep_alive: float = 5.0
    max_header_size: int = 64 * 1024
    loop: str = attrs.field(default="auto")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _running: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False, repr=False)
    _events: tuple[asyncio.Event, asyncio.Event] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _stopping: bool = attrs.field(default=False, init=False, repr=False)

    @loop.validator
    def _check_loop(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in LOOPS:
            raise ServingError(
                f"loop must be one of {', '.join(LOOPS)}, got {value!r}; 'auto' picks uvloop "
                "when it is installed"
            )

    def __attrs_post_init__(self) -> None:
        require("httptools", self.name)
        if self.loop == "uvloop":
            require("uvloop", self.name)

    def run(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        on_ready: Callable[[str], object] | None = None,
    ) -> None:
        """Serve ``app`` until SIGTERM, SIGINT or :meth:`stop` (see ``Server.run``)."""
        from modelkit.serving.native import Limits

        check_workers(self.name, workers)
        limits = Limits(keep_alive=self.keep_alive, max_header_size=self.max_header_size)
        with graceful_signals(self._on_signal), reload_on_hangup(app):
            sock = bind_socket(host, port)
            try:
                app.start()
                settle_memory()
                if not self._stopping:  # else asked to stop while loading
                    self._serve(app, sock, on_ready, limits)
            finally:
                sock.close()
                with self._lock:
                    self._stopping = False
                if app.state in {"ready", "draining"}:  # left early: on_ready raised, or forced
                    app.drain(timeout=0)

    def stop(self) -> None:
        """Stop gracefully, as SIGTERM would (thread-safe)."""
        self._wake(force=False)

    def _on_signal(self, signum: int) -> None:
        self._wake(force=self._stopping and signum == signal.SIGINT)  # a second Ctrl-C

    def _wake(self, *, force: bool) -> None:
        with self._lock:
            self._stopping = True
            loop, events = self._running, self._events
            if loop is not None and events is not None:
                loop.call_soon_threadsafe(events[1 if force else 0].set)

    def _serve(
        self,
        app: App,
        sock: socket.socket,
        on_ready: Callable[[str], object] | None,
        limits: Any,
    ) -> None:
        import asyncio

        from modelkit.serving.native import serve

        loop = _new_loop(self.loop)
        try:
            stop, force = asyncio.Event(), asyncio.Event()
            with self._lock:
                self._running, self._events = loop, (stop, force)
                if self._stopping:
                    stop.set()
            loop.run_until_complete(
                serve(app, sock, stop=stop, force=force, on_ready=on_ready, limits=limits)
            )
        finally:
            with self._lock:
                self._running = self._events = None
            _close_loop(loop)


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when asked or (``auto``) when it is installed."""
    import asyncio

    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on ``loop`` (after a forced stop), then close it."""
    import asyncio

    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@hookimpl
def register_servers(register: Callable[[str, Callable[..., Server]], None]) -> None:
    register("native", NativeServer)
