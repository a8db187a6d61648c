"""``modelkit serve`` as a real process on each built-in backend: stdlib, uvicorn, gunicorn.

Each test starts ``modelkit serve seed@production slow@production`` (the console script) on a
free loopback port (``--port 0``; the URL is read from the line it prints) against a registry
in ``tmp_path``, polls ``/readyz`` until it is ready, checks that the seed protocol (the seed's
curl body), MLflow ``/invocations`` and Open Inference v2 answer exactly what ``Model.predict``
answers in this process, then sends SIGTERM while a request is in flight: readiness must turn
off, the request must still complete, and the process must exit 0.

The ``slow`` model is a LogisticRegression whose ``predict`` waits for a gate file when its
first feature is :data:`GATE_VALUE`; that is how a request is held in flight without sleeps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.training import train

pytestmark = pytest.mark.integration

CURL_BODY = (
    b'{"features": [[0.1, -0.5, 1.2, 0.3, -1.1, 0.0, 2.4, -0.7, 0.9, 1.5, '
    b"-0.2, 0.6, -1.8, 0.4, 0.05, -0.33, 1.1, -2.0, 0.75, 0.2]]}"
)
"""The body of the seed's curl request, byte for byte."""

GATE_ENV = "MODELKIT_TEST_GATE"
GATE_VALUE = 12345.0
DEADLINE = 30.0
DRAIN_TIMEOUT = 20

