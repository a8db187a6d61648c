"""CSV blocks: cut at line breaks, parsed on threads, handed back in order, bad cells kept."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit.batch._csv import (
    BlockError,
    BlockParser,
    lenient_numbers,
    ordered_map,
    parse_file,
    read_blocks,
)
from modelkit.batch.sources import CsvSource
from modelkit.exceptions import DataError

lines = st.lists(
    st.text(st.characters(blacklist_characters="\n\r", codec="utf-8"), max_size=30), max_size=40
)


@given(lines=lines, block=st.integers(1, 64), trailing=st.booleans())
def test_blocks_end_at_line_breaks_and_lose_nothing(
    lines: list[str], block: int, trailing: bool
) -> None:
    text = "\n".join(lines) + ("\n" if trailing and lines else "")
    data = text.encode()
    blocks = [bytes(b) for b in read_blocks(io.BytesIO(data), block)]
    assert b"".join(blocks) == data
    assert all(b.endswith(b"\n") for b in blocks[:-1])
    assert all(b for b in blocks)


@given(items=st.lists(st.integers(), max_size=50), workers=st.integers(1, 4))
def test_ordered_map_keeps_the_order(items: list[int], workers: int) -> None:
    got = list(ordered_map(lambda x: x * 2, iter(items), workers=workers, depth=2 * workers))
    assert got == [x * 2 for x in items]


def test_closing_ordered_map_early_stops_submitting() -> None:
    seen: list[int] = []

    def record(x: int) -> int:
        seen.append(x)
        return x

    mapped = ordered_map(record, iter(range(1000)), workers=2, depth=4)
    assert next(mapped) == 0
    mapped.close()
    assert len(seen) <= 6  # the first item and at most the ones already submitted


def test_lenient_numbers_keep_only_bad_cells_as_text() -> None:
    good = lenient_numbers(pa.array(["1.5", None, "-2e3"]))
    assert good.dtype == np.float64
    np.testing.assert_array_equal(good, [1.5, np.nan, -2000.0])
    bad = lenient_numbers(pa.array(["1.5", "abc", None, " 2 ", ""]))
    assert bad.dtype == object
    assert bad.tolist() == [1.5, "abc", None, 2.0, None]
    from_pandas = lenient_numbers(pd.Series(["1.5", "abc", np.nan, " 2 ", ""]).to_numpy())
    assert from_pandas.tolist() == bad.tolist()


def test_a_bad_block_is_read_as_text_only_when_lenient() -> None:
    block = b"1,0.5,x\n2,abc,y\n3,,z\n"
    names = ["id", "f0", "note"]
    strict = BlockParser(names=names, types={"f0": "float64"})
    with pytest.raises(BlockError, match=r"f0|float|double"):
        strict(block)
    lenient = BlockParser(names=names, types={"f0": "float64"}, lenient=True)
    (columns,) = lenient(block)
    assert columns["f0"].tolist() == [0.5, "abc", None]
    assert columns["id"].tolist() == [1, 2, 3]
    assert columns["note"].tolist() == ["x", "y", "z"]


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_bytes(text.encode())
    return path


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 300),
    block=st.integers(16, 400),
    threads=st.integers(1, 3),
    chunk_rows=st.integers(1, 120),
    start=st.integers(0, 310),
)
def test_threaded_blocks_read_every_row_in_order(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    n: int,
    block: int,
    threads: int,
    chunk_rows: int,
    start: int,
) -> None:
    root = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(n)
    values = rng.standard_normal(n)
    body = "".join(f"{i},{float(v)!r},n{i}\n" for i, v in enumerate(values))
    path = write(root / "data.csv", "id,f0,note\n" + body)
    source = CsvSource(path, column_types={"f0": "float64"}, threads=threads, block_bytes=block)
    chunks = list(source.chunks(chunk_rows, start=start))
    assert [c.start for c in chunks] == list(range(start, max(n, start), chunk_rows))[: len(chunks)]
    if start >= n:
        assert chunks == []
        return
    ids = np.concatenate([c.columns["id"] for c in chunks])
    f0 = np.concatenate([c.columns["f0"] for c in chunks])
    np.testing.assert_array_equal(ids, np.arange(start, n))
    np.testing.assert_array_equal(f0, values[start:])  # bit for bit: the same parser


def test_line_endings_byte_order_marks_gzip_and_blank_lines(tmp_path: Path) -> None:
    text = "\ufeffid,f0\r\n1,0.5\r\n\r\n2,1.5\r\n3,2.5"  # no line break at the end
    plain = write(tmp_path / "a.csv", text)
    zipped = write(tmp_path / "b.csv.gz", text)
    for path in (plain, zipped):
        source = CsvSource(path, column_types={"f0": "float64"}, block_bytes=8)
        assert source.columns() == ["id", "f0"]
        (chunk,) = source.chunks(10)
        assert chunk.columns["id"].tolist() == [1, 2, 3]
        assert chunk.columns["f0"].tolist() == [0.5, 1.5, 2.5]
    header_only = write(tmp_path / "c.csv", "id,f0\n")
    assert list(CsvSource(header_only).chunks(10)) == []


def test_only_the_wanted_columns_are_read(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,f0,note,f1\n1,0.5,x,2\n2,1.5,y,3\n")
    source = CsvSource(path, column_types={"f0": "float64"}, columns_wanted=["f1", "id", "f0"])
    (chunk,) = source.chunks(10)
    assert list(chunk.columns) == ["id", "f0", "f1"]


def test_the_first_block_fixes_the_other_columns_types(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i}.5\n" for i in range(200))
    path = write(tmp_path / "a.csv", "id,f0\n" + rows + "x1,1.0\n")
    source = CsvSource(path, column_types={"f0": "float64"}, block_bytes=64, threads=2)
    with pytest.raises(DataError, match=r"a\.csv after row \d+"):
        list(source.chunks(50))


def test_a_bad_cell_sets_aside_only_its_block(tmp_path: Path) -> None:
    rows = [f"{i},{i}.5" for i in range(400)]
    rows[250] = "250,oops"
    path = write(tmp_path / "a.csv", "id,f0\n" + "\n".join(rows) + "\n")
    parser = BlockParser(names=["id", "f0"], types={"f0": "float64"}, lenient=True)
    blocks = list(parse_file(path, parser, workers=2, block_bytes=256))
    kinds = [b["f0"].dtype.kind for b in blocks]
    assert kinds.count("O") == 1
    assert "f" in kinds
    values = np.concatenate([b["f0"].astype(object) for b in blocks])
    assert values[250] == "oops"
    assert values[249] == 249.5
