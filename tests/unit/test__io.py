"""Reading training tables from CSV and Parquet, with and without pandas."""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelkit import _io
from modelkit._io import TrainingTable, read_training_table
from modelkit.exceptions import DataError, ModelkitError, NotFoundError

READERS = [pytest.param(True, id="pandas"), pytest.param(False, id="builtin")]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def numeric(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["age", "income", "score"])
    frame["y"] = rng.integers(0, 2, size=200)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return frame, path


@pytest.mark.parametrize("use_pandas", READERS)
def test_a_numeric_csv_splits_into_features_and_target(numeric, use_pandas: bool) -> None:
    frame, path = numeric
    X, y, names = read_training_table(path, "y", use_pandas=use_pandas)
    assert names == ["age", "income", "score"]
    np.testing.assert_allclose(np.asarray(X, dtype=float), frame[names].to_numpy(), rtol=1e-15)
    assert np.asarray(y).tolist() == frame["y"].tolist()
    if use_pandas:
        assert isinstance(X, pd.DataFrame)
        assert list(X.columns) == names
    else:
        assert isinstance(X, np.ndarray)
        assert X.dtype == np.float64
        assert y.dtype == np.int64


def test_pandas_is_used_when_installed_and_not_otherwise(numeric, monkeypatch) -> None:
    _, path = numeric
    assert isinstance(read_training_table(path, "y").X, pd.DataFrame)
    monkeypatch.setattr(_io, "pandas_available", lambda: False)
    assert isinstance(read_training_table(path, "y").X, np.ndarray)


def test_the_target_can_be_any_column(numeric) -> None:
    frame, path = numeric
    table = read_training_table(path, "income", use_pandas=False)
    assert table.feature_names == ["age", "score", "y"]
    np.testing.assert_allclose(table.y, frame["income"].to_numpy(), rtol=1e-15)
    assert table.y.dtype == np.float64


@pytest.mark.parametrize("use_pandas", READERS)
def test_parquet(tmp_path: Path, numeric, use_pandas: bool) -> None:
    frame, _ = numeric
    frame = frame.assign(flag=frame["age"] > 0, label=np.where(frame["y"] == 1, "yes", "no"))
    path = tmp_path / "train.parquet"
    frame.drop(columns="y").to_parquet(path)
    X, y, names = read_training_table(path, "label", use_pandas=use_pandas)
    assert names == ["age", "income", "score", "flag"]
    np.testing.assert_array_equal(np.asarray(X, dtype=float), frame[names].to_numpy(dtype=float))
    assert list(y) == frame["label"].tolist()


