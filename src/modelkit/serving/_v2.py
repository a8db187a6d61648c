"""The Open Inference Protocol (KServe / Triton "v2") over HTTP, with binary tensor data.

Routes (``{version}`` must be the served version: any other is a 404)::

    GET  /v2                         {"name": "modelkit", "version": ..., "extensions": [...]}
    GET  /v2/health/live             {"live": true}
    GET  /v2/health/ready            {"ready": true} 200, or {"ready": false} 503
    GET  /v2/models/{name}[/versions/{version}]          model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready    {"name": ..., "ready": ...}
    POST /v2/models/{name}[/versions/{version}]/infer    inference

An inference request gives either one tensor of shape ``[n, n_features]`` (any name), or one
tensor per feature, named by feature name, of shape ``[n]`` or ``[n, 1]``. Outputs are named
after the model's methods (``predict``, ``predict_proba``, ``decision_function``); without
an ``outputs`` list only ``predict`` is computed.

Binary tensor data extension: a body whose ``Inference-Header-Content-Length`` header gives
the length of its JSON part carries the data of every input with a ``binary_data_size``
parameter after the JSON, in input order: little-endian, row-major, BOOL as one byte,
BYTES as a 4-byte little-endian length then the bytes of each element. Such data is decoded
with ``np.frombuffer`` on a view of the body, without a copy. Outputs are sent the same way
when an output asks for ``"binary_data": true`` or the request's parameters for
``"binary_data_output": true``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelkit.serving._http import (
    JSON_TYPE,
    HTTPError,
    check_charset,
    dumps,
    is_json_type,
    json_body,
    jsonable,
    media_type,
    new_id,
)
from modelkit.serving.codecs import call
from modelkit.serving.core import Response

if TYPE_CHECKING:
    from modelkit.serving.batching import Call, Outcome
    from modelkit.serving.core import App, Request, ServedModel

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "datatype_of",
    "decode_binary",
    "decode_json",
    "encode_binary",
    "infer",
    "live",
    "model_metadata",
    "model_ready",
    "parse_inputs",
    "ready",
    "server_metadata",
]

HEADER_LENGTH = "inference-header-content-length"
"""The header giving the length of the JSON part of a body with binary tensor data."""

OCTET_STREAM = "application/octet-stream"

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
"""Every tensor datatype of the protocol and its (little-endian) numpy dtype."""

_NAMES_BY_KIND = {
    ("b", 1): "BOOL",
    **{("u", d.itemsize): n for n, d in DATATYPES.items() if d.kind == "u"},
    **{("i", d.itemsize): n for n, d in DATATYPES.items() if d.kind == "i"},
    **{("f", d.itemsize): n for n, d in DATATYPES.items() if d.kind == "f"},
}
_OUTPUTS = ("predict", "predict_proba", "decision_function")


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of an array: ``FP64``, ``INT64``, ``BOOL``, ``BYTES``…"""
    name = _NAMES_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    return name if name is not None else "BYTES"


# -- decoding --------------------------------------------------------------------------------


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise HTTPError(
            400, f'input {name!r}: "shape" must be a list of non-negative integers, got {value!r}'
        )
    if math.prod(d for d in value if d) > _MAX_CELLS:  # even with a 0 somewhere
        raise HTTPError(
            400,
            f"input {name!r}: shape {value!r} is too large (more than {_MAX_CELLS} cells "
            "without its zero dimensions)",
        )
    return tuple(value)


_MAX_CELLS = 2**40
"""Most cells a tensor's shape may describe: numpy cannot even describe an empty array whose
other dimensions multiply past its index range."""


