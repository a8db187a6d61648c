"""Serving benchmark: modelkit against the seed's Flask app, MLServer, MLflow and a raw ASGI app.

Every server runs pinned to CPU 0 and wrk to CPU 1; each answers one row of 20 floats per
request, in its own protocol, at each concurrency for a fixed time after a warm-up. Before
timing, every server's answers are checked against the estimator's own ``predict``.

Run: ``python benchmarks/serving/run.py [--duration 10] [--warmup 3] [--concurrency 1,16,64]
[--rounds 1] [--only NAME,...] [--quick] [--monitoring] [--profile] [--json out.json]
[--modelkit-args "..."] [--modelkit-rev REV] [--out DIR]``.
``--monitoring`` runs only modelkit with monitoring (and input recording) on and off, at c=64,
and reports CPU per request (about 2 minutes). See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import envs
import monitoring
from artifacts import SEED_ROW, Seed, train_seed
from load import Point, run_wrk, wrk_command
from processes import Processes, post, wait_ready
from profiling import Profile, record
from report import OURS, Outcome, combine, machine, markdown
from servers import (
    HOST,
    MODELKIT_ARGS_ENV,
    MONITORING_SERVERS,
    SERVERS,
    Context,
    ServerSpec,
    free_port,
    modelkit_args,
)

SERVER_CPU = "0"
LOAD_CPU = "1"
READY_TIMEOUT = 180.0


class WrongAnswerError(Exception):
    """A server answered something else than the estimator's own prediction."""


@attrs.frozen(kw_only=True)
class Plan:
    """What to measure, from the command line."""

    duration: int
    warmup: int
    rounds: int
    concurrency: list[int]
    servers: list[ServerSpec]
    profile: bool
    wrk: str
    py_spy: str | None = None
    modelkit_source: str = "the working tree (installed, editable)"
    monitoring: bool = False
    load_average: tuple[float, ...] = attrs.field(factory=os.getloadavg)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per server (3)")
    parser.add_argument(
        "--concurrency", help="connections (1,16,64; 64 with --monitoring)", default=None
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every server this many times and report each point's median round (1)",
    )
    parser.add_argument("--only", help="comma list of servers: " + ",".join(_names()))
    parser.add_argument("--quick", action="store_true", help="3 s points, 1 s warm-up")
    parser.add_argument(
        "--monitoring",
        action="store_true",
        help="only modelkit with monitoring and input recording on and off: CPU per request",
    )
    parser.add_argument("--profile", action="store_true", help=f"py-spy {OURS} (see README)")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument(
        "--modelkit-rev",
        metavar="REV",
        help="run modelkit as of this git revision (exported, the working tree is untouched) "
        "instead of the installed working tree",
    )
    parser.add_argument("--out", type=Path, help="run directory (default: a new one in the cache)")
    parser.add_argument(
        "--modelkit-args",
        help="more `modelkit serve` options for both modelkit servers (shell-quoted; "
        f"${MODELKIT_ARGS_ENV} is added too)",
    )
    return parser.parse_args(argv)


