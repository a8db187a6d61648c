"""The built-in server backends: ``stdlib``, ``uvicorn`` and ``gunicorn``.

Each is a :class:`modelkit.servers.Server` registered through ``register_servers``. All bind
the address first (a taken port fails before any model is loaded), load the models once,
then serve; SIGTERM and SIGINT stop them gracefully (readiness 503 at once, requests in
flight finish within the app's ``drain_timeout``). uvicorn and gunicorn are imported only in
``run``.

SIGHUP checks the served registry aliases now (:meth:`ModelWatcher.check_now
<modelkit.serving.swap.ModelWatcher.check_now>`), in a background thread, and swaps in the
versions that moved. Under gunicorn the master does it: it loads the new version once, then
re-forks its workers (new ones first, then the old ones stop gracefully), so that the
workers keep sharing one copy of the model.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
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
    from modelkit.serving.swap import Reload

__all__ = ["GunicornServer", "StdlibServer", "UvicornServer", "register_servers"]

logger = logging.getLogger("modelkit.serving")

OnReady = Callable[[str], object]

_SLICE = 0.25
"""Longest single wait (seconds) of a server's main thread, so signal handlers run promptly."""

_EXIT_FLUSH = 5.0
"""Seconds an exiting gunicorn worker gives its prediction records to be written."""


# -- SIGHUP: check the served aliases now ----------------------------------------------------


def check_aliases(app: App) -> list[Reload]:
    """Check the aliases ``app`` serves and swap what moved; log what happened. Never raises.

    What SIGHUP runs, in a background thread.
    """
    watcher = app.watcher
    if watcher is None:
        logger.warning("SIGHUP: no served model comes from the registry; nothing to reload")
        return []
    try:
        results = watcher.check_now()
    except Exception as exc:
        logger.error("SIGHUP: could not check the served aliases: %s", exc)
        return []
    for result in results:
        if result.outcome == "swapped":
            logger.warning(
                "SIGHUP: %s now serves version %s (was %s)",
                result.model,
                result.new_version,
                result.old_version,
            )
    if not results:
        logger.warning("SIGHUP: no served model follows a registry alias; nothing to reload")
    return results


@contextlib.contextmanager
def reload_on_hangup(app: App) -> Iterator[bool]:
    """Inside the block, SIGHUP checks ``app``'s aliases in a background thread.

    The signal handler only wakes a listener thread: loading a model never runs in the
    handler. Only the main thread can receive signals: elsewhere (and where there is no
    SIGHUP) nothing is installed and the block gets ``False``. The previous handler comes
    back afterwards.
    """
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or threading.current_thread() is not threading.main_thread():
        yield False
        return
    wake, done = threading.Event(), threading.Event()

    def listen() -> None:
        while True:
            wake.wait()
            if done.is_set():
                return
            wake.clear()
            check_aliases(app)

    def on_hangup(signum: int, frame: object) -> None:
        wake.set()

    listener = threading.Thread(target=listen, name="modelkit-sighup", daemon=True)
    listener.start()
    previous = signal.signal(hangup, on_hangup)
    try:
        yield True
    finally:
        signal.signal(hangup, previous)
        done.set()
        wake.set()
        listener.join(_SLICE)  # unless a check is still loading a model


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

        def get_environ(self) -> dict[str, Any]:
            from modelkit.serving.wsgi import ACCEPTED_KEY

            environ: dict[str, Any] = super().get_environ()
            accepted: dict[Any, float] = getattr(self.server, "accepted", {})
            environ[ACCEPTED_KEY] = accepted.pop(self.request, None)
            return environ

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
            self.accepted: dict[Any, float] = {}

        def process_request(self, request: Any, client_address: Any) -> None:
            self.accepted[request] = time.perf_counter()  # before a drain began, or not
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
                self.accepted.pop(request, None)
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
    loads. A graceful stop closes the listener at once (new connections are refused), after
    answering the connections the kernel had already taken, and answers every request
    received before it exits.
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
        with graceful_signals(self._on_signal), reload_on_hangup(app):
            sock = bind_socket(host, port)
            try:
                app.start()
                settle_memory()
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
                deadline = time.monotonic() + app.drain_timeout
                # Stop accepting: connections the kernel already took are answered (they
                # were accepted before the drain begins), then the listener closes and new
                # connections are refused, as with the other backends.
                httpd.shutdown()
                _answer_backlog(httpd)
                httpd.socket.close()
                app.begin_drain()  # readiness 503; the requests received are answered
                drainer = threading.Thread(target=app.drain, name="modelkit-drain", daemon=True)
                drainer.start()
                _wait(lambda seconds: _joined(drainer, seconds))
                if not _wait(httpd.wait_idle, max(deadline - time.monotonic(), 1.0)):
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


