"""The seed ``/predict`` and MLflow ``/invocations`` protocols, through both adapters."""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.serving.helpers import Client, error_of

from modelkit.model import Model

SEED_CURL_FEATURES = [0.1, -0.5, 1.2, 0.3, -1.1, 0.0, 2.4, -0.7, 0.9, 1.5,
                      -0.2, 0.6, -1.8, 0.4, 0.05, -0.33, 1.1, -2.0, 0.75, 0.2]  # fmt: skip


def names(n: int) -> list[str]:
    return [f"f{j}" for j in range(n)]


# -- the seed protocol -----------------------------------------------------------------------


def test_the_seed_curl_line_works_unchanged(client: Client, seed_model: Model) -> None:
    """``curl -X POST -H "Content-Type: application/json" -d '{"features": [[0.1, ...]]}'``."""
    body = '{"features": [[' + ", ".join(map(repr, SEED_CURL_FEATURES)) + "]]}"
    response = client.post(
        "/predict", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    document = response.json()
    assert document["prediction"] == seed_model.predict([SEED_CURL_FEATURES]).tolist()
    assert document["model"] == "seed"
    assert document["version"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", document["id"])
    assert set(document) == {"prediction", "model", "version", "id"}


def test_predict_equals_in_process_predictions(
    client: Client, seed_model: Model, seed_data: Any
) -> None:
    X = seed_data[0][:50]
    document = client.post(
        "/predict", json={"features": X.tolist(), "return": ["predict_proba", "predict"]}
    ).json()
    np.testing.assert_array_equal(document["prediction"], seed_model.predict(X))
    np.testing.assert_array_equal(document["predict_proba"], seed_model.predict_proba(X))
    assert "decision_function" not in document
    ids = {
        client.post("/predict", json={"features": X[:1].tolist()}).json()["id"] for _ in range(3)
    }
    assert len(ids) == 3


def test_predict_accepts_records_and_one_flat_row(client: Client, seed_model: Model) -> None:
    row = SEED_CURL_FEATURES
    records = [dict(zip(names(20), row, strict=True))]
    expected = seed_model.predict([row]).tolist()
    assert client.post("/predict", json={"features": records}).json()["prediction"] == expected
    assert client.post("/predict", json={"features": row}).json()["prediction"] == expected
    one = client.post("/predict", json={"features": [row], "return": "decision_function"}).json()
    assert one["decision_function"] == seed_model.decision_function([row]).tolist()


@pytest.mark.parametrize(
    "body",
    [{}, {"features": None}, {"features": "1,2"}, {"features": {"f0": 1}}, [[1, 2]], "x", 3],
)
def test_missing_or_invalid_features(client: Client, body: Any) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 400
    assert error_of(response).startswith('Missing or invalid "features" key')


def test_signature_errors_are_400_with_the_model_message(client: Client) -> None:
    response = client.post("/predict", json={"features": [[0.1] * 19]})
    assert response.status_code == 400
    assert error_of(response) == "expected 20 features, got 19"
    response = client.post("/predict", json={"features": [[0.1] * 19 + ["abc"]]})
    assert error_of(response) == "feature 'f19' must be numeric, got 'abc' at row 0"


def test_return_is_checked(serve: Callable[..., Client], reg_model: Model) -> None:
    client = serve(reg_model)
    response = client.post("/predict", json={"features": [[0] * 5], "return": ["predict_proba"]})
    assert response.status_code == 400
    assert "has no predict_proba" in error_of(response)
    response = client.post("/predict", json={"features": [[0] * 5], "return": ["explain"]})
    assert "unknown methods ['explain']" in error_of(response)
    response = client.post("/predict", json={"features": [[0] * 5], "return": [1]})
    assert response.status_code == 400


def test_invalid_json_is_a_400(client: Client) -> None:
    response = client.post(
        "/predict", content=b'{"features": [[1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in error_of(response)
    response = client.post(
        "/predict", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


# -- the MLflow scoring protocol -------------------------------------------------------------


def mlflow_bodies(X: np.ndarray) -> dict[str, Any]:
    cols = names(X.shape[1])
    order = cols[::-1]
    return {
        "split": {"dataframe_split": {"columns": cols, "data": X.tolist()}},
        "split reordered": {
            "dataframe_split": {"columns": order, "data": X[:, ::-1].tolist(), "index": [0, 1, 2]}
        },
        "split without columns": {"dataframe_split": {"data": X.tolist()}},
        "records": {"dataframe_records": [dict(zip(cols, r, strict=True)) for r in X.tolist()]},
        "instances": {"instances": X.tolist()},
        "instances records": {
            "instances": [dict(zip(order, r[::-1], strict=True)) for r in X.tolist()]
        },
        "instances columns": {
            "instances": {c: X[:, j].tolist() for j, c in enumerate(order[::-1])}
        },
        "inputs": {"inputs": X.tolist(), "params": {"unknown": 1}},
        "inputs one tensor": {"inputs": {"x": X.tolist()}},
    }


@pytest.mark.parametrize("form", list(mlflow_bodies(np.zeros((3, 20)))))
def test_invocations_every_json_form(
    client: Client, seed_model: Model, seed_data: Any, form: str
) -> None:
    X = seed_data[0][:3]
    response = client.post("/invocations", json=mlflow_bodies(X)[form])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": seed_model.predict(X).tolist()}


def test_invocations_params_method(client: Client, seed_model: Model, seed_data: Any) -> None:
    X = seed_data[0][:4]
    body = {"inputs": X.tolist(), "params": {"method": "predict_proba"}}
    predictions = client.post("/invocations", json=body).json()["predictions"]
    np.testing.assert_array_equal(predictions, seed_model.predict_proba(X))
    bad = client.post("/invocations", json={"inputs": X.tolist(), "params": {"method": "fit"}})
    assert bad.status_code == 400
    bad = client.post("/invocations", json={"inputs": X.tolist(), "params": [1]})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": [[0] * 20], "instances": [[0] * 20]}, "exactly one"),
        ({"data": [[0] * 20]}, "exactly one"),
        ([[0] * 20], "got a list"),
        ({"dataframe_split": [[0] * 20]}, '"dataframe_split" must be'),
        ({"dataframe_split": {"columns": ["f0"], "data": [[0] * 20]}}, "rows of 1 values"),
        ({"dataframe_split": {"columns": ["f0", 3], "data": [[0, 1]]}}, "list of feature names"),
        ({"dataframe_split": {"columns": ["a", "f0"], "data": [[0, 1]]}}, "missing features"),
        ({"dataframe_split": {"columns": names(20), "data": [[0] * 19]}}, "expected 20 features"),
        ({"dataframe_records": {"f0": 1}}, '"dataframe_records" must be'),
        ({"dataframe_records": [{"f0": 1}]}, "missing features"),
        ({"instances": {"f0": [1]}}, "missing features"),
        ({"instances": {f: [1, 2] if f != "f3" else [1] for f in names(20)}}, "one length"),
        ({"instances": {f: [[1]] for f in names(20)}}, "one length"),
        ({"instances": 5}, "list of rows"),
    ],
)
def test_invocations_errors(client: Client, body: Any, needle: str) -> None:
    response = client.post("/invocations", json=body)
    assert response.status_code == 400
    assert needle in error_of(response)


def test_invocations_csv(client: Client, seed_model: Model, seed_data: Any) -> None:
    X = seed_data[0][:7]
    frame = pd.DataFrame(X[:, ::-1], columns=names(20)[::-1])
    text = frame.to_csv(index=False)
    response = client.post(
        "/invocations", content=text.encode(), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": seed_model.predict(X).tolist()}
    bad = client.post(
        "/invocations",
        content=b"f0,f1\n1,abc\n",
        headers={"content-type": "text/csv; charset=utf-8"},
    )
    assert bad.status_code == 400
    empty = client.post("/invocations", content=b"", headers={"content-type": "text/csv"})
    assert empty.status_code == 400
    assert "CSV" in error_of(empty)
    latin = client.post("/invocations", content=b"f0\n\xff\n", headers={"content-type": "text/csv"})
    assert latin.status_code == 400


def test_invocations_csv_with_a_categorical_feature(
    serve: Callable[..., Client], mixed_model: Model, mixed_frame: pd.DataFrame
) -> None:
    client = serve(mixed_model)
    frame = mixed_frame.head(6)[["color", "income", "age"]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    response = client.post(
        "/invocations", content=buffer.getvalue().encode(), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == mixed_model.predict(mixed_frame.head(6)).tolist()
    records = mixed_frame.head(6).to_dict(orient="records")
    response = client.post("/predict", json={"features": records, "return": ["predict_proba"]})
    np.testing.assert_array_equal(
        response.json()["predict_proba"], mixed_model.predict_proba(mixed_frame.head(6))
    )


def test_invocations_unsupported_content_type(client: Client) -> None:
    response = client.post(
        "/invocations", content=b"<xml/>", headers={"content-type": "application/xml"}
    )
    assert response.status_code == 415
    assert "text/csv" in error_of(response)


def test_ping_health_and_version(client: Client) -> None:
    from modelkit import __version__

    for path in ("/ping", "/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.text == "\n"
    response = client.get("/version")
    assert response.text == __version__
    assert response.headers["content-type"].startswith("text/plain")


@given(
    st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=2),
        min_size=1,
        max_size=20,
    )
)
def test_csv_floats_are_parsed_exactly(values: list[list[float]]) -> None:
    from modelkit.serving.codecs import _csv_rows
    from modelkit.serving.core import ServedModel
    from modelkit.signature import Signature

    signature = Signature(names=["a", "b"])
    served = ServedModel(name="m", model=Model(_Echo(), signature, name="m"))
    text = "a,b\n" + "".join(f"{a!r},{b!r}\n" for a, b in values)
    frame = _csv_rows(text.encode(), served)
    np.testing.assert_array_equal(frame.to_numpy(), np.array(values))
    assert frame.to_numpy().tobytes() == np.array(values).tobytes()


class _Echo:
    def predict(self, X: Any) -> Any:
        return X


# -- malformed bodies: always a 4xx JSON error, never a 5xx ------------------------------------

KEYS = [
    "features", "return", "inputs", "outputs", "dataframe_split", "dataframe_records",
    "instances", "params", "method", "columns", "data", "index", "name", "shape", "datatype",
    "parameters", "binary_data_size", "binary_data", "binary_data_output", "id", "f0", "age",
    "color", "predict", "predict_proba", "FP64", "BYTES", "INT8", "BOOL",
]  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from(KEYS),
    st.text(max_size=4),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=30,
)


ELEMENTS = st.one_of(
    st.floats(width=32),
    st.integers(-300, 300),
    st.booleans(),
    st.none(),
    st.sampled_from(["blue", "red", "x"]),
)


@st.composite
def v2_requests(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """Inference requests that are nearly right, and the binary data that follows them."""
    inputs, blobs = [], []
    for _ in range(draw(st.integers(1, 3))):
        shape = draw(
            st.one_of(
                st.sampled_from([[1, 20], [2, 20], [3], [1], [2, 1], [1, 3]]),
                st.lists(st.integers(0, 21), min_size=1, max_size=3),
            )
        )
        spec: dict[str, Any] = {
            "name": draw(st.sampled_from(["x", "f0", "f1", "age", "income", "color"])),
            "datatype": draw(st.sampled_from(["FP64", "FP32", "INT8", "UINT8", "BOOL", "BYTES"])),
            "shape": shape,
        }
        size = math.prod(shape)
        how = draw(st.sampled_from(["values", "json", "binary", "wrong size"]))
        if how == "values" and size <= 60:
            spec["data"] = draw(st.lists(ELEMENTS, min_size=size, max_size=size))
        elif how == "json":
            spec["data"] = draw(JSON_VALUES)
        else:
            blob = draw(st.binary(max_size=200))
            if how == "binary" and size <= 60 and spec["datatype"] != "BYTES":
                blob = draw(st.binary(min_size=size * 8, max_size=size * 8))
                blob = blob[: size * {"FP64": 8, "FP32": 4}.get(spec["datatype"], 1)]
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        inputs.append(spec)
    document: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        document["outputs"] = draw(
            st.one_of(
                JSON_VALUES,
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["predict", "predict_proba", "nope"])},
                        optional={"parameters": st.fixed_dictionaries({"binary_data": SCALARS})},
                    ),
                    max_size=3,
                ),
            )
        )
    if draw(st.booleans()):
        document["parameters"] = draw(
            st.one_of(JSON_VALUES, st.fixed_dictionaries({"binary_data_output": SCALARS}))
        )
    return document, b"".join(blobs)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    path = draw(
        st.sampled_from(
            ["/predict", "/invocations", "/v2/models/seed/infer", "/v2/models/mixed/infer",
             "/predict?model=mixed", "/invocations?model=mixed"]
        )
    )  # fmt: skip
    kind = draw(st.sampled_from(["json", "v2", "bytes", "binary", "csv"]))
    headers: dict[str, str] = {}
    if kind == "json":
        body = json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "v2":
        body = json.dumps(draw(v2_requests())[0]).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "csv":
        lines = draw(
            st.lists(
                st.lists(st.sampled_from(["f0", "age", "color", "1.5", "", "red", '"'])), max_size=4
            )
        )
        body = "\n".join(",".join(line) for line in lines).encode()
    else:
        document, blob = draw(v2_requests())
        header = json.dumps(document).encode()
        body = header + blob
        headers["inference-header-content-length"] = str(
            draw(st.sampled_from([len(header), len(header), len(header) - 1, 0, len(body) + 1]))
        )
    fitting = {"csv": "text/csv", "binary": "application/octet-stream"}.get(
        kind, "application/json"
    )
    headers["content-type"] = draw(
        st.sampled_from([fitting] * 6 + ["application/json", "text/csv", "text/plain", ""])
    )
    encoding = draw(st.sampled_from([None, None, None, None, "gzip", "deflate", "gzip-raw", "br"]))
    if encoding in {"gzip", "deflate"}:
        body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    if encoding is not None:
        headers["content-encoding"] = encoding.removesuffix("-raw")
    return path, body, headers


@settings(max_examples=300, deadline=None)
@given(bodies())
def test_malformed_bodies_get_a_4xx_json_error(
    seed_model: Model, mixed_model: Model, case: tuple[str, bytes, dict[str, str]]
) -> None:
    from modelkit.serving import App, Request

    path, body, headers = case
    app = App(seed_model, mixed_model)
    app.start()
    route, _, query = path.partition("?")
    response = app.handle(Request("POST", route, query, headers, body))
    assert response.status < 500, response.body
    if response.status != 200:
        assert 400 <= response.status < 500
        document = json.loads(response.body)
        assert set(document) == {"error"}
        assert isinstance(document["error"], str)