def _names(specs: tuple[ServerSpec, ...] = SERVERS) -> list[str]:
    return [spec.name for spec in specs]


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the command line and the tools; exit with a message when something is wrong."""
    specs = MONITORING_SERVERS if args.monitoring else SERVERS
    chosen = args.only.split(",") if args.only else _names(specs)
    unknown = sorted(set(chosen) - set(_names(specs)))
    if unknown:
        raise SystemExit(f"error: unknown server(s) {unknown}; choose among {_names(specs)}")
    concurrency = args.concurrency or ("64" if args.monitoring else "1,16,64")
    try:
        levels = [int(c) for c in concurrency.split(",")]
    except ValueError as exc:
        message = f"error: --concurrency takes numbers like 1,16,64, not {concurrency!r}"
        raise SystemExit(message) from exc
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or min(levels) < 1:
        raise SystemExit("error: --rounds, --duration and each concurrency must be 1 or more")
    envs.ensure_taskset(2)
    return Plan(
        duration=3 if args.quick else args.duration,
        warmup=1 if args.quick else args.warmup,
        rounds=args.rounds,
        concurrency=levels,
        servers=[spec for spec in specs if spec.name in chosen],
        profile=args.profile,
        wrk=envs.ensure_wrk(),
        monitoring=args.monitoring,
    )


def check_answers(spec: ServerSpec, url: str, seed: Seed) -> None:
    """Each check row, sent alone, must be answered with ``estimator.predict`` of that row."""
    rows = seed.check_rows()
    for row, expected in zip(rows, seed.expected(rows), strict=True):
        status, body = post(url, spec.protocol.encode(row))
        try:
            got = spec.protocol.decode(json.loads(body)) if status == 200 else None
        except (ValueError, LookupError, TypeError):
            got = None
        if got != [expected]:
            raise WrongAnswerError(
                f"{spec.name} answered HTTP {status} {body[:300]!r} for the row {row}, "
                f"where estimator.predict gives [{expected}]"
            )


def measure(plan: Plan, spec: ServerSpec, url: str, concurrency: int, seconds: int) -> Point:
    """One wrk run of ``seconds`` at ``concurrency``."""
    argv = wrk_command(plan.wrk, url, concurrency=concurrency, duration=seconds, cpus=LOAD_CPU)
    return run_wrk(argv, spec.protocol.encode(SEED_ROW), server=spec.name, concurrency=concurrency)


def run_server(
    plan: Plan, spec: ServerSpec, ctx: Context, processes: Processes, first: bool = True
) -> Outcome:
    """Start, check, warm up, measure (and, in the first round, profile) one server; stop it."""
    print(f"== {spec.name}: {spec.about}", flush=True)
    environment = spec.peer or "project .venv"
    port = free_port()
    try:
        launch = spec.launch(ctx, port)
        python = ctx.venv(spec.peer).python if spec.peer else sys.executable
        versions = envs.versions(python, list(spec.packages))
    except (envs.UnavailableError, subprocess.CalledProcessError) as exc:
        print(f"   not run: {exc}", flush=True)
        return Outcome(spec.name, spec.about, environment, {}, not_run=str(exc))
    outcome = Outcome(spec.name, spec.about, environment, versions, command=launch.argv)
    log = ctx.log(spec.name)
    process = processes.start(launch, cpus=SERVER_CPU, log=log)
    url = f"http://{HOST}:{port}{spec.protocol.route}"
    try:
        wait_ready(process, url, spec.protocol.encode(SEED_ROW), log=log, deadline=READY_TIMEOUT)
        check_answers(spec, url, ctx.seed)
        if plan.warmup:
            measure(plan, spec, url, max(plan.concurrency), plan.warmup)
        metrics_url = f"http://{HOST}:{port}/metrics" if spec.name.startswith("modelkit") else None
        for concurrency in plan.concurrency:
            cpu = monitoring.group_cpu_seconds(process.pid)
            background = monitoring.background_cpu(metrics_url)
            point = measure(plan, spec, url, concurrency, plan.duration)
            cpu = monitoring.group_cpu_seconds(process.pid) - cpu
            after = monitoring.background_cpu(metrics_url)
            point = attrs.evolve(
                point, cpu_s=cpu, background_cpu_s=monitoring.difference(background, after)
            )
            print(f"   c={concurrency:<3} {_summary(point)}", flush=True)
            outcome.points.append(point)
        if plan.profile and first and spec.name == OURS:
            _profile(plan, spec, url, process.pid, ctx)
    except envs.UnavailableError as exc:
        print(f"   not run: {exc}", flush=True)
        return attrs.evolve(outcome, not_run=str(exc))
    finally:
        processes.stop(process)
    return outcome


def _summary(point: Point) -> str:
    cpu = ""
    if point.cpu_s is not None and point.requests:
        cpu = f"  CPU {point.cpu_s / point.requests * 1e6:6.1f} µs/req"
    return (
        f"{point.ok_per_s:9,.0f} req/s  p50 {point.p50_ms:7.2f} ms  p99 {point.p99_ms:7.2f} ms"
        f"  errors {point.describe_errors()}{cpu}"
    )


def _profile(plan: Plan, spec: ServerSpec, url: str, pid: int, ctx: Context) -> None:
    """An extra run at the highest concurrency with py-spy attached (the table's stay clean)."""
    concurrency = max(plan.concurrency)
    out = ctx.run_dir / "profile"
    if plan.py_spy is None:
        return
    points: list[Point] = []
    result = record(
        plan.py_spy,
        pid,
        seconds=plan.duration,
        cpus=LOAD_CPU,
        out=out,
        load=lambda: points.append(measure(plan, spec, url, concurrency, plan.duration)),
    )
    _report_profile(result, points, concurrency)


def _report_profile(result: Profile, points: list[Point], concurrency: int) -> None:
    if result.failure is not None:
        print(f"   py-spy could not profile: {result.failure}", flush=True)
        return
    if points:
        print(f"   c={concurrency:<3} {_summary(points[-1])}  (with py-spy attached)", flush=True)
    print(f"   profile: {result.summary} (stacks for speedscope: {result.stacks})", flush=True)


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(plan: Plan, ctx: Context) -> list[Outcome]:
    """Every planned server in turn, ``plan.rounds`` times; medians of the rounds.

    Each round starts one server further down the list, so that no server always runs first
    or last. Every process started is stopped, whatever happens.
    """
    rounds = []
    with Processes() as processes:
        for number in range(plan.rounds):
            if plan.rounds > 1:
                print(f"-- round {number + 1} of {plan.rounds}", flush=True)
            shift = number % len(plan.servers)
            specs = plan.servers[shift:] + plan.servers[:shift]
            first = number == 0
            rounds.append([run_server(plan, spec, ctx, processes, first) for spec in specs])
    return combine(rounds, [spec.name for spec in plan.servers])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report and where it is saved."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    args = parse_args(argv)
    plan, ctx = prepare(args)
    try:
        outcomes = run(plan, ctx)
    except WrongAnswerError as exc:
        print(f"\nERROR: wrong answer, nothing timed is valid: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: every server started was stopped", file=sys.stderr)
        return 130
    write(args, plan, ctx, outcomes)
    return 0


def prepare(args: argparse.Namespace) -> tuple[Plan, Context]:
    """The plan, the tools, the run directory, the seed model and modelkit's source."""
    plan = make_plan(args)
    if plan.profile:
        try:
            plan = attrs.evolve(plan, py_spy=envs.ensure_py_spy())
        except envs.UnavailableError as exc:
            print(f"py-spy is not available, no profile: {exc}", flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = (args.out or envs.CACHE / "runs" / stamp).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory (models, logs, report): {run_dir}", flush=True)
    src = None
    if args.modelkit_rev:
        src, sha = envs.export_source(args.modelkit_rev, run_dir / "modelkit-source")
        print(f"modelkit from {args.modelkit_rev} ({sha}), exported to {src}", flush=True)
        plan = attrs.evolve(plan, modelkit_source=f"git {args.modelkit_rev} ({sha})")
    return plan, Context(run_dir, train_seed(), modelkit_args(args.modelkit_args), src)


def write(args: argparse.Namespace, plan: Plan, ctx: Context, outcomes: list[Outcome]) -> None:
    """Print the report; save it (and ``--json``) and say where."""
    facts = machine(plan.wrk)
    text = markdown(outcomes, facts, _settings(plan, ctx))
    if plan.monitoring:
        text += "\n" + "\n".join(monitoring.table(outcomes, max(plan.concurrency))) + "\n"
    run_dir = ctx.run_dir
    (run_dir / "report.md").write_text(text)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(_raw(outcomes, facts, plan, ctx), indent=2))
        print(f"raw results: {args.json}")
    print(f"report: {run_dir / 'report.md'}")
    if plan.profile and (run_dir / "profile" / "top.txt").is_file():
        print(f"profile: {run_dir / 'profile' / 'top.txt'}")


def _settings(plan: Plan, ctx: Context) -> dict[str, str]:
    settings = {
        "wrk": f"-t1 -c<c> -d{plan.duration}s --timeout 5s after a {plan.warmup} s warm-up "
        f"at c={max(plan.concurrency)}",
        "rounds": f"{plan.rounds} (the median round of each point is shown)"
        if plan.rounds > 1
        else "1",
        "servers on CPU": SERVER_CPU,
        "wrk on CPU": LOAD_CPU,
        "modelkit": plan.modelkit_source,
        "load average at start": " ".join(f"{x:.2f}" for x in plan.load_average),
    }
    if ctx.modelkit_args:
        settings["modelkit serve options"] = " ".join(ctx.modelkit_args)
    return settings


def _raw(outcomes: list[Outcome], facts: dict[str, str], plan: Plan, ctx: Context) -> Any:
    return {
        "machine": facts,
        "settings": _settings(plan, ctx),
        "row": SEED_ROW,
        "servers": [outcome.as_json() for outcome in outcomes],
    }


if __name__ == "__main__":
    sys.exit(main())
