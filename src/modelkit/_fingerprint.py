"""Full-content fingerprints of arrays and tables (scheme ``modelkit.fingerprint/1``).

The fingerprint is ``"sha256:" + hexdigest`` of one byte stream::

    MAGIC  u64le(len(header))  header  payload(part 1)  payload(part 2) ...

``header`` is canonical JSON (sorted keys, no spaces, ASCII) naming the scheme and version and,
for every part (``X`` and, when given, ``y``), its kind, shape, column names, dtypes and the
encoding of each payload, so that the stream can be decoded unambiguously. Payloads:

* ``raw``: the values' bytes in C order, little-endian (numbers, booleans, datetimes and
  fixed-width strings). Non-contiguous arrays are streamed as C-order row blocks of about
  :data:`CHUNK_BYTES`; contiguous ones are hashed in place through a memoryview.
* ``masked`` (pandas nullable ``Int64``/``Float64``/``boolean``): one byte per row (1 = missing),
  then the values as ``raw`` with missing values replaced by zero.
* ``category`` (pandas ``category``): the categories' payload, then the codes as ``raw``.
* ``object`` (Python objects, pandas ``str``/``string`` columns): blocks of
  :data:`OBJECT_BLOCK` values. A block whose values are all ``str`` without NUL characters
  is ``0x01`` then the UTF-8 of the values joined by NUL. Any other block is ``0x00``, one
  type tag byte per value, one ``u64le`` length per value, then the values' data grouped by
  tag in ascending tag order (value order within a tag): text is UTF-8 with its length in
  code points; ``None``, NaN, ``pd.NA`` and ``pd.NaT`` have distinct tags and no data;
  integers are decimal ASCII; floats are 8 bytes.

A DataFrame is hashed column by column (each column in row order); its index is not part of
the content. The chunk size affects speed only; the object block size is part of the scheme.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["CHUNK_BYTES", "OBJECT_BLOCK", "SCHEME", "fingerprint", "is_pandas"]

SCHEME = "modelkit.fingerprint"
VERSION = 1
MAGIC = b"modelkit.fingerprint\x00"
CHUNK_BYTES = 1 << 21
"""Bytes per hashlib update when streaming (speed only, not part of the scheme)."""
OBJECT_BLOCK = 1 << 16
"""Values per block of the ``object`` encoding (part of the scheme)."""

_Writer = Callable[["hashlib._Hash"], None]

# Block forms and type tags of the ``object`` encoding. Never renumber: part of the scheme.
_TAGGED_BLOCK, _TEXT_BLOCK = b"\x00", b"\x01"
_NONE, _NAN, _NA, _NAT, _FALSE, _TRUE = 0, 1, 2, 3, 4, 5
_INT, _FLOAT, _STR, _BYTES, _COMPLEX = 6, 7, 8, 9, 10
_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _NP_DATETIME = 11, 12, 13, 14, 15, 16
_TEXT_TAGS: dict[int, Callable[[Any], str]] = {
    _DATETIME: lambda v: v.isoformat(),
    _DATE: lambda v: v.isoformat(),
    _TIME: lambda v: v.isoformat(),
    _TIMEDELTA: str,
    _DECIMAL: str,
    _NP_DATETIME: str,
}


def is_pandas(obj: object) -> bool:
    """Whether ``obj`` is a pandas object, decided without importing pandas."""
    return type(obj).__module__.startswith("pandas")


def fingerprint(
    X: Any,
    y: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
) -> str:
    """Hash the whole content of ``X`` (and ``y``) into ``"sha256:<hex>"``.

    The hash covers the dtype, shape, column names and every value, read in full (never a
    sample), so the same data gives the same fingerprint in any process, and changing one
    value, the order or name of a column, a dtype or a shape changes it.

    Args:
        X: an ndarray (any dtype but structured), a list of lists (converted with
            ``numpy.asarray``; kept as Python objects when the values are not all numbers),
            a pandas DataFrame or Series.
        y: optional second part (targets), accepted in the same forms.
        feature_names: column names of a 2-D array ``X``, hashed with it. Not allowed for
            pandas input, whose column names are always part of the hash.

    Raises:
        TypeError: ``X`` or ``y`` is not array-like, or holds Python objects of a type
            with no deterministic encoding (e.g. dicts); convert such columns to ``str``.
        ValueError: ``feature_names`` does not fit ``X``, or a list is ragged.
    """
    parts = [_plan(X, "X", feature_names)]
    if y is not None:
        parts.append(_plan(y, "y", None))
    header = {
        "scheme": SCHEME,
        "version": VERSION,
        "parts": [part_header for part_header, _ in parts],
    }
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    header_bytes = encoded.encode("ascii")
    h = hashlib.sha256(MAGIC)
    h.update(struct.pack("<Q", len(header_bytes)))
    h.update(header_bytes)
    for _, write in parts:
        write(h)
    return "sha256:" + h.hexdigest()


# -- planning: header + payload writer for one part ------------------------------------------


def _plan(
    value: Any, role: str, feature_names: Sequence[str] | None
) -> tuple[dict[str, Any], _Writer]:
    if is_pandas(value) and type(value).__name__ in ("DataFrame", "Series"):
        if feature_names is not None:
            raise ValueError(
                "feature_names cannot be given for a pandas object: its column names are used"
            )
        if type(value).__name__ == "DataFrame":
            return _plan_frame(value, role)
        enc, write = _pandas_column(value, str(value.name))
        header = {"role": role, "kind": "series", "name": _json_label(value.name)}
        header.update(shape=[len(value)], column=enc)
        return header, write
    array = as_array(value, role)
    names: list[str] | None = None
    if feature_names is not None:
        names = [str(name) for name in feature_names]
        if array.ndim != 2 or len(names) != array.shape[1]:
            raise ValueError(
                f"feature_names has {len(names)} names but {role} has shape {array.shape}; "
                "give one name per column of a 2-D array"
            )
    enc, write = _array_encoding(array, role)
    header = {"role": role, "kind": "array", "shape": list(array.shape), "columns": names}
    header.update(enc)
    return header, write


def as_array(value: Any, role: str) -> NDArray[Any]:
    """Convert array-like input to an ndarray, keeping non-numeric lists as Python objects."""
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)  # a base ndarray view of subclasses such as np.matrix
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise ValueError(
                f"{role} is not rectangular ({exc}); give a list of equally long rows"
            ) from exc
        if isinstance(value, (list, tuple)) and array.dtype.kind not in "biufcmM":
            array = np.asarray(value, dtype=object)
        return array
    raise TypeError(
        f"{role} must be an ndarray, a list of rows, or a pandas DataFrame/Series, "
        f"got {type(value).__name__}"
    )


def _plan_frame(frame: Any, role: str) -> tuple[dict[str, Any], _Writer]:
    columns: list[dict[str, Any]] = []
    writers: list[_Writer] = []
    for j, label in enumerate(frame.columns):
        enc, write = _pandas_column(frame.iloc[:, j], str(label))
        columns.append({"name": _json_label(label), **enc})
        writers.append(write)

    def write_all(h: hashlib._Hash) -> None:
        for write in writers:
            write(h)

    header = {"role": role, "kind": "frame", "shape": list(frame.shape), "columns": columns}
    return header, write_all


def _pandas_column(col: Any, where: str) -> tuple[dict[str, Any], _Writer]:
    """Header entry and payload writer of one pandas Series."""
    import pandas as pd

    dtype = col.dtype
    if isinstance(dtype, np.dtype):
        enc, write = _array_encoding(col.to_numpy(), f"column {where!r}")
    elif isinstance(dtype, pd.CategoricalDtype):
        cat_enc, write_cats = _array_encoding(
            np.asarray(dtype.categories.to_numpy()), f"categories of column {where!r}"
        )
        codes = col.cat.codes.to_numpy()
        codes_enc, write_codes = _array_encoding(codes, where)

        def write(h: hashlib._Hash) -> None:
            write_cats(h)
            write_codes(h)

        cat_enc["length"] = len(dtype.categories)
        enc = {"encoding": "category", "ordered": bool(dtype.ordered)}
        enc.update(categories=cat_enc, codes=codes_enc["storage"])
    elif isinstance(dtype, pd.DatetimeTZDtype):
        utc = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        enc, write = _array_encoding(utc, where)
    elif dtype.kind in "biuf" and hasattr(dtype, "numpy_dtype"):
        mask = np.ascontiguousarray(col.isna().to_numpy(dtype=bool))
        values = col.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))
        values_enc, write_values = _array_encoding(values, where)

        def write(h: hashlib._Hash) -> None:
            _write_raw(h, mask.view(np.uint8), np.dtype(np.uint8))
            write_values(h)

        enc = {"encoding": "masked", "storage": values_enc["storage"]}
    else:
        enc, write = _array_encoding(col.to_numpy(dtype=object), f"column {where!r}")
    return {"dtype": str(dtype), **enc}, write


def _array_encoding(array: NDArray[Any], where: str) -> tuple[dict[str, Any], _Writer]:
    """Header fields and payload writer of one ndarray (raw bytes or objects)."""
    kind = array.dtype.kind
    if kind == "V" and array.dtype.fields is not None:
        raise TypeError(
            f"{where} has a structured dtype {array.dtype}; fingerprint each field "
            "as its own column instead"
        )
    if kind in ("O", "T"):  # Python objects, numpy variable-width strings
        return {"encoding": "object"}, lambda h: _write_objects(h, array, where)
    canon = array.dtype.newbyteorder("<")
    return {"encoding": "raw", "storage": canon.str}, lambda h: _write_raw(h, array, canon)


def _json_label(label: Any) -> Any:
    """A column label as JSON that keeps its type apart (``1`` vs ``"1"``, tuples)."""
    if isinstance(label, np.generic):
        label = label.item()
    if label is None or isinstance(label, (str, bool, int)):
        return label
    if isinstance(label, float):
        return label if np.isfinite(label) else {"float": repr(label)}
    if isinstance(label, tuple):
        return {"tuple": [_json_label(item) for item in label]}
    return {"type": type(label).__qualname__, "str": str(label)}


# -- raw payloads -----------------------------------------------------------------------------


def _write_raw(h: hashlib._Hash, array: NDArray[Any], canon: np.dtype[Any]) -> None:
    """Stream the C-order bytes of ``array`` as ``canon``, copying at most one block at a time."""
    if array.dtype == canon and array.flags.c_contiguous:
        flat = array.reshape(-1).view(np.uint8).data
        for start in range(0, len(flat), CHUNK_BYTES):
            h.update(flat[start : start + CHUNK_BYTES])
        return
    for block in _row_blocks(array):
        contiguous = np.ascontiguousarray(block, dtype=canon)
        h.update(contiguous.reshape(-1).view(np.uint8).data)


def _row_blocks(array: NDArray[Any]) -> Iterator[NDArray[Any]]:
    """Blocks of leading-axis rows of about CHUNK_BYTES, in C order (views, no copies)."""
    if array.ndim == 0:
        yield array.reshape(1)
        return
    row_bytes = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    if array.ndim > 1 and row_bytes > CHUNK_BYTES:
        for row in array:
            yield from _row_blocks(row)
        return
    rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, array.shape[0], rows):
        yield array[start : start + rows]


# -- object payloads --------------------------------------------------------------------------


def _write_objects(h: hashlib._Hash, array: NDArray[Any], where: str) -> None:
    flat = np.ravel(array)
    if flat.dtype.kind == "T":
        flat = flat.astype(object)
    for start in range(0, len(flat), OBJECT_BLOCK):
        block = flat[start : start + OBJECT_BLOCK]
        for piece in _encode_block(block, start, where):
            h.update(piece)


def _encode_block(block: NDArray[Any], offset: int, where: str) -> list[Any]:
    """The pieces hashed for one block of Python objects (text form when possible)."""
    values = block.tolist()
    try:
        text = "\x00".join(values)  # fast path: every value is a str
    except TypeError:
        pass
    else:
        if text.count("\x00") == len(values) - 1:  # and none holds a NUL: split is exact
            return [_TEXT_BLOCK, text.encode("utf-8", "surrogatepass")]
    tags = _block_tags(block, offset, where)
    lengths = np.zeros(len(values), dtype="<u8")
    data: list[bytes] = []
    for tag in np.unique(tags).tolist():
        selected = tags == tag
        group_lengths, group_data = _encode_group(tag, block[selected])
        lengths[selected] = group_lengths
        data.append(group_data)
    return [_TAGGED_BLOCK, tags, lengths, *data]


def _block_tags(block: NDArray[Any], offset: int, where: str) -> NDArray[np.uint8]:
    """The type tag of every value of a block (NaN and False told apart by value)."""
    types = list(map(type, block))
    tag_of = {value_type: _type_tag(value_type) for value_type in set(types)}
    for value_type, tag in tag_of.items():
        if tag < 0:
            row = offset + types.index(value_type)
            raise TypeError(
                f"cannot fingerprint a value of type {value_type.__qualname__!r} in {where} "
                f"at flat position {row}; convert the column to str or a numeric dtype"
            )
    # a dict lookup per value, not ``types == t``: numpy defers that comparison for
    # classes such as pandas' NAType and returns a bare False
    tags = np.fromiter(map(tag_of.__getitem__, types), dtype=np.uint8, count=len(types))
    floats = np.flatnonzero(tags == _FLOAT)
    if floats.size:
        values = np.asarray(block[floats].tolist(), dtype=np.float64)
        tags[floats[np.isnan(values)]] = _NAN
    bools = np.flatnonzero(tags == _TRUE)
    if bools.size:
        truth = np.asarray(block[bools].tolist(), dtype=bool)
        tags[bools[~truth]] = _FALSE
    return tags


def _encode_group(tag: int, values: NDArray[Any]) -> tuple[Any, bytes]:
    """Lengths and concatenated data of the values sharing one tag, in value order."""
    if tag == _STR:
        lengths = np.fromiter(map(len, values), dtype="<u8", count=len(values))
        return lengths, "".join(values).encode("utf-8", "surrogatepass")
    if tag == _FLOAT:
        return 8, np.asarray(values.tolist(), dtype="<f8").tobytes()
    if tag == _COMPLEX:
        return 16, np.asarray(values.tolist(), dtype="<c16").tobytes()
    if tag == _BYTES:
        encoded = [bytes(v) for v in values]
    elif tag == _INT or tag in _TEXT_TAGS:
        to_text = _TEXT_TAGS.get(tag, str)
        encoded = [to_text(v).encode("utf-8", "surrogatepass") for v in values]
    else:  # None, NaN, NA, NaT, False, True: the tag is the whole value
        return 0, b""
    return np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded)), b"".join(encoded)


@functools.lru_cache(maxsize=256)
def _type_tag(value_type: type) -> int:
    """Tag of a Python type in the ``object`` encoding, or -1 when it has none."""
    name, module = value_type.__name__, value_type.__module__
    checks: tuple[tuple[bool, int], ...] = (
        (value_type is type(None), _NONE),
        (module.startswith("pandas") and name == "NAType", _NA),
        (module.startswith("pandas") and name == "NaTType", _NAT),
        (issubclass(value_type, str), _STR),
        (issubclass(value_type, (bool, np.bool_)), _TRUE),
        (issubclass(value_type, (int, np.integer)), _INT),
        (issubclass(value_type, (float, np.floating)), _FLOAT),
        (issubclass(value_type, (complex, np.complexfloating)), _COMPLEX),
        (issubclass(value_type, (bytes, bytearray)), _BYTES),
        (issubclass(value_type, _dt.datetime), _DATETIME),
        (issubclass(value_type, _dt.date), _DATE),
        (issubclass(value_type, _dt.time), _TIME),
        (issubclass(value_type, _dt.timedelta), _TIMEDELTA),
        (module == "decimal" and name == "Decimal", _DECIMAL),  # no import of decimal
        (issubclass(value_type, (np.datetime64, np.timedelta64)), _NP_DATETIME),
    )
    return next((tag for matched, tag in checks if matched), -1)
