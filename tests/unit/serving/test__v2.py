"""The Open Inference Protocol (v2): health, metadata, JSON and binary tensor inference."""

from __future__ import annotations

import gzip
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.unit.serving.helpers import Client, error_of

from modelkit import __version__
from modelkit.model import Model
from modelkit.serving._http import HTTPError, jsonable
from modelkit.serving._v2 import (
    DATATYPES,
    datatype_of,
    decode_binary,
    decode_json,
    encode_binary,
)

BINARY_HEADER = "Inference-Header-Content-Length"


def tensor(
    name: str, array: np.ndarray, datatype: str = "FP64", *, nested: bool = False
) -> dict[str, Any]:
    data = array.tolist() if nested else array.ravel().tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def binary_request(
    inputs: list[tuple[str, np.ndarray, str]], **extra: Any
) -> tuple[bytes, dict[str, str]]:
    """A binary tensor data body: JSON header, then each input's bytes."""
    specs, blobs = [], []
    for name, array, datatype in inputs:
        blob = encode_binary(array, datatype)
        specs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = json.dumps({"inputs": specs, **extra}).encode()
    headers = {"content-type": "application/octet-stream", BINARY_HEADER: str(len(header))}
    return header + b"".join(blobs), headers


def split_response(response: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON part of a response and its binary outputs, decoded."""
    length = int(response.headers.get(BINARY_HEADER, len(response.content)))
    document = json.loads(response.content[:length])
    outputs, offset = {}, length
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        chunk = memoryview(response.content)[offset : offset + size]
        outputs[output["name"]] = decode_binary(
            output["name"], output["datatype"], output["shape"], chunk
        )
        offset += size
    assert offset == len(response.content)
    return document, outputs


def outputs_of(document: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        output["name"]: np.asarray(output["data"]).reshape(output["shape"])
        for output in document["outputs"]
        if "data" in output
    }


# -- health and metadata ---------------------------------------------------------------------


def test_server_metadata_and_health(client: Client) -> None:
    expected = {"name": "modelkit", "version": __version__, "extensions": ["binary_tensor_data"]}
    assert client.get("/v2").json() == expected
    assert client.get("/v2/").json() == expected
    live = client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    model = client.get("/v2/models/seed/ready")
    assert (model.status_code, model.json()) == (200, {"name": "seed", "ready": True})


def test_model_metadata(client: Client) -> None:
    document = client.get("/v2/models/seed").json()
    assert document == {
        "name": "seed",
        "platform": "modelkit",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 20]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
            {"name": "decision_function", "datatype": "FP64", "shape": [-1]},
        ],
        "parameters": {
            "feature_names": [f"f{j}" for j in range(20)],
            "kind": "classification",
            "classes": [0, 1],
        },
    }
    assert client.get("/v2/models/seed").json() == document  # cached, same answer


def test_mixed_and_regression_metadata(
    serve: Callable[..., Client], mixed_model: Model, reg_model: Model
) -> None:
    client = serve(mixed_model, reg_model)
    mixed = client.get("/v2/models/mixed").json()
    assert mixed["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "color", "datatype": "BYTES", "shape": [-1]},
    ]
    reg = client.get("/v2/models/reg").json()
    assert reg["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert reg["parameters"]["classes"] is None


def test_unknown_models_and_versions_are_404(client: Client) -> None:
    for path in (
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/seed/versions/1",
        "/v2/models/seed/versions/1/ready",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        error_of(response)
    response = client.post("/v2/models/seed/versions/0/infer", json={"inputs": []})
    assert response.status_code == 404
    assert "no version '0'" in error_of(response)


# -- JSON inference --------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_infer_one_table_tensor(
    client: Client, seed_model: Model, seed_data: Any, nested: bool
) -> None:
    X = seed_data[0][:8]
    body = {
        "id": "req-42",
        "parameters": {"something_unknown": [1, 2]},
        "inputs": [tensor("input-0", X, nested=nested)],
        "outputs": [{"name": "predict_proba"}, {"name": "predict", "parameters": {"x": 1}}],
    }
    response = client.post("/v2/models/seed/infer", json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model_name"] == "seed"
    assert "model_version" not in document
    assert document["id"] == "req-42"
    assert [o["name"] for o in document["outputs"]] == ["predict_proba", "predict"]
    outputs = outputs_of(document)
    np.testing.assert_array_equal(outputs["predict"], seed_model.predict(X))
    np.testing.assert_array_equal(outputs["predict_proba"], seed_model.predict_proba(X))
    assert document["outputs"][1] == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [8],
        "data": seed_model.predict(X).tolist(),
    }


def test_infer_defaults_to_predict_and_a_generated_id(
    client: Client, seed_model: Model, seed_data: Any
) -> None:
    X = seed_data[0][:2]
    document = client.post("/v2/models/seed/infer", json={"inputs": [tensor("x", X)]}).json()
    assert [o["name"] for o in document["outputs"]] == ["predict"]
    assert len(document["id"]) == 32


@pytest.mark.parametrize("column_shape", ["flat", "column"])
def test_infer_one_tensor_per_feature(
    client: Client, seed_model: Model, seed_data: Any, column_shape: str
) -> None:
    X = seed_data[0][:6]
    inputs = []
    for j in reversed(range(20)):  # any order
        column = X[:, j] if column_shape == "flat" else X[:, j : j + 1]
        inputs.append(tensor(f"f{j}", column))
    document = client.post("/v2/models/seed/infer", json={"inputs": inputs}).json()
    np.testing.assert_array_equal(outputs_of(document)["predict"], seed_model.predict(X))


def test_infer_mixed_model_with_bytes_features(
    serve: Callable[..., Client], mixed_model: Model, mixed_frame: pd.DataFrame
) -> None:
    client = serve(mixed_model)
    frame = mixed_frame.head(5)
    inputs = [
        tensor("age", frame["age"].to_numpy()),
        tensor("income", frame["income"].to_numpy(), "FP32"),
        {"name": "color", "shape": [5], "datatype": "BYTES", "data": frame["color"].tolist()},
    ]
    document = client.post("/v2/models/mixed/infer", json={"inputs": inputs}).json()
    expected = frame.assign(income=frame["income"].astype(np.float32).astype(float))
    np.testing.assert_array_equal(outputs_of(document)["predict"], mixed_model.predict(expected))
    body, headers = binary_request(
        [
            ("age", frame["age"].to_numpy(), "FP64"),
            ("income", frame["income"].to_numpy(), "FP64"),
            ("color", frame["color"].to_numpy(dtype=object), "BYTES"),
        ],
        outputs=[{"name": "predict_proba", "parameters": {"binary_data": True}}],
    )
    response = client.post("/v2/models/mixed/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    _, binary = split_response(response)
    np.testing.assert_array_equal(binary["predict_proba"], mixed_model.predict_proba(frame))
    unknown = {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["purple"]}
    response = client.post(
        "/v2/models/mixed/infer",
        json={"inputs": [tensor("age", np.ones(1)), tensor("income", np.ones(1)), unknown]},
    )
    assert response.status_code == 400
    assert "unknown level 'purple'" in error_of(response)


@pytest.mark.parametrize(
    "datatype", ["FP16", "FP32", "FP64", "INT8", "INT32", "INT64", "UINT8", "UINT64"]
)
def test_infer_coerces_datatypes(client: Client, seed_model: Model, datatype: str) -> None:
    X = np.arange(40).reshape(2, 20) % 7
    response = client.post("/v2/models/seed/infer", json={"inputs": [tensor("x", X, datatype)]})
    assert response.status_code == 200, response.text
    expected = seed_model.predict(X.astype(DATATYPES[datatype]))
    np.testing.assert_array_equal(outputs_of(response.json())["predict"], expected)


def test_infer_bool_input(serve: Callable[..., Client], seed_model: Model) -> None:
    client = serve(seed_model)
    X = np.arange(20).reshape(1, 20) % 2 == 0
    response = client.post("/v2/models/seed/infer", json={"inputs": [tensor("x", X, "BOOL")]})
    np.testing.assert_array_equal(outputs_of(response.json())["predict"], seed_model.predict(X))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (
            {"shape": [2, 20], "data": [0.0] * 39},
            'shape [2, 20] holds 40 values, but "data" has 39',
        ),
        ({"shape": [2, -20], "data": [0.0] * 40}, '"shape" must be a list of non-negative'),
        ({"shape": "2x20", "data": [0.0] * 40}, '"shape" must be'),
        ({"datatype": "FP128"}, "unknown datatype 'FP128'"),
        ({"datatype": "INT8", "data": [300] + [0] * 39}, "300 is out of range for INT8"),
        ({"datatype": "UINT8", "data": [-1] + [0] * 39}, "-1 is out of range for UINT8"),
        ({"datatype": "INT64", "data": [1.5] + [0] * 39}, "must be integers, got 1.5"),
        ({"datatype": "INT64", "data": [2**70] + [0] * 39}, f"{2**70} is out of range for INT64"),
        ({"datatype": "BOOL", "data": [1] * 40}, "must be true or false"),
        ({"datatype": "FP32", "data": ["a"] * 40}, "must be numbers, got 'a'"),
        ({"datatype": "FP64", "data": [None] * 39 + ["x"]}, "must be numbers or null, got 'x'"),
        ({"data": [[0.0] * 20, [0.0] * 19]}, "regular nested list"),
        ({"name": ""}, '"name"'),
        ({"data": None, "parameters": {}}, "holds 40 values"),
        ({"parameters": "x"}, '"parameters" must be an object'),
    ],
)
def test_infer_input_errors(client: Client, spec: dict[str, Any], needle: str) -> None:
    base = {"name": "x", "shape": [2, 20], "datatype": "FP64", "data": [0.0] * 40}
    response = client.post("/v2/models/seed/infer", json={"inputs": [{**base, **spec}]})
    assert response.status_code == 400, response.text
    message = error_of(response)
    assert needle in message, message


def test_null_is_missing_in_float_tensors(client: Client) -> None:
    data = [None] + [0.0] * 39
    response = client.post(
        "/v2/models/seed/infer", json={"inputs": [tensor("x", np.zeros((2, 20))) | {"data": data}]}
    )
    assert response.status_code == 400
    assert "missing (NaN) at row 0" in error_of(response)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([1, 2], 'JSON object with "inputs"'),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [3]}, "inputs[0] must be an object"),
        ({"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64"}]}, 'no "data"'),
        ({"id": 5}, '"id" must be a string'),
        ({"outputs": [{"name": "explain"}]}, "unknown output 'explain'"),
        ({"outputs": [{"name": "predict"}, {"name": "predict"}]}, "unique"),
        ({"outputs": "predict"}, '"outputs" must be a list'),
        ({"outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]}, "true or false"),
        ({"parameters": {"binary_data_output": "yes"}}, "binary_data_output"),
        ({"parameters": 3}, '"parameters" must be an object'),
        ({"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": [0]}] * 2}, "unique"),
        (
            {
                "inputs": [
                    {"name": f"f{j}", "shape": [1], "datatype": "FP64", "data": [0]}
                    for j in range(2)
                ]
            },
            "missing ['f2'",
        ),
    ],
)
def test_infer_request_errors(client: Client, body: Any, needle: str) -> None:
    if isinstance(body, dict) and "inputs" not in body:
        body = {"inputs": [tensor("x", np.zeros((1, 20)))], **body}
    response = client.post("/v2/models/seed/infer", json=body)
    assert response.status_code == 400
    assert needle in error_of(response)


def test_feature_tensors_must_line_up(client: Client) -> None:
    inputs = [tensor(f"f{j}", np.zeros(3 if j else 2)) for j in range(20)]
    response = client.post("/v2/models/seed/infer", json={"inputs": inputs})
    assert "same length" in error_of(response)
    inputs = [tensor(f"f{j}", np.zeros((3, 2))) for j in range(20)]
    response = client.post("/v2/models/seed/infer", json={"inputs": inputs})
    assert "shape [n] or [n, 1]" in error_of(response)
    response = client.post(
        "/v2/models/seed/infer", json={"inputs": [tensor("x", np.zeros((1, 2, 20)))]}
    )
    assert "must have shape [n, 20]" in error_of(response)


def test_unknown_output_for_a_regressor(serve: Callable[..., Client], reg_model: Model) -> None:
    client = serve(reg_model)
    body = {"inputs": [tensor("x", np.zeros((1, 5)))], "outputs": [{"name": "predict_proba"}]}
    response = client.post("/v2/models/reg/infer", json=body)
    assert response.status_code == 400
    assert "has outputs ['predict']" in error_of(response)


# -- binary tensor data ----------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_binary_inputs_and_outputs(
    client: Client, seed_model: Model, seed_data: Any, datatype: str
) -> None:
    X = seed_data[0][:16].astype(DATATYPES[datatype])
    body, headers = binary_request(
        [("input-0", X, datatype)],
        outputs=[
            {"name": "predict", "parameters": {"binary_data": True}},
            {"name": "predict_proba"},
            {"name": "decision_function", "parameters": {"binary_data": True}},
        ],
        id="bin",
    )
    response = client.post("/v2/models/seed/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    document, binary = split_response(response)
    assert document["id"] == "bin"
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 16 * 8}
    assert "data" not in document["outputs"][0]
    np.testing.assert_array_equal(binary["predict"], seed_model.predict(X))
    assert binary["decision_function"].tobytes() == seed_model.decision_function(X).tobytes()
    np.testing.assert_array_equal(
        outputs_of(document)["predict_proba"], seed_model.predict_proba(X)
    )


def test_binary_data_output_parameter(client: Client, seed_model: Model, seed_data: Any) -> None:
    X = seed_data[0][:3]
    body = {
        "inputs": [tensor("x", X)],
        "parameters": {"binary_data_output": True},
        "outputs": [
            {"name": "predict_proba"},
            {"name": "predict", "parameters": {"binary_data": False}},
        ],
    }
    response = client.post("/v2/models/seed/infer", json=body)
    document, binary = split_response(response)
    assert int(response.headers[BINARY_HEADER]) < len(response.content)
    assert binary["predict_proba"].tobytes() == seed_model.predict_proba(X).tobytes()
    assert outputs_of(document)["predict"].tolist() == seed_model.predict(X).tolist()
    default = client.post("/v2/models/seed/infer", json={**body, "outputs": None})
    _, binary = split_response(default)
    assert list(binary) == ["predict"]


def test_binary_and_json_inputs_together_gzipped(
    client: Client, seed_model: Model, seed_data: Any
) -> None:
    X = seed_data[0][:4]
    columns = [(f"f{j}", X[:, j], "FP64") for j in range(10)]
    body, headers = binary_request(columns)
    document = json.loads(body[: int(headers[BINARY_HEADER])])
    document["inputs"] += [tensor(f"f{j}", X[:, j]) for j in range(10, 20)]
    header = json.dumps(document).encode()
    body = header + body[int(headers[BINARY_HEADER]) :]
    headers = {BINARY_HEADER: str(len(header)), "content-encoding": "gzip"}
    response = client.post("/v2/models/seed/infer", content=gzip.compress(body), headers=headers)
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(outputs_of(response.json())["predict"], seed_model.predict(X))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda body, n: (body, "0"), "Inference-Header-Content-Length must be"),
        (lambda body, n: (body, str(len(body) + 1)), "Inference-Header-Content-Length must be"),
        (lambda body, n: (body, "twelve"), "Inference-Header-Content-Length must be"),
        (lambda body, n: (body[:-8], str(n)), "runs past the end"),
        (lambda body, n: (body + b"\0" * 8, str(n)), "8 bytes of binary data follow"),
        (lambda body, n: (body, str(n - 1)), "not valid JSON"),
    ],
)
def test_broken_binary_bodies(
    client: Client, mutate: Callable[[bytes, int], tuple[bytes, str]], needle: str
) -> None:
    body, headers = binary_request([("x", np.zeros((1, 20)), "FP64")])
    body, length = mutate(body, int(headers[BINARY_HEADER]))
    response = client.post("/v2/models/seed/infer", content=body, headers={BINARY_HEADER: length})
    assert response.status_code == 400
    assert needle in error_of(response)


def test_binary_size_must_match_the_shape(client: Client) -> None:
    header = {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 20],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 160},
            }
        ]
    }
    raw = json.dumps(header).encode()
    response = client.post(
        "/v2/models/seed/infer", content=raw + b"\0" * 160, headers={BINARY_HEADER: str(len(raw))}
    )
    assert response.status_code == 400
    message = error_of(response)
    assert message == "input 'x': shape [1, 20] of FP32 takes 80 bytes, but binary_data_size is 160"


def test_binary_data_without_the_header_or_with_data(client: Client) -> None:
    spec = {
        "name": "x",
        "shape": [1, 20],
        "datatype": "FP64",
        "parameters": {"binary_data_size": 160},
    }
    response = client.post("/v2/models/seed/infer", json={"inputs": [spec]})
    assert "runs past the end" in error_of(response)
    response = client.post("/v2/models/seed/infer", json={"inputs": [spec | {"data": [0.0] * 20}]})
    assert 'both "data" and binary_data_size' in error_of(response)
    response = client.post(
        "/v2/models/seed/infer",
        content=b"\0" * 10,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 415


def test_binary_decoding_is_zero_copy() -> None:
    body = bytearray(b"{}" + np.arange(6, dtype="<f8").tobytes())
    view = memoryview(body)[2:]
    array = decode_binary("x", "FP64", [2, 3], view)
    assert np.shares_memory(array, np.frombuffer(body, dtype=np.uint8))
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]
    flags = decode_binary("b", "BOOL", [3], memoryview(b"\x01\x00\x01"))
    assert flags.tolist() == [True, False, True]
    with pytest.raises(HTTPError, match="BOOL bytes must be 0 or 1"):
        decode_binary("b", "BOOL", [1], memoryview(b"\x02"))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x01\x00\x00", "cut short"),
        (b"\x05\x00\x00\x00ab", "cut short"),
        (b"\x01\x00\x00\x00\xff", "not UTF-8"),
        (b"\x01\x00\x00\x00ab", "1 bytes follow"),
    ],
)
def test_broken_binary_bytes(data: bytes, needle: str) -> None:
    with pytest.raises(HTTPError, match=needle):
        decode_binary("s", "BYTES", [1], memoryview(data))


# -- properties ------------------------------------------------------------------------------

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


@st.composite
def typed_arrays(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    if datatype == "BYTES":
        values = draw(
            st.lists(st.text(max_size=5), min_size=math.prod(shape), max_size=math.prod(shape))
        )
        array = np.empty(math.prod(shape), dtype=object)
        array[:] = values
        return datatype, array.reshape(shape)
    dtype = DATATYPES[datatype]
    elements = None
    if dtype.kind == "f":
        width = {2: 16, 4: 32, 8: 64}[dtype.itemsize]
        elements = st.floats(width=width, allow_nan=False, allow_infinity=False)  # type: ignore[arg-type]
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


@given(typed_arrays())
def test_binary_tensors_round_trip(case: tuple[str, np.ndarray]) -> None:
    datatype, array = case
    blob = encode_binary(array, datatype)
    back = decode_binary("x", datatype, array.shape, memoryview(blob))
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    if datatype != "BYTES":
        assert back.tobytes() == array.tobytes()
        assert datatype_of(back) == datatype


@given(typed_arrays(), st.booleans())
def test_json_tensors_round_trip(case: tuple[str, np.ndarray], nested: bool) -> None:
    datatype, array = case
    data = jsonable(array) if nested else jsonable(array.ravel())
    back = decode_json("x", datatype, list(array.shape), json.loads(json.dumps(data)))
    assert back.shape == array.shape
    if datatype == "BYTES":
        assert back.tolist() == array.tolist()
    else:
        assert back.dtype == DATATYPES[datatype]
        assert back.tobytes() == array.tobytes()


def test_bytes_outputs_and_datatypes() -> None:
    labels = np.array(["yes", "no", "peut-être"], dtype=object)
    assert datatype_of(labels) == "BYTES"
    blob = encode_binary(labels, "BYTES")
    assert blob[:4] == struct.pack("<I", 3)
    assert decode_binary("y", "BYTES", [3], memoryview(blob)).tolist() == labels.tolist()
    assert datatype_of(np.array([1.5], dtype=np.float16)) == "FP16"
    assert datatype_of(np.array([1j])) == "BYTES"


def test_string_labels_come_back_as_bytes(serve: Callable[..., Client], seed_data: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = seed_data
    labels = np.where(y == 1, "churn", "stay")
    model = Model.wrap(
        LogisticRegression(solver="liblinear").fit(X, labels), sample=X, name="labels"
    )
    client = serve(model)
    assert client.get("/v2/models/labels").json()["outputs"][0]["datatype"] == "BYTES"
    body = {
        "inputs": [tensor("x", X[:3])],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        "parameters": {"binary_data_output": True},
    }
    response = client.post("/v2/models/labels/infer", json=body)
    document, binary = split_response(response)
    assert document["outputs"][0]["datatype"] == "BYTES"
    assert binary["predict"].tolist() == model.predict(X[:3]).tolist()
    as_json = client.post("/v2/models/labels/infer", json={"inputs": [tensor("x", X[:3])]}).json()
    assert as_json["outputs"][0]["data"] == model.predict(X[:3]).tolist()
    seed = client.post("/predict", json={"features": X[:3].tolist()}).json()
    assert seed["prediction"] == model.predict(X[:3]).tolist()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=20, max_size=20
    ).map(lambda row: np.array([row]))
)
def test_every_protocol_returns_what_predict_returns(seed_model: Model, X: np.ndarray) -> None:
    from modelkit.serving import wsgi_app

    client = Client(wsgi_app(seed_model))
    expected = seed_model.predict_proba(X).tolist()
    seed = client.post(
        "/predict", json={"features": X.tolist(), "return": ["predict_proba"]}
    ).json()
    assert seed["predict_proba"] == expected
    mlflow = client.post(
        "/invocations", json={"inputs": X.tolist(), "params": {"method": "predict_proba"}}
    )
    assert mlflow.json()["predictions"] == expected
    v2 = client.post(
        "/v2/models/seed/infer",
        json={"inputs": [tensor("x", X)], "outputs": [{"name": "predict_proba"}]},
    )
    assert outputs_of(v2.json())["predict_proba"].tolist() == expected


def test_a_shape_too_large_to_describe_is_a_400_even_when_empty(client: Client) -> None:
    spec = {"name": "x", "shape": [0, 2**40, 2**30], "datatype": "FP64", "data": []}
    response = client.post("/v2/models/seed/infer", json={"inputs": [spec]})
    assert response.status_code == 400, response.text
    assert "is too large" in error_of(response)
