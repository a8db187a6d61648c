"""Parquet and CSV part files: each chunk committed by its progress record, leftovers removed."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest

from modelkit import batch_predict
from modelkit.batch._files import FileSink
from modelkit.batch.sinks import ChunkOutput, JobSpec
from modelkit.exceptions import BatchJobError
from modelkit.model import Model


class CrashError(Exception):
    pass


@attrs.define
class CrashAfterParts(FileSink):
    """Dies after writing a chunk's part file, before its progress record."""

    fail_at: int = attrs.field(default=2, kw_only=True)
    writes: int = attrs.field(default=0, init=False)

    def _write_table(self, target: Path, columns: dict[str, np.ndarray]) -> None:  # type: ignore[override]
        super()._write_table(target, columns)
        self.writes += 1
        if self.writes == self.fail_at:
            raise CrashError


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_parts_resume_exactly(
    model: Model, features: np.ndarray, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"out.{suffix}"
    with pytest.raises(CrashError):
        batch_predict(model, features, CrashAfterParts(out, fail_at=3), chunk_rows=100, job_id="j")
    parts = sorted(p.name for p in out.glob(f"j-*.{suffix}"))
    assert len(parts) == 3  # the third part has no progress record yet
    result = batch_predict(model, features, str(out), chunk_rows=100, job_id="j")
    assert result.resumed_at == 200
    read = (
        pd.read_parquet(out)
        if suffix == "parquet"
        else pd.concat(pd.read_csv(p) for p in sorted(out.glob("*.csv")))
    )
    read = read.sort_values("row")
    assert read["row"].tolist() == list(range(1000))
    assert read["prediction"].tolist() == model.predict(features).tolist()
    assert set(read["job_id"]) == {"j"}
    again = batch_predict(model, features, str(out), chunk_rows=100, job_id="j")
    assert again.already_finished


def test_quarantined_rows_get_their_own_parts(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    data = features.copy()
    data[7, 0] = np.nan
    out = tmp_path / "out.parquet"
    result = batch_predict(model, data, f"parquet://{out}", on_error="quarantine")
    assert result.rows_quarantined == 1
    bad = pd.read_parquet(out / "_quarantine")
    assert bad["row_number"].tolist() == [7]
    assert "missing" in bad["reason"][0]
    assert len(pd.read_parquet(out)) == 999


def test_a_committed_chunk_is_not_written_twice(
    model: Model, features: np.ndarray, tmp_path: Path
) -> None:
    from modelkit.batch._predict import Plan, predict_chunk
    from modelkit.batch.sources import MemorySource

    sink = FileSink(tmp_path / "out.csv")
    assert sink.format == "csv"
    spec = JobSpec(
        job_id="j",
        table="predictions",
        key="row",
        model_name="m",
        model_version=None,
        artifact_sha256="x",
        source="s",
        outputs=("predict",),
    )
    sink.start(spec)
    output: ChunkOutput = predict_chunk(Plan(model=model), next(MemorySource(features).chunks(5)))
    sink.write(spec, output)
    with pytest.raises(BatchJobError, match="already committed"):
        sink.write(spec, output)
    other = attrs.evolve(spec, source="elsewhere")
    with pytest.raises(BatchJobError, match="another spec"):
        sink.start(other)
