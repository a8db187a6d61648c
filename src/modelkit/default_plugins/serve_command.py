"""``modelkit serve``: serve registry models over HTTP with a chosen server backend.

::

    modelkit serve churn@production [fraud/7 legacy=churn/3 …] [--backend auto|stdlib|…]
        [--workers N] [--host 127.0.0.1] [--port 8000] [--drain-timeout 30] [--request-timeout S]
        [--watch SECONDS] [--registry URL] [--no-monitor] [--monitor-window ROWS]
        [--slo-p99-ms MS] [--slo-error-rate FRACTION] [--no-record-inputs]

Prints one line saying what it serves and where, then serves until SIGTERM or Ctrl-C, which
stop it gracefully (readiness 503 at once, requests in flight finish) with exit status 0.

Models served from an alias (``churn@production``) follow it: every ``--watch`` seconds, on
SIGHUP, or on an authenticated ``POST /admin/reload``, a moved alias's new version is
loaded, verified and warmed up in the background, then swapped in without dropping a request.

The served models are monitored (drift on every batch against their artifact's profile,
performance from the labels sent to ``POST /feedback``, health in ``/metrics`` with optional
service-level objectives); alerts go to the hooks and the registry (``modelkit monitor
alerts``). ``--no-monitor`` turns that off.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modelkit.cli import number, port_number, positive_int, seconds
from modelkit.exceptions import ModelkitError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command
    from modelkit.serving.core import App

__all__ = ["ServeCommand", "add_server_options", "describe_models"]


def add_server_options(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """``--backend``, ``--host``, ``--port`` (and ``--workers``), shared with ``modelkit demo``."""
    from modelkit.servers import DEFAULT_HOST, DEFAULT_PORT

    parser.add_argument(
        "--backend",
        default="auto",
        metavar="NAME",
        help="server backend: auto (uvicorn when installed, else stdlib), stdlib, uvicorn, "
        "gunicorn, native (modelkit's own HTTP/1.1 server, the fastest), or one a plugin "
        "registers (default: auto)",
    )
    if workers:
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=1,
            metavar="N",
            help="worker processes (gunicorn only; the models are loaded once and shared) "
            "(default: 1)",
        )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on; 0.0.0.0 for every interface (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )


def describe_models(app: App) -> str:
    """``churn (version 3), fraud (version 7)``: what a started app serves."""
    parts = []
    for entry in app.models.values():
        version = "unversioned" if entry.version is None else f"version {entry.version}"
        parts.append(f"{entry.name} ({version})")
    return ", ".join(parts)


def _sources(items: Sequence[str]) -> list[str | dict[str, str]]:
    """``churn@production`` serves under the model's name; ``legacy=churn/3`` under ``legacy``."""
    sources: list[str | dict[str, str]] = []
    names: set[str] = set()
    for item in items:
        name, sep, uri = item.partition("=")
        if not sep:
            sources.append(item)
            continue
        if not name or not uri:
            raise ModelkitError(f"{item!r} is not NAME=URI (e.g. legacy=churn/3)")
        if name in names:
            raise ModelkitError(f"the name {name!r} is given twice; give each model its own")
        names.add(name)
        sources.append({name: uri})
    return sources


