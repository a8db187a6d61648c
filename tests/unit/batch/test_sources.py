"""Sources stream a table chunk by chunk, from any row, the same rows every time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit.batch.sources import (
    CsvSource,
    MemorySource,
    ParquetSource,
    SqlSource,
    _rechunk,
    open_source,
    sqlite_path,
)
from modelkit.exceptions import DataError, NotFoundError, UsageError

from .conftest import write_table


def gather(source: object, chunk_rows: int, start: int = 0) -> dict[str, np.ndarray]:
    chunks = list(source.chunks(chunk_rows, start=start))  # type: ignore[attr-defined]
    for k, chunk in enumerate(chunks):
        assert chunk.start == start + k * chunk_rows
        assert chunk.n_rows == (chunk_rows if k < len(chunks) - 1 else chunk.n_rows)
        assert all(len(v) == chunk.n_rows for v in chunk.columns.values())
    names = list(chunks[0].columns) if chunks else []
    return {n: np.concatenate([c.columns[n] for c in chunks]) for n in names}


@given(
    sizes=st.lists(st.integers(0, 40), max_size=8),
    chunk_rows=st.integers(1, 50),
    start=st.integers(0, 20),
)
def test_rechunking_keeps_every_row_in_order(sizes: list[int], chunk_rows: int, start: int) -> None:
    offsets = np.cumsum([0, *sizes])
    batches = [{"a": np.arange(offsets[i], offsets[i + 1])} for i in range(len(sizes))]
    chunks = list(_rechunk(iter(batches), chunk_rows, start))
    got = np.concatenate([c.columns["a"] for c in chunks]) if chunks else np.array([])
    assert got.tolist() == list(range(int(offsets[-1])))
    assert [c.start for c in chunks] == [start + k * chunk_rows for k in range(len(chunks))]
    assert all(c.n_rows == chunk_rows for c in chunks[:-1])


@pytest.mark.parametrize("engine", ["pyarrow", "pandas"])
@pytest.mark.parametrize("start", [0, 1, 299, 999, 1000])
def test_csv_resumes_at_any_row(
    csv_file: Path, features: np.ndarray, engine: str, start: int
) -> None:
    source = CsvSource(csv_file, column_types={"f0": "float64"}, engine=engine)
    assert source.columns() == ["id", "f0", "f1", "f2", "f3", "f4", "extra"]
    got = gather(source, 300, start)
    if start == 1000:
        assert got == {}
        return
    np.testing.assert_array_equal(got["id"], np.arange(100 + start, 1100))
    np.testing.assert_array_equal(got["f3"], features[start:, 3])


def test_a_glob_reads_files_in_name_order(tmp_path: Path, features: np.ndarray) -> None:
    write_table(tmp_path / "b.csv", features[500:], key_offset=500)
    write_table(tmp_path / "a.csv", features[:500], key_offset=0)
    source = open_source(str(tmp_path / "*.csv"))
    got = gather(source, 128, 450)
    np.testing.assert_array_equal(got["id"], np.arange(450, 1000))
    assert 900 <= (source.total_rows() or 0) <= 1100  # an estimate from the bytes per line


def test_csv_with_a_bad_cell_fails_unless_lenient(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = "\n".join(f"{i},{i}.5" for i in range(5000))
    path.write_text(f"id,f0\n{rows}\n4999,abc\n5000,1.0\n")
    strict = CsvSource(path, column_types={"f0": "float64"})
    with pytest.raises(DataError, match=r"bad\.csv.*on_error"):
        gather(strict, 1000)
    lenient = CsvSource(path, column_types={"f0": "float64"}, lenient=True)
    got = gather(lenient, 1000)
    assert len(got["id"]) == 5002
    assert got["f0"][-2] == "abc"
    assert float(got["f0"][3]) == 3.5


def test_missing_files_and_unknown_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        open_source(str(tmp_path / "nope.csv"))
    with pytest.raises(NotFoundError, match="no file matches"):
        open_source(str(tmp_path / "*.parquet"))
    with pytest.raises(UsageError, match="cannot tell what kind of input"):
        open_source(str(tmp_path / "data.json"))
    with pytest.raises(UsageError, match="cannot read rows from a dict"):
        open_source({"a": 1})
    with pytest.raises(UsageError, match="needs a query"):
        open_source("sqlite:///x.db")


def test_parquet_skips_whole_row_groups(parquet_file: Path, features: np.ndarray) -> None:
    source = ParquetSource(parquet_file, columns_wanted=["id", "f1"])
    assert source.total_rows() == 1000
    got = gather(source, 333, 700)
    assert list(got) == ["id", "f1"]
    np.testing.assert_array_equal(got["f1"], features[700:, 1])


def test_memory_sources_take_arrays_and_frames(features: np.ndarray) -> None:
    import pandas as pd

    array = MemorySource(features)
    assert array.columns() == ["f0", "f1", "f2", "f3", "f4"]
    frame = MemorySource(pd.DataFrame(features, columns=list("abcde")))
    np.testing.assert_array_equal(gather(frame, 64, 10)["c"], features[10:, 2])
    assert array.describe() == MemorySource(features.copy()).describe()
    assert array.describe() != MemorySource(features[::-1].copy()).describe()
    with pytest.raises(UsageError, match="2-D"):
        MemorySource(features[:, 0])


def test_sql_queries_resume_with_offset(tmp_path: Path) -> None:
    db = tmp_path / "in.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, f0 REAL, note TEXT)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, i / 2 if i % 7 else None, "n") for i in range(50)],
        )
    source = SqlSource(f"sqlite:///{db}", "SELECT id, f0, note FROM t ORDER BY id")
    assert source.columns() == ["id", "f0", "note"]
    got = gather(source, 16, 5)
    np.testing.assert_array_equal(got["id"], np.arange(5, 50))
    assert np.isnan(got["f0"][2])  # row 7: NULL
    assert got["note"].dtype == object


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///pred.db") == Path("pred.db")
    assert sqlite_path("sqlite:///srv/data/pred.db") == Path("/srv/data/pred.db")
    assert sqlite_path("sqlite:////pred.db") == Path("/pred.db")


@settings(max_examples=20)
@given(chunk_rows=st.integers(1, 400), start=st.integers(0, 1000))
def test_memory_chunks_cover_the_rest(chunk_rows: int, start: int) -> None:
    data = np.arange(2000.0).reshape(1000, 2)
    got = gather(MemorySource(data), chunk_rows, start)
    assert (got["f0"].tolist() if got else []) == data[start:, 0].tolist()
