"""The CI subset of the drift benchmark: seeded replications inside binomial bands.

``benchmarks/drift/run.py`` runs the full benchmark; here a few hundred seeded runs on the
same generators check the false-alarm rate and the power targets with bands wide enough to
hold with probability 99.9% when the true rate is on target (so a failure means the
calibration moved, not bad luck).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from modelkit.monitoring import DriftConfig, Reference, check_drift

pytestmark = pytest.mark.slow

GENERATORS = Path(__file__).parents[3] / "benchmarks" / "drift" / "generators.py"


def _generators() -> ModuleType:
    spec = importlib.util.spec_from_file_location("drift_generators", GENERATORS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("drift_generators", module)
    spec.loader.exec_module(module)
    return module


def _band(runs: int, rate: float, level: float = 0.999) -> tuple[int, int]:
    from scipy.stats import binom

    tail = (1 - level) / 2
    return int(binom.ppf(tail, runs, rate)), int(binom.isf(tail, runs, rate))


def _alarms(n_ref: int, n_cur: int, scenario: str, runs: int, seed: int) -> tuple[int, int]:
    """Dataset-level alarms (significance mode) and how often the shifted row ranked first."""
    gen = _generators()
    rng = np.random.default_rng(seed)
    config = DriftConfig(mode="significance")
    alarms = first = 0
    for _ in range(runs):
        reference = Reference.fit(gen.generate(n_ref, rng))
        report = check_drift(
            reference, reference.summarize(gen.generate(n_cur, rng, scenario)), config
        )
        alarms += report.significance_drift
        first += report.features[0].name == gen.SHIFTED.get(scenario)
    return alarms, first


@pytest.mark.parametrize(("n_ref", "n_cur"), [(1000, 1000), (500, 2000), (1000, 10_000)])
def test_false_alarms_stay_near_five_percent(n_ref: int, n_cur: int) -> None:
    runs = 250
    alarms, _ = _alarms(n_ref, n_cur, "none", runs, seed=n_ref + n_cur)
    low, high = _band(runs, 0.05)
    assert low <= alarms <= high, f"{alarms}/{runs} false alarms, band [{low}, {high}]"


@pytest.mark.parametrize(
    ("scenario", "target"), [("mean", 0.95), ("scale", 0.95), ("correlation", 0.95)]
)
def test_power_at_ten_thousand_rows(scenario: str, target: float) -> None:
    runs = 25
    alarms, first = _alarms(10_000, 10_000, scenario, runs, seed=len(scenario))
    low, _ = _band(runs, target)
    assert alarms >= low, f"power {alarms}/{runs}, at least {low} expected at {target:.0%}"
    assert first >= low, f"ranked first {first}/{runs}"
