"""The built-in server backends: ``stdlib``, ``uvicorn`` and ``gunicorn``.

Each is a :class:`modelkit.servers.Server` registered through ``register_servers``. All bind
the address first (a taken port fails before any model is loaded), load the models once,
then serve; SIGTERM and SIGINT stop them gracefully (readiness 503 at once, requests in
flight finish within the app's ``drain_timeout``). uvicorn and gunicorn are imported only in
``run``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import ServingError
from modelkit.hookspecs import hookimpl
from modelkit.servers import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    bind_socket,
    check_workers,
    graceful_signals,
    require,
    server_url,
)

if TYPE_CHECKING:
    from modelkit.servers import Server
    from modelkit.serving.core import App

__all__ = ["GunicornServer", "StdlibServer", "UvicornServer", "register_servers"]

logger = logging.getLogger("modelkit.serving")

OnReady = Callable[[str], object]

_SLICE = 0.25
"""Longest single wait (seconds) of a server's main thread, so signal handlers run promptly."""


# -- stdlib: wsgiref, a thread per connection ------------------------------------------------


@functools.cache
def _httpd_class() -> type[Any]:
    """wsgiref's server with a thread per connection (built on first use: no import cost)."""
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class Handler(WSGIRequestHandler):
        """wsgiref's handler, logging through ``logging`` instead of printing each request."""

        timeout = 60.0  # seconds a client may take to send its request

        def address_string(self) -> str:
            return str(self.client_address[0])  # no reverse DNS lookup per request

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s - %s", self.address_string(), format % args)

    class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
        """wsgiref's server on an already bound socket, one daemon thread per connection.

        Counts the connections being handled, so that a graceful stop can wait for their
        answers to be written (daemon threads are not joined).
        """

        daemon_threads = True
        block_on_close = False
        request_queue_size = 128

        def __init__(self, sock: socket.socket, application: Any) -> None:
            address = sock.getsockname()
            self.address_family = sock.family
            super().__init__(address[:2], Handler, bind_and_activate=False)
            self.socket.close()  # the one TCPServer made; ours is bound already
            self.socket = sock
            self.server_address = address
            self.server_name, self.server_port = str(address[0]), int(address[1])
            self.setup_environ()
            self.server_activate()
            self.set_app(application)
            self._active = 0
            self._idle = threading.Condition()

        def process_request(self, request: Any, client_address: Any) -> None:
            with self._idle:
                self._active += 1
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._done()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self._done()

        def _done(self) -> None:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

        def wait_idle(self, timeout: float) -> bool:
            """Wait until no connection is being handled; whether that happened in time."""
            with self._idle:
                return self._idle.wait_for(lambda: self._active == 0, timeout=timeout)

    return ThreadingWSGIServer


@attrs.define
class StdlibServer:
    """The standard library's ``wsgiref`` server, with a thread per connection.

    No dependency and one process: the embedded default for development, demos and small
    loads. During a graceful stop it keeps accepting connections, answering 503 on
    readiness and predictions (200 on ``/healthz``) until the requests in flight are done.
    """

    name = "stdlib"
    poll_interval: float = 0.1
    """How often (seconds) the accept loop checks for a stop."""
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False, repr=False)

    def run(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        on_ready: OnReady | None = None,
    ) -> None:
        """Serve ``app`` until SIGTERM, SIGINT or :meth:`stop` (see ``Server.run``)."""
        from modelkit.serving.wsgi import WSGIApp

        check_workers(self.name, workers)
        with graceful_signals(self._on_signal):
            sock = bind_socket(host, port)
            try:
                app.start()
                httpd = _httpd_class()(sock, WSGIApp(app))
            except BaseException:
                sock.close()
                raise
            thread = threading.Thread(
                target=httpd.serve_forever,
                args=(self.poll_interval,),
                name=f"modelkit-{self.name}-{server_url(sock)}",
                daemon=True,
            )
            thread.start()
            try:
                if on_ready is not None and not self._stop.is_set():
                    on_ready(server_url(sock))
                _wait(self._stop.wait)
                app.begin_drain()  # readiness 503 now; the listener stays open meanwhile
                deadline = time.monotonic() + app.drain_timeout
                drainer = threading.Thread(target=app.drain, name="modelkit-drain", daemon=True)
                drainer.start()
                _wait(lambda seconds: _joined(drainer, seconds))
                httpd.shutdown()
                if not _wait(httpd.wait_idle, deadline - time.monotonic()):
                    logger.warning("stopped with answers still being written")
            finally:
                httpd.shutdown()
                httpd.server_close()
                thread.join()
                self._stop.clear()
                if app.state in {"ready", "draining"}:  # left early: on_ready or Ctrl-C raised
                    app.drain(timeout=0)

    def stop(self) -> None:
        """Stop gracefully, as SIGTERM would (thread-safe)."""
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        if self._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the drain
        self._stop.set()


