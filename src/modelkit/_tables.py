"""Aligned text tables for the command line, and the cell formats they share.

:func:`render_table` lays rows out in columns separated by two spaces, each as wide as its
widest cell; the last column is never padded, so lines carry no trailing blanks.
:func:`cell` turns the values records hold into short, readable text: ``None`` as ``-``,
UTC times cut to the second (``2024-06-01T12:03:04Z``), floats to four significant figures,
mappings as ``key=value`` lists::

    print(render_table(("NAME", "LATEST"), [("churn", 3), ("fraud", None)], align=("<", ">")))
    # NAME   LATEST
    # churn       3
    # fraud       -
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

__all__ = ["MISSING", "cell", "format_float", "format_mapping", "format_time", "render_table"]

MISSING = "-"
"""What an absent value (``None``, an empty mapping) shows as."""

SEPARATOR = "  "
_ALIGNMENTS = ("<", ">")


def format_time(value: datetime) -> str:
    """A time as UTC ISO-8601 cut to the second: ``2024-06-01T12:03:04Z``.

    Naive times are taken to be UTC already (what the registry stores).
    """
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_float(value: float, digits: int = 4) -> str:
    """A float with ``digits`` significant figures (``0.9123``, ``1234``, ``1.5e-05``, ``nan``)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}g}"


def format_mapping(value: Mapping[object, object]) -> str:
    """``key=value`` pairs joined by ``", "``, values formatted by :func:`cell`; ``-`` if empty."""
    if not value:
        return MISSING
    return ", ".join(f"{key}={cell(item)}" for key, item in value.items())


def cell(value: object) -> str:  # noqa: PLR0911 - one return per kind of value
    """The text of one table cell for ``value``."""
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return format_mapping(value)
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or MISSING
    return str(value)


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    align: Sequence[str] | None = None,
) -> str:
    """Render ``headers`` and ``rows`` as aligned lines (no trailing newline).

    Every cell goes through :func:`cell`. ``align`` gives one of ``"<"`` (left, the default)
    or ``">"`` (right, for numbers) per column. Columns are separated by two spaces; the
    last column is padded only when right-aligned, and no line ends in blanks.

    Raises:
        ValueError: a row has another number of cells than ``headers``, or ``align`` is not
            one ``"<"``/``">"`` per column.
    """
    width = len(headers)
    if align is None:
        align = ("<",) * width
    if len(align) != width or any(a not in _ALIGNMENTS for a in align):
        raise ValueError(
            f"align must give '<' or '>' for each of the {width} columns, got {list(align)}"
        )
    table = [[str(h) for h in headers]]
    for number, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"row {number} has {len(row)} cells but the table has {width} columns "
                f"({', '.join(table[0])})"
            )
        table.append([cell(value) for value in row])
    widths = [max(len(line[i]) for line in table) for i in range(width)]
    last = width - 1
    lines = []
    for line in table:
        parts = [
            text if (i == last and align[i] == "<") else f"{text:{align[i]}{widths[i]}}"
            for i, text in enumerate(line)
        ]
        lines.append(SEPARATOR.join(parts).rstrip())
    return "\n".join(lines)
