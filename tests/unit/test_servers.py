"""Server backends: the ``register_servers`` hook, ``auto``, errors, and real in-process runs.

The stdlib and uvicorn backends run in a thread on port 0 for real requests; gunicorn forks,
so its real runs are in ``tests/integration/test_server_backends.py``. ``modelkit serve`` is
run in process against a backend a test plugin registers.
"""

from __future__ import annotations

import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pluggy
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.cli import main
from modelkit.exceptions import (
    MissingDependencyError,
    NotFoundError,
    PluginError,
    ServingError,
)
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.plugins import make_plugin_manager, use_plugin_manager
from modelkit.servers import (
    Server,
    available_servers,
    bind_socket,
    check_workers,
    get_server,
    graceful_signals,
    require,
    server_url,
)
from modelkit.serving.core import App

TIMEOUT = 10.0


class Gated(LogisticRegression):  # type: ignore[misc]  # scikit-learn has no type hints
    """A LogisticRegression whose ``predict`` sets ``entered`` and waits for ``release``."""

    entered = threading.Event()
    release = threading.Event()

    def predict(self, X: Any) -> np.ndarray:
        type(self).entered.set()
        assert type(self).release.wait(TIMEOUT), "the test never released the request"
        return np.asarray(super().predict(X))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    return X, y


@pytest.fixture
def model(data: tuple[np.ndarray, np.ndarray]) -> Model:
    X, y = data
    return Model.wrap(LogisticRegression(solver="liblinear").fit(X, y), sample=X, name="seed")


@pytest.fixture
def gated(data: tuple[np.ndarray, np.ndarray]) -> Iterator[Model]:
    X, y = data
    Gated.entered.clear()
    Gated.release.clear()
    try:
        yield Model.wrap(Gated(solver="liblinear").fit(X, y), sample=X, name="slow")
    finally:
        Gated.release.set()  # never leave a server thread waiting


class Running:
    """A server's ``run`` in a thread; ``url`` once it is ready, ``join`` for its outcome."""

    def __init__(self, server: Server, app: App, **options: Any) -> None:
        self.server, self.app = server, app
        self.urls: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=options, daemon=True)
        self.thread.start()

    def _run(self, **options: Any) -> None:
        try:
            self.server.run(self.app, host="127.0.0.1", port=0, on_ready=self.urls.put, **options)
        except BaseException as exc:
            self.error = exc

    def url(self) -> str:
        return self.urls.get(timeout=TIMEOUT)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the server did not stop"
        if self.error is not None:
            raise self.error


# -- the registry of backends ----------------------------------------------------------------


def test_the_builtin_backends_are_registered() -> None:
    assert available_servers() == ["gunicorn", "native", "stdlib", "uvicorn"]
    for name in available_servers():
        server = get_server(name)
        assert isinstance(server, Server)
        assert server.name == name


def test_auto_picks_uvicorn_when_it_is_installed() -> None:
    assert get_server("auto").name == "uvicorn"
    assert get_server().name == "uvicorn"


def test_auto_falls_back_to_stdlib_without_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    assert get_server("auto").name == "stdlib"


@pytest.mark.parametrize("backend", ["uvicorn", "gunicorn"])
def test_a_missing_package_names_the_serve_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setitem(sys.modules, backend, None)
    with pytest.raises(MissingDependencyError) as caught:
        get_server(backend)
    assert isinstance(caught.value, ImportError)
    assert str(caught.value) == (
        f"the {backend} server backend needs the {backend!r} package, which is not installed: "
        "pip install 'modelkit[serve]' (or choose --backend stdlib)"
    )


def test_an_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(NotFoundError) as caught:
        get_server("tornado")
    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == (
        "unknown server backend 'tornado' (available: auto, gunicorn, native, stdlib, uvicorn)"
    )


def test_auto_without_any_backend_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        environ={"MODELKIT_DISABLE_PLUGINS": "modelkit.servers,modelkit.native_server"},
    )
    with use_plugin_manager(pm):
        assert available_servers() == []
        with pytest.raises(NotFoundError, match="none of uvicorn, stdlib is registered"):
            get_server("auto")


class FakeServer:
    """A backend that starts the app and reports ready without listening anywhere."""

    name = "fake"

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.calls: list[dict[str, Any]] = []

    def run(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        workers: int = 1,
        on_ready: Callable[[str], object] | None = None,
    ) -> None:
        self.calls.append({"app": app, "host": host, "port": port, "workers": workers})
        app.start()
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        app.drain()

    def stop(self) -> None:
        pass


