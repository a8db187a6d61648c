"""The ``modelkit`` command line, in process."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pluggy
import pytest

from modelkit import __version__
from modelkit.cli import main, number, seconds
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


@pytest.mark.parametrize(
    ("kind", "good", "bad", "message"),
    [
        (seconds, {"0": 0.0, "2.5": 2.5}, ["-1", "nan", "x"], "a number of seconds >= 0"),
        (
            number("a fraction", above=0, at_most=1),
            {"1": 1.0},
            ["0", "1.5"],
            "a fraction in (0, 1]",
        ),
        (number("a share", at_least=0, below=1), {"0": 0.0}, ["1", "-0.1"], "a share in [0, 1)"),
        (number("a delay", above=0, below=float("inf")), {"3": 3.0}, ["0", "inf"], "a delay > 0"),
        (number("a score", at_most=1), {"-5": -5.0}, ["2", "NaN"], "a score <= 1"),
    ],
)
def test_number_types_accept_their_range_and_name_it(
    kind: Any, good: dict[str, float], bad: list[str], message: str
) -> None:
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError) as caught:
            kind(text)
        assert str(caught.value) == f"expected {message}, got {text!r}"
