"""``modelkit demo``: the main job, end to end on the embedded defaults.

Train the seed model (``make_classification`` + ``LogisticRegression``), fingerprint and profile
its data, save it as an artifact, load it back with every hash checked, answer the seed's
``{"features": [[…]]}`` request with it, and show that a tampered artifact is refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command

SEED_REQUEST = {"features": [[0.1, -0.5] + [0.0] * 18, [1.2, 0.3] + [-0.4] * 18]}


class DemoCommand:
    """Train the seed model, save it as a verified artifact, load it and predict."""

    help = "train the seed model, save and verify it as an artifact, answer a /predict request"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dir",
            type=Path,
            default=Path("modelkit-demo"),
            help="where to write the artifact (default: ./modelkit-demo)",
        )

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        from modelkit.artifact import Artifact
        from modelkit.data import Dataset
        from modelkit.exceptions import ArtifactIntegrityError
        from modelkit.model import Model

        out: Path = args.dir
        out.mkdir(parents=True, exist_ok=True)
        step = _Steps()

        X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
        data = Dataset(X, y, name="seed")
        step("data", f"{data.n_rows:,} rows x {X.shape[1]} features, {data.fingerprint[:19]}…")

        estimator = LogisticRegression(solver="liblinear")
        accuracy = float(cross_val_score(estimator, X, y, cv=5).mean())
        estimator.fit(X, y)
        model = Model.wrap(estimator, sample=X, name="seed")
        step("train", f"LogisticRegression(solver='liblinear'), 5-fold accuracy {accuracy:.3f}")

        artifact = Artifact.from_model(
            model,
            name="seed",
            sample=X[:5],
            metrics={"accuracy": accuracy},
            fingerprint=data.fingerprint,
            profile=data.profile(),
        )
        path = artifact.save(out / "seed-model", overwrite=True)
        files = sorted(p.name for p in path.iterdir())
        step("save", f"{path} ({', '.join(files)})")

        loaded = Artifact.load(path, expected_manifest_sha256=artifact.manifest_sha256)
        step("load", f"every file's sha256 verified; manifest {artifact.manifest_sha256[:12]}…")

        answer = loaded.model.predict(SEED_REQUEST["features"])
        same = np.array_equal(answer, estimator.predict(np.asarray(SEED_REQUEST["features"])))
        response = {"prediction": answer.tolist()}
        step("predict", f"{json.dumps(SEED_REQUEST)[:48]}… -> {json.dumps(response)}")
        step("", f"identical to estimator.predict: {same}")

        tampered = out / "seed-model-tampered"
        shutil.rmtree(tampered, ignore_errors=True)
        shutil.copytree(path, tampered)
        payload = tampered / "model.joblib"
        raw = bytearray(payload.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        payload.write_bytes(bytes(raw))
        try:
            Artifact.load(tampered)
        except ArtifactIntegrityError as exc:
            step("tamper", f"refused a flipped byte: {exc}")
        else:
            step("tamper", "a tampered artifact loaded: this is a bug")
            return 1
        finally:
            shutil.rmtree(tampered, ignore_errors=True)
        return 0 if same else 1


class _Steps:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, name: str, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"{elapsed:6.2f}s  {name:<8} {text}", flush=True)


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    register("demo", DemoCommand())