def _wait(wait: Callable[[float], bool], timeout: float | None = None) -> bool:
    """Call ``wait(seconds)`` in short slices until it returns true or ``timeout`` passes.

    The main thread must not block for long in one call: a signal delivered to another
    thread runs its Python handler only once the main thread is back in the interpreter.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
        if wait(max(0.0, left)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def _joined(thread: threading.Thread, seconds: float) -> bool:
    thread.join(seconds)
    return not thread.is_alive()


# -- uvicorn: ASGI, one process --------------------------------------------------------------


@attrs.define
class UvicornServer:
    """uvicorn running the ASGI adapter, in one process.

    Models load before the socket listens; SIGTERM or SIGINT turns readiness 503 at once,
    closes the listener and waits for the requests in flight (``timeout_graceful_shutdown``
    is the app's ``drain_timeout``), then the lifespan shutdown drains the app. A second
    Ctrl-C forces the exit. ``options`` are more ``uvicorn.Config`` keywords (``http``,
    ``loop``, ``limit_concurrency``…). One process only: for several, use ``gunicorn``.
    """

    name = "uvicorn"
    options: Mapping[str, Any] = attrs.field(factory=dict)
    _server: Any = attrs.field(default=None, init=False, repr=False)
    _app: App | None = attrs.field(default=None, init=False, repr=False)
    _stopping: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        require("uvicorn", self.name)

    def run(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        on_ready: OnReady | None = None,
    ) -> None:
        """Serve ``app`` until SIGTERM, SIGINT or :meth:`stop` (see ``Server.run``)."""
        import uvicorn

        from modelkit.serving.asgi import ASGIApp

        check_workers(self.name, workers)
        # Our handlers are what uvicorn restores and re-raises its captured signal into
        # after its shutdown: the process then exits normally, with status 0.
        with graceful_signals(lambda signum: self.stop()):
            sock = bind_socket(host, port)
            try:
                app.start()
                config = uvicorn.Config(
                    ASGIApp(app),
                    host=host,
                    port=sock.getsockname()[1],
                    lifespan="on",
                    log_level="warning",
                    timeout_graceful_shutdown=max(1, math.ceil(app.drain_timeout)),
                    **self.options,
                )
                server = _uvicorn_server(config, app, on_ready, server_url(sock))
                self._server, self._app = server, app
                if self._stopping:
                    server.should_exit = True
                server.run(sockets=[sock])
            finally:
                sock.close()
                self._server = self._app = None
                self._stopping = False
            if app.state in {"ready", "draining"}:  # a forced exit skipped the lifespan shutdown
                app.drain(timeout=0)

    def stop(self) -> None:
        """Stop gracefully, as SIGTERM would (thread-safe)."""
        self._stopping = True
        app, server = self._app, self._server
        if app is not None:
            app.begin_drain()
        if server is not None:
            server.should_exit = True


def _uvicorn_server(config: Any, app: App, on_ready: OnReady | None, url: str) -> Any:
    """A ``uvicorn.Server`` that turns readiness 503 on the first signal and reports ready."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.begin_drain()
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if on_ready is not None and not self.should_exit:
                on_ready(url)

    return _Server(config)


# -- gunicorn: pre-fork WSGI, several processes ----------------------------------------------


@attrs.define
class GunicornServer:
    """gunicorn running the WSGI adapter in ``workers`` processes.

    The models are loaded once, in the master, before it forks (``preload_app``): every
    worker shares that memory copy-on-write, so N workers do not cost N copies of a model
    (pages a worker writes to are copied; a big model stays shared as long as it is only
    read). Workers are ``gthread`` workers with ``threads`` threads each, so a worker answers
    health checks while it predicts.

    SIGTERM or SIGINT to the master (Ctrl-C too, unlike plain gunicorn) stops gracefully: the
    listener closes, each worker turns its readiness 503, finishes its requests in flight
    (``graceful_timeout`` is the app's ``drain_timeout``), drains its app and exits. A second
    Ctrl-C forces the exit. ``options`` are more gunicorn settings (``timeout``,
    ``max_requests``, ``worker_tmp_dir``…). Runs in the main thread only.
    """

    name = "gunicorn"
    threads: int = 4
    worker_class: str = "gthread"
    options: Mapping[str, Any] = attrs.field(factory=dict)
    _master: int | None = attrs.field(default=None, init=False, repr=False)
    _stopping: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        require("gunicorn", self.name)

    def run(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        on_ready: OnReady | None = None,
    ) -> None:
        """Serve ``app`` until SIGTERM, SIGINT or :meth:`stop` (see ``Server.run``)."""
        from modelkit.serving.wsgi import WSGIApp

        check_workers(self.name, workers, most=None)
        if threading.current_thread() is not threading.main_thread():
            raise ServingError("the gunicorn backend runs in the main thread only")
        pid = os.getpid()
        saved = {sig: signal.getsignal(sig) for sig in _gunicorn_signals()}
        try:
            with graceful_signals(self._on_signal):
                sock = bind_socket(host, port)
                try:
                    app.start()  # once, here in the master, before the workers are forked
                except BaseException:
                    sock.close()
                    raise
                if self._stopping:
                    sock.close()
                    return
                url = server_url(sock)
                settings = self._settings(app, sock.detach(), workers, on_ready, url)
                try:
                    _gunicorn_application(WSGIApp(app), settings).run()
                except SystemExit as exc:
                    if os.getpid() != pid:
                        raise  # a worker process leaving: let it exit
                    if exc.code not in {0, None}:
                        raise ServingError(
                            f"gunicorn stopped with status {exc.code}; its log above says why"
                        ) from exc
        finally:
            if os.getpid() == pid:
                self._master = None
                self._stopping = False
                for sig, handler in saved.items():
                    signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop gracefully, as SIGTERM would (thread-safe, from the master process)."""
        self._stopping = True
        if self._master == os.getpid():
            os.kill(self._master, signal.SIGTERM)

    def _on_signal(self, signum: int) -> None:
        self._stopping = True  # before gunicorn takes the signals over: stop once ready

    def _when_ready(self, on_ready: OnReady | None, url: str) -> None:
        self._master = os.getpid()
        if self._stopping:  # asked to stop while loading
            os.kill(self._master, signal.SIGTERM)
        elif on_ready is not None:
            on_ready(url)

    def _settings(
        self, app: App, fd: int, workers: int, on_ready: OnReady | None, url: str
    ) -> dict[str, Any]:
        return {
            "bind": [f"fd://{fd}"],
            "workers": workers,
            "worker_class": self.worker_class,
            "threads": self.threads,
            "preload_app": True,
            "graceful_timeout": max(1, math.ceil(app.drain_timeout)),
            "loglevel": "warning",
            "accesslog": None,
            "proc_name": "modelkit",
            "control_socket_disable": True,  # no shared ~/.gunicorn/gunicorn.ctl socket
            "when_ready": lambda arbiter: self._when_ready(on_ready, url),
            "post_worker_init": _post_worker_init,
            "worker_exit": _worker_exit,
            "on_exit": lambda arbiter: app.drain(timeout=0),
            **self.options,
        }


def _gunicorn_signals() -> list[signal.Signals]:
    """Every signal gunicorn's master takes over (restored when it has stopped)."""
    names = ["HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD"]
    return [getattr(signal, f"SIG{name}") for name in names if hasattr(signal, f"SIG{name}")]


def _post_worker_init(worker: Any) -> None:
    """In each worker: SIGTERM and SIGINT turn readiness 503, then stop gracefully."""
    core = getattr(worker.wsgi, "app", None)

    def graceful(signum: int, frame: Any) -> None:
        if core is not None:
            core.begin_drain()
        worker.handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)  # Ctrl-C reaches the workers too


