"""Training rows for a retrain: the feedback store's recent window, a callable, or a source."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit.exceptions import DataError

if TYPE_CHECKING:
    from modelkit.registry import Feedback, Registry
    from modelkit.retrain.policy import RetrainPolicy
    from modelkit.signature import Signature

__all__ = ["TrainingData", "feedback_rows", "load_data", "to_features"]


@attrs.frozen
class TrainingData:
    """Time-ordered rows (oldest first) and where they came from."""

    X: Any
    y: np.ndarray
    source: str
    skipped: int = 0
    """Labelled rows left out because their inputs were not recorded."""

    @property
    def n(self) -> int:
        """How many rows there are."""
        return len(self.y)


def feedback_rows(
    feedback: Sequence[Feedback],
    *,
    version: int | None = None,
    predicted_since: datetime | None = None,
) -> tuple[list[Any], list[Any], list[Any], int]:
    """Labelled rows of recorded predictions, ordered by prediction time.

    Returns ``(inputs, labels, outputs, skipped)``: one input row, label and recorded output
    (``None`` if not recorded) per labelled row, and how many labelled rows had no recorded
    inputs. ``version`` keeps only predictions that version served, ``predicted_since`` only
    predictions made at or after that time.
    """
    rows: list[tuple[datetime, str, int, Any, Any, Any]] = []
    skipped = 0
    for item in feedback:
        if version is not None and item.version != version:
            continue
        if predicted_since is not None and item.predicted_at < predicted_since:
            continue
        for i, label in enumerate(item.labels):
            if label is None:
                continue
            if item.inputs is None:
                skipped += 1
                continue
            output = None if item.outputs is None else item.outputs[i]
            rows.append((item.predicted_at, item.prediction_id, i, item.inputs[i], label, output))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows], skipped


def to_features(rows: list[Any], signature: Signature) -> Any:
    """Input rows (lists in the signature's order) as what the model was trained on."""
    if signature.input_type == "dataframe":
        import pandas as pd

        frame = pd.DataFrame(rows, columns=list(signature.names))
        for name, dtype in zip(signature.names, signature.dtypes, strict=True):
            if name not in signature.categorical:
                frame[name] = frame[name].astype(dtype)
        return frame
    if signature.categorical:
        return np.array(rows, dtype=object).reshape(len(rows), signature.n_features)
    return np.array(rows, dtype=float).reshape(len(rows), signature.n_features)


def _labels(values: Sequence[Any]) -> np.ndarray:
    array = np.asarray(list(values))
    if array.dtype.kind in "OUS":
        return np.asarray(list(values), dtype=object)
    return array


def load_data(
    registry: Registry,
    name: str,
    policy: RetrainPolicy,
    signature: Signature,
    *,
    since: datetime | None,
) -> TrainingData:
    """The rows a retrain of ``name`` trains and is judged on, oldest first."""
    if policy.data is None:
        feedback = registry.feedback(name, since=since)  # labels follow their predictions
        inputs, labels, _, skipped = feedback_rows(feedback, predicted_since=since)
        inputs, labels = inputs[-policy.window_rows :], labels[-policy.window_rows :]
        X = to_features(inputs, signature) if inputs else np.empty((0, signature.n_features))
        return TrainingData(X, _labels(labels), f"feedback of {name!r}", skipped)
    if callable(policy.data):
        X, y = policy.data()
        y = np.asarray(y)
        if len(y) != (X.shape[0] if hasattr(X, "shape") else len(X)):
            raise DataError(f"data() returned X and y of different lengths ({len(y)} labels)")
        return TrainingData(X, y, getattr(policy.data, "__name__", "data()"))
    return _from_source(policy.data, policy.query, str(policy.target), signature)


def _from_source(data: str, query: str | None, target: str, signature: Signature) -> TrainingData:
    from modelkit.batch.sources import open_source

    source = open_source(data, query=query) if query is not None else open_source(data)
    columns: dict[str, list[np.ndarray]] = {}
    for chunk in source.chunks(50_000):
        for key, values in chunk.columns.items():
            columns.setdefault(key, []).append(values)
    merged = {key: np.concatenate(parts) for key, parts in columns.items()}
    if target not in merged:
        raise DataError(
            f"{source.describe()} has no label column {target!r} (columns: "
            f"{', '.join(repr(c) for c in merged)})"
        )
    missing = [n for n in signature.names if n not in merged]
    names = list(signature.names)
    if missing and len(merged) - 1 == signature.n_features and names[0] == "f0":
        names = [c for c in merged if c != target]  # unnamed features: the file's order
        missing = []
    if missing:
        raise DataError(
            f"{source.describe()} lacks the feature column(s) {', '.join(map(repr, missing))} "
            "the model takes"
        )
    y = _labels(merged[target].tolist())
    if signature.input_type == "dataframe":
        import pandas as pd

        X: Any = pd.DataFrame({n: merged[n] for n in names})[names]
        X.columns = list(signature.names)
    else:
        X = to_features(np.column_stack([merged[n] for n in names]).tolist(), signature)
    return TrainingData(X, y, source.describe())
