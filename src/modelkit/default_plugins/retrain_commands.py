"""``modelkit retrain``, ``modelkit watch``, ``modelkit models approve`` and ``models events``.

``modelkit retrain churn --data recent.csv --target churned [--promote]`` retrains once now:
a challenger trained on the older rows, judged against ``churn@production`` on the newest
held-out rows, promoted with ``--promote`` when it passes the gate (otherwise left pending
for ``modelkit models approve``). Without ``--data`` it trains on the recent labelled window
of the feedback store.

``modelkit watch churn@production`` runs the retraining loop as its own process: every
``--interval`` seconds it checks the triggers (drift and performance alerts, a measured drop,
a schedule, new labelled rows), retrains under the model's lease, gates, promotes and watches
the promotion. SIGTERM or Ctrl-C stop it after the step in progress; ``--once`` does one step.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from modelkit._tables import format_float, render_table
from modelkit.cli import number, positive_int, seconds
from modelkit.default_plugins.registry_commands import (
    add_common_options,
    open_registry,
    print_json,
)
from modelkit.exceptions import ModelkitError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command
    from modelkit.registry import Registry
    from modelkit.retrain import RetrainEvent, RetrainOutcome, RetrainPolicy

__all__ = [
    "RetrainCommand",
    "WatchCommand",
    "add_policy_options",
    "models_approve",
    "models_events",
    "policy_from_args",
]


_fraction = number("a number", above=0, below=1)
_non_negative = number("a number", at_least=0, below=math.inf)


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """The gate's options: metric, margin, alpha, held-out share."""
    from modelkit.retrain import GATE_METRICS

    gate = parser.add_argument_group("gate (see docs/retraining.md)")
    gate.add_argument(
        "--metric", choices=GATE_METRICS, default="accuracy", help="metric compared (accuracy)"
    )
    gate.add_argument(
        "--margin",
        type=_non_negative,
        default=0.0,
        metavar="X",
        help="how much better the challenger must be, in the metric's units (default: 0)",
    )
    gate.add_argument(
        "--alpha",
        type=_fraction,
        default=0.05,
        metavar="P",
        help="level of the one-sided paired test (default: 0.05)",
    )
    gate.add_argument(
        "--holdout",
        type=_fraction,
        default=0.2,
        metavar="SHARE",
        help="share of the newest rows held out to judge both models (default: 0.2)",
    )


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``modelkit watch``: triggers, limits, data window, gate, approval."""
    triggers = parser.add_argument_group("triggers (any one fires)")
    triggers.add_argument("--no-drift", action="store_true", help="ignore drift alerts")
    triggers.add_argument("--no-performance", action="store_true", help="ignore performance alerts")
    triggers.add_argument(
        "--performance-drop",
        type=_non_negative,
        metavar="X",
        help="retrain when the live metric is worse than at training time by X",
    )
    triggers.add_argument(
        "--every",
        metavar="SECONDS|CRON",
        help="retrain on a schedule: seconds since the last retrain, or '0 3 * * *', @daily",
    )
    triggers.add_argument(
        "--min-new-labels",
        type=positive_int,
        metavar="N",
        help="retrain once N labelled rows arrived since the champion was registered",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--cooldown",
        type=seconds,
        default=3600.0,
        metavar="SECONDS",
        help="no retrain within this long of the previous one (default: 3600)",
    )
    limits.add_argument(
        "--max-per-day", type=positive_int, metavar="N", help="at most N retrains a day"
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--window-rows",
        type=positive_int,
        default=5000,
        metavar="N",
        help="train on the newest N labelled rows (default: 5000)",
    )
    data.add_argument(
        "--since-alert",
        action="store_true",
        help="train only on rows predicted after the first alert that triggered the retrain",
    )
    data.add_argument(
        "--min-rows",
        type=positive_int,
        default=200,
        metavar="N",
        help="a retrain needs at least N labelled rows (default: 200)",
    )
    add_gate_options(parser)
    after = parser.add_argument_group("promotion")
    after.add_argument(
        "--approval",
        choices=("auto", "manual"),
        default="auto",
        help="promote a passing challenger at once, or wait for `modelkit models approve`",
    )
    after.add_argument(
        "--watch-rows",
        type=int,
        default=200,
        metavar="N",
        help="after a promotion, compare with the old champion on N labelled rows and roll "
        "back if worse (default: 200; 0: never)",
    )


def _gate(args: argparse.Namespace) -> Any:
    from modelkit.retrain import Gate

    return Gate(metric=args.metric, margin=args.margin, alpha=args.alpha, holdout=args.holdout)


def policy_from_args(args: argparse.Namespace) -> RetrainPolicy:
    """A :class:`~modelkit.retrain.RetrainPolicy` from :func:`add_policy_options`' options."""
    from modelkit.retrain import RetrainPolicy

    every: Any = args.every
    if every is not None:
        with contextlib.suppress(ValueError):
            every = float(every)
    return RetrainPolicy(
        on_drift=not args.no_drift,
        on_performance=not args.no_performance,
        performance_drop=args.performance_drop or None,
        every=every,
        min_new_labels=args.min_new_labels,
        cooldown=args.cooldown,
        max_retrains=args.max_per_day,
        window_rows=max(args.window_rows, args.min_rows),
        since_alert=args.since_alert,
        min_rows=args.min_rows,
        gate=_gate(args),
        approval=args.approval,
        watch_rows=args.watch_rows,
    )


