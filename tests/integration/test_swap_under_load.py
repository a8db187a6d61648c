"""Hot model swap under load: the alias moves while clients hammer ``/predict``.

The registry holds "churn" version 1 and version 2, trained on flipped labels, so that every
answer shows which version computed it. Client threads send requests back to back while the
server swaps (through ``POST /admin/reload``, through ``--watch`` polling, through SIGHUP).
Every request must succeed, every answer's ``"version"`` must match its prediction (v1's
predictions with ``"1"``, v2's with ``"2"``: never a mix), and once a swap is done every
later request is answered by the new version.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from tests.integration.test_drain_under_load import Hammer, Outcome
from tests.integration.test_server_backends import ServeProcess, wait_until

from modelkit import Artifact
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import App, Request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "swap-under-load-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registry with churn v1 (in production) and v2 (flipped labels), and rows they
    disagree on everywhere."""
    X, y = make_classification(n_samples=1000, n_features=20, random_state=3)
    one = LogisticRegression(solver="liblinear").fit(X, y)
    two = LogisticRegression(solver="liblinear").fit(X, 1 - y)
    rows = X[one.predict(X) != two.predict(X)][:8]
    home = tmp_path_factory.mktemp("swap") / "registry"
    with Registry(home) as registry:
        for estimator in (one, two):
            model = Model.wrap(estimator, sample=X, name="churn")
            registry.register("churn", Artifact.from_model(model, name="churn", sample=X))
        registry.set_alias("churn", "production", 1)
    return {
        "home": home,
        "rows": rows.tolist(),
        "expected": {"1": one.predict(rows).tolist(), "2": two.predict(rows).tolist()},
    }


@pytest.fixture
def registry(versions: dict[str, Any]) -> Iterator[Registry]:
    """The registry, its alias back on version 1 afterwards."""
    with Registry(versions["home"]) as reg:
        reg.set_alias("churn", "production", 1)
        yield reg
        reg.set_alias("churn", "production", 1)


def check_answers(outcomes: list[Any], expected: dict[str, list[int]]) -> dict[str, int]:
    """Every request succeeded and each answer is entirely the version it names."""
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, failed[:5]
    counts = {"1": 0, "2": 0}
    for outcome in outcomes:
        version = outcome.body["version"]
        assert outcome.body["prediction"] == expected[version], outcome
        counts[version] += 1
    return counts


def answered_after(outcomes: list[Any], moment: float, until: float = float("inf")) -> set[str]:
    """The versions of the answers to requests started after ``moment`` (and before
    ``until``)."""
    return {o.body["version"] for o in outcomes if moment < o.started < until}


# -- in process --------------------------------------------------------------------------------


class InProcessHammer:
    """Threads calling ``App.handle`` back to back, as the adapters do."""

    def __init__(self, app: App, rows: list[list[float]], clients: int = 8) -> None:
        self.app, self.rows = app, rows
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        import json

        body = json.dumps({"features": self.rows}).encode()
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in AUTH.items()}}
        while not self._stop.is_set():
            outcome = Outcome(started=time.monotonic())
            response = self.app.handle(Request("POST", "/predict", headers=headers, body=body))
            outcome.status = response.status
            outcome.body = json.loads(response.body)
            outcome.ended = time.monotonic()
            with self._lock:
                self.outcomes.append(outcome)

    def count(self) -> int:
        return len(self.outcomes)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
            assert not thread.is_alive()
        return self.outcomes


