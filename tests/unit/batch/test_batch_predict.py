"""``batch_predict`` end to end: every row exactly once, resumable, idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from modelkit import batch_predict
from modelkit.batch.sinks import ChunkOutput, JobSpec, SqliteSink
from modelkit.exceptions import BatchJobError, DataError, SignatureError, UsageError
from modelkit.model import Model


class CrashError(Exception):
    """Stands for the process dying after some chunks were committed."""


@attrs.define
class CrashingSink(SqliteSink):
    """A SQLite sink that dies before committing its ``fail_at``-th chunk."""

    fail_at: int = attrs.field(default=3, kw_only=True)
    writes: int = attrs.field(default=0, init=False)

    def write(self, job: JobSpec, output: ChunkOutput) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise CrashError
        super().write(job, output)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_every_row_is_written_once_with_its_prediction(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    result = batch_predict(model, features, f"sqlite:///{db}", chunk_rows=128, progress=False)
    assert (result.rows_in, result.rows_out, result.rows_this_run) == (1000, 1000, 1000)
    got = rows(db, "SELECT row, prediction, model_name, job_id FROM predictions ORDER BY row")
    assert [r[0] for r in got] == list(range(1000))
    assert [r[1] for r in got] == model.predict(features).tolist()
    assert {(r[2], r[3]) for r in got} == {("clf", result.job_id)}
    kinds = dict(rows(db, "SELECT name, type FROM sqlite_master WHERE name LIKE 'predictions%'"))
    assert kinds == {"predictions": "view", "predictions_rows": "table"}
    ddl = rows(db, "SELECT sql FROM sqlite_master WHERE name = 'predictions_rows'")[0][0]
    assert 'PRIMARY KEY (_job, "row")' in ddl
    assert ddl.endswith("WITHOUT ROWID")
    plan = rows(
        db,
        "EXPLAIN QUERY PLAN SELECT prediction FROM predictions WHERE job_id = 'x' AND row = 5",
    )
    assert any("PRIMARY KEY" in str(step[-1]) for step in plan)  # the (job, key) index
    assert rows(db, "SELECT status, rows_in FROM modelkit_batch_jobs") == [("finished", 1000)]
    assert "1,000 rows in, 1,000 out, 0 quarantined" in result.summary()


def test_a_killed_job_resumes_and_ends_with_every_row_once(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    with pytest.raises(CrashError):
        batch_predict(model, features, CrashingSink(db, fail_at=4), chunk_rows=100, job_id="j1")
    assert rows(db, "SELECT count(*) FROM predictions") == [(300,)]
    # resumed with another chunk size: the local engine resumes at the first uncommitted row
    result = batch_predict(model, features, f"sqlite:///{db}", chunk_rows=64, job_id="j1")
    assert result.resumed_at == 300
    assert result.rows_this_run == 700
    assert (result.rows_in, result.rows_out) == (1000, 1000)
    got = rows(db, "SELECT row, prediction FROM predictions ORDER BY row")
    assert [r[0] for r in got] == list(range(1000))
    assert [r[1] for r in got] == model.predict(features).tolist()


def test_rerunning_a_finished_job_writes_nothing(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    first = batch_predict(model, features, db, progress=False)
    again = batch_predict(model, features, db, progress=False)
    assert again.job_id == first.job_id
    assert again.already_finished
    assert again.rows_this_run == 0
    assert "nothing written" in again.summary()
    assert rows(db, "SELECT count(*) FROM predictions") == [(1000,)]
    other = batch_predict(model, features[:10], db, progress=False)  # other data: another job
    assert other.job_id != first.job_id
    assert rows(db, "SELECT count(*) FROM predictions") == [(1010,)]


def test_a_job_id_cannot_be_reused_for_other_input(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    batch_predict(model, features, db, job_id="daily")
    with pytest.raises(BatchJobError, match=r"daily.*another spec.*source"):
        batch_predict(model, features[:500], db, job_id="daily")
    with pytest.raises(UsageError, match="job id"):
        batch_predict(model, features, db, job_id="bad id with spaces")


def test_a_chunk_committed_twice_is_refused(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    from modelkit.batch._predict import Plan, predict_chunk
    from modelkit.batch.sources import MemorySource

    sink = SqliteSink(tmp_path / "out.db")
    spec = JobSpec(
        job_id="j",
        table="predictions",
        key="row",
        model_name="clf",
        model_version=None,
        artifact_sha256="x",
        source="s",
        outputs=("predict",),
    )
    sink.start(spec)
    chunk = next(MemorySource(features).chunks(10))
    output = predict_chunk(Plan(model=model), chunk)
    sink.write(spec, output)
    with pytest.raises(BatchJobError, match="already committed chunk 0"):
        sink.write(spec, output)
    sink.close()
    assert rows(tmp_path / "out.db", "SELECT count(*) FROM predictions") == [(10,)]


def test_keys_carried_columns_and_probabilities(
    model: Model, features: np.ndarray, csv_file: Path, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    result = batch_predict(
        model,
        str(csv_file),
        db,
        key="id",
        carry=["extra"],
        outputs=("predict", "predict_proba"),
        table="scores",
        chunk_rows=300,
    )
    assert result.rows_out == 1000
    got = rows(db, "SELECT id, extra, prediction, proba_0, proba_1 FROM scores ORDER BY id")
    assert [r[0] for r in got] == list(range(100, 1100))
    assert {r[1] for r in got} == {"x"}
    proba = np.array([[r[3], r[4]] for r in got])
    np.testing.assert_allclose(proba, model.predict_proba(features))


def test_bad_rows_fail_skip_or_go_to_quarantine(model: Model, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    lines = [f"{i},{i / 10},1,2,3,4" for i in range(200)]
    lines[5] = "5,abc,1,2,3,4"
    lines[150] = "150,,1,2,3,4"
    path.write_text("id,f0,f1,f2,f3,f4\n" + "\n".join(lines) + "\n")
    db = tmp_path / "out.db"
    with pytest.raises((DataError, SignatureError)):
        batch_predict(model, str(path), db, key="id")
    skipped = batch_predict(model, str(path), db, key="id", on_error="skip", table="s")
    assert (skipped.rows_out, skipped.rows_skipped) == (198, 2)
    kept = batch_predict(model, str(path), db, key="id", on_error="quarantine", table="q")
    assert (kept.rows_out, kept.rows_quarantined) == (198, 2)
    assert rows(db, "SELECT count(*) FROM q WHERE id IN (5, 150)") == [(0,)]
    bad = rows(db, "SELECT key, row_number, reason, data FROM q_quarantine ORDER BY row_number")
    assert [(b[0], b[1]) for b in bad] == [("5", 5), ("150", 150)]
    assert "'f0' must be numeric, got 'abc'" in bad[0][2]
    assert "'f0' is missing" in bad[1][2]
    assert '"f0":"abc"' in bad[0][3]


def test_infinite_values_in_memory_are_quarantined(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    data = features.copy()
    data[[3, 600], 2] = np.inf
    db = tmp_path / "out.db"
    result = batch_predict(model, data, db, on_error="quarantine", chunk_rows=256)
    assert result.rows_quarantined == 2
    assert rows(db, "SELECT row_number FROM predictions_quarantine ORDER BY 1") == [(3,), (600,)]


def test_missing_columns_and_bad_options_are_explained(
    model: Model, csv_file: Path, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    with pytest.raises(DataError, match="no key column 'customer'"):
        batch_predict(model, str(csv_file), db, key="customer")
    with pytest.raises(UsageError, match="is one of the model's features"):
        batch_predict(model, str(csv_file), db, key="f0")
    import pandas as pd

    frame = pd.read_csv(csv_file).rename(columns={"extra": "job_id"})
    with pytest.raises(UsageError, match=r"carried columns \['job_id'\] would clash"):
        batch_predict(model, frame, db, carry=["job_id"])
    with pytest.raises(UsageError, match="the key column 'job_id' has the name"):
        batch_predict(model, frame, db, key="job_id")
    with pytest.raises(UsageError, match="on_error"):
        batch_predict(model, str(csv_file), db, on_error="ignore")
    with pytest.raises(UsageError, match="outputs"):
        batch_predict(model, str(csv_file), db, outputs=("transform",))
    with pytest.raises(UsageError, match="engine"):
        batch_predict(model, str(csv_file), db, engine="spark")
    with pytest.raises(UsageError, match="chunk_rows"):
        batch_predict(model, str(csv_file), db, chunk_rows=0)
    with pytest.raises(UsageError, match="cannot tell what kind of output"):
        batch_predict(model, str(csv_file), tmp_path / "out.xlsx")


def test_a_registry_model_is_recorded_with_its_version_and_drift(
    registry: str, parquet_file: Path, tmp_path: Path
) -> None:
    from modelkit.registry import Registry

    db = tmp_path / "out.db"
    result = batch_predict("clf@production", str(parquet_file), db, key="id", registry=registry)
    with Registry(registry) as reg:
        sha = reg.resolve("clf@production").artifact_sha256
    assert rows(
        db, "SELECT DISTINCT model_name, model_version, artifact_sha256 FROM predictions"
    ) == [("clf", 1, sha)]
    assert result.drift is not None  # the same data as the training profile
    stored = rows(db, "SELECT drift FROM modelkit_batch_jobs")[0][0]
    assert stored is not None
    assert "features" in stored


def test_the_drift_summary_takes_the_rows_predicted_from_text_cells(
    registry: str, features: np.ndarray, tmp_path: Path
) -> None:
    lines = [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in enumerate(features)]
    lines[7] = "7,abc,1,2,3,4"
    path = tmp_path / "bad.csv"
    path.write_text("id,f0,f1,f2,f3,f4\n" + "\n".join(lines) + "\n")
    result = batch_predict(
        "clf@production",
        str(path),
        tmp_path / "out.db",
        key="id",
        on_error="quarantine",
        registry=registry,
        chunk_rows=256,
    )
    assert (result.rows_out, result.rows_quarantined) == (999, 1)
    assert result.drift is not None
    assert result.drift["n_current"] == 999
