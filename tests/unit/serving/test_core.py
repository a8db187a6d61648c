"""The serving core: routing, errors, limits, encodings, states, model lists and registries."""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.serving.helpers import Client, error_of

from modelkit import Artifact
from modelkit.exceptions import ArtifactIntegrityError, NotFoundError, UnsupportedModelError
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import (
    STATES,
    App,
    HTTPError,
    Request,
    Response,
    ServingError,
    WSGIApp,
)

ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/predict"),
    ("POST", "/invocations"),
    ("GET", "/ping"),
    ("GET", "/health"),
    ("GET", "/version"),
    ("GET", "/v2"),
    ("GET", "/v2/"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    ("POST", "/feedback"),
    ("POST", "/admin/reload"),
}


def rows(seed_data: tuple[np.ndarray, np.ndarray], n: int = 5) -> list[list[float]]:
    data: list[list[float]] = seed_data[0][:n].tolist()
    return data


# -- records ---------------------------------------------------------------------------------


def test_request_lowercases_and_joins_headers() -> None:
    request = Request("GET", "/x", headers=[("X-A", "1"), ("x-a", "2"), ("Content-Type", "t")])
    assert request.headers == {"x-a": "1, 2", "content-type": "t"}
    assert Request("GET", "/", "model=a&model=b&x=").param("model") == "a"
    assert Request("GET", "/", "x=").param("x") == ""
    assert Request("GET", "/").param("model") is None


def test_response_helpers() -> None:
    response = Response.error(418, "teapot", [("X-Extra", "1")])
    assert response.header("x-extra") == "1"
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"error": "teapot"}
    assert response.reason == "I'm a Teapot"
    assert Response(599).reason == "Unknown"
    assert Response.json(200, {"v": np.float64("nan")}).body == b'{"v":null}'


def test_the_route_table_is_the_contract(seed_model: Model) -> None:
    app = App(seed_model)
    assert {(route.method, route.template) for route in app.routes} == ROUTES
    assert STATES == ("loading", "ready", "draining", "stopped", "failed")


# -- routing and errors ----------------------------------------------------------------------


def test_every_response_has_a_request_id(client: Client) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz").headers["x-request-id"] != generated
    echoed = client.post("/predict", json={}, headers={"X-Request-ID": "abc-123"})
    assert echoed.status_code == 400
    assert echoed.headers["x-request-id"] == "abc-123"
    unusable = client.get("/nope", headers={"X-Request-ID": "x" * 201})
    assert re.fullmatch(r"[0-9a-f]{32}", unusable.headers["x-request-id"])


def test_unknown_route_is_a_json_404(client: Client) -> None:
    response = client.get("/nope/deeper")
    assert response.status_code == 404
    assert "/openapi.json" in error_of(response)


