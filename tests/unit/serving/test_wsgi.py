"""The WSGI adapter: environ to request, body reading and limits, start-up loading."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from modelkit.exceptions import NotFoundError
from modelkit.model import Model
from modelkit.serving import WSGIApp, wsgi_app


class Unreadable(io.RawIOBase):
    """A body stream that must not be read."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


def call(
    app: WSGIApp, method: str, path: str, body: Any = b"", **environ: Any
) -> tuple[str, dict[str, str], bytes]:
    """Call a WSGI app directly; return status line, headers and body."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(body) if isinstance(body, bytes) else body,
        **environ,
    }
    chunks = app(env, start_response)
    return captured["status"], captured["headers"], b"".join(chunks)


@pytest.fixture
def app(seed_model: Model) -> WSGIApp:
    return wsgi_app(seed_model, max_body_size=1000)


def test_status_line_and_headers(app: WSGIApp) -> None:
    status, headers, body = call(app, "GET", "/healthz")
    assert status == "200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert json.loads(body) == {"status": "ok", "state": "ready"}
    assert repr(app).startswith("WSGIApp(App(state='ready'")


def test_an_oversized_body_is_refused_unread(app: WSGIApp) -> None:
    status, _, body = call(app, "POST", "/predict", Unreadable(), CONTENT_LENGTH="1001")
    assert status == "413 Request Entity Too Large"
    assert "1000 bytes" in json.loads(body)["error"]


def test_a_truncated_body_is_a_400(app: WSGIApp) -> None:
    status, _, body = call(app, "POST", "/predict", b'{"features"', CONTENT_LENGTH="50")
    assert status.startswith("400")
    assert "ended after 11 of 50 bytes" in json.loads(body)["error"]


def test_a_terminated_stream_without_length_is_read_up_to_the_limit(app: WSGIApp) -> None:
    payload = json.dumps({"features": [[0.5] * 20]}).encode()
    status, _, body = call(app, "POST", "/predict", payload, **{"wsgi.input_terminated": True})
    assert status == "200 OK", body
    status, _, _ = call(
        app, "POST", "/predict", b" " * 70_000 + payload, HTTP_TRANSFER_ENCODING="chunked"
    )
    assert status.startswith("413")


def test_without_length_or_termination_there_is_no_body(app: WSGIApp) -> None:
    status, _, body = call(app, "POST", "/predict", Unreadable())
    assert status.startswith("400")
    assert json.loads(body)["error"].startswith("request body is not valid JSON")
    status, _, _ = call(app, "POST", "/predict", None)
    assert status.startswith("400")


def test_utf8_paths(seed_model: Model) -> None:
    app = wsgi_app({"café": seed_model})
    path = "/v2/models/café/ready".encode().decode("latin-1")  # as PEP 3333 hands it over
    status, _, body = call(app, "GET", path)
    assert status == "200 OK"
    assert json.loads(body) == {"name": "café", "ready": True}
    status, _, body = call(app, "GET", "/v2/models/\xff")
    assert status.startswith("404")


def test_models_are_loaded_when_the_app_is_built(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        wsgi_app("churn@production", registry=str(tmp_path / "empty"))
