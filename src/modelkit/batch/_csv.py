"""Reading CSV files fast: newline-aligned blocks parsed by pyarrow on several threads, in order.

A file is cut into blocks of about :data:`BLOCK_BYTES` that end at a line break (a value never
holds a line break: pyarrow's own default, ``newlines_in_values=False``). Blocks are parsed by a
small thread pool (pyarrow releases the GIL while it parses) and handed back in file order, a
few blocks ahead of the reader at most, so memory stays flat. The first block of a file fixes
the column types its later blocks are parsed with, as pyarrow's streaming reader does.

A block with a cell that is not a number where the job wants one is, when the job keeps going
past bad rows (``lenient``), parsed again with those columns as text; :func:`lenient_numbers`
then turns each such column back into numbers where it can, so only the bad cells stay text
(and the rows holding them are set aside by the job, with the reason). The Dask engine uses the
same function, so both engines see the same values.
"""

from __future__ import annotations

import gzip
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np

__all__ = [
    "ARROW_NULLS",
    "BLOCK_BYTES",
    "BlockParser",
    "lenient_numbers",
    "ordered_map",
    "read_blocks",
]

BLOCK_BYTES = 4 << 20
"""Bytes per block handed to a thread: ~10,000 rows of 20 floats; a few are in memory."""
_PARSE_BYTES = 1 << 20
"""Bytes pyarrow parses at a time within a block (one record batch each)."""

ARROW_NULLS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "n/a",
    "nan",
    "null",
)
"""The cells pyarrow's CSV reader reads as missing (pandas readers are told the same list)."""

_NUMERIC = ("float64", "int64")

T = TypeVar("T")
R = TypeVar("R")


def open_binary(path: Path) -> io.BufferedIOBase:
    """``path`` for reading bytes, decompressed when it ends in ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def read_blocks(handle: io.BufferedIOBase, block_bytes: int) -> Iterator[memoryview]:
    """The rest of ``handle`` in blocks of about ``block_bytes``, each ending at a line break
    (the last one may not); a line longer than a block makes its block longer.

    Each block is a fresh buffer, read into once: nothing is copied but a line cut in two.
    """
    rest = b""
    while True:
        buffer = bytearray(len(rest) + block_bytes)
        buffer[: len(rest)] = rest
        view = memoryview(buffer)
        got = handle.readinto(view[len(rest) :])
        end = len(rest) + (got or 0)
        if not got:
            if rest:
                yield view[:end]
            return
        cut = buffer.rfind(b"\n", 0, end) + 1
        if cut == 0:
            rest = bytes(view[:end])
            continue
        yield view[:cut]
        rest = bytes(view[cut:end])


def ordered_map(
    function: Callable[[T], R], items: Iterable[T], *, workers: int, depth: int
) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` threads, in order, at most ``depth`` items ahead.

    Closing the iterator early cancels what has not started and waits for what has.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelkit-csv") as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def lenient_numbers(values: Any) -> np.ndarray:
    """A text column as numbers: float64 when every cell is a number or missing; otherwise an
    object column of floats, ``None`` for missing cells and the original text of the others.

    ``values`` is a pyarrow string array (or chunked array) or a sequence of ``str`` / ``None``
    / NaN (a pandas object column).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa.string(), from_pandas=True)
    try:
        return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    cells = values.to_pylist()
    out = np.empty(len(cells), dtype=object)
    for i, cell in enumerate(cells):
        if cell is None:
            out[i] = None
            continue
        text = str(cell).strip()
        if not text:
            out[i] = None
            continue
        try:
            out[i] = float(text)
        except ValueError:
            out[i] = cell
    return out


