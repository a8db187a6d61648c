"""Progress of a batch job on a terminal: a tqdm bar when installed, else one updating line."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]

_REFRESH = 0.5
"""Seconds between redraws of the plain progress line."""


def _rate(rows: float, seconds: float) -> str:
    per_second = rows / seconds if seconds > 0 else 0.0
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M rows/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k rows/s"
    return f"{per_second:.0f} rows/s"


class Progress:
    """Rows done, rows/s and ETA on ``stream`` (stderr by default), when ``enabled``.

    ``enabled=None`` shows progress only when ``stream`` is a terminal. Uses tqdm (extra
    ``progress``) when it is installed, else redraws one line with ``\\r``.
    """

    def __init__(
        self,
        *,
        total: int | None,
        initial: int = 0,
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = total
        self.done = initial
        self.initial = initial
        self.started = time.perf_counter()
        self.drawn = 0.0
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self.bar = None
            else:
                self.bar = tqdm(
                    total=total,
                    initial=initial,
                    unit=" rows",
                    unit_scale=True,
                    file=self.stream,
                    dynamic_ncols=True,
                )

    def update(self, rows: int) -> None:
        """Count ``rows`` more rows done."""
        self.done += rows
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.perf_counter()
        if now - self.drawn >= _REFRESH:
            self.drawn = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        """``1,200,000 / 3,000,000 rows  840.1k rows/s  ETA 2s`` (what the plain bar shows)."""
        elapsed = time.perf_counter() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        text = f"{self.done:,}"
        if self.total:
            text += f" / {self.total:,}"
        text += f" rows  {_rate(self.done - self.initial, elapsed)}"
        if self.total and rate > 0 and self.total > self.done:
            text += f"  ETA {(self.total - self.done) / rate:.0f}s"
        return text

    def close(self) -> None:
        """Finish the bar (the caller prints the summary line)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            return
        self.stream.write("\r" + self.line() + "\n")
        self.stream.flush()