def _worker_exit(arbiter: Any, worker: Any) -> None:
    """In each worker, once its requests are done: drain its app (state ``stopped``)."""
    core = getattr(getattr(worker, "wsgi", None), "app", None)
    if core is not None:
        core.drain(timeout=0)


def _gunicorn_application(wsgi: Any, settings: Mapping[str, Any]) -> Any:
    """A gunicorn application serving the WSGI callable ``wsgi`` with ``settings``."""
    # gunicorn ships no type hints
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
    from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]

    class _Arbiter(Arbiter):  # type: ignore[misc]
        def handle_int(self) -> None:
            raise StopIteration  # Ctrl-C stops gracefully, as SIGTERM does

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            known = self.cfg.settings
            for key, value in settings.items():
                if key in known:
                    self.cfg.set(key, value)
                elif key != "control_socket_disable":  # only in recent gunicorn versions
                    raise ServingError(f"unknown gunicorn setting {key!r}")

        def load(self) -> Any:
            return wsgi

        def run(self) -> None:
            _Arbiter(self).run()

    try:
        return _Application()
    except SystemExit as exc:  # gunicorn exits on a bad setting, after printing it
        raise ServingError("gunicorn refused its settings (see the error above)") from exc


@hookimpl
def register_servers(register: Callable[[str, Callable[..., Server]], None]) -> None:
    register("stdlib", StdlibServer)
    register("uvicorn", UvicornServer)
    register("gunicorn", GunicornServer)
