"""The seed model, trained as the seed article does, saved in each server's own format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
from envs import HERE, UnavailableError, Venv, tail

SEED_ROW = [0.1, -0.5, 1.2, 0.3, -1.1, 0.0, 2.4, -0.7, 0.9, 1.5]
SEED_ROW += [-0.2, 0.6, -1.8, 0.4, 0.05, -0.33, 1.1, -2.0, 0.75, 0.2]
"""The row every request sends: the seed's curl example, completed to 20 features."""

MODEL_NAME = "seed"


@attrs.frozen
class Seed:
    """The fitted seed estimator, its training data and the rows answers are checked on."""

    estimator: Any
    X: Any
    y: Any

    def check_rows(self) -> list[list[float]]:
        """The benchmark's row first, then training rows of both classes."""
        rows: list[list[float]] = [SEED_ROW]
        for label in (0, 1):
            rows += self.X[self.y == label][:4].tolist()
        return rows

    def expected(self, rows: list[list[float]]) -> list[Any]:
        """Raw ``estimator.predict``, row by row, as plain Python values."""
        import numpy as np

        answers: list[Any] = [self.estimator.predict(np.asarray([row]))[0].item() for row in rows]
        return answers


def train_seed() -> Seed:
    """``make_classification(1000, 20, random_state=42)`` and ``LogisticRegression(liblinear)``."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    estimator = LogisticRegression(solver="liblinear").fit(X, y)
    return Seed(estimator, X, y)


def save_joblib(seed: Seed, path: Path) -> Path:
    """The fitted estimator as a joblib file (``model.pkl`` for the seed app)."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(seed.estimator, path)
    return path


def save_mlserver(seed: Seed, root: Path, *, batching: bool) -> Path:
    """An MLServer model repository: ``seed/model-settings.json`` and ``seed/model.joblib``."""
    folder = root / MODEL_NAME
    save_joblib(seed, folder / "model.joblib")
    settings: dict[str, Any] = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    if batching:
        settings |= {"max_batch_size": 32, "max_batch_time": 0.002}
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return root


def mlserver_settings(root: Path, *, http_port: int, grpc_port: int, metrics_port: int) -> None:
    """The server-wide ``settings.json``: ports, no access log, inference in the server process.

    ``parallel_workers: 0`` keeps inference in the process that answers HTTP: MLServer 1.7.1's
    default pool of one worker process dies at start-up with uvloop 0.23 ("There is no current
    event loop"), and on one core it would only add an inter-process hop per request.
    """
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))


def save_mlflow(venv: Venv, source: Path, target: Path, log: Path) -> Path:
    """An MLflow model directory, written by ``mlflow.sklearn.save_model`` in MLflow's own venv."""
    script = HERE / "peers" / "save_mlflow_model.py"
    with log.open("ab") as out:
        done = subprocess.run(
            [venv.python, str(script), str(source), str(target)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            env={**os.environ, "MLFLOW_TRACKING_URI": f"file://{target.parent}/mlruns"},
        )
    if done.returncode != 0:
        raise UnavailableError(f"mlflow.sklearn.save_model failed: {tail(log)}")
    return target


def save_modelkit(home: Path, env: dict[str, str], log: Path) -> Path:
    """A modelkit registry in ``home`` whose ``seed@production`` is the seed model.

    ``modelkit.train`` runs in a child process with ``env``, so that it is the modelkit the
    servers run (``PYTHONPATH`` may select another revision's source).
    """
    script = HERE / "peers" / "save_modelkit_registry.py"
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, str(script), str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            check=False,
        )
    if done.returncode != 0:
        raise UnavailableError(f"modelkit.train failed: {tail(log)}")
    return home
