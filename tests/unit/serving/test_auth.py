"""Authentication: API keys from the environment or a file, the hook, open routes, OpenAPI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest
from tests.unit.serving.helpers import Client, error_of

from modelkit.default_plugins import api_key_auth
from modelkit.default_plugins.api_key_auth import APIKeyAuthenticator, from_environment
from modelkit.exceptions import ServingError
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.serving import App, HTTPError, Request, Response, Route
from modelkit.serving.auth import PUBLIC_ROUTES, Authentication, Identity

KEY = "k-0123456789abcdef-first"
OTHER = "k-fedcba9876543210-second"
ROW = [[0.1] * 20]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two API keys in MODELKIT_API_KEYS."""
    monkeypatch.setenv("MODELKIT_API_KEYS", f" {KEY} ,{OTHER},")


def test_without_keys_nothing_is_authenticated(client: Client) -> None:
    assert client.post("/predict", json={"features": ROW}).status_code == 200
    document = client.get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    assert "401" not in document["paths"]["/predict"]["post"]["responses"]
    assert not client.core.authentication.enabled


@pytest.mark.usefixtures("keyed")
def test_keys_from_the_environment_protect_predictions(
    serve: Callable[..., Client], seed_model: Model
) -> None:
    client = serve(seed_model)
    missing = client.post("/predict", json={"features": ROW})
    assert missing.status_code == 401
    assert "requires authentication" in error_of(missing)
    assert missing.headers["www-authenticate"] == 'Bearer realm="modelkit"'
    assert missing.headers["x-request-id"]
    wrong = client.post("/predict", json={"features": ROW}, headers=bearer(KEY + "x"))
    assert wrong.status_code == 401
    assert error_of(wrong) == "the API key in the Authorization header is not valid"
    assert wrong.headers["www-authenticate"] == 'Bearer realm="modelkit", error="invalid_token"'
    for key in (KEY, OTHER):
        answer = client.post("/predict", json={"features": ROW}, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == seed_model.predict(ROW).tolist()
    lower = client.post(
        "/predict", json={"features": ROW}, headers={"authorization": f"bearer {KEY}"}
    )
    assert lower.status_code == 200
    infer = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ROW[0]}]}
    assert client.post("/v2/models/seed/infer", json=infer).status_code == 401
    assert client.post("/v2/models/seed/infer", json=infer, headers=bearer(KEY)).status_code == 200
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/v2/models/seed").status_code == 401
    metrics = client.get("/metrics").text
    assert 'route="/predict",model="seed",status="401"' in metrics


@pytest.mark.usefixtures("keyed")
def test_health_readiness_and_metrics_stay_open(
    serve: Callable[..., Client], seed_model: Model
) -> None:
    client = serve(seed_model)
    for path in PUBLIC_ROUTES:
        assert client.get(path).status_code == 200, path
    assert client.request("HEAD", "/healthz").status_code == 200


@pytest.mark.usefixtures("keyed")
def test_public_routes_can_be_narrowed(
    serve: Callable[..., Client], seed_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = serve(seed_model, public_routes=["/healthz"])
    assert closed.get("/healthz").status_code == 200
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers=bearer(KEY)).status_code == 200
    monkeypatch.setenv("MODELKIT_PUBLIC_ROUTES", "")
    everything = serve(seed_model)
    assert everything.get("/healthz").status_code == 401
    monkeypatch.setenv("MODELKIT_PUBLIC_ROUTES", "/readyz, /openapi.json")
    some = serve(seed_model)
    assert some.get("/openapi.json").status_code == 200
    assert some.get("/readyz").status_code == 200
    assert some.get("/healthz").status_code == 401


