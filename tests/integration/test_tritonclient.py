"""NVIDIA's Open Inference Protocol client, ``tritonclient[http]``, against a real modelkit server.

The WSGI application runs on a threaded ``wsgiref`` server on a free loopback port, in a
thread of the test process; the client speaks to it over TCP exactly as it would to Triton or
KServe: health, metadata, inference with JSON and with binary tensor data, BYTES tensors,
versions, compression, errors, API keys, and delayed labels by the request id it chose.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import numpy as np
import pytest

from modelkit import Artifact
from modelkit.default_plugins.api_key_auth import APIKeyAuthenticator
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import WSGIApp, wsgi_app

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "triton-client-key-0123456789"


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextlib.contextmanager
def loopback(app: WSGIApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port from a thread; yield ``host:port``."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    """A 20-feature classifier and a DataFrame pipeline with a categorical feature."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = make_classification(n_samples=300, n_features=20, random_state=0)
    seed = Model.wrap(LogisticRegression(solver="liblinear").fit(X, y), sample=X, name="churn")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200).astype(float),
            "income": rng.normal(50.0, 10.0, 200),
            "color": rng.choice(["blue", "green", "red"], 200),
        }
    )
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, (frame["income"] > 50).to_numpy().astype(int))
    mixed = Model.wrap(pipeline, sample=frame, name="mixed")
    return {"churn": seed, "mixed": mixed}


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, models: dict[str, Model]
) -> Iterator[Registry]:
    with Registry(str(tmp_path_factory.mktemp("triton") / "reg")) as registry:
        registry.register("churn", Artifact.from_model(models["churn"], name="churn"))
        registry.set_alias("churn", "production", 1)
        yield registry


@pytest.fixture(scope="module")
def server(registry: Registry, models: dict[str, Model]) -> Iterator[str]:
    """``churn`` (registry version 1) and ``mixed`` (in-process) on a real loopback server."""
    app = wsgi_app("churn@production", registry=registry, mixed=models["mixed"], auth=False)
    with loopback(app) as url:
        yield url
    app.app.drain()


@pytest.fixture
def client(server: str) -> Iterator[Any]:
    client = httpclient.InferenceServerClient(url=server, network_timeout=30.0)
    yield client
    client.close()


def features(n: int = 7) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, 20))


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert client.is_model_ready("churn", "1")
    assert not client.is_model_ready("churn", "2")
    server = client.get_server_metadata()
    assert server["name"] == "modelkit"
    assert "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata("churn")
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 20]}]
    assert {o["name"] for o in metadata["outputs"]} >= {"predict", "predict_proba"}
    assert client.get_model_metadata("churn", "1")["name"] == "churn"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_inference(client: Any, models: dict[str, Model], binary: bool, datatype: str) -> None:
    X = features().astype("<f8" if datatype == "FP64" else "<f4")
    tensor = httpclient.InferInput("input-0", list(X.shape), datatype)
    tensor.set_data_from_numpy(X, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=binary),
        httpclient.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    result = client.infer("churn", [tensor], outputs=outputs, request_id=f"req-{datatype}")
    model = models["churn"]
    as_seen = X.astype(np.float64)
    assert np.array_equal(result.as_numpy("predict"), model.predict(as_seen))
    assert np.array_equal(result.as_numpy("predict_proba"), model.predict_proba(as_seen))
    response = result.get_response()
    assert response["model_name"] == "churn"
    assert response["model_version"] == "1"
    assert response["id"] == f"req-{datatype}"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_bytes_tensors_one_per_feature(client: Any, models: dict[str, Model], binary: bool) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"age": [41.0, 23.0, 67.0], "income": [52.5, 31.0, 70.2], "color": ["red", "blue", "green"]}
    )
    inputs = []
    for name, datatype in [("age", "FP64"), ("income", "FP64"), ("color", "BYTES")]:
        values = frame[name].to_numpy(dtype=object if datatype == "BYTES" else np.float64)
        tensor = httpclient.InferInput(name, [len(frame)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    output = httpclient.InferRequestedOutput("predict_proba", binary_data=binary)
    result = client.infer("mixed", inputs, outputs=[output])
    assert np.array_equal(result.as_numpy("predict_proba"), models["mixed"].predict_proba(frame))
    assert "model_version" not in result.get_response()  # served in-process: no version


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(
    client: Any, models: dict[str, Model], algorithm: str
) -> None:
    X = features(200)
    tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=False)
    result = client.infer(
        "churn",
        [tensor],
        outputs=[httpclient.InferRequestedOutput("predict_proba", binary_data=False)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm="gzip",
    )
    assert np.array_equal(result.as_numpy("predict_proba"), models["churn"].predict_proba(X))


def test_versions_and_errors_reach_the_client(client: Any) -> None:
    X = features(3)
    tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X)
    assert client.infer("churn", [tensor], model_version="1").as_numpy("predict").shape == (3,)
    with pytest.raises(InferenceServerException, match="no version '7'") as wrong_version:
        client.infer("churn", [tensor], model_version="7")
    assert wrong_version.value.status() == "404"
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        client.infer("nope", [tensor])
    narrow = httpclient.InferInput("input-0", [3, 19], "FP64")
    narrow.set_data_from_numpy(X[:, :19])
    with pytest.raises(InferenceServerException, match="19") as bad_shape:
        client.infer("churn", [narrow])
    assert bad_shape.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown output 'explain'"):
        client.infer("churn", [tensor], outputs=[httpclient.InferRequestedOutput("explain")])


def test_labels_follow_the_request_id_the_client_chose(
    client: Any, server: str, registry: Registry, models: dict[str, Model]
) -> None:
    X = features(4)
    tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=True)
    client.infer("churn", [tensor], request_id="triton-feedback-1")
    answer = httpx.post(
        f"http://{server}/feedback",
        json={"id": "triton-feedback-1", "label": [1, 0, 1, None]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (found,) = [f for f in registry.feedback("churn") if f.prediction_id == "triton-feedback-1"]
    assert found.outputs == models["churn"].predict(X).tolist()
    assert found.labels == [1, 0, 1, None]


def test_api_keys_with_a_real_client(models: dict[str, Model]) -> None:
    app = wsgi_app(models["churn"], auth=APIKeyAuthenticator([KEY]))
    X = features(2)
    tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=True)
    with loopback(app) as url:
        client = httpclient.InferenceServerClient(url=url, network_timeout=30.0)
        try:
            assert client.is_server_ready()  # health stays open
            with pytest.raises(InferenceServerException, match="requires authentication") as no:
                client.infer("churn", [tensor])
            assert no.value.status() == "401"
            with pytest.raises(InferenceServerException, match="not valid"):
                client.infer("churn", [tensor], headers={"Authorization": "Bearer wrong-key"})
            result = client.infer("churn", [tensor], headers={"Authorization": f"Bearer {KEY}"})
            assert np.array_equal(result.as_numpy("predict"), models["churn"].predict(X))
        finally:
            client.close()
