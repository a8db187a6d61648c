"""tune(engine="dask") on a real dask.distributed cluster gives what the local engine gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.registry import Registry
from modelkit.training import TuneResult, tune

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two single-threaded workers in this process: small, but a real scheduler."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as connected:
        yield connected


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(str(tmp_path / "reg")) as reg:
        yield reg


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=120, n_features=5, n_informative=3, random_state=0)


def scores(result: TuneResult) -> list[dict[str, float]]:
    return [dict(child.metrics) for child in result.children]


def tasks_run(watcher: Any, **kwargs: Any) -> tuple[TuneResult, int]:
    """Run tune and count the tasks the cluster's scheduler saw meanwhile."""
    with distributed.get_task_stream(watcher) as stream:
        result = tune(**kwargs)
    return result, len(stream.data)


@pytest.mark.parametrize("search", ["random", "halving"])
def test_dask_engine_gives_the_local_results(
    client: Any, registry: Registry, data: Any, search: str
) -> None:
    X, y = data
    options: dict[str, Any] = {
        "estimator": LogisticRegression(),
        "params": {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]},
        "X": X,
        "y": y,
        "name": "churn",
        "registry": registry,
        "search": search,
        "n_iter": 5,
        "random_state": 0,
        "cv": 3,
    }
    on_dask, n_tasks = tasks_run(client, engine="dask", client=client, **options)
    assert n_tasks > 0, "the fits ran on the cluster"
    local, n_local_tasks = tasks_run(client, **options)
    assert n_local_tasks == 0, "the local engine does not touch the cluster"

    assert on_dask.best_params == local.best_params
    assert on_dask.best_score == pytest.approx(local.best_score, rel=1e-12)
    assert [c.params for c in on_dask.children] == [c.params for c in local.children]
    assert scores(on_dask) == [pytest.approx(s, rel=1e-12) for s in scores(local)]
    np.testing.assert_array_equal(
        registry.load(on_dask.version.uri).predict(X), local.model.predict(X)
    )
    assert on_dask.run.params["tune.engine"] == "dask"
    assert all(child.parent_id == on_dask.run.id for child in on_dask.children)


def test_dask_engine_connects_to_a_scheduler_address(
    cluster: Any, client: Any, registry: Registry, data: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = data
    result, n_tasks = tasks_run(
        client,
        estimator=LogisticRegression(),
        params={"C": [0.1, 1.0, 10.0]},
        X=X,
        y=y,
        name="churn",
        registry=registry,
        engine="dask",
        scheduler=cluster.scheduler_address,
        cv=2,
        progress=True,
    )
    assert n_tasks > 0
    assert len(result.children) == 3
    assert "3/3" in capsys.readouterr().err
