"""Two concepts, a champion trained on the first, and served traffic of the second."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_FEATURES = 6
_RNG = np.random.default_rng(7)
W_OLD = _RNG.normal(size=N_FEATURES)
W_NEW = -np.roll(W_OLD, 2)


def concept(n: int, w: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows labelled by the sign of ``X @ w``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    return X, (X @ w > 0).astype(int)


Serve = Callable[..., list[str]]
