"""``GET /openapi.json``: every route of a served application as an OpenAPI 3.1 document.

The document is built from the application's route table, so a route cannot be served
without being described; request and response schemas come from the table below, keyed by
``(method, template)``. Served model names are listed as the values of the ``model`` query
parameter and of the ``{name}`` path parameter. When the application authenticates requests,
the document declares a bearer security scheme, and every protected operation requires it and
lists its 401 answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from modelkit.serving._v2 import DATATYPES
from modelkit.serving.codecs import MLFLOW_FORMATS

if TYPE_CHECKING:
    from modelkit.serving.core import App, Route

__all__ = ["OPENAPI_VERSION", "document"]

OPENAPI_VERSION = "3.1.0"

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_ROWS = {
    "description": "Rows: a list of lists (one value per feature), or of objects keyed by "
    "feature name; one flat list is one row",
    "type": "array",
    "items": {"oneOf": [{"type": "array"}, {"type": "object"}, {}]},
}
_VALUES = {"description": "One value per row (or a list per row for probabilities)"}
_TENSOR_DATA = {
    "description": "Values in row-major order, flat or nested",
    "type": "array",
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong"}},
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string"}, "state": {"type": "string"}},
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ready", "loading", "draining", "stopped", "failed"],
            },
            "models": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string"},
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["features"],
        "properties": {
            "features": _ROWS,
            "return": {
                "type": "array",
                "items": {"type": "string", "enum": ["predict_proba", "decision_function"]},
                "description": "Extra methods whose results are added to the response",
            },
        },
    },
    "PredictResponse": {
        "type": "object",
        "required": ["prediction", "model", "version", "id"],
        "properties": {
            "prediction": {**_VALUES, "type": "array"},
            "predict_proba": {"type": "array", "items": {"type": "array"}},
            "decision_function": {"type": "array"},
            "model": {"type": "string"},
            "version": {"type": ["string", "null"], "description": "null: an unversioned model"},
            "id": {
                "type": "string",
                "description": "Prediction id (version-7 UUID hex, time-ordered)",
            },
        },
    },
    "InvocationsRequest": {
        "type": "object",
        "description": f"Exactly one of {', '.join(MLFLOW_FORMATS)}",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                    "index": {"type": "array"},
                },
            },
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": {"oneOf": [_ROWS, {"type": "object"}]},
            "inputs": {"oneOf": [_ROWS, {"type": "object"}]},
            "params": {
                "type": "object",
                "properties": {
                    "method": {
                        "type": "string",
                        "enum": ["predict", "predict_proba", "decision_function"],
                    }
                },
            },
        },
        "oneOf": [{"required": [key]} for key in MLFLOW_FORMATS],
    },
    "InvocationsResponse": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {**_VALUES, "type": "array"}},
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "ModelReady": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "MetadataTensor": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("MetadataTensor")},
            "outputs": {"type": "array", "items": _ref("MetadataTensor")},
            "parameters": {"type": "object"},
        },
    },
    "RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": _TENSOR_DATA,
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "enum": ["predict", "predict_proba", "decision_function"]},
            "parameters": {
                "type": "object",
                "properties": {"binary_data": {"type": "boolean"}},
            },
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer"}},
            },
            "data": _TENSOR_DATA,
        },
    },
    "FeedbackItem": {
        "type": "object",
        "required": ["id", "label"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "The prediction id: /predict's id, a v2 answer's id, or the "
                "X-Request-ID of an /invocations answer",
            },
            "label": {
                "description": "The true value of each predicted row (null: unknown), or one "
                "value for a one-row prediction",
                "oneOf": [
                    {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}},
                    {"type": ["string", "number", "boolean", "null"]},
                ],
            },
        },
    },
    "FeedbackRequest": {
        "oneOf": [
            _ref("FeedbackItem"),
            {"type": "array", "minItems": 1, "items": _ref("FeedbackItem")},
        ]
    },
    "FeedbackResponse": {
        "type": "object",
        "required": ["accepted"],
        "properties": {
            "accepted": {"type": "integer", "description": "How many predictions got labels"}
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
    },
}
"""The JSON schemas of every request and response body."""

_BINARY = "application/octet-stream"
_BINARY_NOTE = (
    "With the binary tensor data extension: the JSON document, then the binary data of "
    "each tensor; the Inference-Header-Content-Length header gives the JSON length"
)

# (method, template) -> (request body content, {status: (schema name or None, description)})
_OPERATIONS: dict[tuple[str, str], tuple[dict[str, Any] | None, dict[str, tuple[Any, str]]]] = {
    ("GET", "/healthz"): (None, {"200": ("Health", "The process is alive")}),
    ("GET", "/readyz"): (
        None,
        {"200": ("Readiness", "Ready"), "503": ("Readiness", "Loading, draining or failed")},
    ),
    ("GET", "/metrics"): (None, {"200": ("text/plain", "Prometheus text format 0.0.4")}),
    ("GET", "/openapi.json"): (None, {"200": ("object", "This document")}),
    ("POST", "/predict"): (
        {_JSON: {"schema": _ref("PredictRequest")}},
        {"200": ("PredictResponse", "Predictions")},
    ),
    ("POST", "/invocations"): (
        {
            _JSON: {"schema": _ref("InvocationsRequest")},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "A header row of feature names, then one row per prediction",
                }
            },
        },
        {"200": ("InvocationsResponse", "Predictions")},
    ),
    ("GET", "/ping"): (None, {"200": ("text/plain", "A newline: the models are loaded")}),
    ("GET", "/health"): (None, {"200": ("text/plain", "A newline: the models are loaded")}),
    ("GET", "/version"): (None, {"200": ("text/plain", "The modelkit version")}),
    ("GET", "/v2"): (None, {"200": ("ServerMetadata", "Server metadata")}),
    ("GET", "/v2/"): (None, {"200": ("ServerMetadata", "Server metadata")}),
    ("GET", "/v2/health/live"): (None, {"200": ("Live", "Live")}),
    ("GET", "/v2/health/ready"): (
        None,
        {"200": ("Ready", "Ready"), "503": ("Ready", "Not ready")},
    ),
    ("GET", "/v2/models/{name}"): (None, {"200": ("ModelMetadata", "Model metadata")}),
    ("GET", "/v2/models/{name}/versions/{version}"): (
        None,
        {"200": ("ModelMetadata", "Model metadata")},
    ),
    ("GET", "/v2/models/{name}/ready"): (
        None,
        {"200": ("ModelReady", "Ready"), "503": ("ModelReady", "Not ready")},
    ),
    ("GET", "/v2/models/{name}/versions/{version}/ready"): (
        None,
        {"200": ("ModelReady", "Ready"), "503": ("ModelReady", "Not ready")},
    ),
}
_INFER = (
    {
        _JSON: {"schema": _ref("InferenceRequest")},
        _BINARY: {"schema": {"type": "string", "format": "binary", "description": _BINARY_NOTE}},
    },
    {"200": ("InferenceResponse", "Inference results")},
)
_OPERATIONS[("POST", "/feedback")] = (
    {_JSON: {"schema": _ref("FeedbackRequest")}},
    {
        "200": ("FeedbackResponse", "The labels were stored (all of them)"),
        "404": (
            "Error",
            "An id names no recorded prediction (nothing was stored), or this server records "
            "no feedback (its models were passed in-process without a registry)",
        ),
        "503": ("Error", "Not ready, or the feedback store is unavailable (see Retry-After)"),
    },
)
_OPERATIONS[("POST", "/v2/models/{name}/infer")] = _INFER
_OPERATIONS[("POST", "/v2/models/{name}/versions/{version}/infer")] = _INFER

_ERRORS = {
    "400": "Bad input: malformed body, wrong features or values",
    "401": "Missing or invalid credentials (see the WWW-Authenticate header)",
    "404": "No such model or version",
    "405": "Method not allowed (see the Allow header)",
    "413": "Body too large",
    "415": "Unsupported Content-Type or Content-Encoding",
    "500": "The model failed (details are in the server log, under the request id)",
    "503": "Not ready: loading or draining (see the Retry-After header)",
    "504": "Not answered within the request deadline (request_timeout / X-Request-Timeout)",
}


def _content(schema: Any) -> dict[str, Any]:
    if schema == "text/plain":
        return {"text/plain": {"schema": {"type": "string"}}}
    if schema == "object":
        return {_JSON: {"schema": {"type": "object"}}}
    return {_JSON: {"schema": _ref(schema)}}


def _operation(app: App, route: Route) -> dict[str, Any]:
    body, responses = _OPERATIONS.get((route.method, route.template), (None, {}))
    names = list(app.models)
    parameters: list[dict[str, Any]] = [{"$ref": "#/components/parameters/RequestId"}]
    for param in re.findall(r"\{(\w+)\}", route.template):
        schema: dict[str, Any] = {"type": "string"}
        if param == "name" and names:
            schema["enum"] = names
        parameters.append({"name": param, "in": "path", "required": True, "schema": schema})
    if route.template in {"/predict", "/invocations"}:
        schema = {"type": "string"}
        if names:
            schema["enum"] = names
        parameters.append(
            {
                "name": "model",
                "in": "query",
                "required": False,
                "description": "The model to use (default: the first served model)",
                "schema": schema,
            }
        )
    answers: dict[str, Any] = {
        status: {"description": text, "content": _content(schema), "headers": _ID_HEADER}
        for status, (schema, text) in responses.items()
    }
    relevant = {"404", "405", "500"}
    if route.models:
        relevant |= {"503"}
    if route.method == "POST":
        relevant |= {"400", "413", "415", "504"}
    protected = app.authentication.protects(route.template)
    if protected:
        relevant |= {"401"}
    for status in sorted(relevant - set(answers)):
        answers[status] = {
            **_json(_ref("Error"), _ERRORS[status]),
            "headers": _ID_HEADER,
        }
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": _operation_id(route),
        "parameters": parameters,
        "responses": dict(sorted(answers.items())),
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if app.authentication.enabled:
        operation["security"] = [{"bearerAuth": []}] if protected else []
    return operation


_ID_HEADER = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID, or a generated one",
        "schema": {"type": "string"},
    }
}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.template).strip("/").replace(".", "_")
    slug = re.sub(r"[^0-9A-Za-z]+", "_", words) or "root"
    return f"{route.method.lower()}_{slug}" + (
        "_slash" if route.template.endswith("/") and len(route.template) > 1 else ""
    )


def document(app: App) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``: every route, schema and error."""
    from modelkit._version import __version__

    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(app, route)
    components: dict[str, Any] = {
        "schemas": SCHEMAS,
        "parameters": {
            "RequestId": {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": "Echoed in the response; generated when absent",
                "schema": {"type": "string", "maxLength": 200},
            }
        },
    }
    if app.authentication.enabled:
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "Authorization: Bearer <key or token>",
            }
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "modelkit",
            "version": __version__,
            "description": "Predictions over three protocols: the seed /predict, MLflow "
            "/invocations and the Open Inference Protocol (v2), delayed labels by prediction "
            "id (/feedback), plus health, readiness and metrics.",
        },
        "paths": paths,
        "components": components,
    }
