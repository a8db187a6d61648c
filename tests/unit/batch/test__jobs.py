"""The job's drift summary: chunks gathered into long batches, the same counts as one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelkit.batch._jobs import ProfileCollector
from modelkit.data import Dataset


def test_the_summary_of_chunks_is_the_summary_of_all_rows(features: np.ndarray) -> None:
    from modelkit import monitoring

    reference = monitoring.Reference.from_profile(Dataset(features).profile())
    names = tuple(f"f{j}" for j in range(features.shape[1]))
    rng = np.random.default_rng(3)
    live = rng.standard_normal((125_000, features.shape[1])) * 1.5
    collector = ProfileCollector(reference, names)
    for start in range(0, len(live), 25_000):
        part = live[start : start + 25_000]
        columns = {name: part[:, j] for j, name in enumerate(names)}
        columns["id"] = np.arange(len(part))  # other columns are ignored
        collector.add(columns, len(part))
    assert collector.pending_rows == 50_000  # 75,000 rows summarized in one batch so far
    verdict = collector.verdict()
    assert verdict is not None
    assert collector.window is not None
    assert collector.window.n_rows == 125_000
    whole = reference.summarize(pd.DataFrame(live, columns=list(names)))
    got = {f.name: f.counts for f in collector.window.inputs.features}
    assert got == {f.name: f.counts for f in whole.inputs.features}
    assert verdict["drift"] is True
