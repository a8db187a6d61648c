"""modelkit.testing's registry conformance suite on both built-in backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelkit.testing import RegistryConformance

pytestmark = pytest.mark.integration


class TestSQLite(RegistryConformance):
    """A SQLite file per test."""

    @pytest.fixture
    def registry_url(self, tmp_path: Path) -> str:
        return f"sqlite://{(tmp_path / 'meta' / 'registry.db').as_posix()}"


class TestPostgreSQL(RegistryConformance):
    """A scratch PostgreSQL database per test (see conftest.py)."""

    @pytest.fixture
    def registry_url(self, postgres_url: str) -> str:
        return postgres_url