class Backends:
    """A plugin registering ``factories`` by name."""

    def __init__(self, **factories: Callable[..., Any]) -> None:
        self.factories = factories

    @hookimpl
    def register_servers(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        for name, factory in self.factories.items():
            register(name, factory)


def test_a_plugin_adds_a_backend_and_gets_its_options(
    plugin_manager: pluggy.PluginManager,
) -> None:
    plugin_manager.register(Backends(fake=FakeServer))
    assert available_servers() == ["fake", "gunicorn", "native", "stdlib", "uvicorn"]
    server = get_server("fake", color="blue")
    assert isinstance(server, FakeServer)
    assert server.options == {"color": "blue"}


def test_a_factory_that_builds_no_server_is_a_plugin_error(
    plugin_manager: pluggy.PluginManager,
) -> None:
    plugin_manager.register(Backends(broken=object))
    with pytest.raises(PluginError, match=r"'broken' built a object, which does not implement"):
        get_server("broken")


def test_two_plugins_taking_one_name_is_a_plugin_error(
    plugin_manager: pluggy.PluginManager,
) -> None:
    plugin_manager.register(Backends(stdlib=FakeServer), name="mine")
    with pytest.raises(PluginError, match="'stdlib' is registered by both"):
        get_server("stdlib")


# -- helpers for backends --------------------------------------------------------------------


def test_bind_socket_picks_a_free_port_and_does_not_listen_yet() -> None:
    with bind_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port > 0
        assert server_url(sock) == f"http://127.0.0.1:{port}"
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))


def test_bind_socket_reports_a_port_in_use_on_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServingError) as caught:
            bind_socket("127.0.0.1", port)
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop what listens there or choose another --port"
    )


@pytest.mark.parametrize("port", [-1, 65536, True, "80"])
def test_bind_socket_refuses_an_invalid_port(port: Any) -> None:
    with pytest.raises(ServingError, match="the port must be an integer from 0 to 65535"):
        bind_socket("127.0.0.1", port)


def test_bind_socket_refuses_an_unknown_host() -> None:
    with pytest.raises(ServingError, match=r"cannot listen on no-such-host\.invalid:0: "):
        bind_socket("no-such-host.invalid", 0)


def test_server_url_brackets_ipv6_addresses() -> None:
    try:
        sock = bind_socket("::1", 0)
    except ServingError:
        pytest.skip("no IPv6 loopback here")
    with sock:
        assert server_url(sock) == f"http://[::1]:{sock.getsockname()[1]}"


def test_check_workers() -> None:
    check_workers("gunicorn", 8, most=None)
    with pytest.raises(ServingError, match="the stdlib backend runs 1 process, not 2: use"):
        check_workers("stdlib", 2)
    for wrong in (0, -3, 1.5, True):
        with pytest.raises(ServingError, match="workers must be a positive integer"):
            check_workers("gunicorn", wrong, most=None)  # type: ignore[arg-type]


def test_require() -> None:
    require("json", "test")
    with pytest.raises(MissingDependencyError, match="needs the 'no_such_module_xyz' package"):
        require("no_such_module_xyz", "test")


def test_graceful_signals_calls_the_handler_and_restores_the_previous_one() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []
    with graceful_signals(seen.append) as installed:
        assert installed
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is before


def test_graceful_signals_installs_nothing_outside_the_main_thread() -> None:
    outcome: list[bool] = []

    def body() -> None:
        with graceful_signals(lambda signum: None) as installed:
            outcome.append(installed)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(TIMEOUT)
    assert outcome == [False]


# -- stdlib, for real --------------------------------------------------------------------------


def seed_request(client: httpx.Client, url: str, X: np.ndarray) -> httpx.Response:
    return client.post(f"{url}/predict", json={"features": X.tolist()})


