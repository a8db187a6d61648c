"""Graceful drain under load: SIGTERM to a real server while clients send continuously.

For each backend (stdlib, uvicorn, gunicorn with two workers), ``modelkit serve`` runs on a
loopback port; client threads send ``/predict`` requests back to back over keep-alive
connections, some of them slow (the model waits :data:`SLOW_SECONDS` on them), so that
requests are in flight when SIGTERM arrives. Then:

- readiness stops answering 200 at once (503, or the listener is closed);
- every request whose body was sent before the signal completes with 200;
- every later request gets 200, 503 with ``Retry-After``, or a refused connection: never a
  reset after its body was sent, never a hang;
- the process exits 0 well within the drain timeout.

The counts are printed (``-s``) and asserted to be zero failures.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from tests.integration.test_server_backends import ServeProcess, wait_until

from modelkit.registry import Registry
from modelkit.training import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_VALUE = 777.0
SLOW_SECONDS = 0.3
DEADLINE = 30.0

SLOW_MODULE = f'''
"""A LogisticRegression that takes {SLOW_SECONDS}s on rows whose first feature is {SLOW_VALUE}."""

import time

import numpy as np
from sklearn.linear_model import LogisticRegression


class SlowClassifier(LogisticRegression):
    def predict(self, X):
        if np.any(np.asarray(X)[:, 0] == {SLOW_VALUE}):
            time.sleep({SLOW_SECONDS})
        return super().predict(X)
'''


# -- a load generator that knows when each request was sent ----------------------------------


@attrs.define
class Outcome:
    """One request as a client saw it (times from ``time.monotonic()``)."""

    started: float
    sent_body: Any = None
    sent: float | None = None  # when the whole request was written to the socket
    ended: float = 0.0
    status: int | None = None
    body: Any = None
    retry_after: str | None = None
    error: str | None = None


class Hammer:
    """``clients`` threads sending requests back to back until :meth:`stop`.

    ``make_request(client_index)`` returns ``(path, json_body)``; ``headers`` go with each.
    Each thread keeps one ``httpx.Client`` (keep-alive, no retries) and records an
    :class:`Outcome` per request, including when the request body was fully sent.
    """

    def __init__(
        self,
        url: str,
        make_request: Callable[[int], tuple[str, Any]],
        *,
        clients: int = 8,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.make_request = make_request
        self.headers = headers or {}
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def start(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
            assert not thread.is_alive(), "a client thread hung"
        return self.outcomes

    def count(self) -> int:
        return len(self.outcomes)

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout, headers=self.headers) as client:
            while not self._stop.is_set():
                path, body = self.make_request(index)
                outcome = Outcome(started=time.monotonic(), sent_body=body)

                def trace(event: str, info: Any, outcome: Outcome = outcome) -> None:
                    if event == "http11.send_request_body.complete":
                        outcome.sent = time.monotonic()

                try:
                    answer = client.post(path, json=body, extensions={"trace": trace})
                    outcome.status = answer.status_code
                    outcome.retry_after = answer.headers.get("retry-after")
                    try:
                        outcome.body = answer.json()
                    except ValueError:
                        outcome.body = answer.text
                except httpx.HTTPError as exc:
                    outcome.error = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, httpx.ConnectError):
                        self._stop.wait(0.005)  # refused: do not spin
                outcome.ended = time.monotonic()
                with self._lock:
                    self.outcomes.append(outcome)


def drain_failures(outcomes: list[Outcome], signalled: float) -> dict[str, list[Outcome]]:
    """The requests a graceful drain must not have failed, by kind of failure."""
    failures: dict[str, list[Outcome]] = {"accepted": [], "after": []}
    for outcome in outcomes:
        accepted = outcome.sent is not None and outcome.sent < signalled
        if accepted:
            if outcome.status != 200:
                failures["accepted"].append(outcome)
        elif outcome.status == 503:
            if not outcome.retry_after:
                failures["after"].append(outcome)
        elif outcome.status != 200:
            refused = outcome.error is not None and outcome.error.startswith("ConnectError")
            if not refused:
                failures["after"].append(outcome)
    return failures


# -- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A registry holding slow@production, and the directory of its model's module."""
    root = tmp_path_factory.mktemp("drain")
    (root / "modelkit_slow.py").write_text(SLOW_MODULE)
    spec = importlib.util.spec_from_file_location("modelkit_slow", root / "modelkit_slow.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["modelkit_slow"] = module  # pickled by reference, as the server imports it
    try:
        X, y = make_classification(n_samples=500, n_features=20, random_state=1)
        home = root / "registry"
        with Registry(home) as registry:
            train(
                module.SlowClassifier(solver="liblinear"),
                X,
                y,
                name="slow",
                registry=registry,
                alias="production",
                cv=2,
            )
        rows = X[:4].copy()
        slow = rows.copy()
        slow[:, 0] = SLOW_VALUE
        fitted = LogisticRegression(solver="liblinear").fit(X, y)  # what SlowClassifier learnt
        yield {
            "home": home,
            "modules": root,
            "rows": rows.tolist(),
            "slow": slow.tolist(),
            "expected": {
                "rows": fitted.predict(rows).tolist(),
                "slow": fitted.predict(slow).tolist(),
            },
        }
    finally:
        sys.modules.pop("modelkit_slow", None)


def start_server(
    registry: dict[str, Any], tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> ServeProcess:
    """``modelkit serve slow@production --port 0 OPTIONS`` against ``registry``."""
    import os

    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELKIT_API_KEYS")},
        "MODELKIT_HOME": str(registry["home"]),
        "MODELKIT_LOAD_PLUGINS": "",
        "PYTHONPATH": str(registry["modules"]),
        **(env or {}),
    }
    return ServeProcess(
        ["slow@production", "--port", "0", *options], environ, tmp_path / "stderr.txt"
    )


def readiness(url: str) -> int | None:
    """``/readyz``'s status on a fresh connection, ``None`` when refused or unanswered."""
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code
    except httpx.TransportError:
        return None


@pytest.mark.parametrize(
    ("backend", "workers"),
    [("stdlib", 1), ("uvicorn", 1), ("gunicorn", 2), ("native", 1)],
)
def test_sigterm_under_load_fails_no_request(
    slow_registry: dict[str, Any], tmp_path: Path, backend: str, workers: int
) -> None:
    server = start_server(slow_registry, tmp_path, "--backend", backend, "--workers", str(workers))
    try:
        url = server.listening_url()
        wait_until(lambda: readiness(url) == 200, "/readyz to answer 200")
        rows, slow_rows = slow_registry["rows"], slow_registry["slow"]

        def request(index: int) -> tuple[str, Any]:
            return "/predict", {"features": slow_rows if index % 4 == 0 else rows}

        hammer = Hammer(url, request, clients=8).start()
        try:
            wait_until(lambda: hammer.count() >= 200, "200 answers before the signal")
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: readiness(url) != 200, "readiness to turn off", timeout=1.0)
            turned_off = time.monotonic() - signalled
            code = server.proc.wait(timeout=DEADLINE)
            exited = time.monotonic() - signalled
        finally:
            outcomes = hammer.stop()
        stderr = server.stderr()
    finally:
        server.close()

    failures = drain_failures(outcomes, signalled)
    accepted = [o for o in outcomes if o.sent is not None and o.sent < signalled]
    after = [o for o in outcomes if o not in accepted]
    print(
        f"\n{backend}: {len(accepted)} requests accepted before SIGTERM, "
        f"{len(failures['accepted'])} failed; {len(after)} after it "
        f"({sum(o.status == 200 for o in after)} answered 200, "
        f"{sum(o.status == 503 for o in after)} 503, "
        f"{sum(o.error is not None for o in after)} refused), "
        f"{len(failures['after'])} failed; readiness off after {turned_off * 1000:.0f} ms, "
        f"exit {code} after {exited:.2f} s"
    )
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not failures["accepted"], failures["accepted"][:5]
    assert not failures["after"], failures["after"][:5]
    expected = slow_registry["expected"]
    for outcome in outcomes:
        if outcome.status == 200:
            kind = "slow" if outcome.sent_body["features"] == slow_registry["slow"] else "rows"
            assert outcome.body["prediction"] == expected[kind]
    assert sum(1 for o in accepted if o.ended > signalled) > 0, "no request was in flight"
    assert exited < DEADLINE
