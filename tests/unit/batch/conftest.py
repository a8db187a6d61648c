"""Fixtures for the batch tests: a small fitted model, its data as CSV and Parquet, a registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit.model import Model
from modelkit.registry import Registry

N_ROWS = 1000
N_FEATURES = 5


@pytest.fixture(scope="session")
def dataset() -> tuple[np.ndarray, np.ndarray]:
    """1000 rows of 5 features and binary labels."""
    return make_classification(
        n_samples=N_ROWS, n_features=N_FEATURES, n_informative=3, random_state=0
    )


@pytest.fixture(scope="session")
def fitted(dataset: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    X, y = dataset
    return LogisticRegression().fit(X, y)


@pytest.fixture
def model(fitted: LogisticRegression, dataset: tuple[np.ndarray, np.ndarray]) -> Model:
    """The fitted model wrapped with a signature inferred from the training data."""
    return Model.wrap(fitted, sample=dataset[0], name="clf")


@pytest.fixture
def features(dataset: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return dataset[0]


def write_table(path: Path, X: np.ndarray, *, key_offset: int = 100) -> Path:
    """Write ``X`` with an ``id`` column (``key_offset`` + row) and ``f0``… as CSV or Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": np.arange(key_offset, key_offset + len(X)),
            **{f"f{j}": X[:, j] for j in range(X.shape[1])},
            "extra": np.full(len(X), "x"),
        }
    )
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=128)
    else:
        pv.write_csv(table, path)
    return path


@pytest.fixture
def csv_file(tmp_path: Path, features: np.ndarray) -> Path:
    return write_table(tmp_path / "data.csv", features)


@pytest.fixture
def parquet_file(tmp_path: Path, features: np.ndarray) -> Path:
    return write_table(tmp_path / "data.parquet", features)


@pytest.fixture
def registry(tmp_path: Path, fitted: LogisticRegression, features: np.ndarray) -> Iterator[str]:
    """A registry directory holding ``clf`` version 1 (with a training profile) as production."""
    from modelkit.artifact import Artifact
    from modelkit.data import Dataset

    location = str(tmp_path / "registry")
    with Registry(location) as reg:
        artifact = Artifact.from_model(
            Model.wrap(fitted, sample=features, name="clf"),
            name="clf",
            profile=Dataset(features).profile(),
        )
        reg.register("clf", artifact)
        reg.set_alias("clf", "production", 1)
    return location
