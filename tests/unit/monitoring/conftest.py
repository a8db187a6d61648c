"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest
from tests.unit.monitoring.helpers import Make, mixed


@pytest.fixture
def make() -> Make:
    """``make(n, seed, **shifts)``: see :func:`tests.unit.monitoring.helpers.mixed`."""
    return mixed
