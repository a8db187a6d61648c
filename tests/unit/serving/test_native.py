"""The native HTTP/1.1 server: real sockets on 127.0.0.1, on asyncio and on uvloop.

Each test runs :class:`~modelkit.default_plugins.native_server.NativeServer` in a thread on
a free port and talks to it with httpx or a raw socket (keep-alive, pipelining, chunked
bodies, ``Expect: 100-continue``, HEAD, malformed requests, limits, the idle timeout and
the graceful stop).
"""

from __future__ import annotations

import asyncio
import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httptools
import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from modelkit.default_plugins.native_server import NativeServer
from modelkit.exceptions import ServingError
from modelkit.model import Model
from modelkit.servers import Server, available_servers, get_server
from modelkit.serving import App, Response
from modelkit.serving.asgi import INLINE_BODY_SIZE
from modelkit.serving.native import Limits, encode, serve, split_url

TIMEOUT = 10.0
LOOPS = ("asyncio", "uvloop")


# -- running a server ------------------------------------------------------------------------


class Running:
    """A :class:`NativeServer` serving ``app`` in a thread."""

    def __init__(self, app: App, **options: Any) -> None:
        self.app = app
        self.server = NativeServer(**options)
        self.urls: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.url = self.urls.get(timeout=TIMEOUT)
        host, port = self.url.removeprefix("http://").split(":")
        self.address = (host, int(port))

    def _run(self) -> None:
        try:
            self.server.run(self.app, port=0, on_ready=self.urls.put)
        except BaseException as exc:
            self.error = exc
            self.urls.put("")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the server did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start(loop_kind: str) -> Iterator[Callable[..., Running]]:
    """Start a native server for an app (options go to NativeServer); stopped afterwards."""
    running: list[Running] = []

    def starting(app: App, **options: Any) -> Running:
        server = Running(app, loop=loop_kind, **options)
        running.append(server)
        return server

    yield starting
    for server in running:
        if server.thread.is_alive():
            server.stop()


def make_app(model: Model, **options: Any) -> App:
    app = App(model, feedback=False, auth=False, **options)
    app.start()
    return app


@pytest.fixture
def seed(seed_model: Model, start: Callable[..., Running]) -> Running:
    return start(make_app(seed_model, max_body_size=1_000_000), keep_alive=5.0)


# -- reading answers from a raw socket -------------------------------------------------------


class Answers:
    """Parses HTTP/1.1 answers from a socket (httptools' response parser)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[dict[str, Any]] = []
        self.current: dict[str, Any] = {}

    def on_message_begin(self) -> None:
        self.current = {"headers": {}, "body": b""}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current["headers"][name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.current["body"] += body

    def on_message_complete(self) -> None:
        self.current["status"] = self.parser.get_status_code()
        self.done.append(self.current)

    def read(self, count: int) -> list[dict[str, Any]]:
        while len(self.done) < count:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"closed after {len(self.done)} of {count} answers")
            self.parser.feed_data(data)
        answers, self.done = self.done[:count], self.done[count:]
        return answers


def closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) before TIMEOUT; data is an error."""
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    assert data == b"", f"unexpected data {data[:200]!r}"
    return True


