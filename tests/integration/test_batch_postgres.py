"""Batch jobs into a real PostgreSQL database with COPY: exactly once, resumable."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit import batch_predict
from modelkit.batch._postgres import PostgresSink
from modelkit.batch.sinks import ChunkOutput, JobSpec
from modelkit.model import Model

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.integration


class CrashError(Exception):
    pass


@attrs.define
class CrashingSink(PostgresSink):
    fail_at: int = attrs.field(default=3, kw_only=True)
    writes: int = attrs.field(default=0, init=False)

    def write(self, job: JobSpec, output: ChunkOutput) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise CrashError
        super().write(job, output)


@pytest.fixture(scope="module")
def model_and_data() -> tuple[Model, np.ndarray]:
    X, y = make_classification(n_samples=5000, n_features=8, random_state=5)
    return Model.wrap(LogisticRegression().fit(X, y), sample=X, name="pg"), X


def test_copy_into_postgres_resumes_exactly_once(
    postgres_url: str, model_and_data: tuple[Model, np.ndarray]
) -> None:
    model, X = model_and_data
    X = X.copy()
    X[42, 3] = np.nan
    with pytest.raises(CrashError):
        batch_predict(
            model,
            X,
            CrashingSink(postgres_url, fail_at=4),
            chunk_rows=700,
            job_id="pg-1",
            on_error="quarantine",
            outputs=("predict", "predict_proba"),
        )
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (2099,)
    result = batch_predict(
        model,
        X,
        postgres_url,
        chunk_rows=1000,
        job_id="pg-1",
        on_error="quarantine",
        outputs=("predict", "predict_proba"),
    )
    assert (result.rows_in, result.rows_out, result.rows_quarantined) == (5000, 4999, 1)
    with psycopg.connect(postgres_url) as conn:
        got = conn.execute(
            "SELECT row, prediction, proba_1 FROM predictions ORDER BY row"
        ).fetchall()
        bad = conn.execute("SELECT key, reason FROM predictions_quarantine").fetchall()
        kinds = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'predictions'"
            ).fetchall()
        )
        status = conn.execute("SELECT status FROM modelkit_batch_jobs").fetchone()
    keep = np.ones(5000, dtype=bool)
    keep[42] = False
    assert [r[0] for r in got] == np.flatnonzero(keep).tolist()
    assert [r[1] for r in got] == model.predict(X[keep]).tolist()
    np.testing.assert_allclose([r[2] for r in got], model.predict_proba(X[keep])[:, 1])
    assert bad == [("42", "feature 'f3' is missing")]
    assert kinds["predicted_at"] == "timestamp with time zone"
    assert kinds["prediction"] == "bigint"
    assert status == ("finished",)
    again = batch_predict(
        model,
        X,
        postgres_url,
        chunk_rows=1000,
        job_id="pg-1",
        on_error="quarantine",
        outputs=("predict", "predict_proba"),
    )
    assert again.already_finished


def test_dask_workers_copy_into_postgres(
    postgres_url: str, model_and_data: tuple[Model, np.ndarray]
) -> None:
    distributed = pytest.importorskip("distributed")
    model, X = model_and_data
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = batch_predict(
            model, X, postgres_url, engine="dask", scheduler=client, chunk_rows=600, job_id="pg-d"
        )
    assert result.rows_out == 5000
    with psycopg.connect(postgres_url) as conn:
        got = conn.execute("SELECT row, prediction FROM predictions ORDER BY row").fetchall()
        chunks = conn.execute("SELECT count(*) FROM modelkit_batch_chunks").fetchone()
    assert [r[0] for r in got] == list(range(5000))
    assert [r[1] for r in got] == model.predict(X).tolist()
    assert chunks == (9,)


def test_postgres_rows_are_narrow_behind_a_view(
    postgres_url: str, model_and_data: tuple[Model, np.ndarray]
) -> None:
    model, X = model_and_data
    batch_predict(model, X, postgres_url, chunk_rows=2000, job_id="pg-v")
    with psycopg.connect(postgres_url) as conn:
        kinds = dict(
            conn.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_name LIKE 'predictions%'"
            ).fetchall()
        )
        physical = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'predictions_rows' ORDER BY ordinal_position"
            ).fetchall()
        ]
        shown = conn.execute(
            "SELECT job_id, model_name, count(*), min(predicted_at) IS NOT NULL "
            "FROM predictions GROUP BY 1, 2"
        ).fetchall()
    assert kinds == {"predictions": "VIEW", "predictions_rows": "BASE TABLE"}
    assert physical == ["_job", "row", "prediction"]
    assert shown == [("pg-v", "pg", 5000, True)]


def test_a_postgres_job_from_before_resumes_in_its_own_table(
    postgres_url: str, model_and_data: tuple[Model, np.ndarray]
) -> None:
    import json

    from modelkit.batch._jobs import resolve_model
    from modelkit.batch.sources import MemorySource

    model, X = model_and_data
    info = resolve_model(model, None)
    spec = JobSpec(
        job_id="old",
        table="predictions",
        key="row",
        model_name=info.name,
        model_version=None,
        artifact_sha256=info.artifact_sha256,
        source=MemorySource(X).describe(),
        outputs=("predict",),
    )
    done = model.predict(X[:1000]).tolist()
    with psycopg.connect(postgres_url) as conn:  # the tables as the wide layout wrote them
        conn.execute(
            "CREATE TABLE modelkit_batch_jobs (job_id TEXT PRIMARY KEY, target_table TEXT NOT "
            "NULL, spec TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, "
            "finished_at TEXT, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, "
            "rows_skipped BIGINT, drift TEXT)"
        )
        conn.execute(
            "CREATE TABLE modelkit_batch_chunks (job_id TEXT NOT NULL, chunk_id BIGINT NOT NULL, "
            "start_row BIGINT NOT NULL, rows_in BIGINT NOT NULL, rows_out BIGINT NOT NULL, "
            "rows_quarantined BIGINT NOT NULL, rows_skipped BIGINT NOT NULL, committed_at TEXT "
            "NOT NULL, PRIMARY KEY (job_id, chunk_id))"
        )
        conn.execute(
            'CREATE TABLE predictions ("row" BIGINT, prediction BIGINT, model_name TEXT NOT '
            "NULL, model_version BIGINT, artifact_sha256 TEXT NOT NULL, job_id TEXT NOT NULL, "
            "predicted_at TIMESTAMPTZ NOT NULL)"
        )
        conn.execute(
            "INSERT INTO modelkit_batch_jobs (job_id, target_table, spec, status, started_at) "
            "VALUES ('old', 'predictions', %s, 'running', '2024-06-01T00:00:00Z')",
            (json.dumps(spec.to_dict()),),
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO predictions VALUES (%s, %s, 'pg', NULL, %s, 'old', now())",
                [(i, p, info.artifact_sha256) for i, p in enumerate(done)],
            )
            cursor.executemany(
                "INSERT INTO modelkit_batch_chunks VALUES ('old', %s, %s, 500, 500, 0, 0, "
                "'2024-06-01T00:00:01Z')",
                [(0, 0), (500, 500)],
            )
    result = batch_predict(model, X, postgres_url, chunk_rows=1000, job_id="old")
    assert (result.resumed_at, result.rows_out) == (1000, 5000)
    with psycopg.connect(postgres_url) as conn:
        got = conn.execute("SELECT row, prediction FROM predictions ORDER BY row").fetchall()
        numbers = conn.execute("SELECT job_id, job_number FROM modelkit_batch_jobs").fetchall()
    assert [r[0] for r in got] == list(range(5000))
    assert [r[1] for r in got] == model.predict(X).tolist()
    assert numbers == [("old", 1)]
