"""The SQLite layout: narrow rows behind a view, job numbers, and tables from before it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelkit import batch_predict
from modelkit.batch._jobs import resolve_model
from modelkit.batch.sinks import JobSpec
from modelkit.batch.sources import MemorySource
from modelkit.exceptions import DataError
from modelkit.model import Model

VIEW_COLUMNS = ["model_name", "model_version", "artifact_sha256", "job_id", "predicted_at"]


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def columns(db: Path, table: str) -> list[str]:
    return [r[1] for r in rows(db, f"PRAGMA table_info({table})")]


def test_each_row_shows_its_jobs_constants_from_the_jobs_table(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "out.db"
    first = batch_predict(model, features, db, chunk_rows=300, job_id="a")
    batch_predict(model, features[:10], db, chunk_rows=300, job_id="b")
    assert columns(db, "predictions") == ["row", "prediction", *VIEW_COLUMNS]
    assert columns(db, "predictions_rows") == ["_job", "row", "prediction"]
    assert rows(db, "SELECT job_id, job_number FROM modelkit_batch_jobs ORDER BY 2") == [
        ("a", 1),
        ("b", 2),
    ]
    sha = resolve_model(model, None).artifact_sha256
    assert rows(
        db,
        "SELECT job_id, model_name, model_version, artifact_sha256, count(*) FROM predictions "
        "GROUP BY job_id ORDER BY job_id",
    ) == [("a", "clf", None, sha, 1000), ("b", "clf", None, sha, 10)]
    committed = dict(
        rows(db, "SELECT start_row, committed_at FROM modelkit_batch_chunks WHERE job_id = 'a'")
    )
    shown = rows(db, "SELECT row, predicted_at FROM predictions WHERE job_id = 'a' ORDER BY row")
    assert all(at == committed[row // 300 * 300] for row, at in shown)
    assert first.rows_out == 1000


def test_own_keys_may_repeat_and_keep_their_input_row(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    frame = __import__("pandas").DataFrame(features, columns=[f"f{j}" for j in range(5)])
    frame["id"] = np.arange(1000) % 7  # keys that repeat
    db = tmp_path / "out.db"
    result = batch_predict(model, frame, db, key="id", chunk_rows=128)
    assert result.rows_out == 1000
    assert columns(db, "predictions_rows") == ["_job", "id", "prediction", "_row"]
    assert columns(db, "predictions") == ["id", "prediction", *VIEW_COLUMNS]
    got = rows(db, "SELECT _row, id, prediction FROM predictions_rows ORDER BY _row")
    assert [r[0] for r in got] == list(range(1000))
    assert [r[1] for r in got] == (np.arange(1000) % 7).tolist()
    assert [r[2] for r in got] == model.predict(features).tolist()


def test_rows_without_a_key_fail_or_are_set_aside(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    import pandas as pd

    frame = pd.DataFrame(features, columns=[f"f{j}" for j in range(5)])
    frame["id"] = np.where(np.arange(1000) == 500, np.nan, np.arange(1000.0))
    db = tmp_path / "out.db"
    with pytest.raises(DataError, match="row 500 has no value in the key column 'id'"):
        batch_predict(model, frame, db, key="id", chunk_rows=128)
    kept = batch_predict(model, frame, db, key="id", on_error="quarantine", table="q")
    assert (kept.rows_out, kept.rows_quarantined) == (999, 1)
    assert rows(db, "SELECT key, row_number, reason FROM q_quarantine") == [
        (None, 500, "the key column 'id' is missing")
    ]


def test_reserved_names_and_other_key_kinds_are_refused(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    import pandas as pd

    db = tmp_path / "out.db"
    batch_predict(model, features, db, job_id="numbered")  # keyed by row number
    frame = pd.DataFrame(features, columns=[f"f{j}" for j in range(5)])
    frame["row"] = np.arange(1000) % 3
    with pytest.raises(DataError, match="keys its rows by their number"):
        batch_predict(model, frame, db, key="row", job_id="own-keys")
    frame["_row"] = 1
    with pytest.raises(DataError, match="reserved"):
        batch_predict(model, frame, db, key="row", carry=["_row"], table="other")


# -- a database written before the narrow layout --------------------------------------------

OLD_JOBS = (
    "CREATE TABLE modelkit_batch_jobs (job_id TEXT PRIMARY KEY, target_table TEXT NOT NULL, "
    "spec TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, "
    "rows_in INTEGER, rows_out INTEGER, rows_quarantined INTEGER, rows_skipped INTEGER, "
    "drift TEXT)"
)
OLD_CHUNKS = (
    "CREATE TABLE modelkit_batch_chunks (job_id TEXT NOT NULL, chunk_id INTEGER NOT NULL, "
    "start_row INTEGER NOT NULL, rows_in INTEGER NOT NULL, rows_out INTEGER NOT NULL, "
    "rows_quarantined INTEGER NOT NULL, rows_skipped INTEGER NOT NULL, "
    "committed_at TEXT NOT NULL, PRIMARY KEY (job_id, chunk_id))"
)
OLD_TABLE = (
    'CREATE TABLE "predictions" ("row" INTEGER, "prediction" INTEGER, model_name TEXT NOT NULL, '
    "model_version INTEGER, artifact_sha256 TEXT NOT NULL, job_id TEXT NOT NULL, "
    "predicted_at TEXT NOT NULL)"
)
OLD_INDEX = 'CREATE INDEX "predictions_job_key" ON "predictions" (job_id, "row")'


def write_old_database(db: Path, model: Model, features: np.ndarray, *, done: int) -> JobSpec:
    """A job database as the wide layout left it: job ``old`` killed after ``done`` rows
    (chunks of 100), every column spelled out in each row of ``predictions``."""
    info = resolve_model(model, None)
    spec = JobSpec(
        job_id="old",
        table="predictions",
        key="row",
        model_name=info.name,
        model_version=info.version,
        artifact_sha256=info.artifact_sha256,
        source=MemorySource(features).describe(),
        outputs=("predict",),
    )
    predictions = model.predict(features[:done]).tolist()
    with sqlite3.connect(db) as conn:
        for ddl in (OLD_JOBS, OLD_CHUNKS, OLD_TABLE, OLD_INDEX):
            conn.execute(ddl)
        conn.execute(
            "INSERT INTO modelkit_batch_jobs (job_id, target_table, spec, status, started_at) "
            "VALUES ('old', 'predictions', ?, 'running', '2024-06-01T00:00:00.000000Z')",
            (json.dumps(spec.to_dict()),),
        )
        conn.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, NULL, ?, 'old', '2024-06-01T00:00:01Z')",
            [(i, p, info.name, info.artifact_sha256) for i, p in enumerate(predictions)],
        )
        conn.executemany(
            "INSERT INTO modelkit_batch_chunks VALUES ('old', ?, ?, 100, 100, 0, 0, "
            "'2024-06-01T00:00:01Z')",
            [(start, start) for start in range(0, done, 100)],
        )
    return spec


def test_a_job_from_before_resumes_in_its_own_table(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    write_old_database(db, model, features, done=300)
    result = batch_predict(model, features, db, job_id="old", chunk_rows=100)
    assert (result.resumed_at, result.rows_this_run, result.rows_out) == (300, 700, 1000)
    assert rows(db, "SELECT type FROM sqlite_master WHERE name = 'predictions'") == [("table",)]
    got = rows(db, "SELECT row, prediction, job_id, model_name FROM predictions ORDER BY row")
    assert [r[0] for r in got] == list(range(1000))
    assert [r[1] for r in got] == model.predict(features).tolist()
    assert {(r[2], r[3]) for r in got} == {("old", "clf")}
    assert rows(db, "SELECT job_number, model_name, status FROM modelkit_batch_jobs") == [
        (1, "clf", "finished")
    ]
    again = batch_predict(model, features, db, job_id="old", chunk_rows=100)
    assert again.already_finished


def test_new_jobs_beside_an_old_table(model: Model, features: np.ndarray, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    write_old_database(db, model, features, done=1000)
    same_table = batch_predict(model, features[:50], db, job_id="next")
    assert same_table.rows_out == 50
    assert rows(db, "SELECT job_id, count(*) FROM predictions GROUP BY 1 ORDER BY 1") == [
        ("next", 50),
        ("old", 1000),
    ]
    batch_predict(model, features[:50], db, job_id="fresh", table="scores")
    assert rows(db, "SELECT type FROM sqlite_master WHERE name = 'scores'") == [("view",)]
    assert rows(db, "SELECT job_id, job_number FROM modelkit_batch_jobs ORDER BY 2") == [
        ("old", 1),
        ("next", 2),
        ("fresh", 3),
    ]


def test_text_keys_with_text_columns_and_other_outputs(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    import pandas as pd

    frame = pd.DataFrame(features, columns=[f"f{j}" for j in range(5)])
    frame["customer"] = [f"c-{i:04d}" for i in range(1000)]
    frame["region"] = np.where(np.arange(1000) % 2, "north", "south")
    db = tmp_path / "out.db"
    result = batch_predict(
        model, frame, db, key="customer", carry=["region"], outputs=("predict", "predict_proba")
    )
    assert result.rows_out == 1000
    got = rows(db, "SELECT customer, region, prediction, proba_1 FROM predictions ORDER BY 1")
    assert [r[0] for r in got] == frame["customer"].tolist()
    assert [r[1] for r in got] == frame["region"].tolist()
    assert [r[2] for r in got] == model.predict(features).tolist()
    np.testing.assert_array_equal([r[3] for r in got], model.predict_proba(features)[:, 1])
    with pytest.raises(DataError, match="already exists with other columns"):
        batch_predict(
            model, frame, db, key="customer", outputs=("decision_function",), job_id="other"
        )