def head_of(sock: socket.socket) -> bytes:
    """Read up to the end of one answer's head (status line and headers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    lines = [
        f"POST {path} HTTP/{version}",
        "Host: test",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    return (
        "\r\n".join([f"{method} {path} HTTP/{version}", "Host: test", *extra]) + "\r\n\r\n"
    ).encode()


def rows_body(rows: np.ndarray) -> bytes:
    return json.dumps({"features": rows.tolist()}).encode()


# -- the backend -----------------------------------------------------------------------------


def test_native_is_a_registered_backend() -> None:
    assert "native" in available_servers()
    server = get_server("native")
    assert isinstance(server, Server)
    assert isinstance(server, NativeServer)
    assert server.name == "native"


def test_it_refuses_several_workers_and_unknown_loops(seed_model: Model) -> None:
    with pytest.raises(ServingError, match="the native backend runs 1 process, not 2"):
        NativeServer().run(make_app(seed_model), port=0, workers=2)
    with pytest.raises(ServingError, match="loop must be one of auto, uvloop, asyncio"):
        NativeServer(loop="trio")


def test_a_taken_port_is_a_serving_error_before_loading(seed_model: Model) -> None:
    app = App(seed_model, feedback=False, auth=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServingError, match="the address is already in use"):
            NativeServer().run(app, port=taken.getsockname()[1])
    assert app.state == "loading"


def test_stop_before_run_returns_once_loaded(seed_model: Model) -> None:
    app = App(seed_model, feedback=False, auth=False)
    server = NativeServer()
    server.stop()
    ready: list[str] = []
    server.run(app, port=0, on_ready=ready.append)
    assert ready == []
    assert app.state == "stopped"


# -- answers ---------------------------------------------------------------------------------


def test_predictions_equal_model_predict(
    seed: Running, seed_model: Model, seed_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = seed_data[0][:16]
    with httpx.Client(base_url=seed.url, timeout=TIMEOUT) as client:
        answer = client.post("/predict", json={"features": X.tolist()})
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == seed_model.predict(X).tolist()
        assert answer.headers["server"] == "modelkit"
        assert answer.headers["date"].endswith(" GMT")
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.content)
        assert client.get("/healthz").json()["status"] == "ok"
        missing = client.get("/nowhere")
        assert missing.status_code == 404
        assert "nowhere" in missing.json()["error"]


def test_concurrent_requests_are_batched_together(
    seed: Running, seed_model: Model, seed_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = seed_data[0][:64]

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=seed.url, timeout=TIMEOUT, limits=limits) as client:
            return list(
                await asyncio.gather(
                    *(client.post("/predict", json={"features": [row.tolist()]}) for row in X)
                )
            )

    sizes = []
    for _ in range(3):
        answers = asyncio.run(send_all())
        assert [a.status_code for a in answers] == [200] * len(X)
        assert [a.json()["prediction"][0] for a in answers] == seed_model.predict(X).tolist()
        for answer in answers:
            timing = answer.headers["server-timing"]
            sizes.append(int(timing.split('desc="')[1].split(" ")[0]))
    assert max(sizes) > 1, "no two requests were computed in one batch"


def test_large_bodies_are_handled_in_a_worker_thread(
    seed: Running, seed_model: Model, seed_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = np.tile(seed_data[0], (2, 1))
    body = rows_body(X)
    assert len(body) > INLINE_BODY_SIZE
    with httpx.Client(base_url=seed.url, timeout=TIMEOUT) as client:
        answer = client.post("/predict", content=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == seed_model.predict(X).tolist()
        bad = client.post("/predict", content=body, headers={"x-request-timeout": "soon"})
        assert bad.status_code == 400
        assert "X-Request-Timeout" in bad.json()["error"]
        timed = client.post("/predict", content=body, headers={"x-request-timeout": "30"})
        assert timed.status_code == 200


def test_the_path_is_percent_decoded_and_the_query_kept(seed: Running) -> None:
    with httpx.Client(base_url=seed.url, timeout=TIMEOUT) as client:
        metadata = client.get("/v2/models/se%65d")
        assert metadata.status_code == 200, metadata.text
        assert metadata.json()["name"] == "seed"
        row = {"features": [[0.0] * 20]}
        assert client.post("/predict?model=se%65d", json=row).status_code == 200
        other = client.post("/predict?model=n%C3%A9", json=row)
        assert other.status_code == 404
        assert "'né'" in other.json()["error"]


def test_one_write_per_answer(seed_model: Model) -> None:
    """Drive one connection with a fake transport: each answer is one write, in order."""
    app = make_app(seed_model)
    writes: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            writes.append(bytes(data))

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            writes.append(b"<closed>")

        def pause_reading(self) -> None: ...

        def resume_reading(self) -> None: ...

        def can_write_eof(self) -> bool:
            return False

    async def drive() -> None:
        from modelkit.serving.native import _Connection, _Server

        state = _Server(app, asyncio.get_running_loop(), Limits())
        connection = _Connection(state)
        connection.connection_made(Transport())  # type: ignore[arg-type]
        body = rows_body(np.zeros((1, 20)))
        connection.data_received(
            post("/predict", body) + get("/healthz") + post("/predict", body, "Connection: close")
        )
        deadline = time.monotonic() + TIMEOUT
        while b"<closed>" not in writes and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    asyncio.run(drive())
    assert len(writes) == 4, writes
    assert [w.split(b"\r\n", 1)[0] for w in writes[:3]] == [b"HTTP/1.1 200 OK"] * 3
    assert b'"prediction"' in writes[0]
    assert b'"status":"ok"' in writes[1]
    assert b"connection: close\r\n" in writes[2]
    assert writes[3] == b"<closed>"


# -- HTTP/1.1 --------------------------------------------------------------------------------


def test_keep_alive_and_connection_close(seed: Running) -> None:
    with seed.connect() as sock:
        answers = Answers(sock)
        for _ in range(3):
            sock.sendall(get("/healthz"))
            (answer,) = answers.read(1)
            assert answer["status"] == 200
            assert "connection" not in answer["headers"]
        sock.sendall(get("/healthz", "Connection: close"))
        (answer,) = answers.read(1)
        assert answer["headers"]["connection"] == "close"
        assert closed(sock)


def test_http_1_0_closes_unless_asked_to_keep_alive(seed: Running) -> None:
    with seed.connect() as sock:
        answers = Answers(sock)
        sock.sendall(get("/healthz", "Connection: keep-alive", version="1.0"))
        (answer,) = answers.read(1)
        assert answer["headers"]["connection"] == "keep-alive"
        sock.sendall(get("/healthz", version="1.0"))
        (answer,) = answers.read(1)
        assert answer["status"] == 200
        assert answer["headers"]["connection"] == "close"
        assert closed(sock)


def test_pipelined_requests_are_answered_in_order(
    seed: Running, seed_model: Model, seed_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X = seed_data[0][:6]
    requests = []
    for i, row in enumerate(X):
        requests.append(post("/predict", rows_body(row[None, :]), f"X-Request-ID: req-{i}"))
        requests.append(get("/readyz", f"X-Request-ID: ready-{i}"))
    with seed.connect() as sock:
        sock.sendall(b"".join(requests))
        answers = Answers(sock).read(len(requests))
    ids = [answer["headers"]["x-request-id"] for answer in answers]
    assert ids == [name for i in range(len(X)) for name in (f"req-{i}", f"ready-{i}")]
    predictions = [json.loads(a["body"])["prediction"][0] for a in answers[::2]]
    assert predictions == seed_model.predict(X).tolist()


def test_a_chunked_body_sent_in_pieces(
    seed: Running, seed_model: Model, seed_data: tuple[np.ndarray, np.ndarray]
) -> None:
    body = rows_body(seed_data[0][:3])
    pieces = [body[i : i + 50] for i in range(0, len(body), 50)]
    with seed.connect() as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        (answer,) = Answers(sock).read(1)
    assert answer["status"] == 200, answer
    expected = seed_model.predict(seed_data[0][:3]).tolist()
    assert json.loads(answer["body"])["prediction"] == expected


def test_expect_100_continue(seed: Running) -> None:
    body = rows_body(np.zeros((1, 20)))
    with seed.connect() as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(body)
        )
        assert head_of(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (answer,) = Answers(sock).read(1)
        assert answer["status"] == 200


def test_expect_with_a_body_too_large_is_413_without_continue(seed: Running) -> None:
    with seed.connect() as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        (answer,) = Answers(sock).read(1)
        assert answer["status"] == 413
        assert "1000000 bytes" in json.loads(answer["body"])["error"]
        assert answer["headers"]["connection"] == "close"
        assert closed(sock)


def test_a_streamed_body_over_the_limit_is_413_and_closes(seed: Running) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)

    def send(sock: socket.socket) -> None:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(40):  # 2.6 MB: more than the limit, and than the server reads
                sock.sendall(chunk)
        except OSError:  # the server closed the connection
            pass

    with seed.connect() as sock:
        sender = threading.Thread(target=send, args=(sock,))
        sender.start()
        (answer,) = Answers(sock).read(1)
        sender.join(TIMEOUT)
    assert answer["status"] == 413
    assert "1000000 bytes" in json.loads(answer["body"])["error"]
    assert answer["headers"]["connection"] == "close"


def test_head_has_no_body(seed: Running) -> None:
    with seed.connect() as sock:
        sock.sendall(get("/healthz", method="HEAD") + get("/healthz"))
        head = head_of(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: " in head
        next_head = head_of(sock)  # the GET's answer follows the HEAD's head at once
        assert next_head.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ],
)
def test_a_malformed_request_is_400_and_closes(seed: Running, raw: bytes) -> None:
    with seed.connect() as sock:
        sock.sendall(get("/healthz") + raw)
        answers = Answers(sock).read(2)
        assert answers[0]["status"] == 200
        assert answers[1]["status"] == 400
        error = json.loads(answers[1]["body"])
        assert set(error) == {"error"}
        assert "could not be parsed" in error["error"]
        assert answers[1]["headers"]["connection"] == "close"
        assert closed(sock)


def test_an_upgrade_is_answered_in_http_1_1_then_closes(seed: Running) -> None:
    with seed.connect() as sock:
        sock.sendall(get("/healthz", "Connection: Upgrade", "Upgrade: websocket"))
        (answer,) = Answers(sock).read(1)
        assert answer["status"] == 200
        assert closed(sock)


def test_the_header_size_is_limited(seed_model: Model, start: Callable[..., Running]) -> None:
    server = start(make_app(seed_model), max_header_size=1024)
    with server.connect() as sock:
        sock.sendall(get("/healthz", "X-Small: 1"))
        assert Answers(sock).read(1)[0]["status"] == 200
        sock.sendall(get("/healthz", "X-Big: " + "a" * 2000))
        (answer,) = Answers(sock).read(1)
        assert answer["status"] == 431
        assert "1024 bytes" in json.loads(answer["body"])["error"]
        assert closed(sock)
    with server.connect() as sock:  # one header that never ends, sent in many pieces
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
        answers = Answers(sock)
        for _ in range(1000):
            try:
                sock.sendall(b"a" * 100)
            except OSError:  # closed by the server
                break
            if select.select([sock], [], [], 0.002)[0]:
                break
        (answer,) = answers.read(1)
        assert answer["status"] == 431


def test_idle_connections_close_after_the_keep_alive_timeout(
    seed_model: Model, start: Callable[..., Running]
) -> None:
    server = start(make_app(seed_model), keep_alive=0.3)
    with server.connect() as sock:
        sock.sendall(get("/healthz"))
        assert Answers(sock).read(1)[0]["status"] == 200
        began = time.monotonic()
        assert closed(sock)
        assert 0.25 < time.monotonic() - began < 3.0


def test_a_half_closed_client_is_still_answered(seed: Running) -> None:
    with seed.connect() as sock:
        sock.sendall(post("/predict", rows_body(np.zeros((1, 20)))))
        sock.shutdown(socket.SHUT_WR)
        (answer,) = Answers(sock).read(1)
        assert answer["status"] == 200
        # "connection: close" when the end of the stream was seen before the answer was
        # written; the connection closes after the answer either way
        assert answer["headers"].get("connection", "close") == "close"
        assert closed(sock)


# -- the graceful stop -----------------------------------------------------------------------


class GatedClassifier(LogisticRegression):
    """A LogisticRegression whose predict waits for ``gate`` on rows starting with 999."""

    entered = threading.Event()
    gate = threading.Event()

    def predict(self, X: Any) -> Any:
        if np.any(np.asarray(X)[:, 0] == 999.0):
            GatedClassifier.entered.set()
            GatedClassifier.gate.wait(TIMEOUT)
        return super().predict(X)


def test_stop_answers_the_requests_in_flight_and_refuses_new_connections(
    seed_data: tuple[np.ndarray, np.ndarray], start: Callable[..., Running]
) -> None:
    X, y = seed_data
    GatedClassifier.entered.clear()
    GatedClassifier.gate.clear()
    model = Model.wrap(GatedClassifier(solver="liblinear").fit(X, y), sample=X, name="gated")
    server = start(make_app(model, drain_timeout=TIMEOUT))
    row = X[:1].copy()
    row[0, 0] = 999.0
    with server.connect() as busy, server.connect() as idle:
        idle.sendall(get("/healthz"))
        assert Answers(idle).read(1)[0]["status"] == 200
        busy.sendall(post("/predict", rows_body(row)))
        assert GatedClassifier.entered.wait(TIMEOUT)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        try:
            assert closed(idle)  # idle keep-alive connections close
            deadline = time.monotonic() + TIMEOUT
            while True:  # new connections are refused
                try:
                    socket.create_connection(server.address, timeout=1).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, "the listener is still open"
                time.sleep(0.01)
            assert server.thread.is_alive(), "the server stopped with a request in flight"
        finally:
            GatedClassifier.gate.set()
        (answer,) = Answers(busy).read(1)
        stopper.join(TIMEOUT)
    assert answer["status"] == 200
    assert answer["headers"]["connection"] == "close"
    assert json.loads(answer["body"])["prediction"] == model.predict(row).tolist()
    assert not server.thread.is_alive()
    assert server.app.state == "stopped"


def test_serve_closes_queued_connections_after_answering_them(seed_model: Model) -> None:
    """Connections the kernel queued before the stop are answered, with readiness 503."""
    app = make_app(seed_model)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    answers: list[bytes] = []

    async def main() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(serve(app, sock, stop=stop, on_ready=ready.set_result))
        url = await ready
        host, port = url.removeprefix("http://").split(":")

        def client() -> None:
            with socket.create_connection((host, int(port)), timeout=TIMEOUT) as conn:
                conn.sendall(get("/readyz"))
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                answers.append(data)

        # the loop does not accept while this coroutine blocks: the connection waits queued
        thread = threading.Thread(target=client)
        thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not _queued(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        await asyncio.to_thread(thread.join, TIMEOUT)

    asyncio.run(main())
    assert len(answers) == 1
    assert answers[0].startswith(b"HTTP/1.1 503 ")
    assert b"connection: close\r\n" in answers[0]
    assert app.state == "stopped"


def _queued(port: str) -> bool:
    """Whether a connection to ``port`` waits in a listen queue (Linux /proc/net/tcp)."""
    wanted = f":{int(port):04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
                return int(fields[4].split(":")[1], 16) > 0  # rx_queue: the accept backlog
    return False


# -- pieces ----------------------------------------------------------------------------------


_TEXT = st.characters(blacklist_categories=("Cs",))


@given(
    st.lists(st.text(_TEXT, min_size=1, max_size=8), min_size=1, max_size=4),
    st.text(_TEXT, max_size=20),
)
def test_split_url_decodes_what_quote_encodes(segments: list[str], query: str) -> None:
    path = "/" + "/".join(segments)
    raw_query = quote(query, safe="=&")
    url = (quote(path) + ("?" + raw_query if raw_query else "")).encode()
    assert split_url(url) == (path, raw_query)


def test_split_url_takes_absolute_urls_and_refuses_others() -> None:
    assert split_url(b"http://example.com:8000/a%2Fb?x=1") == ("/a/b", "x=1")
    assert split_url(b"/p#fragment") == ("/p", "")
    from modelkit.serving import HTTPError

    with pytest.raises(HTTPError) as caught:
        split_url(b"http://")
    assert caught.value.status == 400


def test_encode_refuses_a_header_with_a_line_break() -> None:
    good = encode(Response(200, [("x-a", "1"), ("content-length", "2")], b"ok"), close=True)
    assert good.startswith(b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\ndate: ")
    assert good.endswith(b"server: modelkit\r\nconnection: close\r\n\r\nok")
    bad = encode(Response(200, [("x-a", "1\r\nset-cookie: a=b")], b""))
    assert bad.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"set-cookie" not in bad
    unknown = encode(Response(299, [], b""), keep_alive=True)
    assert unknown.startswith(b"HTTP/1.1 299 Unknown\r\n")
    assert b"connection: keep-alive\r\n" in unknown


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep_alive must be a positive number, got 0"):
        Limits(keep_alive=0)


def test_a_deep_pipeline_is_read_as_answers_are_written(seed: Running) -> None:
    count = 100  # more than Limits.pipeline: reading pauses, then resumes
    requests = [get("/healthz", f"X-Request-ID: r{i}") for i in range(count)]
    with seed.connect() as sock:
        sock.sendall(b"".join(requests))
        answers = Answers(sock).read(count)
    assert [a["headers"]["x-request-id"] for a in answers] == [f"r{i}" for i in range(count)]


def test_the_stop_waits_at_most_the_drain_timeout(
    seed_data: tuple[np.ndarray, np.ndarray], start: Callable[..., Running]
) -> None:
    X, y = seed_data
    GatedClassifier.entered.clear()
    GatedClassifier.gate.clear()
    model = Model.wrap(GatedClassifier(solver="liblinear").fit(X, y), sample=X, name="gated")
    server = start(make_app(model, drain_timeout=0.5))
    row = X[:1].copy()
    row[0, 0] = 999.0
    try:
        with server.connect() as busy:
            busy.sendall(post("/predict", rows_body(row)))
            assert GatedClassifier.entered.wait(TIMEOUT)
            began = time.monotonic()
            server.server.stop()
            assert closed(busy)  # aborted once the drain timeout has passed
            assert time.monotonic() - began < TIMEOUT / 2
    finally:
        GatedClassifier.gate.set()
    server.thread.join(TIMEOUT)
    assert not server.thread.is_alive()
