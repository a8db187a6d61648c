"""POST /feedback and the prediction recorder: ids recorded off the request path, labels."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.serving.helpers import Client, error_of

from modelkit import Artifact
from modelkit._sql import MIGRATIONS, SCHEMA_VERSION
from modelkit.default_plugins.sqlite_registry import SQLiteBackend
from modelkit.exceptions import NotFoundError, RegistryError, ServingError, UsageError
from modelkit.model import Model
from modelkit.registry import PredictionRecord, Registry
from modelkit.serving import App, Request, ServedModel
from modelkit.serving.feedback import MAX_RECORDED_OUTPUTS, PredictionRecorder, parse_feedback


@pytest.fixture
def registry(tmp_path: Path, seed_model: Model) -> Iterator[Registry]:
    """A registry where "churn" version 1 (the seed model) is in production."""
    with Registry(str(tmp_path / "reg")) as reg:
        reg.register("churn", Artifact.from_model(seed_model, name="churn"))
        reg.set_alias("churn", "production", 1)
        yield reg


@pytest.fixture
def served(serve: Callable[..., Client], registry: Registry) -> Client:
    return serve("churn@production", registry=registry)


def rows(seed_data: tuple[np.ndarray, np.ndarray], n: int) -> list[list[float]]:
    data: list[list[float]] = seed_data[0][:n].tolist()
    return data


def flush(client: Client) -> None:
    recorder = client.core.recorder
    assert recorder is not None
    assert recorder.flush()


def test_labels_follow_predict_ids(
    served: Client, registry: Registry, seed_model: Model, seed_data: Any
) -> None:
    data = rows(seed_data, 3)
    answer = served.post("/predict", json={"features": data}).json()
    stored = served.post("/feedback", json={"id": answer["id"], "label": [1, 0, None]})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"accepted": 1}
    (found,) = registry.feedback("churn")
    assert found.prediction_id == answer["id"]
    assert (found.name, found.version, found.rows) == ("churn", 1, 3)
    assert found.outputs == seed_model.predict(data).tolist()
    assert found.labels == [1, 0, None]
    assert found.predicted_at <= found.received_at


def test_every_protocol_records_its_prediction_id(
    served: Client, registry: Registry, seed_data: Any
) -> None:
    data = rows(seed_data, 2)
    invocation = served.post(
        "/invocations", json={"inputs": data}, headers={"X-Request-ID": "mlflow-call-1"}
    )
    assert invocation.headers["x-request-id"] == "mlflow-call-1"
    proba = served.post(
        "/invocations", json={"inputs": data, "params": {"method": "predict_proba"}}
    )
    tensor = {"name": "x", "shape": [2, 20], "datatype": "FP64", "data": data}
    chosen = served.post("/v2/models/churn/infer", json={"id": "v2-call", "inputs": [tensor]})
    generated = served.post(
        "/v2/models/churn/versions/1/infer",
        json={"inputs": [tensor], "outputs": [{"name": "predict_proba"}]},
    ).json()["id"]
    X = np.asarray(data, dtype="<f4")
    header = json.dumps(
        {
            "id": "v2-binary",
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 20],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    ).encode()
    binary = served.post(
        "/v2/models/churn/infer",
        content=header + X.tobytes(),
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    assert binary.status_code == 200
    assert chosen.json()["id"] == "v2-call"
    ids = {
        "mlflow-call-1": [1, 0],
        proba.headers["x-request-id"]: [0, 0],
        "v2-call": [1, 1],
        generated: [0, 1],
        "v2-binary": [1, 0],
    }
    body = [{"id": key, "label": value} for key, value in ids.items()]
    assert served.post("/feedback", json=body).json() == {"accepted": 5}
    found = {f.prediction_id: f for f in registry.feedback("churn")}
    assert {key: f.labels for key, f in found.items()} == ids
    assert found["mlflow-call-1"].outputs == found["v2-call"].outputs
    assert found["v2-binary"].outputs is not None
    assert found[proba.headers["x-request-id"]].outputs is None  # predict_proba only
    assert found[generated].outputs is None


def test_feedback_arriving_before_its_record_is_written_waits_for_it(
    served: Client, registry: Registry, seed_data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = served.core.recorder
    assert recorder is not None
    release, flushing = threading.Event(), threading.Event()
    backend = recorder.registry.backend  # the recorder's own connections to the registry
    real_record, real_flush = backend.record_predictions, recorder.flush

    def slow_record(records: Any) -> None:
        assert release.wait(10)
        real_record(records)

    def watched_flush(timeout: float = 5.0) -> bool:
        flushing.set()
        return real_flush(timeout)

    monkeypatch.setattr(backend, "record_predictions", slow_record)
    monkeypatch.setattr(recorder, "flush", watched_flush)
    prediction_id = served.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    answers: list[Any] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            served.post("/feedback", json={"id": prediction_id, "label": 1})
        )
    )
    sender.start()
    assert flushing.wait(10)  # the id was unknown, so the handler waits for the writer
    release.set()
    sender.join(10)
    assert answers[0].status_code == 200, answers[0].text
    assert [f.labels for f in registry.feedback("churn")] == [[1]]


def test_unknown_ids_are_a_404_and_nothing_is_stored(
    served: Client, registry: Registry, seed_data: Any
) -> None:
    known = served.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    flush(served)
    answer = served.post(
        "/feedback", json=[{"id": known, "label": 1}, {"id": "never-predicted", "label": 0}]
    )
    assert answer.status_code == 404
    assert "'never-predicted'" in error_of(answer)
    assert known not in error_of(answer)
    assert registry.feedback("churn") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "at least one"),
        (b"{}", '"id": <prediction id>'),
        (b'{"id": "x"}', '"id": <prediction id>'),
        (b'[{"id": "x", "label": 1}, 7]', "item 1 must be an object"),
        (b'{"id": "x", "label": 1, "row": 2}', "unknown keys ['row']"),
        (b'{"id": 12, "label": 1}', '"id" must be a prediction id'),
        (b'{"id": "", "label": 1}', '"id" must be a prediction id'),
        (json.dumps({"id": "x" * 201, "label": 1}).encode(), "1-200 characters"),
        (b'[{"id": "a", "label": 1}, {"id": "a", "label": 0}]', "'a' appears twice"),
    ],
)
def test_malformed_bodies_are_a_400(served: Client, body: bytes, message: str) -> None:
    answer = served.post("/feedback", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert message in error_of(answer)


def test_labels_must_match_the_prediction(served: Client, seed_data: Any) -> None:
    prediction_id = served.post("/predict", json={"features": rows(seed_data, 2)}).json()["id"]
    flush(served)
    for label, message in [
        (1, "has 2 row(s), so it takes 2 label(s)"),
        ([1, 0, 1], "got 3"),
        ([1, {"a": 1}], "label of row 1"),
        ([[1], 0], "label of row 0"),
    ]:
        answer = served.post("/feedback", json={"id": prediction_id, "label": label})
        assert answer.status_code == 400, label
        assert message in error_of(answer)
    nan = served.post(
        "/feedback",
        content=f'{{"id": "{prediction_id}", "label": [NaN, 1]}}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 400
    assert "label of row 0" in error_of(nan)
    wrong_type = served.post(
        "/feedback", content=b"id=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert wrong_type.status_code == 415


def test_a_later_label_replaces_the_earlier_one(
    served: Client, registry: Registry, seed_data: Any
) -> None:
    prediction_id = served.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    assert served.post("/feedback", json={"id": prediction_id, "label": 1}).status_code == 200
    assert served.post("/feedback", json={"id": prediction_id, "label": [0]}).status_code == 200
    assert [f.labels for f in registry.feedback("churn")] == [[0]]


def test_without_a_registry_feedback_is_a_404_that_says_why(
    serve: Callable[..., Client], seed_model: Model, seed_data: Any
) -> None:
    client = serve(seed_model)
    assert client.core.recorder is None
    assert client.post("/predict", json={"features": rows(seed_data, 1)}).status_code == 200
    answer = client.post("/feedback", json={"id": "x", "label": 1})
    assert answer.status_code == 404
    assert "passed in-process and no registry was given" in error_of(answer)


def test_feedback_can_be_turned_off(
    serve: Callable[..., Client], registry: Registry, seed_data: Any
) -> None:
    client = serve("churn@production", registry=registry, feedback=False)
    assert client.core.recorder is None
    prediction_id = client.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    answer = client.post("/feedback", json={"id": prediction_id, "label": 1})
    assert answer.status_code == 404
    assert "feedback=False" in error_of(answer)


def test_an_in_process_model_with_a_registry_records_without_a_version(
    serve: Callable[..., Client], seed_model: Model, registry: Registry, seed_data: Any
) -> None:
    client = serve(seed_model, registry=registry)
    prediction_id = client.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    assert client.post("/feedback", json={"id": prediction_id, "label": 0}).status_code == 200
    (found,) = registry.feedback("seed")
    assert (found.name, found.version, found.labels) == ("seed", None, [0])


def test_a_failing_database_never_breaks_a_prediction(
    served: Client,
    registry: Registry,
    seed_data: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(records: Any) -> None:
        raise OSError("disk full")

    recorder = served.core.recorder
    assert recorder is not None
    monkeypatch.setattr(recorder.registry.backend, "record_predictions", broken)
    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        answer = served.post("/predict", json={"features": rows(seed_data, 2)})
        flush(served)
    assert answer.status_code == 200
    assert any("disk full" in r.getMessage() for r in caplog.records)
    assert recorder.dropped == 1
    assert recorder.pending == 0
    lost = served.post("/feedback", json={"id": answer.json()["id"], "label": [1, 1]})
    assert lost.status_code == 404


def test_the_queue_is_bounded_in_rows(
    registry: Registry,
    seed_model: Model,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(seed_model, registry=registry)
    app.start()
    served = app.models["seed"]
    recorder = PredictionRecorder(registry, max_pending_rows=10)
    taken, release = threading.Event(), threading.Event()
    real = registry.backend.record_predictions

    def blocked(records: Any) -> None:
        taken.set()
        assert release.wait(10)
        real(records)

    monkeypatch.setattr(registry.backend, "record_predictions", blocked)
    assert recorder.record(served, "first", 1)
    assert taken.wait(10)  # the writer holds "first": the queue is empty again
    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        assert recorder.record(served, "a", 6)
        assert recorder.record(served, "b", 4)
        assert not recorder.record(served, "c", 1)  # 11 rows would be waiting
    assert recorder.dropped == 1
    assert any("dropped a prediction record" in r.getMessage() for r in caplog.records)
    assert not recorder.record(served, "", 1)  # no id, nothing to label later
    release.set()
    assert recorder.close()
    assert {registry.prediction(key).rows for key in ("first", "a", "b")} == {1, 6, 4}
    with pytest.raises(NotFoundError):
        registry.prediction("c")
    assert not recorder.record(served, "late", 1)  # closed


def test_large_predictions_are_recorded_without_outputs(
    registry: Registry, seed_model: Model
) -> None:
    app = App(seed_model, registry=registry)
    app.start()
    recorder = app.recorder
    assert recorder is not None
    n = MAX_RECORDED_OUTPUTS + 1
    app.record_prediction(app.models["seed"], "large", n, np.zeros(n, dtype=int))
    app.record_prediction(app.models["seed"], "small", 2, np.array([1.5, np.nan]))
    assert recorder.flush()
    assert registry.prediction("large").rows == n
    assert registry.prediction("large").outputs is None
    assert registry.prediction("small").outputs == [1.5, None]


def test_old_records_are_pruned_and_drain_closes_the_recorder(
    tmp_path: Path, registry: Registry, seed_data: Any
) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=3)
    registry.record_predictions([PredictionRecord(id="old", name="churn", at=old, rows=1)])
    registry.add_feedback({"old": 1})
    app = App("churn@production", registry=str(tmp_path / "reg"), feedback_retention_days=2)
    app.start()
    recorder = app.recorder
    assert recorder is not None
    assert recorder.owns_registry
    body = json.dumps({"features": rows(seed_data, 1)}).encode()
    answer = app.handle(Request("POST", "/predict", body=body))
    assert answer.status == 200
    assert app.drain()
    with pytest.raises(NotFoundError):
        registry.prediction("old")
    assert registry.feedback("churn") == []
    assert registry.prediction(json.loads(answer.body)["id"]).rows == 1
    assert not recorder.record(app.models["churn"], "after-stop", 1)


def test_the_retention_option_is_checked(seed_model: Model) -> None:
    with pytest.raises(ServingError, match="feedback_retention_days"):
        App(seed_model, feedback_retention_days=0)
    App(seed_model, feedback_retention_days=None)


def test_a_forked_worker_gets_a_fresh_queue(
    registry: Registry, seed_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(seed_model, registry=registry)
    app.start()
    recorder = app.recorder
    assert recorder is not None
    assert recorder.record(app.models["seed"], "parent", 1)
    assert recorder.flush()
    monkeypatch.setattr("modelkit.serving.feedback.os.getpid", lambda: -1)
    assert recorder.record(app.models["seed"], "child", 1)
    assert recorder.flush()
    assert registry.prediction("child").rows == 1


def test_parse_feedback_accepts_one_object_or_a_list() -> None:
    assert parse_feedback({"id": "a", "label": 1}) == {"a": 1}
    assert parse_feedback([{"id": "a", "label": [1, 2]}, {"id": "b", "label": None}]) == {
        "a": [1, 2],
        "b": None,
    }


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    url = f"sqlite://{(tmp_path / 'old.db').as_posix()}"
    old = SQLiteBackend(url, migrations=MIGRATIONS[:1])
    assert old.schema_version() == 1
    old.close()
    with Registry(url, artifacts=str(tmp_path / "artifacts")) as registry:
        assert registry.backend.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
        at = datetime.now(timezone.utc)
        registry.record_predictions([PredictionRecord(id="p", name="m", at=at, rows=1)])
        assert registry.add_feedback({"p": "yes"}) == 1


def test_the_openapi_document_describes_feedback(client: Client) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/feedback"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedbackRequest"
    }
    assert "no recorded prediction" in operation["responses"]["404"]["description"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedbackResponse"
    }
    assert document["components"]["schemas"]["FeedbackItem"]["required"] == ["id", "label"]


def test_an_unavailable_database_is_a_503_for_feedback(
    served: Client, registry: Registry, seed_data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction_id = served.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    flush(served)

    def down(labels: Any, *, received_at: Any) -> None:
        raise RegistryError("registry database: connection refused")

    recorder = served.core.recorder
    assert recorder is not None
    monkeypatch.setattr(recorder.registry.backend, "add_feedback", down)
    answer = served.post("/feedback", json={"id": prediction_id, "label": 1})
    assert answer.status_code == 503
    assert "unavailable" in error_of(answer)
    assert answer.headers["retry-after"] == "5"


def test_many_unknown_ids_are_summarised(served: Client) -> None:
    body = [{"id": f"ghost-{i:02d}", "label": 1} for i in range(12)]
    answer = served.post("/feedback", json=body)
    assert answer.status_code == 404
    message = error_of(answer)
    assert "'ghost-00'" in message
    assert "'ghost-09'" in message
    assert "'ghost-10'" not in message
    assert "and 2 more" in message


def test_a_record_that_cannot_be_built_is_dropped_quietly(
    registry: Registry, seed_model: Model, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = PredictionRecorder(registry)
    odd = ServedModel(name="seed", model=seed_model, version="not-a-number")
    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        assert not recorder.record(odd, "p", 1)
    assert any("could not queue" in r.getMessage() for r in caplog.records)
    assert "pending=0" in repr(recorder)
    assert recorder.close()


def test_the_registry_checks_feedback_arguments(registry: Registry) -> None:
    at = datetime.now(timezone.utc)
    with pytest.raises(UsageError, match="prediction id"):
        PredictionRecord(id="", name="m", at=at, rows=1)
    with pytest.raises(UsageError, match="rows"):
        PredictionRecord(id="p", name="m", at=at, rows=-1)
    with pytest.raises(UsageError, match="timezone-aware"):
        PredictionRecord(id="p", name="m", at=datetime(2024, 1, 1), rows=1)
    record = PredictionRecord(id="p", name="m", at=at, rows=2, outputs=[1, 0])
    assert json.loads(json.dumps(record.to_dict()))["outputs"] == [1, 0]
    with pytest.raises(TypeError, match="PredictionRecord"):
        registry.record_predictions([{"id": "p"}])  # type: ignore[list-item]
    registry.record_predictions([])
    with pytest.raises(TypeError, match="mapping"):
        registry.add_feedback([("p", 1)])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="model name"):
        registry.feedback("")
    with pytest.raises(UsageError, match="prediction id"):
        registry.prediction("")


def test_closing_the_registry_given_does_not_stop_recording(
    tmp_path: Path, served: Client, registry: Registry, seed_data: Any
) -> None:
    recorder = served.core.recorder
    assert recorder is not None
    assert recorder.registry is not registry  # its own connections to the same database
    assert recorder.owns_registry
    registry.close()
    prediction_id = served.post("/predict", json={"features": rows(seed_data, 1)}).json()["id"]
    assert served.post("/feedback", json={"id": prediction_id, "label": 1}).status_code == 200
    with Registry(str(tmp_path / "reg")) as reopened:
        assert [f.labels for f in reopened.feedback("churn")] == [[1]]
    assert served.core.drain()


class Opaque:
    """A backend proxy without ``clone()``, as a third-party backend might be."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        if name == "clone":
            raise AttributeError(name)
        return getattr(self._backend, name)


