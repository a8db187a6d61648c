"""Hot model swap in process: ModelWatcher, POST /admin/reload, polling, refusals, fork."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.unit.serving.helpers import Client, error_of

from modelkit import Artifact
from modelkit.exceptions import RegistryError, ServingError
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import App, Request
from modelkit.serving.swap import ModelWatcher, Reload, follows, warm_up

KEY = "swap-test-key-0123456789"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def flipped_model(seed_data: tuple[np.ndarray, np.ndarray]) -> Model:
    """The seed model trained on flipped labels: it predicts the opposite class."""
    X, y = seed_data
    estimator = LogisticRegression(solver="liblinear").fit(X, 1 - y)
    return Model.wrap(estimator, sample=X, name="churn")


@pytest.fixture
def registry(
    tmp_path: Path, seed_model: Model, flipped_model: Model, seed_data: Any
) -> Iterator[Registry]:
    """ "churn" version 1 (the seed model, in production) and version 2 (flipped labels)."""
    X = seed_data[0]
    with Registry(str(tmp_path / "reg")) as reg:
        reg.register("churn", Artifact.from_model(seed_model, name="churn", sample=X))
        reg.register("churn", Artifact.from_model(flipped_model, name="churn", sample=X))
        reg.set_alias("churn", "production", 1)
        yield reg


def predict(client: Client, rows: list[list[float]], **headers: str) -> dict[str, Any]:
    answer = client.post("/predict", json={"features": rows}, headers=headers)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_a_moved_alias_is_loaded_warmed_up_and_swapped(
    serve: Callable[..., Client],
    registry: Registry,
    seed_model: Model,
    flipped_model: Model,
    seed_data: Any,
) -> None:
    rows = seed_data[0][:16].tolist()
    client = serve("churn@production", registry=registry, feedback=False)
    watcher = client.core.watcher
    assert isinstance(watcher, ModelWatcher)
    assert not watcher.polling  # no watch interval: only on demand
    before = predict(client, rows)
    assert before["version"] == "1"
    assert before["prediction"] == seed_model.predict(rows).tolist()

    assert watcher.check_now() == [Reload("churn", "churn@production", "1", "1", "unchanged")]
    registry.set_alias("churn", "production", 2)
    (result,) = watcher.check_now()
    assert (result.model, result.old_version, result.new_version) == ("churn", "1", "2")
    assert result.outcome == "swapped"
    assert result.error is None
    assert result.seconds > 0

    after = predict(client, rows)
    assert after["version"] == "2"
    assert after["prediction"] == flipped_model.predict(rows).tolist()
    assert after["prediction"] != before["prediction"]
    served = client.core.models["churn"]
    assert served.model.name == "churn"
    assert served.sha256 == registry.resolve("churn/2").artifact_sha256
    metrics = client.get("/metrics").text
    assert 'version="2"' in metrics
    assert 'modelkit_model_swaps_total{model="churn",outcome="swapped"} 1' in metrics
    assert (watcher.checks, watcher.swaps, watcher.failures) == (2, 1, 0)


def test_a_pinned_version_and_an_in_process_model_never_move(
    registry: Registry, seed_model: Model
) -> None:
    app = App("churn/1", other=seed_model, registry=registry, feedback=False, auth=False)
    app.start()
    registry.set_alias("churn", "production", 2)
    assert app.watcher is not None
    assert app.watcher.followed == {}
    assert app.watcher.check_now() == []
    assert app.models["churn"].version == "1"
    assert not follows(None)
    assert not follows("churn/3")
    assert follows("churn@production")
    assert follows("models:/churn")  # the latest version moves with every registration


def test_only_registry_apps_have_a_watcher(seed_model: Model) -> None:
    app = App(seed_model, auth=False)
    app.start()
    assert app.watcher is None


def test_the_latest_version_is_followed(registry: Registry, seed_data: Any) -> None:
    app = App("models:/churn", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.models["churn"].version == "2"
    registry.register("churn", Artifact.from_model(app.models["churn"].model, name="churn"))
    assert app.watcher is not None
    (result,) = app.watcher.check_now()
    assert (result.outcome, result.new_version) == ("swapped", "3")


def test_a_version_whose_warm_up_fails_is_refused_and_the_old_one_serves(
    registry: Registry,
    flipped_model: Model,
    seed_data: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = attrs.evolve(
        Artifact.from_model(flipped_model, name="churn", sample=seed_data[0]),
        input_example={"columns": None, "data": [["not a number"] * 20]},
    )
    registry.register("churn", broken)  # version 3
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    registry.set_alias("churn", "production", 3)
    assert app.watcher is not None
    with caplog.at_level(logging.ERROR, logger="modelkit.serving"):
        (result,) = app.watcher.check_now()
    assert result.outcome == "refused"
    assert (result.old_version, result.new_version) == ("1", "3")
    assert result.error is not None
    assert result.error.startswith("version 3 was refused: SignatureError:")
    assert app.models["churn"].version == "1"
    assert app.watcher.failures == 1
    assert app.metrics.render().count('outcome="refused"} 1') == 1
    assert app.watcher.last_error == f"churn: {result.error}"
    assert "still serving version 1" in caplog.text

    registry.set_alias("churn", "production", 2)  # a good version afterwards is taken
    (result,) = app.watcher.check_now()
    assert result.outcome == "swapped"
    assert app.models["churn"].version == "2"


def test_an_alias_that_disappeared_is_refused(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    registry.remove_alias("churn", "production")
    assert app.watcher is not None
    (result,) = app.watcher.check_now()
    assert result.outcome == "refused"
    assert result.new_version is None
    assert result.error is not None
    assert "cannot resolve 'churn@production'" in result.error
    assert app.models["churn"].version == "1"


def test_the_watch_interval_polls_the_registry(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False, watch=0.02)
    app.start()
    watcher = app.watcher
    assert watcher is not None
    assert watcher.polling
    registry.set_alias("churn", "production", 2)
    wait_until(lambda: app.models["churn"].version == "2", "the polling thread to swap")
    assert watcher.swaps == 1
    assert app.drain()
    assert not watcher.polling  # draining stops the polling
    watcher.stop()  # idempotent


def test_a_failing_registry_is_counted_and_polling_goes_on(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.watcher is not None
    app.watcher.stop()
    app.registry = "nope://registry"  # what the watcher opens fails
    watcher = ModelWatcher(app, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="modelkit.serving"):
        watcher.start()
        wait_until(lambda: watcher.failures >= 2, "two failed checks")
        watcher.stop()
    assert watcher.last_error is not None
    assert watcher.last_error.startswith("registry check failed: ")
    assert "nope" in watcher.last_error
    assert "could not check the served aliases" in caplog.text
    assert app.models["churn"].version == "1"


def test_one_reload_at_a_time(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    registry.set_alias("churn", "production", 2)
    watcher = app.watcher
    assert watcher is not None
    results: list[list[Reload]] = []
    threads = [threading.Thread(target=lambda: results.append(watcher.check_now())) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(result.outcome for found in results for result in found)
    assert outcomes == ["swapped", "unchanged"]
    assert watcher.swaps == 1


def test_the_watcher_uses_registry_connections_of_its_own(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.watcher is not None
    app.watcher.check_now()
    own = app.watcher._registry
    assert own is not None
    assert own is not registry
    assert own.backend is not registry.backend
    app.watcher.stop()
    assert app.watcher._registry is None
    assert registry.get("churn", 1).version == 1  # the caller's registry is still open


def test_a_registry_that_cannot_be_reopened_is_shared(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Registry) -> Registry:
        raise RegistryError("no clone")

    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    monkeypatch.setattr(Registry, "reopen", refuse)
    assert app.watcher is not None
    app.watcher.check_now()
    assert app.watcher._registry is registry
    app.watcher.stop()
    assert registry.get("churn", 1).version == 1  # not closed: the caller owns it


def test_a_registry_url_is_opened_by_the_watcher(registry: Registry, tmp_path: Path) -> None:
    app = App("churn@production", registry=str(tmp_path / "reg"), feedback=False, auth=False)
    app.start()
    registry.set_alias("churn", "production", 2)
    assert app.watcher is not None
    (result,) = app.watcher.check_now()
    assert result.outcome == "swapped"
    app.drain()
    assert app.watcher._registry is None


def test_on_swap_is_called_after_a_swap_only(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.watcher is not None
    calls: list[list[Reload]] = []
    app.watcher.on_swap = calls.append
    app.watcher.check_now()
    assert calls == []
    registry.set_alias("churn", "production", 2)
    app.watcher.check_now()
    assert [[r.outcome for r in found] for found in calls] == [["swapped"]]


def test_a_failing_on_swap_is_logged(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.watcher is not None

    def fail(results: list[Reload]) -> None:
        raise OSError("no master")

    app.watcher.on_swap = fail
    registry.set_alias("churn", "production", 2)
    with caplog.at_level(logging.ERROR, logger="modelkit.serving"):
        (result,) = app.watcher.check_now()
    assert result.outcome == "swapped"
    assert "the on_swap callback failed" in caplog.text


def test_a_draining_app_is_not_swapped(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    app.begin_drain()
    registry.set_alias("churn", "production", 2)
    assert app.watcher is not None
    (result,) = app.watcher.check_now()
    assert (result.outcome, result.error) == ("unchanged", "the server is not ready")
    assert app.models["churn"].version == "1"


def test_a_bad_interval_is_refused(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    with pytest.raises(ServingError, match="interval must be a positive number"):
        ModelWatcher(app, interval=0)
    with pytest.raises(ServingError, match="watch must be a positive number"):
        App("churn@production", registry=registry, watch=-1.0)


def test_repr_and_records() -> None:
    record = Reload("churn", "churn@production", "1", "2", "swapped", seconds=0.5)
    assert record.to_dict() == {
        "model": "churn",
        "uri": "churn@production",
        "old_version": "1",
        "new_version": "2",
        "outcome": "swapped",
        "error": None,
        "seconds": 0.5,
    }
    with pytest.raises(ValueError, match="outcome"):
        Reload("churn", "churn@production", "1", "2", "maybe")


def test_warm_up_calls_every_method_on_the_example(seed_model: Model, seed_data: Any) -> None:
    rows = seed_data[0][:3].tolist()
    warm_up(seed_model, None)
    warm_up(seed_model, {"columns": None, "data": []})
    warm_up(seed_model, {"columns": None, "data": rows})
    names = list(seed_model.signature.names)
    warm_up(seed_model, {"columns": names, "data": rows})

    class Short:  # a model whose predict answers one value whatever the rows
        methods = ("predict",)
        signature = seed_model.signature

        def call(self, method: str, data: Any, **options: Any) -> list[int]:
            return [0]

    with pytest.raises(ValueError, match="returned 1 results for the 3 rows"):
        warm_up(Short(), {"columns": None, "data": rows})


def test_warm_up_rows_are_not_reported_as_predictions(
    seed_model: Model, seed_data: Any, plugin_manager: Any
) -> None:
    seen: list[str] = []

    class Listener:
        @hookimpl
        def on_prediction(self, model: Model, method: str, inputs: Any, outputs: Any) -> None:
            seen.append(method)

    plugin_manager.register(Listener())
    warm_up(seed_model, {"columns": None, "data": seed_data[0][:3].tolist()})
    assert seen == []
    seed_model.predict(seed_data[0][:1])  # a real prediction still is
    assert seen == ["predict"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("follow", [True, False])
def test_a_forked_child_polls_on_its_own(registry: Registry, follow: bool) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False, watch=30)
    app.start()
    watcher = app.watcher
    assert watcher is not None
    watcher.follow_after_fork = follow
    parent_thread = watcher._thread
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = watcher.polling == follow and (not follow or watcher._thread is not parent_thread)
        ok = ok and watcher._lock.acquire(blocking=False)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert watcher.polling
    app.drain()


# -- POST /admin/reload ------------------------------------------------------------------------


def test_reload_without_authenticators_is_a_403_saying_how_to_set_keys(
    serve: Callable[..., Client], registry: Registry
) -> None:
    client = serve("churn@production", registry=registry, feedback=False)
    registry.set_alias("churn", "production", 2)
    answer = client.post("/admin/reload")
    assert answer.status_code == 403
    message = error_of(answer)
    assert "MODELKIT_API_KEYS" in message
    assert "Authorization: Bearer" in message
    assert client.core.models["churn"].version == "1"  # nothing was reloaded


def test_reload_answers_what_changed(
    serve: Callable[..., Client], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    client = serve("churn@production", registry=registry, feedback=False)
    auth = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/admin/reload").status_code == 401
    same = client.post("/admin/reload", headers=auth)
    assert same.status_code == 200
    assert same.json()["changed"] is False
    assert [m["outcome"] for m in same.json()["models"]] == ["unchanged"]

    registry.set_alias("churn", "production", 2)
    moved = client.post("/admin/reload", headers=auth)
    assert moved.status_code == 200, moved.text
    document = moved.json()
    assert document["changed"] is True
    (model,) = document["models"]
    assert (model["model"], model["old_version"], model["new_version"]) == ("churn", "1", "2")
    assert model["outcome"] == "swapped"
    assert predict(client, [[0.0] * 20], **auth)["version"] == "2"


def test_reload_reports_a_refused_version_as_a_500(
    serve: Callable[..., Client],
    registry: Registry,
    flipped_model: Model,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = attrs.evolve(
        Artifact.from_model(flipped_model, name="churn"),
        input_example={"columns": None, "data": [[1.0, 2.0]]},  # two features, not twenty
    )
    registry.register("churn", broken)  # version 3
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    client = serve("churn@production", registry=registry, feedback=False)
    registry.set_alias("churn", "production", 3)
    answer = client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 500
    document = answer.json()
    assert document["changed"] is False
    assert document["error"].startswith("churn: version 3 was refused")
    assert document["models"][0]["outcome"] == "refused"
    assert client.core.models["churn"].version == "1"


def test_reload_with_nothing_to_follow_says_so(
    serve: Callable[..., Client], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    client = serve("churn/1", registry=registry, feedback=False)
    answer = client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200
    assert answer.json()["models"] == []
    assert "no served model follows a registry alias" in answer.json()["message"]


def test_reload_on_a_public_route_is_still_refused(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    app = App(
        "churn@production",
        registry=registry,
        feedback=False,
        public_routes=["/healthz", "/admin/reload"],
    )
    app.start()
    answer = app.handle(Request("POST", "/admin/reload"))
    assert answer.status == 403
    assert b"public routes" in answer.body


def test_reload_while_draining_is_a_503(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKIT_API_KEYS", KEY)
    app = App("churn@production", registry=registry, feedback=False)
    app.start()
    app.begin_drain()
    answer = app.handle(
        Request("POST", "/admin/reload", headers={"authorization": f"Bearer {KEY}"})
    )
    assert answer.status == 503
    assert answer.header("retry-after") == "5"
