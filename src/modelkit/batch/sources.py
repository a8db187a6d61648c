"""Where a batch job's rows come from: CSV and Parquet files (and globs), arrays, SQL queries.

A :class:`Source` yields :class:`Chunk` objects: consecutive slices of its rows, each a mapping
of column name to a 1-D numpy array, with the absolute number of its first row. Reading is
streamed, so memory holds a few chunks whatever the input size, and a source can start at any
row (``chunks(chunk_rows, start=…)``): that is how an interrupted job resumes exactly where its
last committed chunk ended. A source must give the same rows in the same order every time it is
read (a SQL query needs an ``ORDER BY`` for that).

Built-in sources (plugins add more through ``register_batch_sources``):

============  ===========================================================================
name          reads
============  ===========================================================================
``csv``       ``.csv`` / ``.csv.gz`` files or a glob of them, parsed by pyarrow in blocks
              on several threads (extra ``parquet``), else by pandas (extra ``pandas``)
``parquet``   ``.parquet`` / ``.pq`` files or a glob, row group by row group (pyarrow)
``memory``    a numpy array (2-D, columns named ``f0``… or ``names=``) or a pandas DataFrame
``sql``       a query on SQLite (``sqlite:///…``) or PostgreSQL (``postgresql://…``)
============  ===========================================================================

:func:`open_source` turns what a user passes (a path, a glob, an array, a DataFrame, a
``Source``) into a source.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import attrs
import numpy as np

from modelkit.exceptions import DataError, MissingDependencyError, NotFoundError, UsageError

__all__ = [
    "Chunk",
    "CsvSource",
    "MemorySource",
    "ParquetSource",
    "Source",
    "SqlSource",
    "open_source",
    "sqlite_path",
]

_PARQUET_BATCH_ROWS = 32_768
"""Rows decoded from a Parquet row group at a time (a row group may hold millions)."""
_PARQUET_BUFFER = 1 << 18
"""Bytes of a Parquet column read at a time."""


@attrs.frozen(eq=False)
class Chunk:
    """Consecutive rows of a source: ``columns`` by name, the first one being row ``start``.

    ``chunk_id`` identifies the chunk within its job (the local engine uses ``start``; the
    Dask engine, the partition number).
    """

    start: int
    columns: Mapping[str, np.ndarray]
    n_rows: int
    chunk_id: int = attrs.field()

    @chunk_id.default
    def _default_id(self) -> int:
        return self.start


@runtime_checkable
class Source(Protocol):
    """A re-readable stream of rows, read chunk by chunk."""

    def describe(self) -> str:
        """A stable description (paths, sizes, times, query) for job identity and messages."""

    def columns(self) -> list[str]:
        """The column names, in source order."""

    def total_rows(self) -> int | None:
        """How many rows there are, when known cheaply (for the progress bar), else ``None``."""

    def chunks(self, chunk_rows: int, *, start: int = 0) -> Iterator[Chunk]:
        """Yield the rows from row ``start`` on, ``chunk_rows`` at a time (the last may be
        shorter). Chunk ``k`` starts at row ``start + k * chunk_rows``."""


# -- helpers ------------------------------------------------------------------------------


def _rechunk(
    batches: Iterator[Mapping[str, np.ndarray]], chunk_rows: int, start: int
) -> Iterator[Chunk]:
    """Turn batches of any size, beginning at row ``start``, into chunks of ``chunk_rows``."""
    pending: list[Mapping[str, np.ndarray]] = []
    pending_rows = 0
    offset = start
    for batch in batches:
        n = len(next(iter(batch.values()))) if batch else 0
        if n == 0:
            continue
        pending.append(batch)
        pending_rows += n
        while pending_rows >= chunk_rows:
            merged = _concat(pending)
            head = {name: values[:chunk_rows] for name, values in merged.items()}
            yield Chunk(offset, head, chunk_rows)
            offset += chunk_rows
            pending_rows -= chunk_rows
            pending = [{name: values[chunk_rows:] for name, values in merged.items()}]
    if pending_rows:
        yield Chunk(offset, _concat(pending), pending_rows)


def _concat(batches: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(batches) == 1:
        return dict(batches[0])
    names = list(batches[0])
    return {name: _concat_column([batch[name] for batch in batches]) for name in names}


def _concat_column(parts: list[np.ndarray]) -> np.ndarray:
    kinds = {part.dtype.kind for part in parts}
    if len(kinds) > 1 and "O" in kinds:  # text in one batch, numbers in another
        return np.concatenate([part.astype(object) for part in parts])
    return np.concatenate(parts)


def _skip(
    batches: Iterator[Mapping[str, np.ndarray]], rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """Drop the first ``rows`` rows of a stream of batches."""
    for batch in batches:
        n = len(next(iter(batch.values()))) if batch else 0
        if rows >= n:
            rows -= n
            continue
        if rows:
            yield {name: values[rows:] for name, values in batch.items()}
            rows = 0
        else:
            yield dict(batch)


def _expand(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files a path, a glob or a list of them name, sorted within each glob."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise NotFoundError(f"no file matches {text!r}; check the pattern and directory")
            found.extend(Path(match) for match in matches)
        else:
            path = Path(text)
            if not path.is_file():
                raise NotFoundError(f"no such file: {text!r}")
            found.append(path)
    if not found:
        raise UsageError("a file source needs at least one path or glob")
    return found


def _describe_files(kind: str, files: Sequence[Path]) -> str:
    parts = []
    for path in files:
        stat = path.stat()
        parts.append(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return f"{kind}:" + ",".join(parts)


def _require_pyarrow(what: str) -> None:
    try:
        import pyarrow  # noqa: F401 - imported to check it is there
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs pyarrow, which is not installed: pip install 'modelkit[parquet]' ({exc})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- CSV ----------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    import csv
    import gzip

    try:
        opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc
    if not header:
        raise DataError(f"{path.name} is empty: expected a header line and rows")
    return [name.strip() for name in header]


@attrs.define
class CsvSource:
    """CSV files (``.csv``, ``.csv.gz``) or a glob of them, read as one table in order.

    Every file must have the same header. ``column_types`` maps column names to numpy dtype
    names (``"float64"``, ``"int64"``, ``"str"``): batch jobs read the model's numeric features
    as float64, so a cell that is not a number is a
    :class:`~modelkit.exceptions.DataError` naming the file, unless ``lenient`` (skip or
    quarantine such rows), in which case such a column keeps the text of its bad cells and the
    job checks each row. ``columns_wanted`` limits the columns read (a batch job reads the key,
    the features and the carried columns).

    With pyarrow, files are cut into blocks of about ``block_bytes`` at line breaks and parsed
    on ``threads`` threads (default: the CPU count, at most 4), in order (see
    :mod:`modelkit.batch._csv`); values never hold line breaks, as for pyarrow's own reader.
    Without pyarrow, pandas reads them.
    """

    paths: list[Path] = attrs.field(converter=_expand)
    column_types: Mapping[str, str] = attrs.field(factory=dict, kw_only=True)
    lenient: bool = attrs.field(default=False, kw_only=True)
    engine: str | None = attrs.field(default=None, kw_only=True)
    columns_wanted: Sequence[str] | None = attrs.field(default=None, kw_only=True)
    threads: int | None = attrs.field(default=None, kw_only=True)
    block_bytes: int | None = attrs.field(default=None, kw_only=True)

    def describe(self) -> str:
        """``csv:`` and every file's absolute path, size and modification time."""
        return _describe_files("csv", self.paths)

    def columns(self) -> list[str]:
        """The header of the first file."""
        return _csv_header(self.paths[0])

    def total_rows(self) -> int | None:
        """An estimate from the file sizes and the first megabyte's bytes per line."""
        first = self.paths[0]
        if first.name.lower().endswith(".gz"):
            return None
        with first.open("rb") as handle:
            sample = handle.read(1 << 20)
        lines = sample.count(b"\n")
        if lines < 2:
            return None
        per_line = len(sample) / lines
        total = sum(path.stat().st_size for path in self.paths)
        return max(int(total / per_line) - len(self.paths), 0)

    def chunks(self, chunk_rows: int, *, start: int = 0) -> Iterator[Chunk]:
        """Stream the files' rows from ``start`` on."""
        return _rechunk(self._batches(start), chunk_rows, start)

    def _use_arrow(self) -> bool:
        if self.engine is not None:
            return self.engine == "pyarrow"
        try:
            import pyarrow.csv  # noqa: F401 - imported to check it is there
        except ImportError:
            return False
        return True

    def _batches(self, start: int) -> Iterator[dict[str, np.ndarray]]:
        header = self.columns()
        reader = self._arrow_file if self._use_arrow() else self._pandas_file
        files = (batch for path in self.paths for batch in reader(path, header))
        return _skip(files, start)

    def _arrow_file(self, path: Path, header: list[str]) -> Iterator[dict[str, np.ndarray]]:
        import pyarrow as pa

        from modelkit.batch._csv import BlockError, BlockParser, parse_file

        own = _csv_header(path) if path != self.paths[0] else header
        if own != header:
            raise DataError(
                f"{path.name} has the columns {own}, but the first file has {header}; every "
                "file of a CSV source needs the same header"
            )
        wanted = None
        if self.columns_wanted is not None:
            wanted = [name for name in header if name in set(self.columns_wanted)]
        parser = BlockParser(
            names=header,
            types={n: t for n, t in self.column_types.items() if wanted is None or n in wanted},
            wanted=wanted,
            lenient=self.lenient,
        )
        emitted = 0
        try:
            for batch in parse_file(
                path, parser, workers=self.threads, block_bytes=self.block_bytes
            ):
                emitted += len(next(iter(batch.values()))) if batch else 0
                yield batch
        except BlockError as exc:
            raise self._bad_cell(path, emitted, exc) from exc
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc

    @staticmethod
    def _bad_cell(path: Path, emitted: int, exc: BaseException) -> DataError:
        return DataError(
            f"cannot read {path.name} after row {emitted}: {_one_line(exc)}; fix the file, or "
            "pass on_error='skip' / 'quarantine' (--on-error) to set such rows aside"
        )

    def _pandas_file(self, path: Path, header: list[str]) -> Iterator[dict[str, np.ndarray]]:
        try:
            import pandas as pd
        except ImportError as exc:
            raise MissingDependencyError(
                "reading CSV needs pyarrow or pandas, and neither is installed: "
                f"pip install 'modelkit[parquet]' ({exc})"
            ) from exc
        dtypes: dict[str, Any] = {}
        for name, dtype in self.column_types.items():
            dtypes[name] = object if (self.lenient or dtype == "str") else dtype
        try:
            frames = pd.read_csv(
                path,
                dtype=dtypes or None,
                chunksize=1 << 16,
            )
            for frame in frames:
                yield {str(name): frame[name].to_numpy() for name in frame.columns}
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc


# -- Parquet ------------------------------------------------------------------------------


@attrs.define
class ParquetSource:
    """Parquet files (``.parquet``, ``.pq``) or a glob of them, read row group by row group.

    ``columns_wanted`` restricts what is read (a batch job reads only the model's features,
    the key and the carried columns). Needs pyarrow (extra ``parquet``).
    """

    paths: list[Path] = attrs.field(converter=_expand)
    columns_wanted: Sequence[str] | None = attrs.field(default=None, kw_only=True)

    def describe(self) -> str:
        """``parquet:`` and every file's absolute path, size and modification time."""
        return _describe_files("parquet", self.paths)

    def columns(self) -> list[str]:
        """The first file's column names."""
        _require_pyarrow("reading Parquet")
        import pyarrow.parquet as pq

        return [str(name) for name in pq.read_schema(self.paths[0]).names]

    def total_rows(self) -> int | None:
        """The row count in the files' metadata."""
        import pyarrow.parquet as pq

        return int(sum(pq.ParquetFile(path).metadata.num_rows for path in self.paths))

    def chunks(self, chunk_rows: int, *, start: int = 0) -> Iterator[Chunk]:
        """Stream the files' rows from ``start`` on, skipping whole row groups before it."""
        return _rechunk(self._batches(start), chunk_rows, start)

    def _batches(self, start: int) -> Iterator[dict[str, np.ndarray]]:
        _require_pyarrow("reading Parquet")
        import pyarrow.parquet as pq

        from modelkit.batch._csv import arrow_columns

        skip = start
        for path in self.paths:
            try:
                # read pages as they are decoded, not whole column chunks ahead: a row group
                # may hold millions of rows
                handle = pq.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read {path.name}: {_one_line(exc)}") from exc
            metadata = handle.metadata
            columns = None if self.columns_wanted is None else list(self.columns_wanted)
            for group in range(metadata.num_row_groups):
                n = metadata.row_group(group).num_rows
                if skip >= n:
                    skip -= n
                    continue
                for part in handle.iter_batches(
                    batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=columns
                ):
                    batch = arrow_columns(part)
                    if skip:
                        if skip >= part.num_rows:
                            skip -= part.num_rows
                            continue
                        batch = {name: values[skip:] for name, values in batch.items()}
                        skip = 0
                    yield batch