def _split_uri(uri: str) -> tuple[str, str]:
    from modelkit.registry import parse_model_uri

    ref = parse_model_uri(uri)
    if ref.version is not None:
        raise ModelkitError(
            f"{uri!r} pins version {ref.version}; retraining follows an alias: NAME@ALIAS "
            "(e.g. churn@production)"
        )
    return ref.name, ref.alias or "production"


def describe_event(event: RetrainEvent) -> str:
    """``12:00:01 promoted   2 -> 3  accuracy 0.93 vs 0.71 …`` for one decision."""
    versions = ""
    if event.champion is not None or event.challenger is not None:
        old = "-" if event.champion is None else event.champion
        new = "-" if event.challenger is None else event.challenger
        versions = f"{old} -> {new}"
    return f"{event.at:%H:%M:%S} {event.kind:<11} {versions:<8} {event.reason or ''}".rstrip()


def _print_outcome(args: argparse.Namespace, outcome: RetrainOutcome) -> None:
    if args.json:
        print_json(outcome.to_dict())
        return
    for event in outcome.events:
        print(describe_event(event), flush=True)
    if not outcome.events:
        print(f"{outcome.decision}: nothing to do", flush=True)


class RetrainCommand:
    """``modelkit retrain NAME``: retrain once now, judge the challenger, maybe promote it."""

    help = "retrain a model now on recent data, judge it against the champion, maybe promote"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "name", metavar="NAME[@ALIAS]", help="the model (alias default: production)"
        )
        parser.add_argument(
            "--data",
            metavar="PATH|URL",
            help="CSV / Parquet file or database URL (with --query) of labelled rows, oldest "
            "first (default: the recent labelled window of the feedback store)",
        )
        parser.add_argument("--target", metavar="COLUMN", help="the label column of --data")
        parser.add_argument("--query", metavar="SQL", help="the query reading --data's rows")
        parser.add_argument(
            "--window-rows",
            type=positive_int,
            default=5000,
            metavar="N",
            help="from the feedback store, the newest N labelled rows (default: 5000)",
        )
        parser.add_argument(
            "--min-rows",
            type=positive_int,
            default=200,
            metavar="N",
            help="refuse to retrain on fewer rows (default: 200)",
        )
        parser.add_argument(
            "--promote",
            action="store_true",
            help="move the alias to a challenger that passes the gate (default: leave it "
            "pending for `modelkit models approve`)",
        )
        add_gate_options(parser)
        add_common_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        from modelkit.retrain import Retrainer, RetrainPolicy

        if args.data is not None and args.target is None:
            raise ModelkitError("--data needs --target COLUMN naming the label column")
        name, alias = _split_uri(args.name)
        policy = RetrainPolicy(
            data=args.data,
            target=args.target,
            query=args.query,
            window_rows=max(args.window_rows, args.min_rows),
            min_rows=args.min_rows,
            gate=_gate(args),
        )
        with open_registry(args) as registry:
            retrainer = Retrainer(registry=registry, name=name, alias=alias, policy=policy)
            outcome = retrainer.retrain(promote=args.promote)
        _print_outcome(args, outcome)
        return 0 if outcome.decision in ("promoted", "pending", "rejected") else 1


