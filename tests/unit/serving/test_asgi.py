"""The ASGI adapter: lifespan (load, fail, drain), work off the loop, incremental bodies."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.unit.serving.helpers import BASE_URL

from modelkit import Artifact
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import ASGIApp, asgi_app


class Lifespan:
    """Drives the lifespan protocol of an ASGI app, as a server does."""

    def __init__(self, app: ASGIApp) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.outbox.put))  # type: ignore[arg-type]

    async def send(self, kind: str) -> dict[str, Any]:
        await self.inbox.put({"type": kind})
        return await asyncio.wait_for(self.outbox.get(), timeout=30)


def client_of(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


def run(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coroutine())


def raw_scope(
    method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        **extra,
    }


async def call(
    app: ASGIApp, scope: dict[str, Any], messages: Sequence[dict[str, Any]]
) -> tuple[list[MutableMapping[str, Any]], int]:
    """Call the app with body messages; return what it sent and how many it read."""
    read = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return messages[read - 1]

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, read


# -- lifespan --------------------------------------------------------------------------------


def test_models_load_at_lifespan_startup(tmp_path: Path, seed_model: Model) -> None:
    registry = Registry(str(tmp_path / "reg"))
    registry.register("churn", Artifact.from_model(seed_model, name="churn"))
    registry.set_alias("churn", "production", 1)
    app = asgi_app("churn@production", registry=registry)

    async def scenario() -> None:
        assert app.app.state == "loading"
        assert app.app.models == {}
        lifespan = Lifespan(app)
        assert await lifespan.send("lifespan.startup") == {"type": "lifespan.startup.complete"}
        assert app.app.state == "ready"
        assert app.app.models["churn"].version == "1"
        assert await lifespan.send("lifespan.shutdown") == {"type": "lifespan.shutdown.complete"}
        await lifespan.task
        assert app.app.state == "stopped"

    run(scenario)
    registry.close()


def test_a_failed_startup_is_reported(tmp_path: Path) -> None:
    app = asgi_app("nope@production", registry=str(tmp_path / "reg"))

    async def scenario() -> None:
        lifespan = Lifespan(app)
        message = await lifespan.send("lifespan.startup")
        assert message["type"] == "lifespan.startup.failed"
        assert message["message"].startswith("NotFoundError: ")
        await lifespan.task
        async with client_of(app) as client:
            response = await client.post("/predict", json={"features": [[0]]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"

    run(scenario)


def test_without_lifespan_the_first_request_loads(seed_model: Model) -> None:
    app = asgi_app(seed_model)

    async def scenario() -> None:
        assert app.app.state == "loading"
        async with client_of(app) as client:
            response = await client.post("/predict", json={"features": [[0.5] * 20]})
        assert response.status_code == 200
        assert app.app.state == "ready"

    run(scenario)


class Gate:
    """An estimator whose predict blocks until released."""

    n_features_in_ = 20

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, X: Any) -> Any:
        self.entered.set()
        assert self.release.wait(30)
        return np.zeros(len(X))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_predictions_run_off_the_loop_and_shutdown_drains_them() -> None:
    gate = Gate()
    model = Model.wrap(gate, sample=np.zeros((2, 20)), name="gate")
    app = asgi_app(model)
    body = {"features": [[0.0] * 20]}

    async def scenario() -> None:
        lifespan = Lifespan(app)
        assert (await lifespan.send("lifespan.startup"))["type"] == "lifespan.startup.complete"
        async with client_of(app) as client:
            slow = asyncio.create_task(client.post("/predict", json=body))
            assert await asyncio.to_thread(gate.entered.wait, 30)
            # the loop is free while the prediction runs in its thread
            assert (await client.get("/healthz")).status_code == 200
            assert app.app.in_flight == 1
            shutdown = asyncio.create_task(lifespan.send("lifespan.shutdown"))
            await asyncio.wait_for(until(lambda: app.app.state == "draining"), 30)
            assert (await client.get("/readyz")).status_code == 503
            refused = await client.post("/predict", json=body)
            assert refused.status_code == 503
            assert not shutdown.done()
            gate.release.set()
            response = await slow
            assert response.status_code == 200
            assert response.json()["prediction"] == [0.0]
            assert await shutdown == {"type": "lifespan.shutdown.complete"}
        assert app.app.state == "stopped"

    run(scenario)


# -- bodies and scopes -----------------------------------------------------------------------


def test_bodies_are_read_incrementally_up_to_the_limit(seed_model: Model) -> None:
    app = asgi_app(seed_model, max_body_size=100)
    chunks = [{"type": "http.request", "body": b"x" * 40, "more_body": True}] * 10

    async def scenario() -> None:
        await app.startup()
        sent, read = await call(app, raw_scope("POST", "/predict"), chunks)
        assert read == 3  # stopped as soon as the limit was passed
        assert sent[0]["status"] == 413
        assert "100 bytes" in json.loads(sent[1]["body"])["error"]

    run(scenario)


def test_chunked_bodies_are_joined(seed_model: Model) -> None:
    app = asgi_app(seed_model)
    payload = json.dumps({"features": [[0.25] * 20]}).encode()
    chunks = [
        {"type": "http.request", "body": payload[i : i + 7], "more_body": i + 7 < len(payload)}
        for i in range(0, len(payload), 7)
    ]

    async def scenario() -> None:
        sent, read = await call(app, raw_scope("POST", "/predict"), chunks)
        assert read == len(chunks)
        assert sent[0]["status"] == 200
        assert (
            json.loads(sent[1]["body"])["prediction"] == seed_model.predict([[0.25] * 20]).tolist()
        )

    run(scenario)


def test_a_declared_oversized_body_is_not_read(seed_model: Model) -> None:
    app = asgi_app(seed_model, max_body_size=10)
    scope = raw_scope("POST", "/predict", [(b"content-length", b"11")])

    async def scenario() -> None:
        sent, read = await call(app, scope, [])
        assert read == 0
        assert sent[0]["status"] == 413

    run(scenario)


def test_a_client_that_disconnects_gets_nothing(seed_model: Model) -> None:
    app = asgi_app(seed_model)
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def scenario() -> None:
        sent, _ = await call(app, raw_scope("POST", "/predict"), messages)
        assert sent == []
        assert app.app.metrics.requests() == {}

    run(scenario)


def test_the_mount_point_is_stripped(seed_model: Model) -> None:
    app = asgi_app(seed_model)

    async def scenario() -> None:
        scope = raw_scope("GET", "/ml/v2/models/seed/ready", root_path="/ml")
        sent, _ = await call(app, scope, [])
        assert sent[0]["status"] == 200
        scope = raw_scope("GET", "/ml", root_path="/ml")
        sent, _ = await call(app, scope, [])
        assert sent[0]["status"] == 404
        scope = raw_scope("GET", "/mlx/healthz", root_path="/ml")
        sent, _ = await call(app, scope, [])
        assert sent[0]["status"] == 404

    run(scenario)


def test_websockets_are_refused(seed_model: Model) -> None:
    app = asgi_app(seed_model)

    async def scenario() -> None:
        sent, read = await call(
            app, {"type": "websocket", "path": "/"}, [{"type": "websocket.connect"}]
        )
        assert read == 1
        assert sent == [{"type": "websocket.close", "code": 1000}]
        assert repr(app).startswith("ASGIApp(App(")

    run(scenario)


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_cheap_routes_answer_while_loading(seed_model: Model, path: str) -> None:
    app = asgi_app(seed_model)

    async def scenario() -> None:
        lifespan = Lifespan(app)  # lifespan seen: requests no longer load the models
        await asyncio.sleep(0)
        async with client_of(app) as client:
            assert (await client.get(path)).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
        assert (await lifespan.send("lifespan.startup"))["type"] == "lifespan.startup.complete"
        await lifespan.send("lifespan.shutdown")

    run(scenario)