def decode_binary(name: str, datatype: str, shape: Sequence[int], data: memoryview) -> np.ndarray:
    """Decode one input's binary data (a view of the body) into an array, without a copy."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(name, count, data).reshape(shape)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise HTTPError(
            400,
            f"input {name!r}: shape {list(shape)} of {datatype} takes {expected} bytes, "
            f"but binary_data_size is {len(data)}",
        )
    if datatype == "BOOL":
        raw = np.frombuffer(data, dtype=np.uint8)
        if np.any(raw > 1):
            raise HTTPError(400, f"input {name!r}: BOOL bytes must be 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _decode_bytes(name: str, count: int, data: memoryview) -> np.ndarray:
    size, position = len(data), 0
    if count * 4 > size:  # refused before allocating: every element has a 4-byte length
        raise HTTPError(
            400,
            f"input {name!r}: the BYTES data is cut short: {count} elements take at least "
            f"{count * 4} bytes, but binary_data_size is {size}",
        )
    out = np.empty(count, dtype=object)
    for k in range(count):
        if position + 4 > size:
            raise HTTPError(400, f"input {name!r}: BYTES element {k} is cut short")
        (length,) = struct.unpack_from("<I", data, position)
        position += 4
        if position + length > size:
            raise HTTPError(400, f"input {name!r}: BYTES element {k} is cut short")
        try:
            out[k] = bytes(data[position : position + length]).decode()
        except UnicodeDecodeError as exc:
            raise HTTPError(400, f"input {name!r}: BYTES element {k} is not UTF-8") from exc
        position += length
    if position != size:
        raise HTTPError(
            400, f"input {name!r}: {size - position} bytes follow its {count} BYTES elements"
        )
    return out


def decode_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """Decode one input's JSON ``data`` (flat or nested, row-major) into an array of ``shape``."""
    if not isinstance(data, list):
        data = [data]
    count = math.prod(shape)
    target = DATATYPES[datatype]
    try:
        array = np.array(data, dtype=object) if datatype == "BYTES" else np.asarray(data)
        if target.kind in "iu" and array.dtype.kind == "f":
            # numpy makes floats of integers beyond int64 mixed with others: keep them exact
            array = np.array(data, dtype=object)
    except (ValueError, TypeError, OverflowError) as exc:
        raise HTTPError(
            400, f'input {name!r}: "data" must be a flat list or a regular nested list: {exc}'
        ) from exc
    if array.size != count:
        raise HTTPError(
            400,
            f"input {name!r}: shape {list(shape)} holds {count} values, "
            f'but "data" has {array.size}',
        )
    if count == 0:
        return np.empty(shape, dtype=target)
    if datatype != "BYTES":
        array = _coerce(name, datatype, target, array)
    return array.reshape(shape)


def _coerce(name: str, datatype: str, target: np.dtype[Any], array: np.ndarray) -> np.ndarray:
    kind = array.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise HTTPError(400, f"input {name!r} is BOOL: its data must be true or false")
        return array
    if target.kind in "iu":
        if kind == "O":  # integers beyond int64, or values of other types
            values = array.ravel().tolist()
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                info = np.iinfo(target)
                low, high = min(values), max(values)
                if low < info.min or high > info.max:
                    value = low if low < info.min else high
                    raise HTTPError(400, f"input {name!r}: {value} is out of range for {datatype}")
                return np.array(values, dtype=target).reshape(array.shape)
        if kind not in "biu":
            bad = _first_bad(array, integral=True)
            raise HTTPError(
                400, f"input {name!r} is {datatype}: its data must be integers, got {bad}"
            )
        info = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            value = low if low < info.min else high
            raise HTTPError(400, f"input {name!r}: {value} is out of range for {datatype}")
        return array.astype(target, copy=False)
    if kind == "O":  # JSON null (missing) among numbers, or numbers too large for int64
        numeric = np.frompyfunc(_is_number, 1, 1)(array).astype(bool)
        if not numeric.all():
            raise HTTPError(
                400,
                f"input {name!r} is {datatype}: its data must be numbers or null, "
                f"got {array[~numeric].flat[0]!r}",
            )
        return np.array(np.where(array == None, np.nan, array), dtype=target)  # noqa: E711
    if kind not in "biuf":
        raise HTTPError(
            400,
            f"input {name!r} is {datatype}: its data must be numbers, "
            f"got {_first_bad(array, integral=False)}",
        )
    return array.astype(target, copy=False)


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _first_bad(array: np.ndarray, *, integral: bool) -> str:
    for value in array.ravel().tolist():
        if isinstance(value, bool) or not isinstance(value, int | float):
            return repr(value)
        if integral and not isinstance(value, int):
            return repr(value)
    return "values of another type"


