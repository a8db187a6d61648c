"""Train the seed model into a modelkit registry, aliased ``production`` (run as a script).

Usage: ``python save_modelkit_registry.py REGISTRY_DIR``. It runs in its own process so that
the modelkit it imports is the one the servers will run (``PYTHONPATH`` may point at another
revision's source than the installed one).
"""

from __future__ import annotations

import sys


def main(home: str) -> None:
    """``modelkit.train`` the seed's estimator on the seed's data into ``home``."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelkit

    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    result = modelkit.train(
        LogisticRegression(solver="liblinear"),
        X,
        y,
        name="seed",
        registry=home,
        alias="production",
    )
    print(f"registered {result!r:.200} from {modelkit.__file__}")


if __name__ == "__main__":
    main(sys.argv[1])