def _to_numpy(column: Any) -> np.ndarray:
    """A pyarrow column as numpy: numbers as they are (integers with nulls as float and NaN),
    anything else as objects."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):  # its to_numpy is slow: convert one array
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    kind = column.type
    if pa.types.is_floating(kind) or (
        (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and column.null_count == 0
    ):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
    if pa.types.is_null(kind):
        return np.full(len(column), None, dtype=object)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def arrow_columns(table: Any) -> dict[str, np.ndarray]:
    """A pyarrow Table or RecordBatch as numpy columns (nulls as NaN / None)."""
    return {
        str(name): _to_numpy(column)
        for name, column in zip(table.column_names, table.columns, strict=True)
    }


class BlockError(Exception):
    """A block pyarrow could not parse (the reader adds the file and the row)."""


@attrs.frozen(kw_only=True)
class BlockParser:
    """Parses one block of a CSV file (no header line) into numpy columns.

    ``types`` maps column names to ``"float64"``, ``"int64"`` or ``"str"``; ``fixed`` holds
    the pyarrow types the file's first block was read with, for the other columns; ``wanted``
    limits the columns read.
    """

    names: Sequence[str]
    types: Mapping[str, str]
    wanted: Sequence[str] | None = None
    lenient: bool = False
    fixed: Mapping[str, Any] = attrs.field(factory=dict)

    def arrow_types(self, *, text: bool) -> dict[str, Any]:
        """The pyarrow types to read with; ``text``: the numeric columns as strings."""
        import pyarrow as pa

        kinds = {"float64": pa.float64(), "int64": pa.int64(), "str": pa.string()}
        types = dict(self.fixed)
        for name, dtype in self.types.items():
            if text and dtype in _NUMERIC:
                types[name] = pa.string()
            else:
                types[name] = kinds.get(dtype, pa.string())
        return types

    def parse_table(self, block: Any, *, text: bool = False) -> Any:
        """The block as a pyarrow Table (raises ``pyarrow.ArrowInvalid`` on a bad block)."""
        import pyarrow as pa
        import pyarrow.csv as pv

        wanted = None if self.wanted is None else list(self.wanted)
        return pv.read_csv(
            pa.py_buffer(block),
            read_options=pv.ReadOptions(
                column_names=list(self.names), use_threads=False, block_size=_PARSE_BYTES
            ),
            convert_options=pv.ConvertOptions(
                column_types=self.arrow_types(text=text),
                include_columns=wanted,
                strings_can_be_null=True,
            ),
        )

    def __call__(self, block: Any) -> list[dict[str, np.ndarray]]:
        """The block's columns, in batches of rows; a bad cell raises :class:`BlockError`
        unless ``lenient``."""
        return self.read(block)[1]

    def read(self, block: Any) -> tuple[Any, list[dict[str, np.ndarray]]]:
        """The block's pyarrow schema and its batches as numpy columns (see ``__call__``)."""
        import pyarrow as pa

        try:
            table = self.parse_table(block)
        except pa.ArrowInvalid as exc:
            if not self.lenient:
                raise BlockError(_one_line(exc)) from exc
        else:
            return table.schema, [arrow_columns(batch) for batch in table.to_batches()]
        try:
            table = self.parse_table(block, text=True)
        except pa.ArrowInvalid as exc:
            raise BlockError(_one_line(exc)) from exc
        batches = []
        for batch in table.to_batches():
            columns = arrow_columns(batch)
            for name, dtype in self.types.items():
                if dtype in _NUMERIC and name in columns:
                    columns[name] = lenient_numbers(batch.column(name))
            batches.append(columns)
        return table.schema, batches

    def freeze(self, table_types: Mapping[str, Any]) -> BlockParser:
        """This parser with the other columns' types fixed as the first block read them (a
        column that was all missing there is read as text)."""
        import pyarrow as pa

        fixed = {
            name: pa.string() if pa.types.is_null(kind) else kind
            for name, kind in table_types.items()
            if name not in self.types
        }
        return attrs.evolve(self, fixed=fixed)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_file(
    path: Path,
    parser: BlockParser,
    *,
    workers: int | None = None,
    block_bytes: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The columns of each block of ``path`` after its header line, in order; a block that
    cannot be parsed raises :class:`BlockError`.

    The first block is parsed alone and fixes the types of the columns ``parser`` does not
    type; the rest are parsed on ``workers`` threads (default: the CPU count, at most 4), in
    blocks of about ``block_bytes`` (default :data:`BLOCK_BYTES`).
    """
    threads = workers if workers is not None else min(os.cpu_count() or 1, 4)
    with open_binary(path) as handle:
        handle.readline()
        blocks = read_blocks(handle, block_bytes or BLOCK_BYTES)
        first = next(blocks, None)
        if first is None:
            return
        schema, batches = parser.read(first)
        yield from batches
        parser = parser.freeze({field.name: field.type for field in schema})
        for parsed in ordered_map(parser, blocks, workers=threads, depth=2 * threads):
            yield from parsed
