"""Wire protocols: the seed's ``POST /predict`` and MLflow's ``POST /invocations``.

Each codec turns a request body into rows for :meth:`modelkit.Model.predict` and its results
into a response document; validation and the ``on_prediction`` event happen in the model,
errors become ``{"error": ...}`` in the core. The Open Inference Protocol (v2) lives in
:mod:`modelkit.serving._v2`.

Seed protocol::

    POST /predict[?model=NAME]   {"features": [[0.1, -0.5, ...], ...], "return": ["predict_proba"]}
    200 {"prediction": [1, 0], "predict_proba": [[0.2, 0.8], ...],
         "model": "seed", "version": "3", "id": "<uuid7 hex>"}

MLflow scoring protocol::

    POST /invocations[?model=NAME]
      {"dataframe_split": {"columns": [...], "data": [[...], ...]}}
      {"dataframe_records": [{"f0": 0.1, ...}, ...]}
      {"instances": [[...], ...]}        or a list of records, or {"f0": [...], ...}
      {"inputs": [[...], ...]}           same forms as "instances"
      text/csv with a header row of feature names
    200 {"predictions": [...]}
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelkit.serving._http import (
    HTTPError,
    check_charset,
    is_json_type,
    json_body,
    jsonable,
    media_type,
    new_id,
    require_json,
)
from modelkit.serving.batching import Call, Outcome
from modelkit.serving.core import Response

if TYPE_CHECKING:
    from modelkit.serving.core import App, Request, ServedModel

__all__ = [
    "FEATURES_ERROR",
    "MLFLOW_FORMATS",
    "call",
    "invocations",
    "mlflow_rows",
    "ping",
    "predict",
    "seed_rows",
    "version",
]

FEATURES_ERROR = 'Missing or invalid "features" key'
"""The seed's message for a body without a list under ``"features"`` (kept verbatim)."""

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
"""The keys of an MLflow scoring request; a request has exactly one of them."""

_METHODS = ("predict", "predict_proba", "decision_function")


def call(
    served: ServedModel,
    rows: Any,
    methods: tuple[str, ...],
    finish: Callable[[Outcome], Response],
    version: str | None = None,
) -> Call:
    """The model work of a request: ``methods`` of the served model on ``rows``.

    The rows are checked when the call is computed, with the rows of the requests batched
    with it; what can be refused before (no rows, a method the model lacks) is refused here.
    """
    model = served.model
    if isinstance(rows, list) and not rows:
        # Signature.validate's own message, which models with a categorical feature do not give
        raise HTTPError(400, "expected at least one row, got none")
    for method in methods:
        if method not in model.methods:
            offered = ", ".join(repr(m) for m in model.methods)
            raise HTTPError(400, f"model {served.name!r} has no {method}; it offers {offered}")
    return Call(served.name, rows, methods, finish, version)


def _count(
    app: App, outcome: Outcome, result: Any, prediction_id: str, outputs: Any = None
) -> None:
    """Count the rows predicted, and record the prediction for ``POST /feedback``."""
    rows = np.shape(result)
    n = int(rows[0]) if rows else 1
    served = outcome.served
    app.metrics.predicted(served.name, n)
    app.record_prediction(served, prediction_id, n, outputs, outcome.inputs)


# -- the seed protocol -----------------------------------------------------------------------


def seed_rows(document: Any) -> tuple[list[Any], tuple[str, ...]]:
    """The rows and the extra methods (``"return"``) of a seed ``/predict`` body."""
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise HTTPError(
            400, f'{FEATURES_ERROR}: expected a JSON object {{"features": [[...], ...]}}'
        )
    extra = document.get("return")
    if extra is None:  # the seed's body: no extra methods
        return features, ()
    if isinstance(extra, str):
        extra = [extra]
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        raise HTTPError(400, f'"return" must be a list of method names among {list(_METHODS)}')
    unknown = [m for m in extra if m not in _METHODS]
    if unknown:
        raise HTTPError(
            400, f'"return" names unknown methods {unknown}; choose among {list(_METHODS)}'
        )
    return features, tuple(dict.fromkeys(m for m in extra if m != "predict"))


