"""The ``modelkit`` command line, in process."""

from __future__ import annotations

import argparse
import json

import pluggy
import pytest

from modelkit import __version__
from modelkit.cli import main
from modelkit.exceptions import NotFoundError
from modelkit.hookspecs import hookimpl


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"modelkit {__version__}\n"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "plugins" in out
    assert "demo" in out


def test_plugins_table_lists_builtins_with_their_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PLUGIN", "FROM", "HOOKS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "make_model" in rows["modelkit.sklearn_model"]
    assert "register_artifact_stores" in rows["modelkit.local_store"]
    assert "(built-in)" in rows["modelkit.commands"]


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["modelkit.demo"]["hooks"] == ["register_commands"]
    assert plugins["modelkit.demo"]["module"] == "modelkit.default_plugins.demo"
    assert plugins["modelkit.demo"]["distribution"] is None


class Failing:
    help = "fails the way a user error does"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotFoundError("no model named 'churn'; run `modelkit models list`")


class NotACommand:
    pass


class Registers:
    def __init__(self, name: str, command: object) -> None:
        self.name, self.command = name, command

    @hookimpl
    def register_commands(self, register: object) -> None:
        register(self.name, self.command)  # type: ignore[operator]


def test_user_errors_print_one_line_and_exit_1(
    plugin_manager: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin_manager.register(Registers("fail", Failing()))
    assert main(["fail"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: no model named 'churn'; run `modelkit models list`\n"
    assert "Traceback" not in captured.err


def test_a_plugin_command_without_the_protocol_is_reported(
    plugin_manager: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin_manager.register(Registers("broken", NotACommand()))
    assert main(["plugins"]) == 1
    assert "'broken' command does not implement modelkit.cli.Command" in capsys.readouterr().err
