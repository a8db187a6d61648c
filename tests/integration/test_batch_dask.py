"""engine="dask" on a real distributed cluster gives exactly the local engine's rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit import batch_predict
from modelkit.model import Model

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Model, Path, Path]:
    root = tmp_path_factory.mktemp("dask")
    X, y = make_classification(n_samples=20_000, n_features=6, random_state=9)
    model = Model.wrap(LogisticRegression().fit(X, y), sample=X, name="dk")
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame.insert(0, "id", np.arange(len(X)) * 3)
    frame.to_csv(root / "data.csv", index=False, float_format="%.17g")
    frame.to_parquet(root / "data.parquet", row_group_size=4000)
    return model, root / "data.csv", root / "data.parquet"


def table(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, prediction, proba_1 FROM predictions ORDER BY id"
        ).fetchall()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_dask_gives_the_local_results(
    client: Any, job: tuple[Model, Path, Path], tmp_path: Path, kind: str
) -> None:
    model, csv_path, parquet_path = job
    source = str(csv_path if kind == "csv" else parquet_path)
    options: dict[str, Any] = {
        "key": "id",
        "outputs": ("predict", "predict_proba"),
        "chunk_rows": 3000,
    }
    local = batch_predict(model, source, tmp_path / "local.db", **options)
    with distributed.get_task_stream(client) as stream:
        remote = batch_predict(
            model, source, tmp_path / "dask.db", engine="dask", scheduler=client, **options
        )
    assert len(stream.data) >= 2  # the partitions ran on the cluster
    assert (remote.rows_in, remote.rows_out) == (local.rows_in, local.rows_out) == (20_000, 20_000)
    assert table(tmp_path / "dask.db") == table(tmp_path / "local.db")
    again = batch_predict(
        model, source, tmp_path / "dask.db", engine="dask", scheduler=client, **options
    )
    assert again.already_finished


def test_dask_into_parquet_resumes_only_missing_partitions(
    client: Any, job: tuple[Model, Path, Path], tmp_path: Path
) -> None:
    model, _, parquet_path = job
    out = tmp_path / "out.parquet"
    first = batch_predict(
        model,
        str(parquet_path),
        str(out),
        key="id",
        engine="dask",
        scheduler=client,
        chunk_rows=4000,
        job_id="dk",
    )
    records = sorted((out / "_modelkit" / "dk").glob("[0-9]*.json"))
    assert len(records) >= 2
    records[-1].unlink()  # as if the run died before that partition's commit
    (out / f"dk-{int(records[-1].stem):012d}.parquet").unlink()
    job_file = out / "_modelkit" / "dk" / "job.json"
    job_file.write_text(job_file.read_text().replace('"finished"', '"running"'))
    second = batch_predict(
        model,
        str(parquet_path),
        str(out),
        key="id",
        engine="dask",
        scheduler=client,
        chunk_rows=4000,
        job_id="dk",
    )
    assert second.rows_this_run < first.rows_this_run
    frame = pd.read_parquet(out).sort_values("id")
    assert frame["id"].tolist() == (np.arange(20_000) * 3).tolist()
    assert (
        frame["prediction"].tolist()
        == model.predict(pd.read_parquet(parquet_path).iloc[:, 1:].to_numpy()).tolist()
    )


@pytest.mark.parametrize("on_error", ["skip", "quarantine"])
def test_dask_sets_bad_csv_cells_aside_like_the_local_engine(
    client: Any, job: tuple[Model, Path, Path], tmp_path: Path, on_error: str
) -> None:
    model, csv_path, _ = job
    lines = csv_path.read_text().splitlines()
    bad = {3: "abc", 4_500: "", 9_001: "NA", 15_000: "1.2.3", 19_998: "inf"}
    for row, cell in bad.items():
        fields = lines[row + 1].split(",")
        fields[2] = cell  # feature f1
        lines[row + 1] = ",".join(fields)
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(lines) + "\n")
    options: dict[str, Any] = {"key": "id", "chunk_rows": 3000, "on_error": on_error}
    local = batch_predict(model, str(source), tmp_path / "local.db", **options)
    remote = batch_predict(
        model, str(source), tmp_path / "dask.db", engine="dask", scheduler=client, **options
    )
    assert (local.rows_out, remote.rows_out) == (19_995, 19_995)
    if on_error == "skip":
        assert (local.rows_skipped, remote.rows_skipped) == (5, 5)
    else:
        assert (local.rows_quarantined, remote.rows_quarantined) == (5, 5)

    def read(db: Path, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()

    sql = "SELECT id, prediction FROM predictions ORDER BY id"
    assert read(tmp_path / "dask.db", sql) == read(tmp_path / "local.db", sql)
    if on_error == "quarantine":
        sql = "SELECT key, row_number, reason, data FROM predictions_quarantine ORDER BY 2"
        quarantined = read(tmp_path / "local.db", sql)
        assert read(tmp_path / "dask.db", sql) == quarantined
        assert [q[1] for q in quarantined] == sorted(bad)
        assert [q[2] for q in quarantined] == [
            "feature 'f1' must be numeric, got 'abc'",
            "feature 'f1' is missing",
            "feature 'f1' is missing",
            "feature 'f1' must be numeric, got '1.2.3'",
            "feature 'f1' must be finite",
        ]
