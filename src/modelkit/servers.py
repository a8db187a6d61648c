"""Server backends: what runs a served application on a host and port.

A backend is a :class:`Server`; backends are plugins, registered by name through the
``register_servers`` hook. modelkit's own (``modelkit.default_plugins.servers``) are:

``stdlib``
    ``wsgiref`` with a thread per connection: no dependency, one process. The embedded
    default, for development, demos and small loads.
``uvicorn``
    The ASGI server (``pip install 'modelkit[serve]'``): one process, an event loop, and the
    predictions in worker threads, so health checks answer during long predictions.
``gunicorn``
    The pre-fork WSGI server (``pip install 'modelkit[serve]'``): several worker processes.
    The models are loaded once, in the master, before it forks; the workers share that memory
    copy-on-write.
``native`` (``modelkit.default_plugins.native_server``)
    modelkit's own HTTP/1.1 server (``pip install 'modelkit[serve]'``): asyncio with the
    httptools parser, on uvloop when installed, running the app without an ASGI layer; one
    process, the most requests per second on one core.

::

    from modelkit.serving import App
    from modelkit.servers import get_server

    app = App("churn@production")
    get_server("auto").run(app, host="127.0.0.1", port=8000)   # until SIGTERM or Ctrl-C

Every backend follows the same life cycle: bind the address (a taken port is a one-line
:class:`~modelkit.exceptions.ServingError`, before any model is loaded), load the models
(:meth:`App.start <modelkit.serving.App.start>`), serve, and on SIGTERM or SIGINT stop
gracefully: readiness turns 503 at once, the requests in flight finish (for at most the
app's ``drain_timeout`` seconds), and :meth:`Server.run` returns.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from modelkit.exceptions import (
    MissingDependencyError,
    NotFoundError,
    PluginError,
    ServingError,
)

if TYPE_CHECKING:
    from modelkit.serving.core import App

__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Server",
    "available_servers",
    "bind_socket",
    "check_workers",
    "get_server",
    "graceful_signals",
    "require",
    "server_url",
]

DEFAULT_HOST = "127.0.0.1"
"""Where servers listen by default: the loopback interface only."""

DEFAULT_PORT = 8000
"""The default port."""

AUTO = "auto"
"""The backend name that picks the first installed backend of :data:`AUTO_ORDER`."""

AUTO_ORDER = ("uvicorn", "stdlib")
"""What ``auto`` tries, in order: uvicorn when it is installed, else the standard library."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop a server gracefully."""


@runtime_checkable
class Server(Protocol):
    """A server backend: runs an :class:`~modelkit.serving.App` on a host and port.

    Backends are registered with the ``register_servers`` hook and built by
    :func:`get_server`. Each instance runs one server at a time.
    """

    @property
    def name(self) -> str:
        """The name the backend is registered under (``"stdlib"``, ``"uvicorn"``…)."""

    def run(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        workers: int = 1,
        on_ready: Callable[[str], object] | None = None,
    ) -> None:
        """Serve ``app`` until stopped; return once it has stopped gracefully.

        Binds ``host:port`` (port 0 picks a free port), starts ``app`` (resolves, verifies
        and loads its models) unless it is started, calls ``on_ready(url)`` (e.g.
        ``"http://127.0.0.1:8000"``) once connections are accepted, and serves. SIGTERM and
        SIGINT (when running in the main thread) or :meth:`stop` stop it: readiness turns
        503, requests in flight finish within ``app.drain_timeout`` seconds, then ``run``
        returns. ``workers`` is the number of processes, for backends that have several.

        Raises :class:`~modelkit.exceptions.ServingError` when the address cannot be bound
        or ``workers`` is not supported, and what loading the models raises.
        """

    def stop(self) -> None:
        """Stop the running server as SIGTERM would; returns at once, from any thread.

        Called before :meth:`run`, the next run stops as soon as it has started.
        """


# -- the registry of backends ----------------------------------------------------------------


