"""Every POST route, fuzzed over a real loopback server: malformed input is a 4xx JSON answer.

The application (a registry model, an in-process model with a categorical feature, API keys,
feedback recording) runs on a threaded ``wsgiref`` server in a thread of the test process.
Hypothesis sends bodies (raw bytes, arbitrary JSON, documents shaped like each protocol's,
compressed or not, with binary tensor tails), headers (content types, encodings,
Inference-Header-Content-Length, Authorization, X-Request-ID) and path and query parameters.
Every answer must be a 2xx, or a 4xx with a JSON ``{"error": …}`` body; never a 5xx, and never
a hang (the client gives up after a timeout, which counts as a failure). A second property
sends raw HTTP with arbitrary Content-Length headers and bodies that end early.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import socketserver
import string
import threading
import zlib
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelkit import Artifact
from modelkit.default_plugins.api_key_auth import APIKeyAuthenticator
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import WSGIApp, wsgi_app
from modelkit.serving._v2 import DATATYPES

pytestmark = pytest.mark.integration

KEY = "fuzzing-key-0123456789abcdef"
EXAMPLES = 150  # per route: about 1,000 requests in all, a few seconds on loopback
TIMEOUT = 20.0


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextlib.contextmanager
def loopback(app: WSGIApp) -> Iterator[tuple[str, int]]:
    """Serve ``app`` on a free loopback port from a thread; yield (host, port)."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WSGIApp, str, str]]:
    """(application, base URL, a recorded prediction id) of the fuzzed server."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = make_classification(n_samples=200, n_features=20, random_state=1)
    churn = Model.wrap(LogisticRegression(solver="liblinear").fit(X, y), sample=X, name="churn")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 100).astype(float),
            "color": rng.choice(["blue", "red"], 100),
        }
    )
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, (frame["age"] > 50).to_numpy().astype(int))
    mixed = Model.wrap(pipeline, sample=frame, name="mixed")
    registry = Registry(str(tmp_path_factory.mktemp("fuzz") / "reg"))
    registry.register("churn", Artifact.from_model(churn, name="churn"))
    registry.set_alias("churn", "production", 1)
    app = wsgi_app(
        "churn@production",
        registry=registry,
        mixed=mixed,
        auth=APIKeyAuthenticator([KEY]),
        max_body_size=64 * 1024,
    )
    with loopback(app) as (host, port):
        base = f"http://{host}:{port}"
        answer = httpx.post(
            f"{base}/predict",
            json={"features": X[:2].tolist()},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200, answer.text
        yield app, base, answer.json()["id"]
    app.app.drain()
    registry.close()


# -- strategies ------------------------------------------------------------------------------

HEADER_TEXT = st.text(alphabet=string.printable[:95], max_size=40).map(str.strip)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=30,
)
ROWS = st.lists(
    st.lists(SCALARS | st.floats(-10, 10), min_size=0, max_size=22)
    | st.dictionaries(st.sampled_from(["age", "color", "f0", "x"]), SCALARS, max_size=3),
    max_size=4,
)
SHAPES = st.lists(
    st.integers(min_value=-2, max_value=4) | st.integers(min_value=0, max_value=2**40),
    max_size=3,
)
DATATYPE = st.sampled_from([*DATATYPES, "FP128", "", "fp64"]) | st.text(max_size=6)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": draw(st.sampled_from(["input-0", "age", "color", "x", ""]) | JSON),
        "shape": draw(SHAPES | JSON),
        "datatype": draw(DATATYPE),
    }
    if draw(st.booleans()):
        spec["data"] = draw(ROWS | JSON | st.lists(st.floats(-5, 5), max_size=45))
    if draw(st.booleans()):
        spec["parameters"] = draw(
            st.fixed_dictionaries(
                {"binary_data_size": st.integers(min_value=-1, max_value=400) | JSON}
            )
            | JSON
        )
    return spec


INFER = st.fixed_dictionaries(
    {"inputs": st.lists(tensors(), max_size=3) | JSON},
    optional={
        "id": JSON,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["predict", "predict_proba", "nope"]) | JSON},
                optional={"parameters": st.fixed_dictionaries({"binary_data": JSON}) | JSON},
            ),
            max_size=3,
        )
        | JSON,
        "parameters": st.fixed_dictionaries({"binary_data_output": JSON}) | JSON,
    },
)
PREDICT = st.fixed_dictionaries(
    {"features": ROWS | JSON},
    optional={"return": st.lists(st.sampled_from(["predict_proba", "x"])) | JSON},
)
INVOCATIONS = st.dictionaries(
    st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params"]),
    ROWS
    | JSON
    | st.fixed_dictionaries(
        {"columns": st.lists(st.sampled_from(["age", "color", "f0"]), max_size=3) | JSON},
        optional={"data": ROWS | JSON},
    ),
    max_size=3,
)


def feedback_bodies(known: str) -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries(
        {"id": st.sampled_from([known, "unknown-id"]) | JSON, "label": JSON},
        optional={"row": JSON},
    )
    return item | st.lists(item, max_size=4)


NUMBERS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def valid(route: str, known: str) -> st.SearchStrategy[Any]:
    """Well-formed documents for the 20-feature model (headers and paths may still spoil them)."""
    table = st.integers(1, 3).flatmap(
        lambda n: st.lists(st.lists(NUMBERS, min_size=20, max_size=20), min_size=n, max_size=n)
    )
    if route.endswith("/infer"):
        return table.map(
            lambda rows: {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [len(rows), 20],
                        "datatype": "FP64",
                        "data": rows,
                    }
                ]
            }
        )
    if route == "/admin/reload":
        return st.just({})
    if route == "/feedback":
        return st.lists(st.integers(0, 1) | st.none(), min_size=2, max_size=2).map(
            lambda labels: {"id": known, "label": labels}
        )
    key = "features" if route == "/predict" else "instances"
    return table.map(lambda rows: {key: rows})


def shaped(route: str, known: str) -> st.SearchStrategy[Any]:
    if route.endswith("/infer"):
        return INFER
    return {
        "/predict": PREDICT,
        "/invocations": INVOCATIONS,
        "/feedback": feedback_bodies(known),
        "/admin/reload": JSON,
    }[route]


@st.composite
def requests(draw: st.DrawFn, route: str, known: str) -> tuple[str, dict[str, str], bytes]:
    """(path and query, headers, body) for one POST to ``route``."""
    path = route
    for name, choices in (("{name}", ["churn", "mixed"]), ("{version}", ["1", "2"])):
        value = draw(st.sampled_from(choices) | st.text(string.ascii_letters + "-._~", max_size=8))
        path = path.replace(name, value or "x")
    if draw(st.integers(0, 3)) == 0:
        path += "?model=" + draw(st.sampled_from(["churn", "mixed", "nope", ""]))
    kind = draw(st.sampled_from(["valid", "valid", "shaped", "shaped", "json", "bytes", "csv"]))
    binary_tail = None
    if route.endswith("/infer") and draw(st.integers(0, 3)) == 0:
        kind, binary_tail = "binary", draw(st.binary(max_size=64))
    if kind == "binary":
        assert binary_tail is not None
        spec = {
            "name": "input-0",
            "shape": draw(SHAPES),
            "datatype": draw(st.sampled_from(list(DATATYPES))),
            "parameters": {"binary_data_size": len(binary_tail)},
        }
        body = json.dumps({"inputs": [spec]}).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=600))
    elif kind == "csv":
        body = draw(st.text(alphabet='age,color,f0\n0123456789.-"x ', max_size=200)).encode()
    else:
        strategy = {"valid": valid(route, known), "shaped": shaped(route, known)}.get(kind, JSON)
        document = draw(strategy)
        body = json.dumps(document, allow_nan=True).encode()
    headers: dict[str, str] = {}
    auth = draw(st.integers(0, 9))
    if auth < 8:
        headers["Authorization"] = f"Bearer {KEY}"
    elif auth == 8:
        headers["Authorization"] = draw(HEADER_TEXT)
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                "application/json",
                "application/json; charset=latin-1",
                "text/csv",
                "text/plain",
                "application/octet-stream",
                "",
                None,
            ]
        )
        | HEADER_TEXT
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    if binary_tail is not None:  # a consistent binary request: JSON length, then the data
        headers["Inference-Header-Content-Length"] = str(len(body))
        body += binary_tail
    elif route.endswith("/infer") and draw(st.booleans()):
        tail = draw(st.binary(max_size=400))
        headers["Inference-Header-Content-Length"] = draw(
            st.sampled_from([str(len(body)), str(len(body) + 1), "0", "-5", "abc", ""])
            | st.integers(-10, 2000).map(str)
        )
        body += tail
    encoding = draw(st.sampled_from([None, "gzip", "deflate", "identity", "br", "gzip, gzip"]))
    if encoding is not None:
        if encoding == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
        elif encoding == "deflate" and draw(st.booleans()):
            body = zlib.compress(body)
        elif encoding == "gzip, gzip" and draw(st.booleans()):
            body = gzip.compress(gzip.compress(body))
        headers["Content-Encoding"] = encoding
    if draw(st.booleans()):
        headers["X-Request-ID"] = draw(HEADER_TEXT)
    if draw(st.booleans()):
        headers["Accept-Encoding"] = draw(st.sampled_from(["gzip", "gzip;q=0", "*"]) | HEADER_TEXT)
    return path, headers, body


def problem(answer: httpx.Response) -> str | None:
    """What is wrong with an answer, or ``None``."""
    if answer.status_code >= 500:
        return f"{answer.status_code} {answer.text[:300]}"
    if answer.status_code >= 400:
        try:
            document = answer.json()
        except ValueError:
            return f"{answer.status_code} with a body that is not JSON: {answer.content[:200]!r}"
        if not isinstance(document, dict) or not isinstance(document.get("error"), str):
            return f'{answer.status_code} without an "error" message: {document!r}'
    return None


def test_every_post_route_answers_malformed_input_with_a_4xx(
    server: tuple[WSGIApp, str, str],
) -> None:
    app, base, known = server
    routes = sorted(route.template for route in app.app.routes if route.method == "POST")
    assert "/feedback" in routes
    assert "/v2/models/{name}/infer" in routes
    counts = dict.fromkeys(routes, 0)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:

        def fuzzer(route: str) -> Any:
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(request=requests(route, known))
            def fuzz(request: tuple[str, dict[str, str], bytes]) -> None:
                path, headers, body = request
                counts[route] += 1
                try:
                    answer = client.post(path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"POST {path}: {type(exc).__name__}: {exc}")
                    return
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                found = problem(answer)
                if found is not None:
                    failures.append(f"POST {path} {headers} {body[:200]!r}: {found}")

            return fuzz

        for route in routes:
            fuzzer(route)()
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    summary = (
        f"fuzzed POST routes {routes}; examples per route {counts}; "
        f"{sum(counts.values())} requests; answers by status {dict(sorted(statuses.items()))}; "
        f"5xx answers: {server_errors}"
    )
    print(summary)
    assert not failures, f"{summary}; {len(failures)} bad answers, first ones: {failures[:5]}"
    assert server_errors == 0, summary
    assert all(n >= EXAMPLES // 2 for n in counts.values()), summary
    assert any(400 <= status < 500 for status in statuses), summary
    assert statuses.get(200, 0) > 0, summary  # some inputs were valid: the fuzz reached models


@settings(max_examples=100, deadline=None, database=None)
@given(
    datatype=st.sampled_from(list(DATATYPES)),
    shape=SHAPES,
    tail=st.binary(max_size=64),
    split=st.integers(0, 3),
)
def test_binary_tensors_of_any_shape_and_datatype_get_an_answer(
    server: tuple[WSGIApp, str, str], datatype: str, shape: list[int], tail: bytes, split: int
) -> None:
    _, base, _ = server
    spec = {"name": "input-0", "shape": shape, "datatype": datatype}
    cut = len(tail) * split // 3  # split > 0: two inputs share the binary data
    sizes = [cut, len(tail) - cut] if split else [len(tail)]
    specs = [{**spec, "parameters": {"binary_data_size": size}} for size in sizes]
    header = json.dumps({"inputs": specs}).encode()
    answer = httpx.post(
        f"{base}/v2/models/churn/infer",
        content=header + tail,
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=TIMEOUT,
    )
    assert problem(answer) is None, (datatype, shape, len(tail), problem(answer))


RAW_LENGTHS = (
    st.integers(min_value=-5, max_value=200).map(str)
    | st.sampled_from(["", "abc", "1e3", "0x10", " 7", "99999999999999999999", "5, 5"])
    | st.just(None)
)


@settings(max_examples=60, deadline=None, database=None)
@given(
    route=st.sampled_from(["/predict", "/feedback", "/v2/models/churn/infer", "/invocations"]),
    length=RAW_LENGTHS,
    body=st.binary(max_size=120) | st.just(b'{"features": [[0.5]]}'),
)
def test_raw_content_lengths_and_short_bodies_get_a_4xx(
    server: tuple[WSGIApp, str, str], route: str, length: str | None, body: bytes
) -> None:
    _, base, _ = server
    host, port = base.removeprefix("http://").split(":")
    head = [
        f"POST {route} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {KEY}",
        "Content-Type: application/json",
        "Connection: close",
    ]
    if length is not None:
        head.append(f"Content-Length: {length}")
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # the body ends here, whatever Content-Length said
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert 200 <= status < 500, (route, length, body, received[:300])
    if status >= 400:
        payload = rest.partition(b"\r\n\r\n")[2]
        assert isinstance(json.loads(payload)["error"], str), received[:300]
