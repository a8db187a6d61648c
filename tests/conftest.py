"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pluggy
import pytest

from modelkit.plugins import make_plugin_manager, use_plugin_manager


@pytest.fixture(autouse=True)
def plugin_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[pluggy.PluginManager]:
    """Give every test a fresh plugin manager with the default plugins and no entry points."""
    monkeypatch.delenv("MODELKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MODELKIT_DISABLE_PLUGINS", raising=False)
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)) as pm:
        yield pm