def _factories() -> dict[str, Callable[..., Server]]:
    from modelkit.plugins import collect

    return collect("register_servers")


def available_servers() -> list[str]:
    """The names of every registered backend, sorted (installed or not)."""
    return sorted(_factories())


def get_server(name: str = AUTO, /, **options: Any) -> Server:
    """Build the backend registered as ``name``, passing it ``options``.

    ``"auto"`` builds the first backend of :data:`AUTO_ORDER` whose packages are installed
    (uvicorn, else the dependency-free ``stdlib``). Raises
    :class:`~modelkit.exceptions.NotFoundError` for an unknown name (the message lists the
    known ones) and :class:`~modelkit.exceptions.MissingDependencyError` when the backend's
    package is not installed.
    """
    factories = _factories()
    if name == AUTO:
        missing: list[str] = []
        for candidate in AUTO_ORDER:
            if candidate not in factories:
                continue
            try:
                return _build(candidate, factories[candidate], options)
            except MissingDependencyError as exc:
                missing.append(str(exc))
        raise NotFoundError(
            "no server backend is available for 'auto' "
            f"({'; '.join(missing) or 'none of ' + ', '.join(AUTO_ORDER) + ' is registered'})"
        )
    factory = factories.get(name)
    if factory is None:
        known = ", ".join([AUTO, *sorted(factories)])
        raise NotFoundError(f"unknown server backend {name!r} (available: {known})")
    return _build(name, factory, options)


def _build(name: str, factory: Callable[..., Server], options: dict[str, Any]) -> Server:
    server = factory(**options)
    if not isinstance(server, Server):
        raise PluginError(
            f"the server backend {name!r} built a {type(server).__name__}, which does not "
            "implement modelkit.servers.Server (name, run, stop)"
        )
    return server


# -- helpers for backends --------------------------------------------------------------------


def require(module: str, backend: str) -> None:
    """Check that ``module`` can be imported (without importing it).

    Raises :class:`~modelkit.exceptions.MissingDependencyError` naming the ``serve`` extra.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(
            f"the {backend} server backend needs the {module!r} package, which is not "
            "installed: pip install 'modelkit[serve]' (or choose --backend stdlib)"
        )


def check_workers(backend: str, workers: int, *, most: int | None = 1) -> None:
    """Refuse a number of workers ``backend`` cannot run (``most=None``: no upper bound)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ServingError(f"workers must be a positive integer, got {workers!r}")
    if most is not None and workers > most:
        raise ServingError(
            f"the {backend} backend runs {most} process, not {workers}: use the gunicorn "
            "backend for several worker processes (the models are loaded once and shared)"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, not listening yet; port 0 picks a free port.

    Backends bind first, so that a taken address fails at once, before models are loaded.
    Raises :class:`~modelkit.exceptions.ServingError` (one line) when the port is out of
    range, the address is in use, is not an address of this machine, or is not allowed.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServingError(f"the port must be an integer from 0 to 65535, got {port!r}")
    where = _host_port(host, port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServingError(
            f"cannot listen on {where}: {exc.strerror}; give an IP address or a name of "
            "this machine (e.g. --host 127.0.0.1)"
        ) from exc
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # rebind at once after a restart (TIME_WAIT), as servers do
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use; stop what listens there or choose "
            reason += "another --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "that is not an address of this machine"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges); use another --port"
        else:
            reason = exc.strerror or str(exc)
        raise ServingError(f"cannot listen on {where}: {reason}") from exc
    return sock


def server_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (the real port when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    return f"http://{_host_port(host, port)}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def graceful_signals(handler: Callable[[int], object]) -> Iterator[bool]:
    """Call ``handler(signum)`` on SIGTERM and SIGINT inside the block.

    Only the main thread can receive signals: elsewhere nothing is installed and the block
    gets ``False``. The previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def on_signal(signum: int, frame: object) -> None:
        handler(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