def predict(app: App, request: Request, params: Mapping[str, str]) -> Call:
    """``POST /predict``: the seed's contract, plus model, version and a prediction id."""
    served = app.select(request)
    require_json(request.headers)
    features, extra = seed_rows(json_body(request.body))

    def finish(outcome: Outcome) -> Response:
        served = outcome.served
        prediction = outcome.results["predict"]
        document: dict[str, Any] = {"prediction": jsonable(prediction)}
        for method in extra:
            document[method] = jsonable(outcome.results[method])
        prediction_id = new_id()
        document.update(model=served.name, version=served.version, id=prediction_id)
        _count(app, outcome, prediction, prediction_id, document["prediction"])
        return Response.json(200, document)

    return call(served, features, ("predict", *extra), finish)


# -- the MLflow scoring protocol -------------------------------------------------------------


def invocations(app: App, request: Request, params: Mapping[str, str]) -> Call:
    """``POST /invocations``: MLflow's scoring format, JSON or CSV → ``{"predictions": ...}``.

    ``params`` are ignored, except ``{"method": "predict_proba"}`` (or
    ``"decision_function"``), which chooses the method called.
    """
    served = app.select(request)
    kind, options = media_type(request.headers)
    check_charset(options)
    method = "predict"
    if kind == "text/csv":
        rows: Any = _csv_rows(request.body, served)
    elif is_json_type(kind):
        rows, method = mlflow_rows(json_body(request.body), served)
    else:
        raise HTTPError(
            415,
            f"unsupported Content-Type {kind!r}: /invocations takes application/json or text/csv",
        )

    def finish(outcome: Outcome) -> Response:
        predictions = outcome.results[method]
        values = jsonable(predictions)
        # the prediction id of /invocations is the request id (the X-Request-ID answered)
        recorded = values if method == "predict" else None
        _count(app, outcome, predictions, request.id, recorded)
        return Response.json(200, {"predictions": values})

    return call(served, rows, (method,), finish)


def mlflow_rows(document: Any, served: ServedModel) -> tuple[Any, str]:
    """The rows and the method of an MLflow JSON scoring request."""
    if not isinstance(document, dict):
        got = "a list" if isinstance(document, list) else f"a {type(document).__name__}"
        raise HTTPError(
            400,
            f"the body must be a JSON object with exactly one of {list(MLFLOW_FORMATS)}; got {got}",
        )
    present = [key for key in MLFLOW_FORMATS if key in document]
    if len(present) != 1:
        raise HTTPError(
            400,
            f"the body must have exactly one of {list(MLFLOW_FORMATS)}; "
            f"it has {present or 'none'} (keys: {list(document)})",
        )
    key = present[0]
    value = document[key]
    names = served.model.signature.names
    if key == "dataframe_split":
        rows = _split_rows(value, names)
    elif key == "dataframe_records":
        if not isinstance(value, list):
            raise HTTPError(400, '"dataframe_records" must be a list of {feature: value} objects')
        rows = value
    else:
        rows = _tensor_rows(value, key, names)
    return rows, _method(document.get("params"))


def _method(params: Any) -> str:
    if params is None:
        return "predict"
    if not isinstance(params, dict):
        raise HTTPError(400, '"params" must be a JSON object')
    method = params.get("method", "predict")
    if method not in _METHODS:
        raise HTTPError(400, f'params "method" must be one of {list(_METHODS)}, got {method!r}')
    return str(method)


def _split_rows(value: Any, names: Sequence[str]) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise HTTPError(
            400, '"dataframe_split" must be an object {"columns": [...], "data": [[...], ...]}'
        )
    data, columns = value["data"], value.get("columns")
    if columns is None or columns == list(names):
        return data
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise HTTPError(400, '"dataframe_split" "columns" must be a list of feature names')
    return _reorder(_table(data, len(columns), "dataframe_split"), columns, names)


