"""Serving inside a user's own web app: Flask (WSGI, under a prefix) and Starlette (ASGI Mount)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from flask import Flask
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from modelkit.model import Model
from modelkit.serving import asgi_app, wsgi_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seed() -> tuple[Model, np.ndarray]:
    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    model = Model.wrap(LogisticRegression(solver="liblinear").fit(X, y), sample=X, name="seed")
    return model, X[:5]


def check_protocols(client: Any, prefix: str, model: Model, X: np.ndarray) -> None:
    expected = model.predict(X).tolist()
    seed = client.post(f"{prefix}/predict", json={"features": X.tolist()})
    assert seed.status_code == 200, seed.text
    assert seed.json()["prediction"] == expected
    mlflow = client.post(f"{prefix}/invocations", json={"instances": X.tolist()})
    assert mlflow.json() == {"predictions": expected}
    infer = client.post(
        f"{prefix}/v2/models/seed/infer",
        json={
            "inputs": [
                {
                    "name": "x",
                    "shape": list(X.shape),
                    "datatype": "FP64",
                    "data": X.ravel().tolist(),
                }
            ]
        },
    )
    assert infer.json()["outputs"][0]["data"] == expected
    assert client.get(f"{prefix}/readyz").status_code == 200
    assert "/predict" in client.get(f"{prefix}/openapi.json").json()["paths"]
    missing = client.get(f"{prefix}/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]


def test_flask_mounts_the_wsgi_app_under_a_prefix(seed: tuple[Model, np.ndarray]) -> None:
    model, X = seed
    flask_app = Flask("host")

    @flask_app.get("/")
    def home() -> str:
        return "host app"

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/ml": wsgi_app(model)}
    )
    transport = httpx.WSGITransport(app=flask_app)
    with httpx.Client(transport=transport, base_url="http://host") as client:
        assert client.get("/").text == "host app"
        check_protocols(client, "/ml", model, X)
        assert client.get("/predict").status_code == 404  # only under the prefix


def test_starlette_mounts_the_asgi_app_with_its_lifespan(seed: tuple[Model, np.ndarray]) -> None:
    model, X = seed
    ml = asgi_app(model)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ml.startup()
        yield
        await ml.shutdown()

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Mount("/ml", app=ml)], lifespan=lifespan)

    async def scenario() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        server = asyncio.create_task(host({"type": "lifespan"}, inbox.get, outbox.put))  # type: ignore[arg-type]
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        assert ml.app.state == "ready"
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            assert (await client.get("/")).text == "host app"
            await asyncio.to_thread(check_protocols, Sync(client), "/ml", model, X)
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await server

    asyncio.run(scenario())
    assert ml.app.state == "stopped"


class Sync:
    """Calls an async client from a worker thread, on the client's own loop."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(self.client.get(url, **kwargs), self.loop).result()

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(self.client.post(url, **kwargs), self.loop).result()


def test_starlette_mount_without_lifespan_loads_on_first_request(
    seed: tuple[Model, np.ndarray],
) -> None:
    model, X = seed
    ml = asgi_app(model)
    host = Starlette(routes=[Mount("/models", app=ml)])

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            response = await client.post("/models/predict", json={"features": X.tolist()})
            assert response.json()["prediction"] == model.predict(X).tolist()
            metrics = await client.get("/models/metrics")
            assert 'route="/predict",model="seed",status="200"' in metrics.text

    asyncio.run(scenario())