class WatchCommand:
    """``modelkit watch NAME@ALIAS``: the retraining loop as its own process."""

    help = "watch a served model and retrain, gate, promote and roll back as its policy says"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("uri", metavar="NAME@ALIAS", help="e.g. churn@production")
        parser.add_argument(
            "--interval",
            type=seconds,
            default=60.0,
            metavar="SECONDS",
            help="how often to check the triggers (default: 60)",
        )
        parser.add_argument("--once", action="store_true", help="do one step and exit")
        add_policy_options(parser)
        add_common_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        from modelkit.retrain import Retrainer

        name, alias = _split_uri(args.uri)
        policy = policy_from_args(args)
        with open_registry(args) as registry:
            retrainer = Retrainer(registry=registry, name=name, alias=alias, policy=policy)
            if args.once:
                _print_outcome(args, retrainer.step())
                return 0
            return _loop(args, retrainer)


def _loop(args: argparse.Namespace, retrainer: Any) -> int:
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(
        f"watching {retrainer.uri} every {args.interval:g}s "
        f"(triggers: {', '.join(retrainer.policy.triggers) or 'none'}); stop with Ctrl-C or "
        "SIGTERM",
        flush=True,
    )
    try:
        while not stop.is_set():
            try:
                outcome = retrainer.step()
            except (ModelkitError, ValueError, OSError) as exc:
                print(f"error: {' '.join(str(exc).split())}", flush=True)
            else:
                if outcome.events:
                    _print_outcome(args, outcome)
            stop.wait(args.interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped watching {retrainer.uri}", flush=True)
    return 0


# -- models approve / models events ---------------------------------------------------------


def _approve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the model name")
    parser.add_argument(
        "version", metavar="VERSION", type=positive_int, help="the pending challenger"
    )
    parser.add_argument("--alias", help="the alias to move (default: the decision's)")


def models_approve(args: argparse.Namespace, registry: Registry) -> int:
    """``models approve NAME VERSION``: promote a challenger the gate left pending."""
    from modelkit.retrain import approve

    event = approve(registry, args.name, args.version, alias=args.alias)
    if args.json:
        print_json(event.to_dict())
    else:
        print(
            f"approved {args.name}/{args.version}: {args.name}@{event.alias} "
            f"{event.champion} -> {event.challenger}"
        )
    return 0


def _events_arguments(parser: argparse.ArgumentParser) -> None:
    from modelkit.retrain import EVENT_KINDS

    parser.add_argument("name", metavar="NAME", help="the model name")
    parser.add_argument("--kind", choices=EVENT_KINDS, action="append", help="only these kinds")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the newest N only")


def _gate_cell(event: RetrainEvent) -> str:
    gate = event.details.get("gate") or event.details.get("watch")
    if not isinstance(gate, dict):
        return "-"
    a, b, p = gate.get("a"), gate.get("b"), gate.get("p_value")
    if a is None or b is None:
        return "-"
    return (
        f"{gate.get('metric')} {format_float(a)} -> {format_float(b)} "
        f"n={gate.get('n')} p={format_float(p if p is not None else float('nan'), 3)}"
    )


def models_events(args: argparse.Namespace, registry: Registry) -> int:
    """``models events NAME``: the retraining decisions, oldest first."""
    events = list(reversed(registry.retrain_events(args.name, kind=args.kind, limit=args.limit)))
    if args.json:
        print_json([e.to_dict() for e in events])
        return 0
    if not events:
        print(f"no retraining decisions recorded for {args.name}")
        return 0
    rows = [
        (
            e.at,
            e.kind,
            "-" if e.champion is None else e.champion,
            "-" if e.challenger is None else e.challenger,
            _gate_cell(e),
            e.reason,
        )
        for e in events
    ]
    print(
        render_table(
            ("AT", "KIND", "CHAMPION", "CHALLENGER", "NUMBERS", "REASON"),
            rows,
            align=("<", "<", ">", ">", "<", "<"),
        )
    )
    return 0


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    """Register ``modelkit retrain`` and ``modelkit watch``."""
    register("retrain", RetrainCommand())
    register("watch", WatchCommand())
