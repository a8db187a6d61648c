"""Request deadlines: past ``request_timeout`` or ``X-Request-Timeout`` a request gets a 504."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from tests.unit.serving.helpers import BASE_URL, Client, error_of

from modelkit.exceptions import ServingError
from modelkit.model import Model
from modelkit.serving import asgi_app, wsgi_app

ROW = {"features": [[0.1, -0.5] + [0.0] * 18]}


class Gated:
    """An estimator whose predict waits for ``release`` (at most ``wait`` seconds)."""

    def __init__(self, inner: Any, wait: float) -> None:
        self.inner, self.wait = inner, wait
        self.entered, self.release, self.done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def predict(self, X: Any) -> np.ndarray:
        self.entered.set()
        self.release.wait(self.wait)
        try:
            return np.asarray(self.inner.predict(X))
        finally:
            self.done.set()


def gated_model(seed_model: Model, wait: float) -> tuple[Model, Gated]:
    gate = Gated(seed_model.estimator, wait)
    return Model(gate, seed_model.signature, name="slow"), gate


def test_asgi_answers_504_while_the_model_is_still_busy(seed_model: Model) -> None:
    model, gate = gated_model(seed_model, wait=30.0)
    app = asgi_app(model, request_timeout=0.2, feedback=False)

    async def scenario() -> httpx.Response:
        await app.startup()
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            response = await client.post("/predict", json=ROW, headers={"X-Request-ID": "r-1"})
        still_busy = gate.entered.is_set() and not gate.done.is_set()
        gate.release.set()  # let the abandoned computation finish
        assert still_busy, "the 504 should come while the model is still computing"
        return response

    response = asyncio.run(scenario())
    assert response.status_code == 504
    assert "within its deadline of 0.2s" in error_of(response)
    assert response.headers["x-request-id"] == "r-1"
    assert gate.done.wait(10)
    assert app.app.drain(10)


def test_wsgi_drops_an_answer_computed_past_the_deadline(seed_model: Model) -> None:
    model, gate = gated_model(seed_model, wait=0.3)  # never released: takes 0.3 s
    client = Client(wsgi_app(model, feedback=False))
    response = client.post("/predict", json=ROW, headers={"X-Request-Timeout": "0.05"})
    assert response.status_code == 504
    assert "within its deadline of 0.05s" in error_of(response)
    assert gate.done.is_set()


def test_the_server_bound_caps_what_the_client_asks(seed_model: Model) -> None:
    model, _ = gated_model(seed_model, wait=0.3)
    client = Client(wsgi_app(model, feedback=False, request_timeout=0.05))
    response = client.post("/predict", json=ROW, headers={"X-Request-Timeout": "60"})
    assert response.status_code == 504


def test_requests_within_their_deadline_are_answered(
    serve: Callable[..., Client], seed_model: Model
) -> None:
    client = serve(seed_model, request_timeout=60, feedback=False)
    response = client.post("/predict", json=ROW, headers={"X-Request-Timeout": "30"})
    assert response.status_code == 200
    assert response.json()["prediction"] == seed_model.predict(ROW["features"]).tolist()


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", ""])
def test_a_bad_timeout_header_is_a_400(
    serve: Callable[..., Client], seed_model: Model, value: str
) -> None:
    client = serve(seed_model, feedback=False)
    response = client.post("/predict", json=ROW, headers={"X-Request-Timeout": value})
    assert response.status_code == 400
    assert "X-Request-Timeout must be a positive number of seconds" in error_of(response)


@pytest.mark.parametrize("value", [0, -1.5])
def test_a_bad_server_timeout_is_refused_at_build_time(seed_model: Model, value: float) -> None:
    with pytest.raises(ServingError, match="request_timeout must be a positive number"):
        wsgi_app(seed_model, request_timeout=value)