def _tensor_rows(value: Any, key: str, names: Sequence[str]) -> Any:
    if isinstance(value, list):
        return value  # rows, or records: the model's validation reads both
    if not isinstance(value, dict) or not value:
        raise HTTPError(400, f'"{key}" must be a list of rows or an object of columns')
    if len(value) == 1 and len(names) > 1 and next(iter(value)) not in names:
        return next(iter(value.values()))  # one named tensor holding the whole table
    columns = list(value)
    _check_columns(columns, names)
    try:
        cells = [np.atleast_1d(np.asarray(value[name], dtype=object)) for name in names]
    except ValueError as exc:
        raise HTTPError(400, f'"{key}" columns must be flat lists of values: {exc}') from exc
    lengths = {name: cell.shape for name, cell in zip(names, cells, strict=True)}
    if len(set(lengths.values())) != 1 or cells[0].ndim != 1:
        raise HTTPError(
            400, f'"{key}" columns must be flat lists of one length; got shapes {lengths}'
        )
    return np.stack(cells, axis=1)


def _table(data: list[Any], width: int, key: str) -> np.ndarray:
    try:
        table = np.array(data, dtype=object)
    except ValueError as exc:
        raise HTTPError(400, f'"{key}" rows must all have {width} values: {exc}') from exc
    if table.ndim != 2 or table.shape[1] != width:
        raise HTTPError(
            400,
            f'"{key}" must hold rows of {width} values (one per column); got shape '
            f"{list(table.shape)}",
        )
    return table


def _check_columns(columns: Sequence[str], names: Sequence[str]) -> None:
    known, given = set(names), set(columns)
    missing = [name for name in names if name not in given]
    unknown = [name for name in columns if name not in known]
    if missing or unknown or len(given) != len(columns):
        problems = []
        if missing:
            problems.append(f"missing features {missing}")
        if unknown:
            problems.append(f"unknown features {unknown}")
        if len(given) != len(columns):
            problems.append("repeated columns")
        raise HTTPError(400, "; ".join(problems) + f" (expected {list(names)})")


def _reorder(table: np.ndarray, columns: Sequence[str], names: Sequence[str]) -> np.ndarray:
    _check_columns(columns, names)
    position = {name: j for j, name in enumerate(columns)}
    return table[:, [position[name] for name in names]]


def _csv_rows(body: bytes | bytearray, served: ServedModel) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is installed wherever tested
        raise HTTPError(
            415, "text/csv needs pandas on the server: pip install 'modelkit[pandas]'"
        ) from exc
    signature = served.model.signature
    numeric = {name: "float64" for name in signature.names if name not in signature.levels}
    try:
        text = bytes(body).decode("utf-8-sig")
        header = pd.read_csv(io.StringIO(text), nrows=0).columns.tolist()
        frame = pd.read_csv(
            io.StringIO(text),
            dtype={name: kind for name, kind in numeric.items() if name in header},
            **_exact_floats(pd.__version__),
        )
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"the CSV body is not UTF-8: {exc}") from exc
    except (ValueError, pd.errors.ParserError) as exc:
        raise HTTPError(
            400, f"cannot read the CSV body (a header row of feature names, then rows): {exc}"
        ) from exc
    return frame


def _exact_floats(version: str) -> dict[str, str]:
    """read_csv options that parse floats exactly (pandas 3 does by default)."""
    return {} if int(version.split(".", maxsplit=1)[0]) >= 3 else {"float_precision": "round_trip"}


# -- MLflow's health and version routes ------------------------------------------------------


def ping(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /ping``: 200 with a newline, as MLflow answers, once the models are loaded."""
    return Response.text(200, "\n")


def version(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``GET /version``: the modelkit version, as plain text."""
    from modelkit._version import __version__

    return Response.text(200, __version__)