def _answer_backlog(httpd: Any) -> None:
    """Hand the connections waiting in the listen backlog to handler threads, without waiting."""
    sock = httpd.socket
    sock.setblocking(False)
    try:
        while True:
            try:
                request, address = httpd.get_request()
            except OSError:  # BlockingIOError: the backlog is empty
                return
            request.setblocking(True)
            httpd.process_request(request, address)
    finally:
        sock.setblocking(True)


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

    Models load before the socket listens; SIGTERM or SIGINT closes the listener (new
    connections, readiness probes included, are refused) and answers every request already
    received, for at most ``timeout_graceful_shutdown`` (the app's ``drain_timeout``); then
    the lifespan shutdown drains the app. A second Ctrl-C forces the exit. ``options`` are
    more ``uvicorn.Config`` keywords (``http``, ``loop``, ``limit_concurrency``…). One
    process only: for several, use ``gunicorn``.
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
        with graceful_signals(lambda signum: self.stop()), reload_on_hangup(app):
            sock = bind_socket(host, port)
            try:
                app.start()
                settle_memory()
                config = uvicorn.Config(
                    ASGIApp(app),
                    host=host,
                    port=sock.getsockname()[1],
                    lifespan="on",
                    log_level="warning",
                    timeout_graceful_shutdown=max(1, math.ceil(app.drain_timeout)),
                    **{"access_log": False, **self.options},
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
        server = self._server
        if server is not None:
            server.should_exit = True


def _uvicorn_server(config: Any, app: App, on_ready: OnReady | None, url: str) -> Any:
    """A ``uvicorn.Server`` that reports when it is ready.

    The app is not told to refuse predictions on the signal: a request received just before
    it would get a 503. uvicorn closes its listener at once and answers what it received.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if on_ready is not None and not self.should_exit:
                on_ready(url)

    return _Server(config)


def settle_memory() -> None:
    """Move everything loaded so far (the models) out of the garbage collector's way.

    ``gc.freeze()`` after loading: collections no longer walk the models' objects on every
    pass, and forked workers no longer write to (and so copy) their pages when they do.
    """
    import gc

    gc.collect()
    gc.freeze()


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
    listener closes at once in every process (new connections, readiness probes included, are
    refused), each worker answers every request it has received, queued ones included
    (``graceful_timeout`` is the app's ``drain_timeout``), drains its app and exits. A second
    Ctrl-C forces the exit. ``options`` are more gunicorn settings (``timeout``,
    ``max_requests``, ``worker_tmp_dir``…). Runs in the main thread only.

    Served aliases are followed by the master, never by the workers: SIGHUP to the master (or
    its ``watch`` polling, or ``POST /admin/reload`` on any worker, which asks the master)
    loads and warms up the new version in the master, in a background thread; then the
    master re-forks its workers as gunicorn's own SIGHUP does (the new workers start before
    the old ones stop gracefully), so no request is dropped and the workers share the new
    model as they shared the old one. With nothing to follow, SIGHUP is gunicorn's reload.
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
                    settle_memory()
                except BaseException:
                    sock.close()
                    raise
                if self._stopping:
                    sock.close()
                    return
                url = server_url(sock)
                if app.watcher is not None:
                    app.watcher.follow_after_fork = False  # the master follows, for everyone
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

    def _when_ready(self, arbiter: Any, app: App, on_ready: OnReady | None, url: str) -> None:
        self._master = os.getpid()
        if app.watcher is not None:  # a swap in the master re-forks the workers
            app.watcher.on_swap = arbiter.refork
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
            "when_ready": lambda arbiter: self._when_ready(arbiter, app, on_ready, url),
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
    """In each worker: SIGTERM and SIGINT stop gracefully; a swap made here (``POST
    /admin/reload``) asks the master to swap and re-fork (SIGHUP)."""
    core = getattr(worker.wsgi, "app", None)
    watcher = getattr(core, "watcher", None)
    if watcher is not None:
        master = worker.ppid

        def ask_master(results: object) -> None:
            os.kill(master, signal.SIGHUP)

        watcher.on_swap = ask_master

    # Stop taking connections, then answer every one already taken, queued ones included: the
    # core is not told to refuse predictions (a 503 there would fail a request its client sent
    # before the signal). Readiness is off at once because the listener is closed at once in
    # every process (the master closes its copy first), so that new connections are refused
    # instead of waiting in the backlog until a reset. A worker's core drains at its exit.
    enable_accept = getattr(worker, "set_accept_enabled", None)
    if callable(enable_accept):  # gthread: closing is safe once its loop stopped accepting

        def set_accept_enabled(enabled: bool) -> None:
            enable_accept(enabled)
            if not enabled and not worker.alive:
                for listener in worker.sockets:
                    listener.close()

        worker.set_accept_enabled = set_accept_enabled

    def graceful(signum: int, frame: Any) -> None:
        worker.handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)  # Ctrl-C reaches the workers too


def _worker_exit(arbiter: Any, worker: Any) -> None:
    """In each worker, once its requests are done: drain its app (state ``stopped``)."""
    core = getattr(getattr(worker, "wsgi", None), "app", None)
    if core is not None:
        core.drain(timeout=_EXIT_FLUSH)  # nothing is in flight: this bounds the record flush


def _gunicorn_application(wsgi: Any, settings: Mapping[str, Any]) -> Any:
    """A gunicorn application serving the WSGI callable ``wsgi`` with ``settings``.

    SIGHUP to its master checks the aliases of the core app ``wsgi.app`` (when it has any to
    follow) and re-forks the workers once a new version is swapped in.
    """
    core: App | None = getattr(wsgi, "app", None)
    # gunicorn ships no type hints
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
    from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]

    class _Arbiter(Arbiter):  # type: ignore[misc]
        reforking = False

        def handle_int(self) -> None:
            raise StopIteration  # Ctrl-C stops gracefully, as SIGTERM does

        def handle_hup(self) -> None:
            if core is None or core.watcher is None:
                super().handle_hup()  # nothing follows an alias: gunicorn's own reload
                return
            self.log.info("Hang up: checking the served aliases")
            threading.Thread(
                target=check_aliases, args=(core,), name="modelkit-sighup", daemon=True
            ).start()

        def refork(self, results: object = None) -> None:
            """Re-fork the workers from this (updated) master, from its main loop."""
            self.reforking = True
            self.wakeup()

        def manage_workers(self) -> None:
            if self.reforking:
                self.reforking = False
                self.log.info("Re-forking the workers to serve the new model versions")
                self.reload()  # spawns new workers, then stops the old ones gracefully
                return
            super().manage_workers()

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
