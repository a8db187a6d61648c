"""The built-in backends' SIGHUP handling: check the served aliases, in a background thread."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelkit import Artifact
from modelkit.default_plugins.servers import check_aliases, reload_on_hangup
from modelkit.model import Model
from modelkit.registry import Registry
from modelkit.serving import App


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def seed_model() -> Model:
    """A small LogisticRegression on 20 features, named "seed"."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelkit.plugins import make_plugin_manager, use_plugin_manager

    X, y = make_classification(n_samples=200, n_features=20, random_state=0)
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)):
        return Model.wrap(LogisticRegression().fit(X, y), sample=X, name="seed")


@pytest.fixture
def registry(tmp_path: Path, seed_model: Model) -> Iterator[Registry]:
    """ "churn" versions 1 (in production) and 2."""
    with Registry(str(tmp_path / "reg")) as reg:
        for _ in range(2):
            reg.register("churn", Artifact.from_model(seed_model, name="churn"))
        reg.set_alias("churn", "production", 1)
        yield reg


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_sighup_swaps_a_moved_alias_off_the_signal_handler(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    before = signal.getsignal(signal.SIGHUP)
    with reload_on_hangup(app) as installed:
        assert installed
        registry.set_alias("churn", "production", 2)
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: app.models["churn"].version == "2", "SIGHUP to swap version 2")
        registry.set_alias("churn", "production", 1)
        os.kill(os.getpid(), signal.SIGHUP)  # and again: the listener keeps listening
        wait_until(lambda: app.models["churn"].version == "1", "a second SIGHUP to swap back")
    assert signal.getsignal(signal.SIGHUP) == before
    assert not [t for t in threading.enumerate() if t.name == "modelkit-sighup"]


def test_nothing_is_installed_outside_the_main_thread(registry: Registry) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    seen: list[bool] = []

    def run() -> None:
        with reload_on_hangup(app) as installed:
            seen.append(installed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [False]


def test_check_aliases_logs_what_it_did(
    registry: Registry, seed_model: Model, caplog: pytest.LogCaptureFixture
) -> None:
    plain = App(seed_model, auth=False)
    plain.start()
    pinned = App("churn/1", registry=registry, feedback=False, auth=False)
    pinned.start()
    following = App("churn@production", registry=registry, feedback=False, auth=False)
    following.start()
    registry.set_alias("churn", "production", 2)
    with caplog.at_level(logging.WARNING, logger="modelkit.serving"):
        assert check_aliases(plain) == []
        assert check_aliases(pinned) == []
        (result,) = check_aliases(following)
    assert result.outcome == "swapped"
    assert "no served model comes from the registry" in caplog.text
    assert "no served model follows a registry alias" in caplog.text
    assert "SIGHUP: churn now serves version 2 (was 1)" in caplog.text


def test_check_aliases_never_raises(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    app = App("churn@production", registry=registry, feedback=False, auth=False)
    app.start()
    assert app.watcher is not None
    app.watcher.stop()
    app.registry = "nope://registry"
    with caplog.at_level(logging.ERROR, logger="modelkit.serving"):
        assert check_aliases(app) == []
    assert "SIGHUP: could not check the served aliases" in caplog.text
