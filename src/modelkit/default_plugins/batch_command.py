"""``modelkit batch``, and the built-in batch sources and sinks.

::

    modelkit batch churn@production --input data.csv --output sqlite:///predictions.db \\
        --table predictions --key id [--job-id daily-2024-06-01] [--chunk-rows 25000] \\
        [--on-error fail|skip|quarantine] [--proba] [--carry COLUMN] \\
        [--engine dask --scheduler tcp://host:8786] [--registry URL] [--json] [--quiet]

Prints a progress bar on a terminal and one summary line at the end. Exit status 0 when the
job finished (also when it had finished before: nothing is written again), 1 on an error a
user can fix (the job can then be rerun to resume), 2 on a wrong command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelkit.cli import positive_int
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.batch.sinks import Sink
    from modelkit.batch.sources import Source
    from modelkit.cli import Command

__all__ = ["BatchCommand"]


class BatchCommand:
    """``modelkit batch``: predict a file, glob or query into a database or files."""

    help = "predict a CSV/Parquet file, glob or SQL query into SQLite, PostgreSQL or files"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "model", metavar="URI", help="a registry model: churn@production, churn/3, models:/…"
        )
        parser.add_argument(
            "--input",
            required=True,
            metavar="PATH|GLOB|URL",
            help="CSV (.csv, .csv.gz) or Parquet (.parquet, .pq) files, globs such as "
            "'data/*.parquet', or a database URL with --query",
        )
        parser.add_argument(
            "--query", metavar="SQL", help="the query to read with a database --input (ORDER BY)"
        )
        parser.add_argument(
            "--output",
            required=True,
            metavar="URL",
            help="sqlite:///pred.db (or pred.db), postgresql://…, or a directory ending in "
            ".parquet or .csv",
        )
        parser.add_argument(
            "--table", default="predictions", help="the output table (default: predictions)"
        )
        parser.add_argument(
            "--key",
            metavar="COLUMN",
            help="the column identifying each row, written with its prediction and never fed "
            "to the model (default: the row number, as column 'row')",
        )
        parser.add_argument(
            "--carry",
            action="append",
            default=[],
            metavar="COLUMN",
            help="an input column to copy to the output (repeat)",
        )
        parser.add_argument(
            "--job-id",
            metavar="ID",
            help="rerunning with the same id resumes the job, or does nothing once it finished "
            "(default: derived from the model, input files, output and options)",
        )
        parser.add_argument(
            "--chunk-rows",
            type=positive_int,
            metavar="N",
            help="rows per chunk and per transaction (default: 25000 into a database, 100000 "
            "per part file or Dask partition)",
        )
        parser.add_argument(
            "--on-error",
            choices=("fail", "skip", "quarantine"),
            default="fail",
            help="a row the model's signature refuses stops the job (fail, the default), is "
            "dropped (skip) or goes to TABLE_quarantine with the reason (quarantine)",
        )
        parser.add_argument(
            "--proba",
            action="store_true",
            help="also write each class's probability (proba_<class> columns)",
        )
        parser.add_argument(
            "--engine",
            choices=("local", "dask"),
            default="local",
            help="local (default) or dask (extra 'dask')",
        )
        parser.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="with --engine dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: a "
            "local cluster)",
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            metavar="N",
            help="with --engine dask and no --scheduler: local workers (default: CPU count)",
        )
        parser.add_argument(
            "--registry",
            metavar="URL",
            help="registry directory or URL (sqlite:///…, postgresql://…); "
            "default: $MODELKIT_HOME, else ./.modelkit",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--quiet", action="store_true", help="no progress bar and no summary line"
        )

    def run(self, args: argparse.Namespace) -> int:
        from modelkit.batch import batch_predict

        outputs = ("predict", "predict_proba") if args.proba else ("predict",)
        result = batch_predict(
            args.model,
            args.input,
            args.output,
            table=args.table,
            key=args.key,
            carry=args.carry,
            job_id=args.job_id,
            chunk_rows=args.chunk_rows,
            engine=args.engine,
            n_jobs=args.workers,
            scheduler=args.scheduler,
            on_error=args.on_error,
            outputs=outputs,
            query=args.query,
            registry=args.registry,
            progress=False if (args.quiet or args.json) else None,
        )
        if args.json:
            print(json.dumps(result.to_dict(), indent=2))
        elif not args.quiet:
            print(result.summary(), file=sys.stdout, flush=True)
        return 0


# -- built-in sources and sinks -------------------------------------------------------------


def _csv(target: Any, **options: Any) -> Source:
    from modelkit.batch.sources import CsvSource

    return CsvSource(target, **options)


def _parquet(target: Any, **options: Any) -> Source:
    from modelkit.batch.sources import ParquetSource

    return ParquetSource(target, **options)


def _sql(target: str, *, query: str | None = None, **options: Any) -> Source:
    from modelkit.batch.sources import SqlSource
    from modelkit.exceptions import UsageError

    if not query:
        raise UsageError(
            f"reading from {target!r} needs a query: pass query='SELECT … ORDER BY key' "
            "(--query on the command line)"
        )
    return SqlSource(target, query, **options)


def _sqlite_sink(target: str, *, table: str = "predictions") -> Sink:
    from urllib.parse import urlsplit

    from modelkit.batch.sinks import SqliteSink
    from modelkit.batch.sources import sqlite_path

    path = sqlite_path(target) if urlsplit(target).scheme.lower() == "sqlite" else target
    return SqliteSink(path, table=table)


def _postgres_sink(target: str, *, table: str = "predictions") -> Sink:
    from modelkit.batch._postgres import PostgresSink

    return PostgresSink(target, table=table)


def _file_sink(kind: str) -> Callable[..., Sink]:
    def factory(target: str, *, table: str = "predictions") -> Sink:
        from modelkit.batch._files import FileSink

        return FileSink(target, format=kind, table=table)

    return factory


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    register("batch", BatchCommand())


@hookimpl
def register_batch_sources(register: Callable[[str, Callable[..., Source]], None]) -> None:
    register("csv", _csv)
    register("parquet", _parquet)
    register("sqlite", _sql)
    register("postgresql", _sql)
    register("postgres", _sql)


@hookimpl
def register_batch_sinks(register: Callable[[str, Callable[..., Sink]], None]) -> None:
    register("sqlite", _sqlite_sink)
    register("postgresql", _postgres_sink)
    register("parquet", _file_sink("parquet"))
    register("csv", _file_sink("csv"))
