"""The README's main job, ``modelkit demo``, as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelkit import Artifact

pytestmark = pytest.mark.integration


def test_demo_trains_saves_verifies_and_predicts(tmp_path: Path) -> None:
    entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
    assert entry is not None, "the modelkit console script is not installed"
    result = subprocess.run(
        [entry, "demo", "--dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    steps = [line.split()[1] for line in result.stdout.splitlines() if len(line.split()) > 1]
    assert steps[:5] == ["data", "train", "save", "load", "predict"]
    assert "identical to estimator.predict: True" in result.stdout
    assert "refused a flipped byte" in result.stdout
    assert not (tmp_path / "out" / "seed-model-tampered").exists()

    artifact = Artifact.load(tmp_path / "out" / "seed-model")
    assert artifact.name == "seed"
    prediction = artifact.model.predict([[0.1, -0.5] + [0.0] * 18])
    assert prediction.shape == (1,)
    assert set(np.unique(prediction)) <= {0, 1}


def test_python_dash_m_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelkit", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.startswith("modelkit ")