def test_gzipped_csv_without_pandas(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write("a,b,y\n1,2,0\n3,4.5,1\n")
    X, y, names = read_training_table(path, "y", use_pandas=False)
    assert names == ["a", "b"]
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    assert y.tolist() == [0, 1]


def test_missing_markers_become_nan_like_pandas(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["a", "b", "y"],
        [["1", "", "0"], ["NA", "2", "1"], ["nan", "N/A", "0"], [" 4 ", "null", "1"]],
    )
    ours = read_training_table(path, "y", use_pandas=False).X
    theirs = read_training_table(path, "y", use_pandas=True).X.to_numpy(dtype=float)
    np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(ours).sum() == 5


def test_text_labels_are_kept_without_pandas(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["a", "y"], [[1, "churned"], [2, "stayed"]])
    table = read_training_table(path, "y", use_pandas=False)
    assert table.y.tolist() == ["churned", "stayed"]


def test_the_result_unpacks_and_names_its_parts(numeric) -> None:
    _, path = numeric
    table = read_training_table(path, "y", use_pandas=False)
    assert isinstance(table, TrainingTable)
    X, y, names = table
    assert X is table.X
    assert y is table.y
    assert names is table.feature_names


@pytest.mark.parametrize("use_pandas", READERS)
def test_a_missing_target_column_names_the_columns(numeric, use_pandas: bool) -> None:
    _, path = numeric
    with pytest.raises(DataError) as info:
        read_training_table(path, "scor", use_pandas=use_pandas)
    message = str(info.value)
    assert "no target column 'scor' in train.csv" in message
    assert "did you mean 'score'?" in message
    assert "'age', 'income', 'score', 'y'" in message


@pytest.mark.parametrize("use_pandas", READERS)
def test_a_table_of_only_the_target_is_refused(tmp_path: Path, use_pandas: bool) -> None:
    path = write_csv(tmp_path / "t.csv", ["y"], [[0], [1]])
    with pytest.raises(DataError, match="no feature columns besides the target 'y'"):
        read_training_table(path, "y", use_pandas=use_pandas)


@pytest.mark.parametrize("use_pandas", READERS)
def test_missing_targets_are_refused_naming_the_rows(tmp_path: Path, use_pandas: bool) -> None:
    path = write_csv(tmp_path / "t.csv", ["a", "y"], [[1, 0], [2, ""], [3, 1], [4, "NA"]])
    with pytest.raises(DataError, match=r"missing in 2 rows \(1, 3\); fill or drop"):
        read_training_table(path, "y", use_pandas=use_pandas)


def test_missing_targets_in_parquet_without_pandas(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [1.0, np.nan, 0.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"missing in 1 row \(1\)"):
        read_training_table(path, "y", use_pandas=False)


@pytest.mark.parametrize("use_pandas", READERS)
def test_empty_and_header_only_files(tmp_path: Path, use_pandas: bool) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_training_table(empty, "y", use_pandas=use_pandas)
    header = tmp_path / "header.csv"
    header.write_text("a,b,y\n")
    with pytest.raises(DataError, match="header but no rows"):
        read_training_table(header, "y", use_pandas=use_pandas)


def test_ragged_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,2,0\n3,1\n5,6,1,9\n")
    with pytest.raises(DataError, match=r"row 1 of t.csv has 2 fields but the header has 3 \(2"):
        read_training_table(path, "y", use_pandas=False)


def test_repeated_column_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,a,y\n1,2,0\n")
    with pytest.raises(DataError, match=r"repeats column names \['a'\]"):
        read_training_table(path, "y", use_pandas=False)


def test_text_features_need_pandas(tmp_path: Path) -> None:
    rows = [[1, "paris", 0], [2, "rome", 1], [3, "oslo", 0]]
    path = write_csv(tmp_path / "t.csv", ["n", "city", "y"], rows)
    with pytest.raises(DataError) as info:
        read_training_table(path, "y", use_pandas=False)
    message = str(info.value)
    assert "column 'city' of t.csv is not numeric (row 0: 'paris')" in message
    assert "pip install 'modelkit[pandas]'" in message
    X = read_training_table(path, "y", use_pandas=True).X
    assert X["city"].tolist() == ["paris", "rome", "oslo"]


def test_text_features_in_parquet_need_pandas(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"n": [1, 2], "city": [None, "rome"], "y": [0, 1]}).to_parquet(path)
    with pytest.raises(
        DataError, match=r"column 'city' of t.parquet is not numeric \(e.g. 'rome'\)"
    ):
        read_training_table(path, "y", use_pandas=False)


def test_an_unknown_file_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.xlsx"
    path.write_text("a,y\n1,0\n")
    with pytest.raises(DataError, match=r"cannot tell the format of .*train.xlsx.*\.csv"):
        read_training_table(path, "y")


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no such file: .*nope\.csv"):
        read_training_table(tmp_path / "nope.csv", "y")


@pytest.mark.parametrize("use_pandas", READERS)
def test_unreadable_files_are_data_errors(tmp_path: Path, use_pandas: bool) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"cannot read t\.parquet"):
        read_training_table(path, "y", use_pandas=use_pandas)
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"cannot read b\.csv"):
        read_training_table(binary, "y", use_pandas=use_pandas)


@pytest.mark.parametrize("use_pandas", READERS)
def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch, use_pandas) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1.0], "y": [0]}).to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ModelkitError, match=r"needs pyarrow.*pip install 'modelkit\[parquet\]'"):
        read_training_table(path, "y", use_pandas=use_pandas)


def test_asking_for_pandas_without_it_names_the_extra(numeric, monkeypatch) -> None:
    _, path = numeric
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModelkitError, match=r"pip install 'modelkit\[pandas\]'"):
        read_training_table(path, "y", use_pandas=True)


@settings(max_examples=40, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(allow_nan=False, allow_infinity=True, width=64),
    )
)
def test_floats_round_trip_exactly_without_pandas(tmp_path_factory, values) -> None:
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    n_rows, n_cols = values.shape
    header = [f"c{j}" for j in range(n_cols)] + ["y"]
    write_csv(path, header, [[repr(float(v)) for v in row] + [i] for i, row in enumerate(values)])
    X, y, names = read_training_table(path, "y", use_pandas=False)
    assert names == header[:-1]
    np.testing.assert_array_equal(X, values)
    assert y.tolist() == list(range(n_rows))
