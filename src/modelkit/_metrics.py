"""Metric values computed on labelled predictions, shared by monitoring and retraining."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["f1_score"]


def f1_score(y: np.ndarray, p: np.ndarray, positive: Any = None) -> float:
    """F1 of predictions ``p`` of truths ``y``: binary for the class ``positive``, or the
    macro average over the labels seen in either (``positive=None``).

    A class absent from both the truths and the predictions was predicted perfectly: its F1
    is 1 (scikit-learn's ``zero_division=1``), so a window without a single positive row is
    not read as a drop. No rows give NaN.
    """
    labels = [positive] if positive is not None else list(dict.fromkeys([*y.tolist(), *p.tolist()]))
    scores = []
    for label in labels:
        tp = float(np.sum((p == label) & (y == label)))
        fp = float(np.sum((p == label) & (y != label)))
        fn = float(np.sum((p != label) & (y == label)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores)) if scores else math.nan