@pytest.mark.usefixtures("keyed")
def test_malformed_authorization_headers(client: Client) -> None:
    basic = client.post("/predict", json={"features": ROW}, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    assert "requires authentication" in error_of(basic)
    for raw in ("Bearer", "Bearer   ", f"Bearer {KEY} {KEY}"):
        answer = client.post("/predict", json={"features": ROW}, headers={"Authorization": raw})
        assert answer.status_code == 401, raw
        assert "malformed Authorization header" in error_of(answer)
        assert 'error="invalid_request"' in answer.headers["www-authenticate"]


@pytest.mark.usefixtures("keyed")
def test_credentials_are_checked_before_limits_and_readiness(
    serve: Callable[..., Client], seed_model: Model
) -> None:
    client = serve(seed_model, max_body_size=100)
    big = json.dumps({"features": ROW * 10})
    headers = {"Content-Type": "application/json"}
    assert client.post("/predict", content=big, headers=headers).status_code == 401
    keyed = {**headers, **bearer(KEY)}
    assert client.post("/predict", content=big, headers=keyed).status_code == 413
    client.core.begin_drain()
    assert client.post("/predict", json={"features": ROW}).status_code == 401
    assert client.post("/predict", json={"features": ROW}, headers=bearer(KEY)).status_code == 503


def test_keys_from_a_file_with_comments_and_digests(
    serve: Callable[..., Client],
    seed_model: Model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hidden = "only-its-digest-is-on-disk"
    keys = tmp_path / "keys.txt"
    keys.write_text(
        f"# rotated monthly\n\n{KEY}\n  sha256:{hashlib.sha256(hidden.encode()).hexdigest()}  \n"
    )
    monkeypatch.setenv("MODELKIT_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("MODELKIT_API_KEYS", OTHER)  # pooled with the file's keys
    client = serve(seed_model)
    for key in (KEY, hidden, OTHER):
        assert (
            client.post("/predict", json={"features": ROW}, headers=bearer(key)).status_code == 200
        )
    assert client.post("/predict", json={"features": ROW}).status_code == 401
    digest_line = f"sha256:{hashlib.sha256(hidden.encode()).hexdigest()}"
    assert (
        client.post("/predict", json={"features": ROW}, headers=bearer(digest_line)).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MODELKIT_API_KEYS": " , "}, "holds no key"),
        ({"MODELKIT_API_KEYS": "short"}, "at least 16"),
        ({"MODELKIT_API_KEYS": "has\ttab-0123456789abcdef"}, "visible ASCII"),
        ({"MODELKIT_API_KEYS_FILE": "/nonexistent/keys.txt"}, "cannot be read"),
    ],
)
def test_a_broken_key_configuration_stops_the_start(
    seed_model: Model, environ: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ServingError, match=message):
        App(seed_model)


def test_a_key_file_without_keys_stops_the_start(seed_model: Model, tmp_path: Path) -> None:
    empty = tmp_path / "keys.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ServingError, match="holds no key"):
        from_environment({"MODELKIT_API_KEYS_FILE": str(empty)})
    empty.write_bytes(b"\xff\xfe")
    with pytest.raises(ServingError, match="not UTF-8"):
        from_environment({"MODELKIT_API_KEYS_FILE": str(empty)})


def test_the_auth_option(seed_model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServingError, match="auth=True but no authenticator"):
        App(seed_model, auth=True)
    with pytest.raises(ServingError, match="'api_key' is not configured"):
        App(seed_model, auth="api_key")
    with pytest.raises(ServingError, match=r"no authenticator named 'oauth'.*'api_key'"):
        App(seed_model, auth=["oauth"])
    with pytest.raises(ServingError, match="selects no authenticator"):
        App(seed_model, auth=[])
    with pytest.raises(ServingError, match="got object"):
        App(seed_model, auth=object())  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="unknown routes"):
        App(seed_model, public_routes=["/healthz", "/nope"])
    with pytest.raises(ServingError, match="list of route templates"):
        App(seed_model, public_routes="/healthz")
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    assert App(seed_model, auth=True).authentication.enabled
    assert App(seed_model, auth="api_key").authentication.enabled
    off = App(seed_model, auth=False)
    off.start()
    assert not off.authentication.enabled
    assert (
        off.handle(Request("POST", "/predict", body=json.dumps({"features": ROW}).encode())).status
        == 200
    )
    given = App(seed_model, auth=APIKeyAuthenticator([OTHER]))
    given.start()
    request = Request("POST", "/predict", body=json.dumps({"features": ROW}).encode())
    assert given.handle(request).status == 401
    keyed = Request("POST", "/predict", headers=bearer(OTHER), body=request.body)
    assert given.handle(keyed).status == 200


def test_every_digest_is_compared_and_keys_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = api_key_auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_key_auth.hmac, "compare_digest", counting)
    keys = [f"key-number-{i}-0123456789" for i in range(4)]
    authenticator = APIKeyAuthenticator(keys)
    identity = authenticator.authenticate(Request("GET", "/", headers=bearer(keys[0])))
    assert identity == Identity(
        principal="key:" + hashlib.sha256(keys[0].encode()).hexdigest()[:8], method="api_key"
    )
    assert len(calls) == 4  # no early exit at the first (matching) key
    assert {b for _, b in calls} == {hashlib.sha256(k.encode()).digest() for k in keys}
    assert all(key not in repr(authenticator) for key in keys)
    assert repr(authenticator) == "APIKeyAuthenticator(4 keys)"
    with pytest.raises(ServingError, match="at least one key"):
        APIKeyAuthenticator([])
    with pytest.raises(ServingError, match="32 bytes"):
        APIKeyAuthenticator(digests=["abcd"])
    with pytest.raises(ServingError, match="64 hex digits"):
        APIKeyAuthenticator(digests=["not hex"])


