"""Drift alerts land in real databases and outlive the process that raised them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelkit.registry import Registry

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from modelkit.monitoring import DriftConfig, Monitor, Window
    from modelkit.registry import Registry

    rng = np.random.default_rng(0)
    with Registry(sys.argv[1]) as registry:
        monitor = Monitor.fit(
            rng.normal(size=(2000, 3)),
            name="churn",
            registry=registry,
            window=Window.tumbling(rows=1000),
            config=DriftConfig(mode="significance"),
        )
        monitor.observe(rng.normal(size=(1000, 3)))              # no drift: nothing stored
        monitor.observe(rng.normal(size=(1000, 3)) + [0, 0, 1])  # drift on f2
    """
)


def _raise_alerts(url: str) -> None:
    subprocess.run([sys.executable, "-c", SCRIPT, url], check=True, timeout=120)


def _check(url: str) -> None:
    with Registry(url) as registry:
        [alert] = registry.alerts("churn")
        assert alert.kind == "drift"
        assert alert.details["verdict"] == "drift"
        assert alert.details["features"][0]["name"] == "f2"
        assert alert.details["n_current"] == 1000


def test_alerts_survive_the_process_sqlite(tmp_path: Path) -> None:
    url = f"sqlite://{(tmp_path / 'registry.db').as_posix()}"
    _raise_alerts(url)
    _check(url)


def test_alerts_survive_the_process_postgresql(postgres_url: str) -> None:
    _raise_alerts(postgres_url)
    _check(postgres_url)


def test_a_database_without_alerts_is_migrated_in_place(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from modelkit._sql import MIGRATIONS
    from modelkit.default_plugins.sqlite_registry import SQLiteBackend

    url = f"sqlite://{(tmp_path / 'old.db').as_posix()}"
    old = SQLiteBackend(url, migrations=MIGRATIONS[:2])
    at = datetime(2024, 6, 1, tzinfo=timezone.utc)
    with old.transaction(write=True) as tx:  # a row as schema 2 holds it
        tx.execute(
            "INSERT INTO modelkit_predictions (id, name, version, at, n_rows, outputs) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("p", "churn", None, old.to_db_time(at), 1, None),
        )
    old.close()
    with Registry(url, artifacts=str(tmp_path / "artifacts")) as registry:
        assert registry.backend.schema_version() == MIGRATIONS[-1].version  # type: ignore[attr-defined]
        assert registry.prediction("p").rows == 1
        assert registry.prediction("p").inputs is None  # recorded before inputs were kept
        registry.record_alert("churn", "drift", {"verdict": "drift"})
        assert [a.kind for a in registry.alerts()] == ["drift"]
