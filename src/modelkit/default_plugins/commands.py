"""Built-in ``modelkit`` sub-commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command


class PluginsCommand:
    """``modelkit plugins``: list loaded plugins and the hooks each implements."""

    help = "list loaded plugins and the hooks each implements"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(self, args: argparse.Namespace) -> int:
        from modelkit._tables import render_table
        from modelkit.plugins import list_plugins

        infos = list_plugins()
        if args.json:
            print(json.dumps([info.to_dict() for info in infos], indent=2))
            return 0
        rows = [
            (
                info.name,
                f"{info.distribution} {info.version}" if info.distribution else "(built-in)",
                ", ".join(info.hooks) or "-",
            )
            for info in infos
        ]
        print(render_table(("PLUGIN", "FROM", "HOOKS"), rows))
        return 0


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    register("plugins", PluginsCommand())
