"""A served registry model is monitored end to end, by a real ``modelkit serve`` process.

For each backend (native, uvicorn, gunicorn with two workers) the test serves ``seed@production``
(trained with :func:`modelkit.train`, so its artifact has a profile and metrics) on loopback:

1. in-distribution traffic closes a drift window without a drift alert;
2. shifted traffic stores a drift alert in the registry, which ``modelkit monitor alerts`` lists;
3. wrong labels sent to ``POST /feedback`` (to any worker) store one performance alert per
   metric, counting every labelled prediction once;
4. ``/metrics`` shows the health series; the input rows come back from ``Registry.feedback``;
5. SIGTERM stops the server cleanly.

Every wait polls an observable condition (the registry, ``/metrics``) with a deadline.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.registry import Registry
from modelkit.training import train

pytestmark = pytest.mark.integration

DEADLINE = 45.0
WINDOW = 400


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A registry with seed@production (profile and metrics included), and its training X."""
    X, y = make_classification(n_samples=2000, n_features=20, random_state=42)
    path = tmp_path / "registry"
    with Registry(path) as registry:
        train(
            LogisticRegression(solver="liblinear"),
            X,
            y,
            name="seed",
            registry=registry,
            alias="production",
            cv=2,
        )
    return path, X


def _modelkit() -> str:
    return str(Path(sys.executable).parent / "modelkit")


class Server:
    """``modelkit serve`` in its own session, its URL read from the line it prints."""

    def __init__(self, home: Path, backend: str, workers: int, log: Path) -> None:
        env = {**os.environ, "MODELKIT_HOME": str(home), "MODELKIT_LOAD_PLUGINS": ""}
        argv = [_modelkit(), "serve", "seed@production", "--port", "0", "--backend", backend]
        argv += ["--workers", str(workers), "--monitor-window", str(WINDOW)]
        self.log = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r" at (http://\S+) with ", line)
        assert found, f"no 'serving … at URL' line: {line!r}; log: {log.read_text()}"
        self.url = found.group(1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples in an exposition text (0 when absent)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def send(client: httpx.Client, url: str, X: np.ndarray, rows: int = 10) -> list[str]:
    """Predict ``X`` in requests of ``rows`` rows; return the prediction ids."""
    ids = []
    for start in range(0, len(X), rows):
        answer = client.post(f"{url}/predict", json={"features": X[start : start + rows].tolist()})
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    return ids


@pytest.mark.parametrize(("backend", "workers"), [("native", 1), ("uvicorn", 1), ("gunicorn", 2)])
def test_a_served_model_is_monitored(
    home: tuple[Path, np.ndarray], tmp_path: Path, backend: str, workers: int
) -> None:
    if backend in {"uvicorn", "gunicorn"}:
        pytest.importorskip(backend)
    path, X = home
    server = Server(path, backend, workers, tmp_path / "server.log")
    try:
        with httpx.Client(timeout=10.0) as client, Registry(path) as registry:
            url = server.url

            # 1. in distribution: a window closes, no drift
            ids = send(client, url, X[: 3 * WINDOW])

            def windows() -> float:
                return metric(client.get(f"{url}/metrics").text, "modelkit_monitor_windows_total")

            wait_until(windows, "a drift window to be checked")
            assert registry.alerts("seed", kind="drift") == []

            # 2. shifted traffic: a drift alert in the registry, listed by the CLI
            send(client, url, X[: 3 * WINDOW] * 1.5 + 1.0)
            (drift, *_) = wait_until(
                lambda: registry.alerts("seed", kind="drift"), "a stored drift alert"
            )
            assert (drift.version, drift.details["verdict"]) == (1, "drift")
            listed = subprocess.run(
                [_modelkit(), "monitor", "alerts", "seed", "--kind", "drift", "--json"],
                env={**os.environ, "MODELKIT_HOME": str(path), "MODELKIT_LOAD_PLUGINS": ""},
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert drift.id in [alert["id"] for alert in json.loads(listed.stdout)]

            # 3. wrong labels (through whichever worker answers) -> one alert per metric
            labelled = ids[:30]  # 300 rows
            for key in labelled:
                wait_until(functools.partial(_recorded, registry, key), f"prediction {key}")
                flipped = [1 - v for v in registry.prediction(key).outputs or []]
                posted = client.post(f"{url}/feedback", json={"id": key, "label": flipped})
                assert posted.status_code == 200, posted.text
            found = wait_until(
                lambda: _all_metrics(registry.alerts("seed", kind="performance")),
                "a performance alert for accuracy, f1 and roc_auc",
            )
            per_metric = collections.Counter(alert.details["metric"] for alert in found)
            assert per_metric == {"accuracy": 1, "f1": 1, "roc_auc": 1}
            accuracy = next(a for a in found if a.details["metric"] == "accuracy")
            assert accuracy.details["n"] == 300  # each labelled row counted once
            assert accuracy.details["value"] == 0.0
            auc = next(a for a in found if a.details["metric"] == "roc_auc")
            assert auc.details["n"] == 300  # scored from the recorded input rows
            assert auc.details["value"] < 0.5  # flipped labels: worse than chance

            # 4. health in /metrics; input rows back from the registry
            names = (
                "modelkit_monitor_throughput",
                "modelkit_monitor_window_latency_seconds",
                "modelkit_monitor_error_rate",
                "modelkit_monitor_rows_total",
                "modelkit_request_duration_seconds_bucket",
            )
            # each worker reports its own requests: one that has answered none yet (a new
            # connection may reach it) has no latency buckets until its first /metrics
            wait_until(
                lambda: all(name in client.get(f"{url}/metrics").text for name in names),
                "every health series in /metrics",
            )
            by_id = {f.prediction_id: f for f in registry.feedback("seed")}
            assert by_id[ids[0]].inputs == X[:10].tolist()
        # 5. a clean stop
        assert server.stop() == 0, server.log.read_text()
        assert "Traceback" not in server.log.read_text()
    finally:
        server.kill()


def _recorded(registry: Registry, key: str) -> bool:
    from modelkit.exceptions import NotFoundError

    try:
        registry.prediction(key)
    except NotFoundError:
        return False
    return True


def _all_metrics(alerts: list[Any]) -> list[Any] | None:
    wanted = {"accuracy", "f1", "roc_auc"}
    return alerts if {a.details["metric"] for a in alerts} >= wanted else None