_positive_seconds = number("a number of seconds", above=0)
_milliseconds = number("a number of milliseconds", at_least=0, below=math.inf)
_positive_milliseconds = number("a number of milliseconds", above=0, below=math.inf)
_fraction = number("a fraction", above=0, at_most=1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class ServeCommand:
    """``modelkit serve``: serve registry models with a server backend until stopped."""

    help = "serve registry models over HTTP (/predict, MLflow /invocations, Open Inference v2)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "models",
            nargs="+",
            metavar="URI",
            help="a registry model: churn@production, churn/3, models:/churn/3, or "
            "NAME=URI to serve it under NAME; the first is the default of /predict",
        )
        add_server_options(parser)
        parser.add_argument(
            "--drain-timeout",
            type=seconds,
            default=30.0,
            metavar="SECONDS",
            help="on SIGTERM or Ctrl-C, how long requests in flight may take to finish "
            "(default: 30)",
        )
        parser.add_argument(
            "--request-timeout",
            type=seconds,
            default=None,
            metavar="SECONDS",
            help="answer 504 to a request not answered within this many seconds (clients may "
            "ask for less with X-Request-Timeout; default: no deadline)",
        )
        parser.add_argument(
            "--watch",
            type=_positive_seconds,
            default=None,
            metavar="SECONDS",
            help="check the served aliases (churn@production) every SECONDS and swap in the "
            "versions they move to (default: only on SIGHUP or POST /admin/reload)",
        )
        batching = parser.add_argument_group("micro-batching (see docs/serving.md)")
        batching.add_argument(
            "--max-batch-size",
            type=positive_int,
            default=64,
            metavar="N",
            help="most requests computed together in one batch (default: 64)",
        )
        batching.add_argument(
            "--max-wait-ms",
            type=_milliseconds,
            default=2.0,
            metavar="MS",
            help="longest a batch waits for requests on their way while the model is idle "
            "(default: 2; 0: never waits)",
        )
        batching.add_argument(
            "--max-queue",
            type=positive_int,
            default=1024,
            metavar="N",
            help="most requests waiting per model; more get 503 + Retry-After (default: 1024)",
        )
        batching.add_argument(
            "--no-batching",
            action="store_true",
            help="compute every request on its own",
        )
        monitoring = parser.add_argument_group("monitoring (see docs/monitoring.md)")
        monitoring.add_argument(
            "--no-monitor",
            action="store_true",
            help="do not monitor the served models (no drift, performance or SLO alerts)",
        )
        monitoring.add_argument(
            "--monitor-window",
            type=positive_int,
            default=10_000,
            metavar="ROWS",
            help="rows per drift window; each full window is checked (default: 10000)",
        )
        monitoring.add_argument(
            "--slo-p99-ms",
            type=_positive_milliseconds,
            default=None,
            metavar="MS",
            help="alert when a model's 99th latency percentile over the last minute exceeds "
            "MS milliseconds (default: no objective)",
        )
        monitoring.add_argument(
            "--slo-error-rate",
            type=_fraction,
            default=None,
            metavar="FRACTION",
            help="alert when the share of a model's requests failing with 5xx over the last "
            "minute exceeds FRACTION, e.g. 0.01 (default: no objective)",
        )
        monitoring.add_argument(
            "--no-record-inputs",
            action="store_true",
            help="record predictions without their input rows (ids, counts and outputs only)",
        )
        parser.add_argument(
            "--registry",
            metavar="URL",
            help="registry directory or URL (sqlite:///…, postgresql://…); "
            "default: $MODELKIT_HOME, else ./.modelkit",
        )

    def run(self, args: argparse.Namespace) -> int:
        from modelkit.monitoring.health import SLO
        from modelkit.servers import get_server
        from modelkit.serving.core import App, BatchOptions
        from modelkit.serving.monitoring import MonitorOptions

        _configure_logging()
        server = get_server(args.backend)  # an unknown or missing backend fails first
        app = App(
            *_sources(args.models),
            registry=args.registry,
            drain_timeout=args.drain_timeout,
            request_timeout=args.request_timeout,
            watch=args.watch,
            batching=BatchOptions(
                enabled=not args.no_batching,
                max_batch_size=args.max_batch_size,
                max_wait_ms=args.max_wait_ms,
                max_queue=args.max_queue,
            ),
            monitor=not args.no_monitor,
            monitor_options=MonitorOptions(
                window=args.monitor_window,
                slo=SLO(
                    p99_seconds=None if args.slo_p99_ms is None else args.slo_p99_ms / 1000,
                    error_rate=args.slo_error_rate,
                ),
            ),
            record_inputs=not args.no_record_inputs,
        )

        def ready(url: str) -> None:
            workers = f", {args.workers} workers" if args.workers > 1 else ""
            print(
                f"serving {describe_models(app)} at {url} with {server.name}{workers}; "
                "stop with Ctrl-C or SIGTERM",
                flush=True,
            )

        try:
            server.run(app, host=args.host, port=args.port, workers=args.workers, on_ready=ready)
        except ModelkitError:
            raise
        except ValueError as exc:  # an invalid model name or URI
            raise ModelkitError(_one_line(exc)) from exc
        return 0


def _configure_logging() -> None:
    """Warnings and errors of the serving code (a model failing on a request) go to stderr."""
    logger = logging.getLogger("modelkit")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    register("serve", ServeCommand())