def _split(request: Request) -> tuple[Any, memoryview]:
    """The JSON document and the binary tail of an inference request body."""
    body = request.body
    kind, params = media_type(request.headers)
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        # tritonclient's HTTP client sends its JSON-only requests as text/plain
        if not (is_json_type(kind) or kind == "text/plain"):
            raise HTTPError(
                415,
                f"unsupported Content-Type {kind!r}: send application/json, or binary tensor "
                f"data with an Inference-Header-Content-Length header",
            )
        check_charset(params)
        return json_body(body), memoryview(b"")
    try:
        length = int(raw)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise HTTPError(
            400,
            f"Inference-Header-Content-Length must be the length of the JSON part, between 1 "
            f"and the body's {len(body)} bytes; got {raw!r}",
        )
    view = memoryview(body)
    return json_body(view[:length].tobytes(), "the JSON part of the body"), view[length:]


def parse_inputs(document: Any, binary: memoryview) -> list[tuple[str, np.ndarray]]:
    """The named input arrays of an inference request (JSON data or binary views)."""
    if not isinstance(document, dict):
        raise HTTPError(400, 'an inference request must be a JSON object with "inputs"')
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HTTPError(400, '"inputs" must be a non-empty list of tensors')
    tensors: list[tuple[str, np.ndarray]] = []
    offset = 0
    for i, spec in enumerate(inputs):
        name, array, offset = _input(i, spec, binary, offset)
        tensors.append((name, array))
    if offset != len(binary):
        raise HTTPError(
            400,
            f"{len(binary) - offset} bytes of binary data follow the inputs' binary_data_size "
            "total",
        )
    names = [name for name, _ in tensors]
    if len(set(names)) != len(names):
        raise HTTPError(400, f"input names must be unique, got {names}")
    return tensors


