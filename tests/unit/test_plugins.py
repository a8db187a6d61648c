"""The plugin manager: defaults, entry points, environment switches, hook helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pluggy
import pytest

from modelkit import hookspecs
from modelkit.exceptions import HookFailedWarning, NotFoundError, PluginError
from modelkit.hookspecs import hookimpl
from modelkit.plugins import (
    DEFAULT_PLUGINS,
    collect,
    get_plugin_manager,
    list_plugins,
    make_plugin_manager,
    notify,
    set_plugin_manager,
    use_plugin_manager,
)


def install_fake_distribution(
    site: Path, *, dist: str = "modelkit_hello", ep: str = "hello"
) -> Path:
    """Lay out an installed distribution (module + .dist-info with an entry point) in ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{dist}_plugin.py").write_text(
        textwrap.dedent(
            """
            from modelkit.hookspecs import hookimpl

            SEEN = []

            class Hello:
                help = "say hello from a plugin"

                def add_arguments(self, parser):
                    parser.add_argument("--who", default="world")

                def run(self, args):
                    print(f"hello {args.who}")
                    return 0

            @hookimpl
            def register_commands(register):
                register("hello", Hello())

            @hookimpl
            def on_artifact_saved(artifact, path):
                SEEN.append(path)
            """
        )
    )
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[modelkit]\n{ep} = {dist}_plugin\n")
    return site


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = install_fake_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_default_plugins_are_registered_by_name(plugin_manager: pluggy.PluginManager) -> None:
    names = {name for name, _ in plugin_manager.list_name_plugin()}
    assert {name for name, _ in DEFAULT_PLUGINS} <= names


def test_disable_env_blocks_a_default_plugin() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False, environ={"MODELKIT_DISABLE_PLUGINS": " modelkit.commands , "}
    )
    assert pm.get_plugin("modelkit.commands") is None
    assert pm.is_blocked("modelkit.commands")


def test_entry_point_plugin_is_loaded_when_env_unset(fake_site: Path) -> None:
    pm = make_plugin_manager(environ={})
    plugin = pm.get_plugin("hello")
    assert plugin is not None
    assert plugin.__name__ == "modelkit_hello_plugin"
    info = {i.name: i for i in list_plugins(pm)}["hello"]
    assert info.distribution == "modelkit_hello"
    assert info.version == "1.2.3"
    assert info.hooks == ("on_artifact_saved", "register_commands")


def test_load_env_empty_loads_no_entry_points(fake_site: Path) -> None:
    pm = make_plugin_manager(environ={"MODELKIT_LOAD_PLUGINS": ""})
    assert pm.get_plugin("hello") is None


def test_load_env_names_select_entry_points(fake_site: Path) -> None:
    pm = make_plugin_manager(environ={"MODELKIT_LOAD_PLUGINS": "hello"})
    assert pm.get_plugin("hello") is not None


def test_load_env_naming_a_missing_plugin_says_what_is_installed(fake_site: Path) -> None:
    with pytest.raises(NotFoundError, match=r"'nope'.*installed: .*'hello'"):
        make_plugin_manager(environ={"MODELKIT_LOAD_PLUGINS": "hello,nope"})


def test_disable_env_blocks_an_entry_point(fake_site: Path) -> None:
    pm = make_plugin_manager(environ={"MODELKIT_DISABLE_PLUGINS": "hello"})
    assert pm.get_plugin("hello") is None


def test_get_plugin_manager_builds_lazily_and_once(fake_site: Path) -> None:
    previous = set_plugin_manager(None)
    try:
        first = get_plugin_manager()
        assert first is get_plugin_manager()
        assert first.get_plugin("hello") is not None
    finally:
        set_plugin_manager(previous)


class Boom:
    @hookimpl
    def on_artifact_saved(self, artifact: object, path: Path) -> None:
        raise RuntimeError("disk on fire")


class Recorder:
    def __init__(self) -> None:
        self.paths: list[Path] = []

    @hookimpl
    def on_artifact_saved(self, artifact: object, path: Path) -> None:
        self.paths.append(path)


def test_failing_event_hook_warns_and_others_still_run(
    plugin_manager: pluggy.PluginManager,
) -> None:
    recorder = Recorder()
    plugin_manager.register(recorder, name="recorder")
    plugin_manager.register(Boom(), name="boom")
    with pytest.warns(
        HookFailedWarning, match=r"'boom' raised in on_artifact_saved: .*disk on fire"
    ):
        notify("on_artifact_saved", artifact=None, path=Path("x"))
    assert recorder.paths == [Path("x")]


def test_notify_without_implementations_does_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        notify("on_artifact_loaded", artifact=None, path=Path("x"))


class TwoCommands:
    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def register_commands(self, register: object) -> None:
        register(self.name, object())  # type: ignore[operator]


def test_collect_rejects_a_name_taken_twice(plugin_manager: pluggy.PluginManager) -> None:
    plugin_manager.register(TwoCommands("plugins"), name="impostor")
    with pytest.raises(
        PluginError, match=r"'plugins' is registered by both 'modelkit.commands' and 'impostor'"
    ):
        collect("register_commands")


def test_collect_rejects_an_empty_name(plugin_manager: pluggy.PluginManager) -> None:
    plugin_manager.register(TwoCommands(""), name="blank")
    with pytest.raises(PluginError, match="expected a non-empty string"):
        collect("register_commands")


def test_use_plugin_manager_restores_the_previous_one(plugin_manager: pluggy.PluginManager) -> None:
    other = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    with use_plugin_manager(other):
        assert get_plugin_manager() is other
    assert get_plugin_manager() is plugin_manager


def test_cli_lists_and_runs_an_installed_plugin(fake_site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(fake_site)}
    env.pop("MODELKIT_LOAD_PLUGINS", None)
    env.pop("MODELKIT_DISABLE_PLUGINS", None)
    listed = subprocess.run(
        [sys.executable, "-m", "modelkit", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["hello"]["distribution"] == "modelkit_hello"
    assert "register_commands" in plugins["hello"]["hooks"]
    said = subprocess.run(
        [sys.executable, "-m", "modelkit", "hello", "--who", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert said.stdout == "hello plugins\n"
    hidden = subprocess.run(
        [sys.executable, "-m", "modelkit", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**env, "MODELKIT_DISABLE_PLUGINS": "hello"},
    )
    assert "hello" not in hidden.stdout
    assert "modelkit.commands" in hidden.stdout
