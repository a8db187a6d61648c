"""GET /openapi.json: every route, resolvable references, served model names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.unit.serving.helpers import Client

from modelkit.model import Model
from modelkit.serving import App
from modelkit.serving.openapi import OPENAPI_VERSION, document


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_route_is_described(client: Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == OPENAPI_VERSION
    assert doc["info"]["title"] == "modelkit"
    described = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert described == {(route.method, route.template) for route in client.core.routes}
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in doc["paths"].values():
        for operation in item.values():
            assert operation["summary"]
            assert operation["responses"]
            for status, answer in operation["responses"].items():
                assert answer["description"], status
    for ref in set(refs(doc)):
        assert resolve(doc, ref) is not None


def test_statuses_and_bodies(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    predict = paths["/predict"]["post"]
    assert set(predict["responses"]) == {
        "200",
        "400",
        "404",
        "405",
        "413",
        "415",
        "500",
        "503",
        "504",
    }
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    assert "text/csv" in paths["/invocations"]["post"]["requestBody"]["content"]
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert [p.get("name") for p in infer["parameters"]][1:] == ["name", "version"]
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "404", "405", "500"}


def test_served_model_names_are_listed(seed_model: Model, reg_model: Model) -> None:
    app = App(seed_model, reg_model)
    before = document(app)  # not started: no names yet
    query = before["paths"]["/predict"]["post"]["parameters"][1]
    assert query["name"] == "model"
    assert "enum" not in query["schema"]
    app.start()
    after = document(app)
    assert after["paths"]["/predict"]["post"]["parameters"][1]["schema"]["enum"] == ["seed", "reg"]
    name = after["paths"]["/v2/models/{name}"]["get"]["parameters"][1]
    assert name == {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["seed", "reg"]},
    }


def test_the_document_is_served_while_loading(seed_model: Model) -> None:
    from modelkit.serving import WSGIApp

    response = Client(WSGIApp(App(seed_model))).get("/openapi.json")
    assert response.status_code == 200
    assert "/predict" in response.json()["paths"]