def _input(i: int, spec: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input tensor: its name, its array, and the offset of the next binary data."""
    if not isinstance(spec, dict):
        raise HTTPError(400, f"inputs[{i}] must be an object with name, shape, datatype, data")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise HTTPError(400, f'inputs[{i}] needs a "name" (a non-empty string)')
    shape = _shape(spec.get("shape"), name)
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise HTTPError(
            400, f"input {name!r}: unknown datatype {datatype!r}; use one of {list(DATATYPES)}"
        )
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise HTTPError(400, f'input {name!r}: "parameters" must be an object')
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in spec:
            raise HTTPError(400, f'input {name!r} has no "data" (and no binary_data_size)')
        return name, decode_json(name, datatype, shape, spec["data"]), offset
    if "data" in spec:
        raise HTTPError(400, f'input {name!r} has both "data" and binary_data_size')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise HTTPError(400, f"input {name!r}: binary_data_size must be a byte count")
    if offset + size > len(binary):
        raise HTTPError(
            400,
            f"input {name!r}: binary_data_size {size} runs past the end of the body "
            f"({len(binary) - offset} bytes of binary data left)",
        )
    array = decode_binary(name, datatype, shape, binary[offset : offset + size])
    return name, array, offset + size


def model_input(served: ServedModel, tensors: list[tuple[str, np.ndarray]]) -> Any:
    """The rows for the model: the one table tensor, or the per-feature tensors side by side."""
    names = served.model.signature.names
    n = len(names)
    if len(tensors) == 1 and (n == 1 or tensors[0][0] not in names):
        name, table = tensors[0]
        if table.ndim > 2:
            raise HTTPError(
                400, f"input {name!r} must have shape [n, {n}], got {list(table.shape)}"
            )
        return table
    given = [name for name, _ in tensors]
    missing = [name for name in names if name not in given]
    unknown = [name for name in given if name not in names]
    if missing or unknown:
        raise HTTPError(
            400,
            f"send one tensor of shape [n, {n}], or one tensor per feature: missing {missing}, "
            f"unknown {unknown} (features: {list(names)})",
        )
    by_name = dict(tensors)
    columns = []
    for name in names:
        column = by_name[name]
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        elif column.ndim != 1:
            raise HTTPError(
                400, f"input {name!r} must have shape [n] or [n, 1], got {list(column.shape)}"
            )
        columns.append(column)
    lengths = {len(column) for column in columns}
    if len(lengths) != 1:
        shapes = {name: len(column) for name, column in zip(names, columns, strict=True)}
        raise HTTPError(400, f"every feature tensor must have the same length, got {shapes}")
    numeric = all(column.dtype.kind in "biuf" for column in columns)
    table = np.empty((lengths.pop(), n), dtype=np.float64 if numeric else object)
    for j, column in enumerate(columns):
        table[:, j] = column
    return table


# -- encoding --------------------------------------------------------------------------------


def _as_tensor(result: Any) -> np.ndarray:
    array = np.asarray(result)
    if array.dtype.kind == "O" and array.size:
        try:
            converted = np.asarray(array.tolist())
        except (ValueError, TypeError):
            return array
        if converted.dtype.kind in "biuf" and converted.shape == array.shape:
            return converted
    return array


def encode_binary(array: np.ndarray, datatype: str) -> bytes:
    """The binary tensor data of an array: little-endian, row-major, no padding."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts += [struct.pack("<I", len(raw)), raw]
        return b"".join(parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


def _outputs(document: dict[str, Any], served: ServedModel) -> list[tuple[str, bool]]:
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise HTTPError(400, '"parameters" must be an object')
    default = parameters.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise HTTPError(400, "binary_data_output must be true or false")
    requested = document.get("outputs")
    if requested is None:
        return [("predict", default)]
    if not isinstance(requested, list):
        raise HTTPError(400, '"outputs" must be a list of {"name": ...} objects')
    offered = [method for method in _OUTPUTS if method in served.model.methods]
    wanted: list[tuple[str, bool]] = []
    for i, spec in enumerate(requested):
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            raise HTTPError(400, f'outputs[{i}] must be an object with a "name"')
        if name not in offered:
            raise HTTPError(
                400, f"unknown output {name!r}: model {served.name!r} has outputs {offered}"
            )
        options = spec.get("parameters") or {}
        if not isinstance(options, dict):
            raise HTTPError(400, f'output {name!r}: "parameters" must be an object')
        binary = options.get("binary_data", default)
        if not isinstance(binary, bool):
            raise HTTPError(400, f"output {name!r}: binary_data must be true or false")
        wanted.append((name, binary))
    names = [name for name, _ in wanted]
    if len(set(names)) != len(names):
        raise HTTPError(400, f"output names must be unique, got {names}")
    return wanted


def infer(app: App, request: Request, params: Mapping[str, str]) -> Response | Call:
    """``POST /v2/models/{name}[/versions/{version}]/infer``."""
    version = params.get("version")
    served = app.model(params["name"], version)
    document, binary = _split(request)
    tensors = parse_inputs(document, binary)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise HTTPError(400, '"id" must be a string')
    wanted = _outputs(document, served)
    rows = model_input(served, tensors)
    answer_id = request_id if request_id is not None else new_id()

    def finish(outcome: Outcome) -> Response:
        outputs, blobs = [], []
        for name, binary_output in wanted:
            array = _as_tensor(outcome.results[name])
            datatype = datatype_of(array)
            entry: dict[str, Any] = {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
            }
            if binary_output:
                blob = encode_binary(array, datatype)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = jsonable(array.ravel())
            outputs.append(entry)
        served = outcome.served
        if outputs:
            count = int(outputs[0]["shape"][0]) if outputs[0]["shape"] else 1
            predicted = outcome.results.get("predict")
            if predicted is not None:
                predicted = _as_tensor(predicted)
            app.metrics.predicted(served.name, count)
            app.record_prediction(served, answer_id, count, predicted, outcome.inputs)
        return _answer(served, answer_id, outputs, blobs)

    if not wanted:
        return _answer(served, answer_id, [], [])
    return call(served, rows, tuple(name for name, _ in wanted), finish, version)


def _answer(
    served: ServedModel, answer_id: str, outputs: list[dict[str, Any]], blobs: list[bytes]
) -> Response:
    answer: dict[str, Any] = {"model_name": served.name}
    if served.version is not None:
        answer["model_version"] = served.version
    answer["id"] = answer_id
    answer["outputs"] = outputs
    header = dumps(answer)
    if not blobs:
        return Response(200, (("content-type", JSON_TYPE),), header)
    return Response(
        200,
        (("content-type", OCTET_STREAM), (HEADER_LENGTH, str(len(header)))),
        header + b"".join(blobs),
    )


# -- health and metadata ---------------------------------------------------------------------


def server_metadata(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /v2``: server name, version and extensions."""
    from modelkit._version import __version__

    return Response.json(
        200, {"name": "modelkit", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


def live(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /v2/health/live``: the process answers."""
    return Response.json(200, {"live": True})


def ready(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /v2/health/ready``: 200 once every model is loaded, 503 otherwise."""
    if app.state == "ready":
        return Response.json(200, {"ready": True})
    return Response.json(503, {"ready": False}, app.unavailable().headers)


def model_ready(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]/ready``."""
    if app.state != "ready":
        return Response.json(
            503, {"name": params["name"], "ready": False}, app.unavailable().headers
        )
    served = app.model(params["name"], params.get("version"))
    return Response.json(200, {"name": served.name, "ready": True})


def model_metadata(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]``: inputs, outputs, versions."""
    served = app.model(params["name"], params.get("version"))
    body = app.cached(f"v2-metadata:{served.name}", lambda: dumps(metadata(served)))
    return Response(200, (("content-type", JSON_TYPE),), body)


def metadata(served: ServedModel) -> dict[str, Any]:
    """The model metadata document of the protocol (plus feature names and classes)."""
    signature = served.model.signature
    names = signature.names
    categorical = set(signature.categorical)
    if categorical:
        inputs = [
            {"name": name, "datatype": "BYTES" if name in categorical else "FP64", "shape": [-1]}
            for name in names
        ]
    else:
        inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(names)]}]
    classes = signature.classes
    n_classes = len(classes) if classes is not None else -1
    outputs = []
    for method in served.model.methods:
        if method == "predict":
            datatype = _classes_type(classes) if signature.kind == "classification" else "FP64"
            outputs.append({"name": method, "datatype": datatype, "shape": [-1]})
        elif method == "predict_proba":
            outputs.append({"name": method, "datatype": "FP64", "shape": [-1, n_classes]})
        elif method == "decision_function":
            shape = [-1] if n_classes == 2 else [-1, n_classes]
            outputs.append({"name": method, "datatype": "FP64", "shape": shape})
    document: dict[str, Any] = {"name": served.name}
    if served.version is not None:
        document["versions"] = [served.version]
    document.update(
        platform="modelkit",
        inputs=inputs,
        outputs=outputs,
        parameters={
            "feature_names": list(names),
            "kind": signature.kind,
            "classes": None if classes is None else jsonable(np.asarray(classes, dtype=object)),
        },
    )
    return document


def _classes_type(classes: Sequence[Any] | None) -> str:
    if not classes:
        return "BYTES"
    return datatype_of(_as_tensor(np.asarray(list(classes), dtype=object)))
