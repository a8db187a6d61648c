"""``modelkit serve seed@production --backend native`` as a real process.

The seed model (LogisticRegression on 20 features) is served by the native HTTP/1.1 server;
its answers must equal ``Model.predict`` in this process, under concurrent load too. Then
SIGTERM while 16 keep-alive clients send requests back to back: every request sent before
the signal is answered 200, later ones are answered or refused (never reset after being
sent), and the process exits 0. SIGHUP checks the served alias and keeps serving; SIGINT
stops gracefully too.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from tests.integration.test_drain_under_load import Hammer, drain_failures
from tests.integration.test_server_backends import CURL_BODY, ServeProcess, wait_until

from modelkit.registry import Registry
from modelkit.training import train

pytestmark = pytest.mark.integration

DEADLINE = 30.0


@pytest.fixture(scope="module")
def seed_registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registry holding seed@production (the seed article's model) and its expected rows."""
    home = tmp_path_factory.mktemp("native") / "registry"
    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    with Registry(home) as registry:
        train(
            LogisticRegression(solver="liblinear"),
            X,
            y,
            name="seed",
            registry=registry,
            alias="production",
        )
        seed = registry.load("seed@production")
    return {"home": home, "seed": seed, "X": X[:64]}


@pytest.fixture
def native(seed_registry: dict[str, Any], tmp_path: Path) -> Iterator[Callable[[], ServeProcess]]:
    """Start ``modelkit serve seed@production --backend native --port 0``; killed at teardown."""
    started: list[ServeProcess] = []

    def start() -> ServeProcess:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELKIT_API_KEYS")},
            "MODELKIT_HOME": str(seed_registry["home"]),
            "MODELKIT_LOAD_PLUGINS": "",
        }
        args = ["seed@production", "--backend", "native", "--port", "0"]
        process = ServeProcess(args, env, tmp_path / "stderr.txt")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


def ready(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code
    except httpx.TransportError:
        return None


def test_native_answers_like_model_predict_and_drains_under_load(
    native: Callable[[], ServeProcess], seed_registry: dict[str, Any]
) -> None:
    server = native()
    url = server.listening_url()
    assert "with native" in server.output[-1]
    wait_until(lambda: ready(url) == 200, "/readyz to answer 200")
    seed, X = seed_registry["seed"], seed_registry["X"]

    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        curl = client.post("/predict", content=CURL_BODY)
        assert curl.status_code == 200, curl.text
        assert curl.headers["server"] == "modelkit"
        expected = seed.predict(json.loads(CURL_BODY)["features"]).tolist()
        assert curl.json()["prediction"] == expected
        rows = client.post("/predict", json={"features": X.tolist()})
        assert rows.json()["prediction"] == seed.predict(X).tolist()

    expected_rows = {
        tuple(row): int(label) for row, label in zip(X.tolist(), seed.predict(X), strict=True)
    }

    counter = itertools.count()

    def request(index: int) -> tuple[str, Any]:
        return "/predict", {"features": [X[next(counter) % len(X)].tolist()]}

    hammer = Hammer(url, request, clients=16).start()
    try:
        wait_until(lambda: hammer.count() >= 500, "500 answers before the signal")
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: ready(url) != 200, "readiness to turn off", timeout=2.0)
        code = server.proc.wait(timeout=DEADLINE)
    finally:
        outcomes = hammer.stop()

    assert code == 0, server.stderr()
    assert "Traceback" not in server.stderr(), server.stderr()
    failures = drain_failures(outcomes, signalled)
    assert not failures["accepted"], failures["accepted"][:5]
    assert not failures["after"], failures["after"][:5]
    answered = [o for o in outcomes if o.status == 200]
    assert len(answered) >= 500
    for outcome in answered:
        row = tuple(outcome.sent_body["features"][0])
        assert outcome.body["prediction"] == [expected_rows[row]]


def test_sighup_keeps_serving_and_sigint_stops_gracefully(
    native: Callable[[], ServeProcess], seed_registry: dict[str, Any]
) -> None:
    server = native()
    url = server.listening_url()
    wait_until(lambda: ready(url) == 200, "/readyz to answer 200")
    server.proc.send_signal(signal.SIGHUP)
    row = np.asarray(seed_registry["X"][:1])
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        for _ in range(5):
            answer = client.post("/predict", json={"features": row.tolist()})
            assert answer.status_code == 200
            assert answer.json()["prediction"] == seed_registry["seed"].predict(row).tolist()
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=DEADLINE) == 0, server.stderr()
    assert "Traceback" not in server.stderr()
