"""The closed loop with real processes: serve, drift, retrain, gate, promote, swap, roll back.

A smaller run of ``examples/retraining/closed_loop.py``: ``modelkit serve seed@production
--watch`` and ``modelkit watch seed@production`` run as their own processes while a client
streams requests whose concept changes halfway and sends their labels to ``/feedback``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from modelkit.artifact import Artifact
from modelkit.registry import Registry
from modelkit.retrain import Gate, Retrainer, RetrainPolicy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "retraining" / "closed_loop.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("closed_loop_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


loop = _load_example()
SETTINGS = loop.Settings(
    rows_before=1000,
    max_rows_after=8000,
    rows_after_promotion=600,
    rows_per_second=800.0,
    monitor_window=250,
    min_rows=1500,
    watch_rows=200,
    interval=0.3,
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The loop, run once for the module: its registry and what it measured."""
    home = tmp_path_factory.mktemp("loop") / "registry"
    result = loop.run(home, SETTINGS)
    return {"home": home, "result": result}


def test_a_concept_change_is_detected_retrained_gated_and_swapped_without_a_failure(
    ran: dict[str, Any], tmp_path: Path
) -> None:
    result = ran["result"]
    assert result.failed == 0
    assert sum(r.rows for r in result.requests if r.phase == "B") >= 1500
    kinds = {a["kind"] for a in result.alerts}
    assert "drift" in kinds
    events = {e["kind"]: e for e in result.events}
    assert {"triggered", "trained", "promoted"} <= set(events)
    promoted = events["promoted"]
    assert (promoted["champion"], promoted["challenger"]) == (1, 2)
    gate = promoted["details"]["gate"]
    assert gate["test"] == "mcnemar-midp"
    assert gate["n"] == promoted["details"]["holdout_rows"] >= 300
    assert gate["b"] > gate["a"] + 0.1
    assert gate["p_value"] < 1e-6
    assert promoted["details"]["train_rows"] + gate["n"] == promoted["details"]["rows"]
    triggers = {r["trigger"] for r in events["triggered"]["details"]["reasons"]}
    assert triggers & {"drift", "performance"}
    versions = [r.version for r in result.requests if r.ok]
    assert versions[0] == "1"
    assert versions[-1] == "2"
    swapped = versions.index("2")
    assert set(versions[swapped:]) == {"2"}  # once swapped, never back
    accuracy = result.accuracy
    recovered = accuracy["new champion on concept B (test set)"]
    assert recovered >= accuracy["trained on concept B from scratch (test set)"] - 0.02
    assert accuracy["seed model on concept B (test set)"] < recovered - 0.1
    assert accuracy["new champion on concept B (live)"] > accuracy["seed model on concept B (live)"]
    with Registry(ran["home"]) as registry:
        assert registry.aliases("seed") == {"production": 2}
        assert registry.history("seed", "production")[-1].reason.startswith("retrain promoted")  # type: ignore[union-attr]
    loop.plot(result, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_gate_rejects_a_worse_challenger_on_served_traffic(ran: dict[str, Any]) -> None:
    with Registry(ran["home"]) as registry:
        policy = RetrainPolicy(
            cooldown=0,
            train=lambda X, y: DummyClassifier(strategy="most_frequent").fit(X, y),
            gate=Gate(n_resamples=200),
        )
        champion = registry.aliases("seed")["production"]
        outcome = Retrainer(registry=registry, name="seed", policy=policy).retrain()
        assert outcome.decision == "rejected"
        assert registry.aliases("seed") == {"production": champion}
        rejected = registry.retrain_events("seed", kind="rejected")[0]
        assert rejected.details["gate"]["b"] < rejected.details["gate"]["a"]
        assert rejected.details["gate"]["p_value"] > 0.5
        assert rejected.details["rows_without_inputs"] == 0  # the server recorded the inputs
        assert registry.get("seed", rejected.challenger or 0).status == "archived"


def test_a_promotion_that_serves_worse_is_rolled_back_live(
    ran: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "registry"
    shutil.copytree(ran["home"], home)
    rng = np.random.default_rng(5)
    world = loop.concepts(SETTINGS.seed)["B"]
    X, y = loop.sample(world, 2000, rng)
    with Registry(home) as registry:
        good = registry.aliases("seed")["production"]
        bad = LogisticRegression(solver="liblinear").fit(X, 1 - y)  # learnt the labels inverted
        version = registry.register("seed", Artifact.from_model(bad, name="seed", sample=X))
        registry.set_alias("seed", "production", version.version, reason="a bad promotion")
        registry.record_retrain_event(
            "seed", "promoted", alias="production", champion=good, challenger=version.version
        )
    env = {"MODELKIT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env = {**__import__("os").environ, **env}
    serve = ["serve", "seed@production", "--port", "0", "--watch", "0.3"]
    watch = ["watch", "seed@production", "--interval", "0.3", "--watch-rows", "200"]
    served: list[str | None] = []
    failed = 0
    with loop.running(serve, env) as server, loop.running(watch, env) as watcher:
        url = server.wait_for(r" at (http://\S+) with ").group(1)
        watcher.wait_for(r"^watching ")
        client = loop.Client(url)
        for _ in range(2000):  # until the good version answers again, and a little more
            rows, labels = loop.sample(world, 10, rng)
            status, answer = client.post("/predict", {"features": rows.tolist()})
            if status != 200:
                failed += 1
                continue
            served.append(answer["version"])
            client.post("/feedback", {"id": answer["id"], "label": labels.tolist()})
            if served[-50:] == [str(good)] * 50:
                break
        client.close()
    assert failed == 0
    assert served[0] == str(version.version)
    assert served[-1] == str(good)
    with Registry(home) as registry:
        assert registry.aliases("seed") == {"production": good}
        back = registry.retrain_events("seed", kind="rolled_back")[0]
        assert (back.champion, back.challenger) == (good, version.version)
        watch_numbers = back.details["watch"]
        assert watch_numbers["n"] == 200
        assert watch_numbers["b"] > watch_numbers["a"] + 0.5  # the old champion, same rows
        assert watch_numbers["p_value"] < 1e-6
        assert registry.history("seed", "production")[-1].reason.startswith("rollback:")  # type: ignore[union-attr]