GATE_MODULE = f'''
"""A LogisticRegression whose predict can be held in flight by a test."""

import os
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression


class GatedClassifier(LogisticRegression):
    def predict(self, X):
        gate = os.environ.get("{GATE_ENV}")
        if gate and np.any(np.asarray(X)[:, 0] == {GATE_VALUE}):
            Path(gate, "entered").touch()
            deadline = time.monotonic() + {DEADLINE}
            while not Path(gate, "open").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return super().predict(X)
'''


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def served_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A registry holding seed@production and slow@production, and the gate module's dir."""
    root = tmp_path_factory.mktemp("backends")
    (root / "modelkit_gate.py").write_text(GATE_MODULE)
    spec = importlib.util.spec_from_file_location("modelkit_gate", root / "modelkit_gate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["modelkit_gate"] = module  # pickled by reference, as the server imports it
    try:
        X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
        home = root / "registry"
        with Registry(home) as registry:
            train(
                LogisticRegression(solver="liblinear"),
                X,
                y,
                name="seed",
                registry=registry,
                alias="production",
            )
            train(
                module.GatedClassifier(solver="liblinear"),
                X,
                y,
                name="slow",
                registry=registry,
                alias="production",
                cv=2,
            )
            seed = registry.load("seed@production")
            slow = registry.load("slow@production")
        yield {"home": home, "modules": root, "seed": seed, "slow": slow, "X": X[:8]}
    finally:
        sys.modules.pop("modelkit_gate", None)


class ServeProcess:
    """``modelkit serve …`` in its own session; its stdout lines arrive on a queue."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
        assert entry is not None, "the modelkit console script is not installed"
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        self.proc = subprocess.Popen(
            [entry, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            start_new_session=True,  # its own process group: teardown reaches the workers
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def listening_url(self) -> str:
        """The URL from the line ``modelkit serve`` prints once it listens."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            found = re.search(r" at (http://\S+) with ", line)
            if found:
                return found.group(1)
        raise AssertionError(
            f"no 'serving … at URL' line; stdout: {self.output}, stderr: {self.stderr()}"
        )

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the server and any workers left
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def serve(served_registry: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``modelkit serve`` with the given options; killed at teardown if still running."""
    started: list[ServeProcess] = []
    gate = tmp_path / "gate"
    gate.mkdir()

    def start(*options: str) -> ServeProcess:
        env = {
            **os.environ,
            "MODELKIT_HOME": str(served_registry["home"]),
            "MODELKIT_LOAD_PLUGINS": "",  # the built-ins only, whatever is installed
            "PYTHONPATH": str(served_registry["modules"]),
            GATE_ENV: str(gate),
        }
        args = ["seed@production", "slow@production", "--port", "0", *options]
        process = ServeProcess(args, env, tmp_path / "stderr.txt")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


def readiness(client: httpx.Client, url: str) -> int | None:
    """The status of ``/readyz``, or ``None`` when the server no longer answers it."""
    try:
        return client.get(f"{url}/readyz", timeout=1.0).status_code
    except httpx.TransportError:  # listener closed (refused) or no longer accepting (timeout)
        return None


def check_protocols(client: httpx.Client, url: str, served: dict[str, Any]) -> None:
    """Every protocol answers exactly what Model.predict answers in this process."""
    seed: Model = served["seed"]
    X: np.ndarray = served["X"]

    curl = client.post(
        f"{url}/predict", content=CURL_BODY, headers={"Content-Type": "application/json"}
    )
    assert curl.status_code == 200, curl.text
    answer = curl.json()
    assert answer["prediction"] == seed.predict(json.loads(CURL_BODY)["features"]).tolist()
    assert (answer["model"], answer["version"]) == ("seed", "1")

    expected = seed.predict(X).tolist()
    mlflow = client.post(f"{url}/invocations", json={"instances": X.tolist()})
    assert mlflow.status_code == 200, mlflow.text
    assert mlflow.json() == {"predictions": expected}

    infer = client.post(
        f"{url}/v2/models/seed/infer",
        json={
            "inputs": [
                {
                    "name": "x",
                    "shape": list(X.shape),
                    "datatype": "FP64",
                    "data": X.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        },
    )
    assert infer.status_code == 200, infer.text
    outputs = {output["name"]: output for output in infer.json()["outputs"]}
    assert outputs["predict"]["data"] == expected
    assert outputs["predict_proba"]["data"] == seed.predict_proba(X).ravel().tolist()

    other = client.post(f"{url}/predict?model=slow", json={"features": X.tolist()})
    assert other.json()["prediction"] == served["slow"].predict(X).tolist()


def worker_count(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return len(children.read_text().split())


@pytest.mark.parametrize(
    ("backend", "workers"), [("stdlib", 1), ("uvicorn", 1), ("gunicorn", 2), ("native", 1)]
)
def test_backend_serves_every_protocol_and_stops_gracefully(
    serve: Callable[..., ServeProcess],
    served_registry: dict[str, Any],
    tmp_path: Path,
    backend: str,
    workers: int,
) -> None:
    server = serve(
        "--backend", backend, "--workers", str(workers), "--drain-timeout", str(DRAIN_TIMEOUT)
    )
    url = server.listening_url()
    assert url.startswith("http://127.0.0.1:")
    line = server.output[-1]
    assert f"serving seed (version 1), slow (version 1) at {url} with {backend}" in line

    with httpx.Client(timeout=DEADLINE) as client:
        wait_until(lambda: readiness(client, url) == 200, "/readyz to answer 200")
        if backend == "gunicorn" and Path(f"/proc/{server.proc.pid}/task").exists():
            wait_until(lambda: worker_count(server.proc.pid) == workers, f"{workers} workers")
        check_protocols(client, url, served_registry)

        # A request held in flight by the slow model, then SIGTERM.
        gate = tmp_path / "gate"
        row = served_registry["X"][:1].copy()
        row[0, 0] = GATE_VALUE
        answers: list[httpx.Response] = []

        def send() -> None:
            with httpx.Client(timeout=DEADLINE) as own:
                answers.append(
                    own.post(f"{url}/predict?model=slow", json={"features": row.tolist()})
                )

        in_flight = threading.Thread(target=send)
        in_flight.start()
        try:
            wait_until((gate / "entered").exists, "the slow request to reach the model")
            server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: readiness(client, url) != 200, "readiness to turn off")
            assert not answers, "the request in flight finished before the gate opened"
            assert readiness(client, url) is None  # every backend refuses new connections
            assert server.proc.poll() is None, "the server exited with a request in flight"
        finally:
            (gate / "open").touch()
            in_flight.join(DEADLINE)
        assert len(answers) == 1
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json()["prediction"] == served_registry["slow"].predict(row).tolist()

    assert server.proc.wait(timeout=DRAIN_TIMEOUT + 10) == 0, server.stderr()
    assert "Traceback" not in server.stderr()


def test_an_unknown_backend_is_one_line_listing_the_available_ones(
    serve: Callable[..., ServeProcess],
) -> None:
    server = serve("--backend", "tornado")
    assert server.proc.wait(timeout=DEADLINE) == 1
    assert server.stderr() == (
        "error: unknown server backend 'tornado' (available: auto, gunicorn, native, stdlib, "
        "uvicorn)\n"
    )


@pytest.mark.parametrize("backend", ["stdlib", "uvicorn", "gunicorn", "native"])
def test_a_port_in_use_is_one_line(
    served_registry: dict[str, Any], tmp_path: Path, backend: str
) -> None:
    entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
    assert entry is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [entry, "serve", "seed@production", "--backend", backend, "--port", str(port)],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "MODELKIT_HOME": str(served_registry["home"]),
                "MODELKIT_LOAD_PLUGINS": "",
            },
            timeout=DEADLINE,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop what listens there or choose another --port\n"
    )
    assert result.stdout == ""