# -- in memory ----------------------------------------------------------------------------


@attrs.define
class MemorySource:
    """A numpy array or a pandas DataFrame already in memory.

    A 2-D array's columns are named ``names`` (default ``f0``, ``f1``, …); a DataFrame's
    columns keep their (string) labels. ``describe()`` includes a fingerprint of the content,
    so that a job's identity follows the data.
    """

    data: Any
    names: Sequence[str] | None = attrs.field(default=None, kw_only=True)
    _columns: dict[str, np.ndarray] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        from modelkit._tabular import is_dataframe

        if is_dataframe(self.data):
            self._columns = {str(name): self.data[name].to_numpy() for name in self.data.columns}
            return
        array = np.asarray(self.data)
        if array.ndim != 2:
            raise UsageError(
                f"an in-memory source must be a 2-D array or a DataFrame, got {array.ndim}-D"
            )
        names = list(self.names) if self.names is not None else None
        names = names or [f"f{j}" for j in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise UsageError(f"got {len(names)} names for an array of {array.shape[1]} columns")
        self._columns = {name: array[:, j] for j, name in enumerate(names)}

    def describe(self) -> str:
        """``memory:`` and the data's fingerprint."""
        from modelkit._fingerprint import fingerprint

        return "memory:" + fingerprint(self.data)

    def columns(self) -> list[str]:
        """The column names."""
        return list(self._columns)

    def total_rows(self) -> int | None:
        """The number of rows."""
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def chunks(self, chunk_rows: int, *, start: int = 0) -> Iterator[Chunk]:
        """Slices of the data (views: nothing is copied)."""
        total = self.total_rows() or 0
        for offset in range(start, total, chunk_rows):
            end = min(offset + chunk_rows, total)
            yield Chunk(offset, {n: v[offset:end] for n, v in self._columns.items()}, end - offset)


# -- SQL ----------------------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names.

    ``sqlite:///pred.db`` is ``pred.db`` in the current directory (a single name right under
    the root is never meant literally); ``sqlite:///abs/dir/pred.db`` and
    ``sqlite:////abs/pred.db`` are absolute paths, as for the registry.
    """
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if path.startswith("//"):
        return Path(path[1:])
    if path.startswith("/") and "/" not in path[1:]:
        return Path(path[1:])
    return Path(path)


@attrs.define
class SqlSource:
    """The rows of a query on SQLite (``sqlite:///…``) or PostgreSQL (``postgresql://…``).

    The query must return the rows in the same order every time: end it with ``ORDER BY``
    the key. A resumed job skips the rows already done with ``OFFSET``.
    """

    url: str
    query: str

    def describe(self) -> str:
        """``sql:`` with the database URL and the query."""
        return f"sql:{self.url}:{self.query}"

    def _is_sqlite(self) -> bool:
        return urlsplit(self.url).scheme.lower() == "sqlite"

    def _connect(self) -> Any:
        if self._is_sqlite():
            path = sqlite_path(self.url)
            if not path.is_file():
                raise NotFoundError(f"no SQLite database at {str(path)!r} ({self.url})")
            return sqlite3.connect(path)
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependencyError(
                f"reading from PostgreSQL needs psycopg: pip install 'modelkit[postgres]' ({exc})"
            ) from exc
        return psycopg.connect(self.url)

    def columns(self) -> list[str]:
        """The query's column names (runs it with ``LIMIT 0``)."""
        conn = self._connect()
        try:
            cursor = conn.execute(f"SELECT * FROM ({self.query}) AS q LIMIT 0")  # noqa: S608
            return [str(d[0]) for d in cursor.description]
        finally:
            conn.close()

    def total_rows(self) -> int | None:
        """Unknown (counting would run the query twice)."""
        return None

    def chunks(self, chunk_rows: int, *, start: int = 0) -> Iterator[Chunk]:
        """Fetch ``chunk_rows`` rows at a time (a server-side cursor on PostgreSQL)."""
        conn = self._connect()
        try:
            sql = f"SELECT * FROM ({self.query}) AS q"  # noqa: S608 - the user's own query
            if start:
                sql += f" LIMIT {-1 if self._is_sqlite() else 'ALL'} OFFSET {int(start)}"
            cursor = conn.cursor() if self._is_sqlite() else conn.cursor(name="modelkit_batch")
            cursor.execute(sql)
            names: list[str] | None = None
            offset = start
            while True:
                rows = cursor.fetchmany(chunk_rows)
                if names is None:
                    names = [str(d[0]) for d in cursor.description]
                if not rows:
                    return
                columns = {
                    name: _column(values)
                    for name, values in zip(names, zip(*rows, strict=False), strict=True)
                }
                yield Chunk(offset, columns, len(rows))
                offset += len(rows)
        finally:
            conn.close()


def _column(values: tuple[Any, ...]) -> np.ndarray:
    """A column fetched from a database as numpy: float64 for numbers (None as NaN)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        array = np.asarray(values)
        return array if array.dtype.kind in "if" else np.asarray(values, dtype=object)
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.asarray(values, dtype=object)


# -- opening what the user passed ---------------------------------------------------------


def _kind_of(path: str) -> str | None:
    name = path.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return None


def open_source(data: Any, *, query: str | None = None, **options: Any) -> Source:
    """Turn ``data`` into a :class:`Source`.

    ``data`` may be a ``Source``; a path or glob ending in ``.csv``, ``.csv.gz``,
    ``.parquet`` or ``.pq`` (or a list of them); a database URL with ``query``; a numpy
    array or a pandas DataFrame. A source registered by a plugin under a URL scheme
    (``register_batch_sources``) is used for a URL of that scheme. ``options`` go to the
    source's constructor.
    """
    from modelkit._tabular import is_dataframe
    from modelkit.plugins import collect

    if isinstance(data, Source):
        return data
    if is_dataframe(data) or isinstance(data, np.ndarray):
        return MemorySource(data, **options)
    factories = collect("register_batch_sources")
    if isinstance(data, str | os.PathLike):
        text = os.fspath(data)
        scheme = urlsplit(text).scheme.lower()
        if query is not None:
            options["query"] = query
        if len(scheme) > 1 and scheme in factories:
            return factories[scheme](text, **options)  # type: ignore[no-any-return]
        kind = _kind_of(text)
        if kind is None:
            schemes = ", ".join(sorted(k for k in factories if k not in ("csv", "parquet")))
            raise UsageError(
                f"cannot tell what kind of input {text!r} is: name .csv, .csv.gz, .parquet or "
                ".pq files (globs work), or a database URL with a query "
                f"(schemes: {schemes})"
            )
        return factories[kind](text, **options)  # type: ignore[no-any-return]
    if (
        isinstance(data, list | tuple)
        and data
        and all(isinstance(d, str | os.PathLike) for d in data)
    ):
        kinds = {_kind_of(os.fspath(d)) for d in data}
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is None:
            raise UsageError("a list of input files must all be CSV or all be Parquet")
        return factories[kind](list(data), **options)  # type: ignore[no-any-return]
    raise UsageError(
        f"cannot read rows from a {type(data).__name__}: pass a CSV or Parquet path or glob, "
        "a numpy array, a pandas DataFrame, a database URL with a query, or a Source"
    )
