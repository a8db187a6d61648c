"""``modelkit monitor check`` and ``modelkit monitor alerts``.

``check`` compares a file of live data with a registered model's reference and prints the
per-feature table and the verdict (``--json``: the report's ``to_dict()``). The reference is
the artifact's profile of its training data, or ``--reference FILE`` (fitted from that data:
adds the dependence check). Exit status, for scripts:

- ``0``: no drift (also "insufficient data": too few rows to say anything);
- ``1``: drift;
- ``2``: no verdict: a usage error, an unknown model, an unreadable file or columns that do
  not match the model's.

``alerts`` lists the alerts stored in the registry, newest first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelkit.cli import positive_int
from modelkit.default_plugins.registry_commands import (
    add_subcommands,
    one_line,
    open_registry,
    parse_time,
)
from modelkit.exceptions import DataError, MissingDependencyError, ModelkitError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command

__all__ = ["EXIT_DRIFT", "EXIT_NO_VERDICT", "EXIT_OK", "MonitorCommand", "read_table"]

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_NO_VERDICT = 2


def read_table(path: Path, columns: list[str] | None = None) -> Any:
    """Read a CSV or Parquet file as a DataFrame, keeping ``columns`` (in that order).

    Raises DataError naming the file (missing, unreadable, or without some of ``columns``).
    """
    from modelkit._io import file_format

    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError(
            "modelkit monitor check reads files with pandas: pip install 'modelkit[pandas]'"
        ) from exc
    kind = file_format(path)
    try:
        frame = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from exc
    if columns is None:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path} lacks the model's feature column(s) {missing}; it has "
            f"{[str(c) for c in frame.columns]}"
        )
    return frame[columns]


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="NAME@ALIAS", help="the model: churn@production, churn/3")
    parser.add_argument(
        "--current", type=Path, required=True, metavar="FILE", help="live data (.csv, .parquet)"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="reference data to fit on (default: the artifact's training-data profile)",
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "significance", "relevance"),
        default="auto",
        help="which verdict decides (auto: relevance above 10,000 rows)",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="dataset-level false-alarm rate (0.05)"
    )


def _alerts_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="one model (default: all)")
    parser.add_argument("--kind", choices=("drift", "performance", "health"))
    parser.add_argument("--since", type=parse_time, metavar="TIME")
    parser.add_argument("--limit", type=positive_int, default=20)


def monitor_check(args: argparse.Namespace) -> int:
    """Run ``modelkit monitor check``."""
    from modelkit.monitoring import DriftConfig, Monitor, Reference
    from modelkit.registry import parse_model_uri

    if not 0 < args.alpha < 1:
        raise ModelkitError(f"--alpha must be between 0 and 1, got {args.alpha}")
    config = DriftConfig(alpha=args.alpha, mode=args.mode)
    with open_registry(args) as registry:
        ref = parse_model_uri(args.model)
        artifact = registry.load_artifact(args.model)
        names = list(artifact.model.signature.names)
        if args.reference is not None:
            reference = Reference.fit(read_table(args.reference, names))
        elif artifact.profile is not None:
            reference = Reference.from_profile(artifact.profile)
        else:
            raise ModelkitError(
                f"{args.model} has no profile of its training data; give --reference FILE"
            )
        monitor = Monitor(reference=reference, config=config, name=ref.name)
        report = monitor.check_data(read_table(args.current, names))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_text())
    return EXIT_DRIFT if report.drift else EXIT_OK


def monitor_alerts(args: argparse.Namespace) -> int:
    """Run ``modelkit monitor alerts``."""
    from modelkit._tables import format_time, render_table

    with open_registry(args) as registry:
        alerts = registry.alerts(args.name, kind=args.kind, since=args.since, limit=args.limit)
    if args.json:
        print(json.dumps([a.to_dict() for a in alerts], indent=2))
        return EXIT_OK
    rows = []
    for alert in alerts:
        details = alert.details
        summary = str(details.get("verdict") or details.get("rule") or details.get("metric", ""))
        top = details.get("features") or []
        if top:
            summary += f" (top: {top[0].get('name')})"
        version = "-" if alert.version is None else str(alert.version)
        rows.append(
            (str(alert.id), format_time(alert.at), alert.name, version, alert.kind, summary)
        )
    print(render_table(("ID", "AT", "MODEL", "VERSION", "KIND", "SUMMARY"), rows))
    return EXIT_OK


class MonitorCommand:
    """``modelkit monitor …``: check live data for drift; list stored alerts."""

    help = "check live data for drift against a model's reference; list monitoring alerts"
    subcommands: ClassVar[dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]]] = {
        "check": (
            "compare a file of live data with a model's reference (exit 0 no drift, 1 drift, "
            "2 no verdict)",
            _check_arguments,
            monitor_check,
        ),
        "alerts": (
            "list stored monitoring alerts, newest first",
            _alerts_arguments,
            monitor_alerts,
        ),
    }

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare ``check`` and ``alerts``."""
        add_subcommands(parser, self.subcommands)

    def run(self, args: argparse.Namespace) -> int:
        """Run the sub-command; errors a user can fix exit with status 2 (no verdict)."""
        try:
            return int(args._handler(args))
        except (ModelkitError, ValueError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return EXIT_NO_VERDICT


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    """Register ``modelkit monitor``."""
    register("monitor", MonitorCommand())
