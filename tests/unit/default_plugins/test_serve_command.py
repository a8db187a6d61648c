"""``modelkit serve`` options: --watch and the drain timeout reach the served App."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from modelkit.cli import main
from modelkit.default_plugins.serve_command import ServeCommand
from modelkit.serving import App


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelkit serve")
    ServeCommand().add_arguments(parser)
    return parser.parse_args(list(argv))


def test_watch_and_drain_timeout_defaults() -> None:
    args = parse("churn@production")
    assert args.watch is None
    assert args.drain_timeout == 30.0
    assert App("churn@production").drain_timeout == 30.0
    assert parse("churn@production", "--watch", "2.5").watch == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_watch_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("churn@production", "--watch", value)
    assert exit_info.value.code == 2
    assert "--watch" in capsys.readouterr().err


def test_the_options_reach_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeServer:
        name = "fake"

        def run(self, app: App, **options: Any) -> None:
            seen.update(app=app, **options)

    monkeypatch.setattr("modelkit.servers.get_server", lambda name: FakeServer())
    code = main(["serve", "churn@production", "--watch", "7", "--drain-timeout", "12"])
    assert code == 0
    app = seen["app"]
    assert isinstance(app, App)
    assert (app.watch, app.drain_timeout) == (7.0, 12.0)
    assert app.watcher is None  # started by the server, not before


def test_the_batching_options_reach_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeServer:
        name = "fake"

        def run(self, app: App, **options: Any) -> None:
            seen.update(app=app)

    monkeypatch.setattr("modelkit.servers.get_server", lambda name: FakeServer())
    argv = ["serve", "churn@production", "--max-batch-size", "8", "--max-wait-ms", "0.5"]
    assert main([*argv, "--max-queue", "3"]) == 0
    options = seen["app"].batch_options("churn")
    assert (options.max_batch_size, options.max_wait_ms, options.max_queue) == (8, 0.5, 3)
    assert options.enabled
    assert main(["serve", "churn@production", "--no-batching"]) == 0
    assert seen["app"].batch_options("churn").size == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-wait-ms", "-1"), ("--max-wait-ms", "x"), ("--max-batch-size", "0")],
)
def test_batching_options_are_checked(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("churn@production", option, value)
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_the_monitoring_options_reach_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeServer:
        name = "fake"

        def run(self, app: App, **options: Any) -> None:
            seen.update(app=app)

    monkeypatch.setattr("modelkit.servers.get_server", lambda name: FakeServer())
    argv = ["serve", "churn@production", "--monitor-window", "500", "--slo-p99-ms", "250"]
    assert main([*argv, "--slo-error-rate", "0.01"]) == 0
    app = seen["app"]
    assert app.monitoring is not None
    options = app.monitoring.options
    assert (options.window.size, options.window.unit) == (500, "rows")
    assert (options.slo.p99_seconds, options.slo.error_rate) == (0.25, 0.01)
    assert app.record_inputs is True
    assert main(["serve", "churn@production", "--no-monitor", "--no-record-inputs"]) == 0
    assert seen["app"].monitoring is None
    assert seen["app"].record_inputs is False


def test_monitoring_defaults() -> None:
    args = parse("churn@production")
    assert (args.no_monitor, args.monitor_window, args.no_record_inputs) == (False, 10_000, False)
    assert (args.slo_p99_ms, args.slo_error_rate) == (None, None)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--monitor-window", "0"),
        ("--slo-p99-ms", "0"),
        ("--slo-p99-ms", "fast"),
        ("--slo-error-rate", "0"),
        ("--slo-error-rate", "1.5"),
    ],
)
def test_monitoring_options_are_checked(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("churn@production", option, value)
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err