class HeaderToken:
    """A third-party authenticator: ``X-Token: <token>``."""

    challenge = 'Token realm="tests"'

    def __init__(self, token: str) -> None:
        self.token = token

    def authenticate(self, request: Request) -> Identity | None:
        given = request.headers.get("x-token")
        if given is None:
            return None
        if given != self.token:
            raise HTTPError(401, "that token is not valid")
        return Identity(principal="robot", method="header-token", claims={"scope": "predict"})


class TokenPlugin:
    """Registers ``header_token``, configured by ``TEST_TOKEN``."""

    @hookimpl
    def register_authenticators(self, register: Callable[[str, Any], None]) -> None:
        def build(environ: Mapping[str, str]) -> HeaderToken | None:
            token = environ.get("TEST_TOKEN")
            return None if token is None else HeaderToken(token)

        register("header_token", build)


def whoami(app: App, request: Request, params: Mapping[str, str]) -> Response:
    identity = request.identity
    assert identity is not None
    return Response.json(200, {"principal": identity.principal, "method": identity.method})


@pytest.mark.usefixtures("keyed")
def test_plugins_add_authenticators_and_any_of_them_accepts(
    serve: Callable[..., Client],
    seed_model: Model,
    plugin_manager: pluggy.PluginManager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin_manager.register(TokenPlugin(), name="token-plugin")
    monkeypatch.setenv("TEST_TOKEN", "s3cret")
    client = serve(seed_model)
    core = client.core
    core.routes = (*core.routes, Route("GET", "/whoami", whoami, "Who am I"))
    missing = client.get("/whoami")
    assert missing.status_code == 401
    assert missing.headers.get_list("www-authenticate") == [
        'Bearer realm="modelkit"',
        'Token realm="tests"',
    ]
    assert client.get("/whoami", headers={"X-Token": "s3cret"}).json() == {
        "principal": "robot",
        "method": "header-token",
    }
    by_key = client.get("/whoami", headers=bearer(KEY)).json()
    assert by_key == {
        "principal": "key:" + hashlib.sha256(KEY.encode()).hexdigest()[:8],
        "method": "api_key",
    }
    refused = client.get("/whoami", headers={"X-Token": "guess"})
    assert refused.status_code == 401
    assert error_of(refused) == "that token is not valid"
    assert refused.headers.get_list("www-authenticate") == [
        'Bearer realm="modelkit"',
        'Token realm="tests"',
    ]
    rescued = client.get("/whoami", headers={"X-Token": "guess", **bearer(KEY)})
    assert rescued.status_code == 200  # another authenticator accepted it
    only = App(seed_model, auth="header_token")
    assert [type(a) for a in only.authentication.authenticators] == [HeaderToken]


def test_an_authenticator_may_refuse_with_another_status() -> None:
    class Forbidding:
        challenge = "Bearer"

        def authenticate(self, request: Request) -> Identity | None:
            raise HTTPError(403, "this key may not predict")

    authentication = Authentication((Forbidding(),))
    with pytest.raises(HTTPError, match="may not predict") as caught:
        authentication.check(Request("GET", "/"))
    assert caught.value.status == 403
    assert authentication.protects("/predict")
    assert not authentication.protects("/healthz")
    assert not Authentication(()).protects("/predict")


@pytest.mark.usefixtures("keyed")
def test_the_openapi_document_declares_the_scheme(client: Client) -> None:
    document = client.get("/openapi.json", headers=bearer(KEY)).json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = document["paths"]
    predict = paths["/predict"]["post"]
    assert predict["security"] == [{"bearerAuth": []}]
    assert "401" in predict["responses"]
    assert paths["/feedback"]["post"]["security"] == [{"bearerAuth": []}]
    healthz = paths["/healthz"]["get"]
    assert healthz["security"] == []
    assert "401" not in healthz["responses"]
