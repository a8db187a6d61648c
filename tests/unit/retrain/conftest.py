"""A registry with a champion trained on one concept, and served traffic of another."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.unit.retrain.helpers import W_OLD, Serve, concept

from modelkit.registry import PredictionRecord, Registry
from modelkit.training import train


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry whose ``churn@production`` (version 1) learnt the old concept."""
    with Registry(tmp_path / "registry") as reg:
        X, y = concept(600, W_OLD, seed=1)
        train(
            LogisticRegression(),
            X,
            y,
            name="churn",
            registry=reg,
            cv="holdout",
            alias="production",
        )
        yield reg


@pytest.fixture
def serve(registry: Registry) -> Serve:
    """``serve(X, y, version=1, batch=10, at=None, label=True)``: record what the served
    version predicted on ``X`` (with its inputs) and, with ``label``, the true ``y``."""

    def record(
        X: np.ndarray,
        y: np.ndarray,
        *,
        version: int = 1,
        batch: int = 10,
        at: datetime | None = None,
        label: bool = True,
        inputs: bool = True,
    ) -> list[str]:
        model = registry.load(f"churn/{version}")
        start = at or datetime.now(timezone.utc)
        records: list[PredictionRecord] = []
        labels: dict[str, Any] = {}
        for i in range(0, len(X), batch):
            pid = uuid.uuid4().hex
            rows = X[i : i + batch]
            records.append(
                PredictionRecord(
                    id=pid,
                    name="churn",
                    version=version,
                    at=start + timedelta(microseconds=i),
                    rows=len(rows),
                    outputs=model.predict(rows).tolist(),
                    inputs=rows.tolist() if inputs else None,
                )
            )
            labels[pid] = y[i : i + batch].tolist()
        registry.record_predictions(records)
        if label:  # labels arrive after their predictions
            now = datetime.now(timezone.utc)
            registry.add_feedback(labels, at=max(now, start + timedelta(seconds=1)))
        return list(labels)

    return record
