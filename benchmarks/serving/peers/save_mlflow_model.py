"""Save a joblib-pickled estimator as an MLflow model directory (run in MLflow's own venv).

Usage: ``python save_mlflow_model.py MODEL.joblib TARGET_DIR``. The model gets a signature
inferred from 20 float64 features and its predictions, as ``mlflow.sklearn.log_model`` users
give it, so ``mlflow models serve`` checks inputs against it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(source: str, target: str) -> None:
    """Load ``source`` and write the MLflow model to ``target`` (replacing it)."""
    import joblib
    import mlflow.sklearn
    import numpy as np
    import sklearn
    from mlflow.models import infer_signature

    estimator = joblib.load(source)
    example = np.random.default_rng(0).normal(size=(5, 20))
    signature = infer_signature(example, estimator.predict(example))
    shutil.rmtree(target, ignore_errors=True)
    mlflow.sklearn.save_model(
        estimator,
        target,
        signature=signature,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
    )
    print(f"saved {Path(target).resolve()}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