def test_stdlib_serves_in_a_thread_until_stopped(
    model: Model, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = data[0][:10]
    app = App(model)
    running = Running(get_server("stdlib"), app)
    url = running.url()
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(f"{url}/readyz").status_code == 200
        answer = seed_request(client, url, X)
        assert answer.status_code == 200
        assert answer.json()["prediction"] == model.predict(X).tolist()
        running.stop()
        assert app.state == "stopped"
        with pytest.raises(httpx.ConnectError):
            client.get(f"{url}/healthz")


def test_stdlib_drains_a_request_in_flight(
    gated: Model, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = data[0][:3]
    app = App(gated)
    server = get_server("stdlib")
    running = Running(server, app)
    url = running.url()
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=TIMEOUT) as own:
            answers.append(seed_request(own, url, X))

    in_flight = threading.Thread(target=send)
    in_flight.start()
    assert Gated.entered.wait(TIMEOUT)
    server.stop()
    # the listener closes at once (new connections are refused) while the request finishes
    deadline = time.monotonic() + TIMEOUT
    while app.state != "draining" and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the stop to reach the server's thread
    assert app.state == "draining"
    with httpx.Client(timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.get(f"{url}/readyz")
    assert not answers
    Gated.release.set()
    in_flight.join(TIMEOUT)
    running.stop()
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()["prediction"] == gated.predict(X).tolist()
    assert app.state == "stopped"


def test_stdlib_stops_on_sigterm_in_the_main_thread(model: Model) -> None:
    before = signal.getsignal(signal.SIGTERM)
    app = App(model)
    statuses: list[int] = []

    def ready(url: str) -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            statuses.append(client.get(f"{url}/readyz").status_code)
        signal.raise_signal(signal.SIGTERM)

    get_server("stdlib").run(app, port=0, on_ready=ready)
    assert statuses == [200]
    assert app.state == "stopped"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_before_run_stops_right_after_loading(model: Model) -> None:
    server = get_server("stdlib")
    server.stop()
    app = App(model)
    seen: list[str] = []
    server.run(app, port=0, on_ready=seen.append)
    assert seen == []
    assert app.state == "stopped"


def test_errors_come_before_the_models_load(model: Model) -> None:
    app = App(model)
    with pytest.raises(ServingError, match="runs 1 process, not 3"):
        get_server("stdlib").run(app, workers=3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServingError, match="already in use"):
            get_server("stdlib").run(app, port=taken.getsockname()[1])
    assert app.state == "loading"


# -- uvicorn and gunicorn ---------------------------------------------------------------------


def test_uvicorn_serves_in_a_thread_until_stopped(
    model: Model, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = data[0][:10]
    app = App(model)
    running = Running(get_server("uvicorn"), app)
    url = running.url()
    with httpx.Client(timeout=TIMEOUT) as client:
        answer = seed_request(client, url, X)
        assert answer.json()["prediction"] == model.predict(X).tolist()
    running.stop()
    assert app.state == "stopped"


def test_uvicorn_runs_one_process(model: Model) -> None:
    with pytest.raises(ServingError, match="the uvicorn backend runs 1 process, not 2"):
        get_server("uvicorn").run(App(model), workers=2)


def test_gunicorn_runs_in_the_main_thread_only(model: Model) -> None:
    app = App(model)
    running = Running(get_server("gunicorn"), app, workers=2)
    running.thread.join(TIMEOUT)
    assert isinstance(running.error, ServingError)
    assert str(running.error) == "the gunicorn backend runs in the main thread only"
    assert app.state == "loading"


# -- modelkit serve ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_dir(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]
) -> Path:
    from modelkit.training import train

    X, y = data
    home = tmp_path_factory.mktemp("registry")
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)):
        train(
            LogisticRegression(solver="liblinear"),
            X,
            y,
            name="seed",
            registry=home,
            alias="production",
            cv=2,
        )
    return home


@pytest.fixture
def fake(plugin_manager: pluggy.PluginManager) -> FakeServer:
    server = FakeServer()
    plugin_manager.register(Backends(fake=lambda: server))
    return server


def test_serve_runs_the_chosen_backend_and_prints_where_it_listens(
    fake: FakeServer, registry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "serve",
            "seed@production",
            "legacy=seed/1",
            "--backend",
            "fake",
            "--registry",
            str(registry_dir),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--workers",
            "3",
            "--drain-timeout",
            "2.5",
            "--request-timeout",
            "1.5",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out == (
        "serving seed (version 1), legacy (version 1) at http://0.0.0.0:0 with fake, "
        "3 workers; stop with Ctrl-C or SIGTERM\n"
    )
    (call,) = fake.calls
    assert (call["host"], call["port"], call["workers"]) == ("0.0.0.0", 0, 3)
    assert call["app"].drain_timeout == 2.5
    assert call["app"].request_timeout == 1.5
    assert list(call["app"].models) == ["seed", "legacy"]


def test_serve_defaults(fake: FakeServer, registry_dir: Path) -> None:
    assert main(["serve", "seed", "--backend", "fake", "--registry", str(registry_dir)]) == 0
    (call,) = fake.calls
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 8000, 1)
    assert call["app"].drain_timeout == 30.0
    assert call["app"].request_timeout is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["seed@production", "--backend", "tornado"],
            "unknown server backend 'tornado' "
            "(available: auto, fake, gunicorn, native, stdlib, uvicorn)",
        ),
        (["=seed/1", "--backend", "fake"], "'=seed/1' is not NAME=URI (e.g. legacy=churn/3)"),
        (
            ["a=seed/1", "a=seed@production", "--backend", "fake"],
            "the name 'a' is given twice; give each model its own",
        ),
        (
            ["seed@staging", "--backend", "fake"],
            "model 'seed' has no alias 'staging'; "
            "set it with set_alias('seed', 'staging', VERSION)",
        ),
    ],
)
def test_serve_errors_are_one_line(
    fake: FakeServer,
    registry_dir: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert main(["serve", *argv, "--registry", str(registry_dir)]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize(
    "option", [["--port", "70000"], ["--workers", "0"], ["--drain-timeout", "x"]]
)
def test_serve_refuses_invalid_options(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "seed", *option])
    assert exit_info.value.code == 2
    assert "usage: modelkit serve" in capsys.readouterr().err