def test_in_process_swaps_under_load(
    versions: dict[str, Any], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    app = App("churn@production", registry=registry, feedback=False)
    app.start()
    assert app.watcher is not None
    hammer = InProcessHammer(app, versions["rows"])
    try:
        wait_until(lambda: hammer.count() >= 200, "200 answers from version 1")
        registry.set_alias("churn", "production", 2)
        answer = app.handle(Request("POST", "/admin/reload", headers=AUTH))
        reloaded = time.monotonic()
        assert answer.status == 200, answer.body
        assert b'"outcome":"swapped"' in answer.body.replace(b" ", b"")
        count = hammer.count()
        wait_until(lambda: hammer.count() >= count + 300, "300 more answers")

        registry.set_alias("churn", "production", 1)  # back, by polling this time
        moved_back = time.monotonic()
        app.watcher.interval = 0.05
        app.watcher.start()
        wait_until(lambda: app.models["churn"].version == "1", "the polling thread to swap")
        polled = time.monotonic()
        count = hammer.count()
        wait_until(lambda: hammer.count() >= count + 200, "200 more answers")
    finally:
        outcomes = hammer.stop()
        app.drain()
    counts = check_answers(outcomes, versions["expected"])
    print(f"\nin process: {len(outcomes)} requests, 0 failed, by version {counts}")
    assert answered_after(outcomes, reloaded, moved_back) == {"2"}
    assert answered_after(outcomes, polled) == {"1"}
    assert app.watcher.swaps == 2


# -- a real server -----------------------------------------------------------------------------


def serve(versions: dict[str, Any], tmp_path: Path, *options: str) -> ServeProcess:
    env = {
        **os.environ,
        "MODELKIT_HOME": str(versions["home"]),
        "MODELKIT_LOAD_PLUGINS": "",
        "MODELKIT_API_KEYS": KEY,
    }
    return ServeProcess(["churn@production", "--port", "0", *options], env, tmp_path / "err.txt")


def hammer_for(url: str, versions: dict[str, Any]) -> Hammer:
    body = {"features": versions["rows"]}
    return Hammer(url, lambda index: ("/predict", body), clients=8, headers=AUTH).start()


def test_uvicorn_swaps_under_load_by_admin_route_and_by_polling(
    versions: dict[str, Any], registry: Registry, tmp_path: Path
) -> None:
    import httpx

    server = serve(versions, tmp_path, "--backend", "uvicorn", "--watch", "0.5")
    try:
        url = server.listening_url()
        hammer = hammer_for(url, versions)
        try:
            wait_until(lambda: hammer.count() >= 200, "200 answers from version 1")
            registry.set_alias("churn", "production", 2)
            answer = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=30)
            reloaded = time.monotonic()
            assert answer.status_code == 200, answer.text
            (model,) = answer.json()["models"]
            assert model["new_version"] == "2"  # swapped by this call, or by a poll just before
            assert model["outcome"] in {"swapped", "unchanged"}
            count = hammer.count()
            wait_until(lambda: hammer.count() >= count + 300, "300 more answers")

            registry.set_alias("churn", "production", 1)  # back, by polling this time
            moved_back = time.monotonic()

            def polled_back() -> bool:
                recent = [o for o in hammer.outcomes[-20:] if o.started > moved_back]
                return len(recent) == 20 and all(o.body["version"] == "1" for o in recent)

            wait_until(polled_back, "answers from version 1 again")
            settled = time.monotonic()
            count = hammer.count()
            wait_until(lambda: hammer.count() >= count + 200, "200 more answers")
        finally:
            outcomes = hammer.stop()
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.close()
    counts = check_answers(outcomes, versions["expected"])
    print(f"\nuvicorn: {len(outcomes)} requests, 0 failed, by version {counts}")
    assert answered_after(outcomes, reloaded, moved_back) == {"2"}
    assert answered_after(outcomes, settled) == {"1"}
    assert 'modelkit_model_info{model="churn",version="1"' in metrics


def worker_pids(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in children.read_text().split()}


@pytest.mark.parametrize(("backend", "workers"), [("stdlib", 1), ("uvicorn", 1), ("gunicorn", 2)])
def test_sighup_swaps_under_load(
    versions: dict[str, Any], registry: Registry, tmp_path: Path, backend: str, workers: int
) -> None:
    server = serve(versions, tmp_path, "--backend", backend, "--workers", str(workers))
    try:
        url = server.listening_url()
        gunicorn = backend == "gunicorn" and Path(f"/proc/{server.proc.pid}/task").exists()
        if gunicorn:
            wait_until(lambda: len(worker_pids(server.proc.pid)) == workers, "the workers")
            before = worker_pids(server.proc.pid)
        hammer = hammer_for(url, versions)
        try:
            wait_until(lambda: hammer.count() >= 200, "200 answers from version 1")
            registry.set_alias("churn", "production", 2)
            server.proc.send_signal(signal.SIGHUP)
            hup = time.monotonic()

            def swapped() -> bool:
                recent = [o for o in hammer.outcomes[-40:] if o.started > hup]
                return len(recent) == 40 and all(o.body["version"] == "2" for o in recent)

            wait_until(swapped, "answers from version 2")
            settled = time.monotonic()
            count = hammer.count()
            wait_until(lambda: hammer.count() >= count + 200, "200 more answers")
            if gunicorn:  # the workers were re-forked from the updated master
                wait_until(
                    lambda: (
                        len(worker_pids(server.proc.pid) - before) == workers
                        and not worker_pids(server.proc.pid) & before
                    ),
                    "the old workers to be replaced",
                )
        finally:
            outcomes = hammer.stop()
        assert server.proc.poll() is None, server.stderr()
    finally:
        server.close()
    counts = check_answers(outcomes, versions["expected"])
    print(f"\n{backend} SIGHUP: {len(outcomes)} requests, 0 failed, by version {counts}")
    assert answered_after(outcomes, settled) == {"2"}
    assert counts["1"] > 0
