"""``modelkit train``, ``modelkit models …``, ``modelkit runs …`` and ``modelkit gc``.

The registry and training from the command line. Every command takes ``--registry URL``
(default: ``$MODELKIT_HOME``, else ``./.modelkit``) and ``--json``; people get aligned tables
(UTC times cut to the second), scripts get the records' ``to_dict()`` as JSON. Mistakes a user
can fix (a bad ``--param``, an unknown estimator, a missing target column, an invalid model
name) print one ``error: …`` line and exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelkit._tables import cell, format_float, format_time, render_table
from modelkit.cli import positive_int, seconds
from modelkit.exceptions import ModelkitError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command
    from modelkit.registry import AliasEvent, ModelVersion, RegisteredModel, Registry, Run

__all__ = [
    "GcCommand",
    "ModelsCommand",
    "RunsCommand",
    "add_common_options",
    "format_param_value",
    "metrics_table",
    "open_registry",
    "parse_key_values",
    "parse_param_value",
    "parse_time",
    "register_commands",
]

RUN_ID_WIDTH = 12
"""Run ids are shown cut to this many hex digits in tables (any unique prefix of 6+ works)."""

Handler = Callable[[argparse.Namespace, "Registry"], int]


# -- parsing what users type ---------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (``TypeName`` when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_param_value(text: str) -> Any:
    """A ``--param`` value: JSON when it parses (``0.5``, ``null``, ``[10, 5]``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_param_value(value: Any) -> str:
    """A parameter as one would type it after ``--param KEY=``: the inverse of
    :func:`parse_param_value` (strings bare unless they would read as JSON)."""
    if isinstance(value, str) and parse_param_value(value) == value:
        return value
    return json.dumps(value)


def parse_key_values(
    items: Sequence[str], *, option: str, convert: Callable[[str], Any] = str
) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` items into a dict, converting values with ``convert``.

    Raises ModelkitError naming ``option`` for an item without ``=``, an empty key or a key
    given twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ModelkitError(
                f"{option} {item!r} is not KEY=VALUE (e.g. {option} C=0.5); quote values "
                "with spaces"
            )
        if key in out:
            raise ModelkitError(f"{option} {key!r} is given twice; give each key once")
        out[key] = convert(value)
    return out


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``2024-06-01T12:00:00Z``, ``2024-06-01 12:00``, ``2024-06-01``).

    A time without an offset is taken as UTC, like every time modelkit shows.
    """
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ModelkitError(
            f"--at {text!r} is not an ISO-8601 time; write e.g. 2024-06-01T12:00:00Z "
            "(times without an offset are UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


# -- output helpers ------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2))


def print_fields(fields: Sequence[tuple[str, object]]) -> None:
    """Print ``label  value`` lines with the values aligned."""
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        print(f"{label:<{width}}  {cell(value)}".rstrip())


def short_id(run_id: str | None) -> str | None:
    """A run id cut to :data:`RUN_ID_WIDTH` digits for tables."""
    return None if run_id is None else run_id[:RUN_ID_WIDTH]


def format_duration(seconds: float | None) -> str | None:
    """``42ms``, ``1.25s``, ``12.3s``, ``4m05s``, ``2h03m``; ``None`` stays ``None``."""
    if seconds is None:
        return None
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_version(version: int | None) -> str:
    """A version number, ``-`` for none (an alias that was not set)."""
    return "-" if version is None else str(version)


def format_aliases(aliases: Mapping[str, int]) -> str:
    """``production=3, staging=4`` sorted by alias."""
    return ", ".join(f"{alias}={version}" for alias, version in sorted(aliases.items())) or "-"


def describe_event(event: AliasEvent) -> str:
    """``churn@production: 1 -> 2 (reason)`` for one alias change; ``(none)`` for unset."""
    old = "(none)" if event.old_version is None else event.old_version
    new = "(none)" if event.new_version is None else event.new_version
    reason = f" ({event.reason})" if event.reason else ""
    return f"{event.name}@{event.alias}: {old} -> {new}{reason}"


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``accuracy=0.9000, rmse=12.3400``: every metric with four decimals; ``-`` if none."""
    return ", ".join(f"{name}={_metric(value)}" for name, value in metrics.items()) or "-"


def _aliases_by_version(aliases: Mapping[str, int]) -> dict[int, list[str]]:
    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(version, []).append(alias)
    return by_version


def _versions_table(versions: Sequence[ModelVersion], aliases: Mapping[str, int]) -> str:
    by_version = _aliases_by_version(aliases)
    rows = [
        (
            v.version,
            v.status,
            v.created_at,
            by_version.get(v.version),
            short_id(v.run_id),
            format_metrics(v.metrics),
            v.tags,
        )
        for v in versions
    ]
    return render_table(
        ("VERSION", "STATUS", "CREATED", "ALIASES", "RUN", "METRICS", "TAGS"),
        rows,
        align=(">", "<", "<", "<", "<", "<", "<"),
    )


# -- registry plumbing ---------------------------------------------------------------------


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--registry URL`` and ``--json``, which every registry command takes."""
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="registry directory or URL (sqlite:///…, postgresql://…); "
        "default: $MODELKIT_HOME, else ./.modelkit",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of tables"
    )


def add_subcommands(
    parser: argparse.ArgumentParser,
    subcommands: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Any]],
) -> None:
    """Declare one required sub-command per ``name: (help, add_arguments, handler)`` entry.

    Each takes the common options; the chosen handler is left in ``args._handler``.
    """
    sub = parser.add_subparsers(
        title="subcommands", metavar="SUBCOMMAND", dest="subcommand", required=True
    )
    for name, (text, add, handler) in subcommands.items():
        child = sub.add_parser(name, help=text, description=text)
        add(child)
        add_common_options(child)
        child.set_defaults(_handler=handler)


@contextmanager
def open_registry(args: argparse.Namespace) -> Iterator[Registry]:
    """Open the registry ``--registry`` names, for the length of a ``with`` block.

    Errors a user can fix come out as a one-line :class:`ModelkitError`: a ``ValueError``
    (invalid names, aliases, URIs) is turned into one, and a multi-line message (a database
    driver's) is folded onto one line.
    """
    from modelkit.registry import Registry

    with _one_line_errors():
        registry = Registry(args.registry)
    with registry, _one_line_errors():
        yield registry


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except ModelkitError as exc:
        if "\n" not in str(exc):
            raise
        raise ModelkitError(one_line(exc)) from exc
    except ValueError as exc:
        raise ModelkitError(one_line(exc)) from exc


class _Group:
    """A command made of sub-commands (``modelkit models list``), each a handler."""

    help = ""
    subcommands: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_subcommands(parser, self.subcommands)

    def run(self, args: argparse.Namespace) -> int:
        with open_registry(args) as registry:
            return int(args._handler(args, registry))


def _no_options(parser: argparse.ArgumentParser) -> None:
    """Sub-commands with only the common options."""


def _model_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the model name")


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="why, recorded in the alias history")


def _retrain_commands() -> Any:
    """``modelkit.default_plugins.retrain_commands``, imported when first needed."""
    from modelkit.default_plugins import retrain_commands

    return retrain_commands


# -- models --------------------------------------------------------------------------------


def _find_model(registry: Registry, name: str) -> RegisteredModel:
    from modelkit.exceptions import NotFoundError
    from modelkit.registry import check_model_name

    check_model_name(name)
    models = registry.list()
    for model in models:
        if model.name == name:
            return model
    known = ", ".join(repr(m.name) for m in models[:10]) or "none"
    raise NotFoundError(f"no model named {name!r} in {registry.url} (models: {known})")


def models_list(args: argparse.Namespace, registry: Registry) -> int:
    """``models list``: every registered model."""
    models = registry.list()
    if args.json:
        print_json([m.to_dict() for m in models])
        return 0
    if not models:
        print(f"no models in {registry.url}; register one with `modelkit train`")
        return 0
    rows = [
        (m.name, m.latest_version, format_aliases(m.aliases), m.created_at, m.tags) for m in models
    ]
    print(
        render_table(
            ("NAME", "LATEST", "ALIASES", "CREATED", "TAGS"),
            rows,
            align=("<", ">", "<", "<", "<"),
        )
    )
    return 0


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        metavar="NAME",
        help="a model name, or one version: NAME/3, NAME@production, models:/NAME/3",
    )


def models_show(args: argparse.Namespace, registry: Registry) -> int:
    """``models show NAME`` (the model and its versions) or ``models show NAME@ALIAS``."""
    name: str = args.name
    if "/" in name.removeprefix("models:/") or "@" in name:
        return _show_version(args, registry, registry.resolve(name))
    model = _find_model(registry, name)
    versions = registry.versions(name)
    if args.json:
        print_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
        return 0
    print_fields(
        [
            ("name", model.name),
            ("created", model.created_at),
            ("latest", model.latest_version),
            ("aliases", format_aliases(model.aliases)),
            ("tags", model.tags),
        ]
    )
    if versions:
        print()
        print(_versions_table(versions, model.aliases))
    return 0


def _show_version(args: argparse.Namespace, registry: Registry, version: ModelVersion) -> int:
    if args.json:
        print_json(version.to_dict())
        return 0
    aliases = _aliases_by_version(registry.aliases(version.name)).get(version.version)
    print_fields(
        [
            ("version", version.uri),
            ("status", version.status),
            ("created", version.created_at),
            ("aliases", aliases),
            ("run", version.run_id),
            ("artifact", version.artifact_sha256),
            ("stored at", version.artifact_uri),
            ("description", version.description),
            ("tags", version.tags),
            ("metrics", format_metrics(version.metrics)),
        ]
    )
    return 0


def _versions_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument("--active", action="store_true", help="hide archived versions")


def models_versions(args: argparse.Namespace, registry: Registry) -> int:
    """``models versions NAME``: every version, oldest first."""
    versions = registry.versions(args.name, include_archived=not args.active)
    if args.json:
        print_json([v.to_dict() for v in versions])
        return 0
    if not versions:
        print(f"{args.name} has no active versions")
        return 0
    print(_versions_table(versions, registry.aliases(args.name)))
    return 0


def _alias_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument("alias", metavar="ALIAS", help="e.g. production, staging")
    parser.add_argument("version", metavar="VERSION", type=positive_int, help="version number")
    _reason(parser)


def _print_event(args: argparse.Namespace, event: AliasEvent) -> None:
    if args.json:
        print_json(event.to_dict())
    else:
        print(describe_event(event))


def models_alias(args: argparse.Namespace, registry: Registry) -> int:
    """``models alias NAME ALIAS VERSION``: point an alias at a version."""
    before = registry.aliases(args.name).get(args.alias)
    event = registry.set_alias(args.name, args.alias, args.version, reason=args.reason)
    if before == args.version and not args.json:
        print(f"{args.name}@{args.alias} already points to {args.version}; nothing changed")
        return 0
    _print_event(args, event)
    return 0


def _unalias_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument("alias", metavar="ALIAS", help="the alias to remove")
    _reason(parser)


def models_unalias(args: argparse.Namespace, registry: Registry) -> int:
    """``models unalias NAME ALIAS``: remove an alias."""
    _print_event(args, registry.remove_alias(args.name, args.alias, reason=args.reason))
    return 0


def models_rollback(args: argparse.Namespace, registry: Registry) -> int:
    """``models rollback NAME ALIAS``: move an alias back to where it pointed before."""
    _print_event(args, registry.rollback(args.name, args.alias, reason=args.reason))
    return 0


def _history_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument("alias", metavar="ALIAS", nargs="?", help="only this alias")
    parser.add_argument(
        "--at",
        metavar="ISO-TIME",
        help="show what each alias pointed to at this time instead (UTC unless an offset "
        "is given, e.g. 2024-06-01T12:00:00Z)",
    )


def models_history(args: argparse.Namespace, registry: Registry) -> int:
    """``models history NAME [ALIAS] [--at TIME]``: the alias event log, or a past state."""
    when = None if args.at is None else parse_time(args.at)
    events = registry.history(args.name, args.alias)
    if when is not None:
        return _history_at(args, registry, events, when)
    if args.json:
        print_json([e.to_dict() for e in events])
        return 0
    if not events:
        which = f"alias {args.alias!r} of {args.name}" if args.alias else args.name
        print(f"no alias changes recorded for {which}")
        return 0
    rows = [
        (
            e.at,
            e.alias,
            format_version(e.old_version),
            format_version(e.new_version),
            e.actor,
            e.reason,
        )
        for e in events
    ]
    print(
        render_table(
            ("AT", "ALIAS", "FROM", "TO", "ACTOR", "REASON"),
            rows,
            align=("<", "<", ">", ">", "<", "<"),
        )
    )
    return 0


def _history_at(
    args: argparse.Namespace, registry: Registry, events: Sequence[AliasEvent], when: datetime
) -> int:
    names = [args.alias] if args.alias else sorted({e.alias for e in events})
    state = {alias: registry.alias_at(args.name, alias, when) for alias in names}
    if args.json:
        print_json({"name": args.name, "at": when.isoformat(), "aliases": state})
        return 0
    if not state:
        print(f"{args.name} has never had an alias")
        return 0
    print(f"aliases of {args.name} at {format_time(when)}:")
    rows = [(alias, format_version(version)) for alias, version in state.items()]
    print(render_table(("ALIAS", "VERSION"), rows, align=("<", ">")))
    return 0


def _archive_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument("version", metavar="VERSION", type=positive_int, help="version number")


def models_archive(args: argparse.Namespace, registry: Registry) -> int:
    """``models archive NAME VERSION``: retire a version (refused while an alias points to it)."""
    version = registry.archive(args.name, args.version)
    if args.json:
        print_json(version.to_dict())
    else:
        print(f"archived {version.name}/{version.version}; it stays loadable as {version.uri}")
    return 0


def _tag_arguments(parser: argparse.ArgumentParser) -> None:
    _model_name(parser)
    parser.add_argument(
        "items",
        metavar="[VERSION] KEY=VALUE",
        nargs="+",
        help="a version number to tag that version (default: the model itself), then tags",
    )


def models_tag(args: argparse.Namespace, registry: Registry) -> int:
    """``models tag NAME [VERSION] KEY=VALUE ...``: merge tags into a version or the model."""
    items: list[str] = list(args.items)
    version = None
    if items[0].isdigit():
        version = int(items.pop(0))  # the registry refuses 0 with a one-line error
    if not items:
        raise ModelkitError("give at least one KEY=VALUE tag after the version")
    tags = parse_key_values(items, option="tag")
    registry.set_tags(args.name, version, tags)
    record: ModelVersion | RegisteredModel
    if version is None:
        record = _find_model(registry, args.name)
        target = args.name
    else:
        record = registry.get(args.name, version)
        target = f"{args.name}/{version}"
    if args.json:
        print_json(record.to_dict())
    else:
        print(f"tags of {target}: {cell(record.tags)}")
    return 0


class ModelsCommand(_Group):
    """``modelkit models …``: registered models, versions, aliases and their history."""

    help = "list and inspect registered models; move, remove and roll back aliases"
    subcommands: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
        "list": ("list registered models", _no_options, models_list),
        "show": ("show a model and its versions, or one version", _show_arguments, models_show),
        "versions": ("list the versions of a model", _versions_arguments, models_versions),
        "alias": ("point an alias at a version", _alias_arguments, models_alias),
        "unalias": ("remove an alias", _unalias_arguments, models_unalias),
        "rollback": (
            "move an alias back to the version it pointed to before its latest change",
            _unalias_arguments,
            models_rollback,
        ),
        "history": (
            "show alias changes, or what each alias pointed to at a time (--at)",
            _history_arguments,
            models_history,
        ),
        "archive": ("archive a version", _archive_arguments, models_archive),
        "tag": ("set tags on a model or one of its versions", _tag_arguments, models_tag),
        "approve": (
            "promote a retrained challenger the gate left pending",
            lambda parser: _retrain_commands()._approve_arguments(parser),
            lambda args, registry: _retrain_commands().models_approve(args, registry),
        ),
        "events": (
            "show the retraining decisions of a model, with their numbers",
            lambda parser: _retrain_commands()._events_arguments(parser),
            lambda args, registry: _retrain_commands().models_events(args, registry),
        ),
    }


# -- runs ----------------------------------------------------------------------------------


def _runs_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="only runs of this model")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the N newest runs")


def _duration(run: Run) -> float | None:
    if run.ended_at is None:
        return None
    return (run.ended_at - run.started_at).total_seconds()


def runs_list(args: argparse.Namespace, registry: Registry) -> int:
    """``runs list [--name NAME] [--limit N]``: runs, newest first."""
    runs = registry.runs(args.name, limit=args.limit)
    if args.json:
        print_json([r.to_dict() for r in runs])
        return 0
    if not runs:
        print("no runs recorded" + (f" for {args.name}" if args.name else ""))
        return 0
    rows = [
        (
            short_id(r.id),
            r.name,
            r.status,
            r.started_at,
            format_duration(_duration(r)),
            r.version,
            format_metrics(r.metrics),
        )
        for r in runs
    ]
    print(
        render_table(
            ("RUN", "NAME", "STATUS", "STARTED", "DURATION", "VERSION", "METRICS"),
            rows,
            align=("<", "<", "<", "<", ">", ">", "<"),
        )
    )
    return 0


def _runs_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="a run id, or a unique prefix of 6+ characters")


def runs_show(args: argparse.Namespace, registry: Registry) -> int:
    """``runs show ID``: one run in full."""
    run = registry.get_run(args.id)
    if args.json:
        print_json(run.to_dict())
        return 0
    print_fields(
        [
            ("run", run.id),
            ("model", run.name),
            ("status", run.status),
            ("started", run.started_at),
            ("ended", run.ended_at),
            ("duration", format_duration(_duration(run))),
            ("fit time", format_duration(run.fit_time)),
            ("version", None if run.version is None else f"{run.name}/{run.version}"),
            ("parent", run.parent_id),
            ("dataset", run.dataset_fingerprint),
            ("tags", run.tags),
            ("error", run.error),
        ]
    )
    if run.params:
        print()
        params = [(key, format_param_value(v)) for key, v in sorted(run.params.items())]
        print(render_table(("PARAM", "VALUE"), params))
    if run.metrics:
        print()
        print(metrics_table(run.metrics, run.cv_scores))
    return 0


def metrics_table(metrics: Mapping[str, float], cv_scores: Mapping[str, Sequence[float]]) -> str:
    """METRIC / MEAN / STD / FOLDS, one line per metric (STD over the per-fold scores)."""
    import numpy as np

    rows = []
    for name, mean in metrics.items():
        scores = np.asarray(cv_scores.get(name, ()), dtype=float)
        std = _metric(float(np.std(scores))) if scores.size > 1 else None
        rows.append((name, _metric(mean), std, scores.size or None))
    return render_table(("METRIC", "MEAN", "STD", "FOLDS"), rows, align=("<", ">", ">", ">"))


def _metric(value: float) -> str:
    """Four decimals, aligned in a column; large errors (rmse in dollars) in 4 figures."""
    return f"{value:.4f}" if abs(value) < 1000 else format_float(value)


class RunsCommand(_Group):
    """``modelkit runs …``: training and tuning runs."""

    help = "list and inspect training runs"
    subcommands: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
        "list": ("list runs, newest first", _runs_list_arguments, runs_list),
        "show": ("show one run: params, metrics, per-fold scores", _runs_show_arguments, runs_show),
    }


# -- gc ------------------------------------------------------------------------------------


class GcCommand:
    """``modelkit gc``: reclaim artifact files no version references."""

    help = "remove stored artifacts no version references (left by interrupted registrations)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--grace",
            type=seconds,
            default=3600.0,
            metavar="SECONDS",
            help="keep files younger than this, which a registration may still be writing "
            "(default: 3600)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be removed, remove nothing"
        )
        add_common_options(parser)

    def run(self, args: argparse.Namespace) -> int:
        with open_registry(args) as registry:
            removed = registry.gc(grace_seconds=args.grace, dry_run=args.dry_run)
        if args.json:
            print_json({"dry_run": args.dry_run, "grace_seconds": args.grace, "removed": removed})
            return 0
        verb = "would remove" if args.dry_run else "removed"
        if not removed:
            print(f"nothing to remove (unreferenced artifacts older than {args.grace:g}s)")
            return 0
        plural = "s" if len(removed) != 1 else ""
        print(f"{verb} {len(removed)} unreferenced artifact{plural}:")
        for key in removed:
            print(f"  {key}")
        return 0


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    """Register ``train``, ``models``, ``runs`` and ``gc``."""
    from modelkit.default_plugins.train_command import TrainCommand

    register("train", TrainCommand())
    register("models", ModelsCommand())
    register("runs", RunsCommand())
    register("gc", GcCommand())
