"""Output drift from an artifact: the model's outputs on its training data travel with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from tests.unit.monitoring.helpers import mixed

from modelkit.monitoring import DriftConfig, Monitor, Reference
from modelkit.registry import Registry

SIGNIFICANCE = DriftConfig(mode="significance")


class Shy(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier that cannot predict as many rows as it was trained on."""

    def fit(self, X: object, y: object) -> Shy:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X: object) -> np.ndarray:
        rows = len(X)  # type: ignore[arg-type]
        if rows >= 200:  # the evaluation folds are smaller than the training data
            raise RuntimeError("too many rows at once")
        return np.zeros(rows, dtype=int)


def _data(n: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    frame = mixed(n, seed, shift=shift)[["a", "b", "x", "count"]]
    return frame, (frame["x"] + frame["a"] > 0).to_numpy().astype(int)


def test_train_stores_the_outputs_and_the_monitor_checks_them(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelkit import train

    X, y = _data(2000, 40)
    with Registry(tmp_path / "reg") as registry:
        result = train(LogisticRegression(), X, y, name="churn", registry=registry, cv=2)
        artifact = registry.load_artifact("churn")
        assert artifact.profile is not None
        assert artifact.profile.outputs is not None
        predicted = result.model.predict(X)
        assert artifact.profile.outputs.features == Reference.fit(X, predicted).outputs.features  # type: ignore[union-attr]
        watcher = Monitor.from_registry(registry, "churn", config=SIGNIFICANCE)
    assert watcher.reference.outputs is not None
    same, _ = _data(2000, 41)
    quiet = watcher.check_data(same, result.model.predict(same))
    output = next(f for f in quiet.features if f.role == "output")
    assert (output.name, output.status) == ("prediction", "ok")
    moved, _ = _data(2000, 42, shift=0.6)
    report = watcher.check_data(moved, result.model.predict(moved))
    output = next(f for f in report.features if f.role == "output")
    assert output.status == "drift"


def test_an_artifact_saved_without_outputs_still_loads_and_monitors(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelkit.artifact import Artifact
    from modelkit.data import Dataset

    X, y = _data(500, 43)
    model = LogisticRegression().fit(X, y)
    artifact = Artifact.from_model(model, name="old", sample=X, profile=Dataset(X, y).profile())
    path = artifact.save(tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text())
    assert "outputs" not in manifest["profile"]  # the format of artifacts written before
    loaded = Artifact.load(path)
    assert loaded.profile is not None
    assert loaded.profile.outputs is None
    watcher = Monitor.from_artifact(loaded, config=SIGNIFICANCE)
    assert watcher.reference.outputs is None
    report = watcher.check_data(X, model.predict(X))
    assert "output" not in {f.role for f in report.features}


def test_a_model_that_cannot_predict_its_training_data_gets_no_output_reference(
    tmp_path: Path,
) -> None:
    from modelkit import train
    from modelkit.exceptions import ModelkitWarning

    X, y = _data(200, 44)
    with Registry(tmp_path / "reg") as registry:
        with pytest.warns(ModelkitWarning, match="no reference of its outputs"):
            train(Shy(), X, y, name="shy", registry=registry, cv=2, metrics=["accuracy"])
        artifact = registry.load_artifact("shy")
    assert artifact.profile is not None
    assert artifact.profile.outputs is None