def test_a_backend_that_cannot_be_reopened_is_shared(registry: Registry, seed_model: Model) -> None:
    registry.backend = Opaque(registry.backend)  # type: ignore[assignment]
    with pytest.raises(RegistryError, match="cannot be reopened"):
        registry.reopen()
    app = App(seed_model, registry=registry)
    app.start()
    assert app.recorder is not None
    assert app.recorder.registry is registry
    assert not app.recorder.owns_registry
    app.record_prediction(app.models["seed"], "shared", 1)
    assert app.drain()
    assert registry.prediction("shared").rows == 1


def test_prune_and_close_failures_only_warn(
    registry: Registry,
    seed_model: Model,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(seed_model, registry=registry)
    app.start()
    served = app.models["seed"]
    own = registry.reopen()
    recorder = PredictionRecorder(own, owns_registry=True)
    taken, release = threading.Event(), threading.Event()
    real = own.backend.record_predictions

    def blocked(records: Any) -> None:
        taken.set()
        assert release.wait(10)
        real(records)

    def no_prune(before: Any) -> int:
        raise OSError("read-only database")

    def no_close() -> None:
        raise OSError("close failed")

    monkeypatch.setattr(own.backend, "record_predictions", blocked)
    monkeypatch.setattr(own.backend, "prune_predictions", no_prune)
    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        assert recorder.record(served, "p", 1)
        assert taken.wait(10)
        assert not recorder.close(timeout=0.01)  # the writer is busy: its registry stays open
        release.set()
        assert recorder.flush()
        monkeypatch.setattr(own.backend, "close", no_close)
        assert recorder.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("still busy" in m for m in messages)
    assert any("read-only database" in m for m in messages)
    assert any("close failed" in m for m in messages)
    assert registry.prediction("p").rows == 1