def test_wrong_method_is_a_405_with_allow(client: Client) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "GET" in error_of(response)
    response = client.request("DELETE", "/v2/models/seed")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_head_answers_like_get_without_a_body(client: Client) -> None:
    get = client.get("/v2/health/live", headers={"accept-encoding": "identity"})
    head = client.request("HEAD", "/v2/health/live", headers={"accept-encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))


def test_model_failure_is_a_500_without_traceback(
    serve: Callable[..., Client], seed_data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        n_features_in_ = 20

        def predict(self, X: Any) -> Any:
            raise RuntimeError("secret internal detail")

    model = Model.wrap(Broken(), sample=seed_data[0][:10], name="broken")
    client = serve(model)
    with caplog.at_level(logging.ERROR, logger="modelkit.serving"):
        response = client.post(
            "/predict", json={"features": rows(seed_data)}, headers={"x-request-id": "r-1"}
        )
    assert response.status_code == 500
    message = error_of(response)
    assert "r-1" in message
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    record = next(r for r in caplog.records if "r-1" in r.getMessage())
    assert record.exc_info is not None
    assert "secret internal detail" in str(record.exc_info[1])


def test_error_mapping_of_library_errors(seed_model: Model) -> None:
    app = App(seed_model)
    app.start()

    def handler(exc: Exception) -> Response:
        def fail(*_: Any) -> Response:
            raise exc

        route = app.routes[0]
        app.routes = (type(route)("GET", "/boom", fail),)
        return app.handle(Request("GET", "/boom"))

    assert handler(NotFoundError("no such thing")).status == 404
    assert handler(UnsupportedModelError("no predict_proba")).status == 400
    response = handler(HTTPError(503, "busy", headers=[("retry-after", "7")]))
    assert response.status == 503
    assert response.header("retry-after") == "7"


# -- body limits and encodings ---------------------------------------------------------------


def test_a_declared_oversized_body_is_a_413(
    serve: Callable[..., Client], seed_model: Model
) -> None:
    client = serve(seed_model, max_body_size=100)
    response = client.post(
        "/predict", content=b"x" * 101, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "100 bytes" in error_of(response)
    assert client.core.metrics.requests()[("/predict", "seed", "413")] == 1


def test_a_body_at_the_limit_is_read(serve: Callable[..., Client], seed_model: Model) -> None:
    body = json.dumps({"features": [[0.0] * 20]}).encode()
    client = serve(seed_model, max_body_size=len(body))
    assert client.post("/predict", content=body).status_code == 200


def test_gzip_bodies_are_decompressed(client: Client, seed_data: Any, seed_model: Model) -> None:
    data = rows(seed_data)
    body = gzip.compress(json.dumps({"features": data}).encode())
    response = client.post(
        "/predict",
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json()["prediction"] == seed_model.predict(data).tolist()
    deflated = zlib.compress(json.dumps({"inputs": data}).encode())
    response = client.post(
        "/invocations", content=deflated, headers={"content-encoding": "deflate"}
    )
    assert response.json() == {"predictions": seed_model.predict(data).tolist()}


def test_a_gzip_bomb_is_a_413(serve: Callable[..., Client], seed_model: Model) -> None:
    client = serve(seed_model, max_body_size=10_000)
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    assert len(bomb) < 10_000
    response = client.post("/predict", content=bomb, headers={"content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decompresses" in error_of(response)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-encoding": "br"}, 415),
        ({"content-encoding": "gzip"}, 400),
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/json; charset=latin-1"}, 415),
        ({"content-length": "abc"}, 400),
    ],
)
def test_bad_encodings_and_types(client: Client, headers: dict[str, str], status: int) -> None:
    response = client.post("/predict", content=b'{"features": [[0]]}', headers=headers)
    assert response.status_code == status
    error_of(response)


def test_large_responses_are_gzipped_for_clients_that_accept_it(
    client: Client, seed_data: Any, seed_model: Model
) -> None:
    data = rows(seed_data, 200)
    body = {"features": data, "return": ["predict_proba"]}
    response = client.post("/predict", json=body, headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) < len(response.content)
    assert response.json()["prediction"] == seed_model.predict(data).tolist()
    plain = client.post("/predict", json=body, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    small = client.get("/healthz", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers


def test_compression_can_be_turned_off(
    serve: Callable[..., Client], seed_model: Model, seed_data: Any
) -> None:
    client = serve(seed_model, compress_min_size=None)
    body = {"features": rows(seed_data, 200), "return": ["predict_proba"]}
    response = client.post("/predict", json=body, headers={"accept-encoding": "gzip"})
    assert len(response.content) > 1024
    assert "content-encoding" not in response.headers


# -- states ----------------------------------------------------------------------------------


def test_not_ready_until_started(seed_model: Model, seed_data: Any) -> None:
    app = App(seed_model)
    client = Client(WSGIApp(app))
    assert app.state == "loading"
    assert client.get("/healthz").status_code == 200
    for response in (
        client.get("/readyz"),
        client.post("/predict", json={"features": rows(seed_data)}),
        client.get("/v2/models/seed"),
        client.get("/ping"),
    ):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "loading" in response.json()["error"]
    assert client.get("/v2/health/ready").json() == {"ready": False}
    assert client.get("/v2/models/seed/ready").json() == {"name": "seed", "ready": False}
    assert client.get("/v2/health/live").json() == {"live": True}
    app.start()
    app.start()  # idempotent
    assert client.get("/readyz").json() == {"status": "ready", "models": ["seed"]}
    assert client.post("/predict", json={"features": rows(seed_data)}).status_code == 200


def test_draining_refuses_predictions(client: Client, seed_data: Any) -> None:
    client.core.begin_drain()
    assert client.core.state == "draining"
    response = client.post("/predict", json={"features": rows(seed_data)})
    assert response.status_code == 503
    assert "shutting down" in error_of(response)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    assert client.core.drain(timeout=1.0)
    assert client.core.state == "stopped"
    assert "modelkit_ready 0" in client.get("/metrics").text


def test_failed_start_is_remembered(tmp_path: Path) -> None:
    app = App("missing@production", registry=str(tmp_path / "reg"))
    with pytest.raises(NotFoundError):
        app.start()
    assert app.state == "failed"
    with pytest.raises(ServingError, match="failed to start"):
        app.start()
    response = Client(WSGIApp(app)).post("/predict", json={"features": [[0.0]]})
    assert response.status_code == 503
    assert "could not load" in error_of(response)


# -- model lists -----------------------------------------------------------------------------


def test_several_models_default_and_select(
    serve: Callable[..., Client], seed_model: Model, reg_model: Model, seed_data: Any
) -> None:
    client = serve(seed_model, {"ridge": reg_model}, other=seed_model)
    assert list(client.core.models) == ["seed", "ridge", "other"]
    data = rows(seed_data)
    default = client.post("/predict", json={"features": data}).json()
    assert default["model"] == "seed"
    selected = client.post("/predict?model=other", json={"features": data}).json()
    assert selected["model"] == "other"
    assert selected["prediction"] == default["prediction"]
    ridge = client.post("/invocations?model=ridge", json={"inputs": [[0.0] * 5]}).json()
    assert ridge["predictions"] == reg_model.predict([[0.0] * 5]).tolist()
    assert client.core.models["ridge"].model.name == "ridge"
    unknown = client.post("/predict?model=nope", json={"features": data})
    assert unknown.status_code == 404
    assert "'seed', 'ridge', 'other'" in error_of(unknown)


def test_model_list_errors(seed_model: Model) -> None:
    with pytest.raises(ServingError, match="at least one"):
        App()
    with pytest.raises(ServingError, match="without a name"):
        App(Model(seed_model.estimator, seed_model.signature))
    with pytest.raises(UnsupportedModelError, match=r"Model\.wrap"):
        App(seed_model.estimator)
    with pytest.raises(ServingError, match="without '/'"):
        App({"a/b": seed_model})
    with pytest.raises(ServingError, match="max_body_size"):
        App(seed_model, max_body_size=0)
    app = App(seed_model, seed=seed_model)
    with pytest.raises(ServingError, match="two served models are named 'seed'"):
        app.start()
    assert "seed" in repr(App(seed_model, x="churn@production"))


# -- registry URIs ---------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path, seed_model: Model, reg_model: Model) -> Registry:
    reg = Registry(str(tmp_path / "reg"))
    reg.register("churn", Artifact.from_model(reg_model, name="churn"))
    reg.register("churn", Artifact.from_model(seed_model, name="churn"))
    reg.set_alias("churn", "production", 2)
    return reg


def test_registry_uris_are_resolved_and_reported(
    serve: Callable[..., Client], registry: Registry, seed_model: Model, seed_data: Any
) -> None:
    client = serve("churn@production", {"old": "churn/1"}, registry=registry)
    served = client.core.models
    assert served["churn"].version == "2"
    assert served["churn"].uri == "churn@production"
    assert served["churn"].sha256 == registry.get("churn", 2).artifact_sha256
    assert served["old"].version == "1"
    data = rows(seed_data)
    body = client.post("/predict", json={"features": data}).json()
    assert body["model"] == "churn"
    assert body["version"] == "2"
    assert body["prediction"] == seed_model.predict(data).tolist()
    assert client.get("/v2/models/churn/versions/2").json()["versions"] == ["2"]
    wrong = client.get("/v2/models/churn/versions/1")
    assert wrong.status_code == 404
    assert "'2'" in error_of(wrong)
    metrics = client.get("/metrics").text
    sha = served["churn"].sha256
    info = f'model="churn",version="2",uri="churn@production",sha256="{sha}"'
    assert f"modelkit_model_info{{{info}}} 1" in metrics
    registry.close()


def test_registry_url_and_default_registry(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.close()
    app = App("churn@production", registry=str(tmp_path / "reg"))
    app.start()
    assert app.models["churn"].version == "2"
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / "reg"))
    app = App("models:/churn/1")
    app.start()
    assert app.models["churn"].version == "1"


def test_a_tampered_artifact_is_refused_at_start(tmp_path: Path, registry: Registry) -> None:
    key = registry.get("churn", 2).artifact_sha256
    path = Path(registry.store.get(key))
    payload = path / "model.joblib"
    payload.chmod(0o644)
    payload.write_bytes(payload.read_bytes() + b"tampered")
    app = App("churn@production", registry=registry)
    with pytest.raises(ArtifactIntegrityError):
        app.start()
    assert app.state == "failed"
    registry.close()
