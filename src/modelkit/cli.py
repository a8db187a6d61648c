"""The ``modelkit`` command line.

Sub-commands are plugins: each is a :class:`Command` registered through the
``register_commands`` hook, the built-in ones included (``modelkit.default_plugins.commands``).
Errors a user can fix print one ``error: …`` line and exit with status 1; no traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from modelkit._version import __version__
from modelkit.exceptions import ModelkitError

__all__ = [
    "Command",
    "build_parser",
    "main",
    "number",
    "port_number",
    "positive_int",
    "seconds",
]


@runtime_checkable
class Command(Protocol):
    """A ``modelkit`` sub-command."""

    help: str
    """One line shown by ``modelkit --help``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's options on its own sub-parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the work; return the process exit status."""


# -- argument types shared by commands (argparse ``type=``) ------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def number(
    what: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> Callable[[str], float]:
    """An argparse type: a number within the bounds given (never NaN), called ``what`` in
    its error (``number("a number of seconds", above=0)`` refuses ``0`` with "expected a
    number of seconds > 0, got '0'")."""
    low = above if above is not None else at_least
    high = below if below is not None else at_most
    if high == math.inf:  # "below=math.inf" refuses inf; the message gives the lower bound
        high = None
    if low is not None and high is not None:
        bounds = f"in {'(' if above is not None else '['}{low:g}, {high:g}"
        bounds += ")" if below is not None else "]"
    elif low is not None:
        bounds = f"{'>' if above is not None else '>='} {low:g}"
    else:
        bounds = f"{'<' if below is not None else '<='} {high:g}" if high is not None else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = not math.isnan(value)
        inside = inside and (above is None or value > above) and (below is None or value < below)
        inside = inside and (at_least is None or value >= at_least)
        if not (inside and (at_most is None or value <= at_most)):
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


seconds = number("a number of seconds", at_least=0)
"""argparse type: a number of seconds >= 0."""


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0 picks a free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every registered sub-command."""
    from modelkit.plugins import collect

    parser = argparse.ArgumentParser(
        prog="modelkit",
        description="Version, train, serve and monitor scikit-learn models.",
    )
    parser.add_argument("--version", action="version", version=f"modelkit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, command in sorted(collect("register_commands").items()):
        if not isinstance(command, Command):
            raise ModelkitError(
                f"the {name!r} command does not implement modelkit.cli.Command "
                "(help, add_arguments, run)"
            )
        command_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = getattr(args, "_command", None)
        if command is None:
            parser.print_help()
            return 2
        return int(command.run(args))
    except ModelkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """Exit quietly when the reader of standard output went away (``modelkit … | head``).

    Standard output is pointed at the null device, so the interpreter's final flush has
    nowhere to fail; the status is a shell's for a command killed by SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (captured)
        pass
    return 128 + 13
