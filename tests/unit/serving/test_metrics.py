"""Prometheus metrics: the exposition text, histograms, labels, and what a server records."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.serving.helpers import Client

from modelkit import __version__
from modelkit.model import Model
from modelkit.serving import Metrics

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z0-9_]+="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$', re.DOTALL)


def samples(text: str) -> dict[str, float]:
    """Parse the exposition text: every sample line must be well formed."""
    found: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):  # the format's only line break
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        match = SAMPLE.match(line)
        assert match, line
        found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def test_counters_and_histograms() -> None:
    metrics = Metrics(buckets=[0.5, 0.1])
    assert metrics.buckets == (0.1, 0.5)
    metrics.observe("/predict", "seed", 200, 0.05)
    metrics.observe("/predict", "seed", 200, 0.3)
    metrics.observe("/predict", "seed", 200, 2.0)
    metrics.observe("/predict", "seed", 400, 0.1)
    found = samples(metrics.render())
    base = 'route="/predict",model="seed",status="200"'
    assert found[f"modelkit_requests_total{{{base}}}"] == 3
    assert found[f'modelkit_request_duration_seconds_bucket{{{base},le="0.1"}}'] == 1
    assert found[f'modelkit_request_duration_seconds_bucket{{{base},le="0.5"}}'] == 2
    assert found[f'modelkit_request_duration_seconds_bucket{{{base},le="+Inf"}}'] == 3
    assert found[f"modelkit_request_duration_seconds_count{{{base}}}"] == 3
    assert found[f"modelkit_request_duration_seconds_sum{{{base}}}"] == pytest.approx(2.35)
    bad = 'route="/predict",model="seed",status="400"'
    assert found[f'modelkit_request_duration_seconds_bucket{{{bad},le="0.1"}}'] == 1  # le is <=
    assert found[f'modelkit_build_info{{version="{__version__}"}}'] == 1
    assert metrics.requests() == {("/predict", "seed", "200"): 3, ("/predict", "seed", "400"): 1}


def test_gauges_and_model_descriptions() -> None:
    metrics = Metrics()
    metrics.enter()
    metrics.enter()
    metrics.leave()
    metrics.set_ready(True)
    metrics.predicted("seed", 5)
    metrics.predicted("seed", 2)
    metrics.describe_model("seed", version=None, uri=None, sha256=None, load_seconds=0.0)
    metrics.describe_model("churn", version="3", uri="churn@prod", sha256="ab", load_seconds=1.5)
    found = samples(metrics.render())
    assert metrics.in_flight == 1
    assert found["modelkit_requests_in_flight"] == 1
    assert found["modelkit_ready"] == 1
    assert found['modelkit_prediction_rows_total{model="seed"}'] == 7
    assert found['modelkit_model_load_seconds{model="churn",version="3"}'] == 1.5
    assert found['modelkit_model_info{model="churn",version="3",uri="churn@prod",sha256="ab"}'] == 1
    assert found['modelkit_model_info{model="seed",version="",uri="",sha256=""}'] == 1


@given(st.text())
def test_label_values_are_escaped(value: str) -> None:
    metrics = Metrics()
    metrics.observe("/r", value, 200, 0.01)
    text = metrics.render()
    samples(text)
    line = next(line for line in text.split("\n") if line.startswith("modelkit_requests_total{"))
    escaped = line.split('model="', 1)[1].rsplit('",status=', 1)[0]
    unescaped = re.sub(
        r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), escaped, flags=re.DOTALL
    )
    assert unescaped == value


def test_recording_is_thread_safe() -> None:
    metrics = Metrics()

    def work() -> None:
        for _ in range(1000):
            metrics.enter()
            metrics.observe("/r", "m", 200, 0.001)
            metrics.leave()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.requests() == {("/r", "m", "200"): 8000}
    assert metrics.in_flight == 0


def test_a_server_records_routes_models_and_statuses(
    serve: Callable[..., Client], seed_model: Model, reg_model: Model, seed_data: Any
) -> None:
    client = serve(seed_model, reg_model)
    X = seed_data[0][:4].tolist()
    client.post("/predict", json={"features": X})
    client.post("/predict", json={"features": [[1]]})
    client.post("/predict?model=nope", json={"features": X})
    client.post(
        "/v2/models/reg/infer",
        json={"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", "data": [0] * 5}]},
    )
    client.get("/v2/models/whatever/ready")
    client.get("/does/not/exist")
    response = client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(response.text)
    assert found['modelkit_requests_total{route="/predict",model="seed",status="200"}'] == 1
    assert found['modelkit_requests_total{route="/predict",model="seed",status="400"}'] == 1
    assert found['modelkit_requests_total{route="/predict",model="",status="404"}'] == 1
    assert (
        found['modelkit_requests_total{route="/v2/models/{name}/infer",model="reg",status="200"}']
        == 1
    )
    assert (
        found['modelkit_requests_total{route="/v2/models/{name}/ready",model="",status="404"}'] == 1
    )
    assert found['modelkit_requests_total{route="unmatched",model="",status="404"}'] == 1
    assert found['modelkit_prediction_rows_total{model="seed"}'] == 4
    assert found['modelkit_prediction_rows_total{model="reg"}'] == 1
    assert found["modelkit_requests_in_flight"] == 1  # this very request
    assert found["modelkit_ready"] == 1
    assert found['modelkit_model_info{model="seed",version="",uri="",sha256=""}'] == 1


def test_latency_by_model_sums_routes_and_statuses() -> None:
    from modelkit.serving.metrics import Metrics

    metrics = Metrics()
    metrics.observe("/predict", "seed", 200, 0.003)
    metrics.observe("/invocations", "seed", 500, 0.02)
    metrics.observe("/predict", "seed", 400, 20.0)
    metrics.observe("/healthz", "", 200, 0.001)
    found = metrics.latency_by_model()
    assert set(found) == {"seed"}
    counts, errors, total, seconds = found["seed"]
    assert (errors, total, seconds) == (1, 3, 20.023)
    assert len(counts) == len(metrics.buckets) + 1
    assert (counts[2], counts[4], counts[-1]) == (1, 1, 1)  # 5 ms, 25 ms, +Inf
