"""What a retraining loop does: :class:`RetrainPolicy`, its :class:`Gate` and :class:`Schedule`.

A policy says *when* to retrain (triggers, combined with "any": a drift alert, a performance
alert or a measured drop, a schedule, enough new labelled rows; held back by a cooldown and a
maximum frequency), *on what* (the recent labelled window of the feedback store, a callable,
or a file / SQL source), *how* (refit a clone of the champion, or a user function) and *how to
judge* the challenger (:class:`Gate`: the same newest held-out rows score both models; promote
on a margin confirmed by a paired test, or wait for a person's approval).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from modelkit.exceptions import UsageError
from modelkit.retrain._stats import GATE_METRICS

__all__ = ["APPROVALS", "Gate", "RetrainPolicy", "Schedule"]

APPROVALS = ("auto", "manual")
"""``auto``: a challenger that passes the gate is promoted at once; ``manual``: it waits for
``modelkit models approve NAME VERSION``."""


def _number(
    low: float, *, strict: bool = False, high: float = math.inf
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if strict else value >= low) and value <= high
        if not ok:
            bound = f"> {low}" if strict else f">= {low}"
            upper = f" and <= {high}" if math.isfinite(high) else ""
            raise UsageError(f"{attribute.name} must be a number {bound}{upper}, got {value!r}")

    return check


def _optional(
    check: Callable[[object, attrs.Attribute[Any], Any], None],
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def wrapped(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check(inst, attribute, value)

    return wrapped


def _count(low: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{attribute.name} must be an integer >= {low}, got {value!r}")

    return check


# -- schedule --------------------------------------------------------------------------------

_NICKNAMES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))
_PART_RE = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?\Z")


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _PART_RE.match(part)
        if match is None:
            raise UsageError(
                f"schedule field {name} {text!r}: use *, N, N-M, */S, N-M/S or a comma list"
            )
        span, step = match.group(1), int(match.group(2) or 1)
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            start, stop = (int(v) for v in span.split("-"))
        else:
            start = stop = int(span)
        if not low <= start <= stop <= high or step < 1:
            raise UsageError(f"schedule field {name} {text!r}: values run from {low} to {high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@attrs.frozen
class Schedule:
    """A cron-like schedule: ``"*/15 * * * *"`` (minute hour day month weekday, UTC), or
    ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``.

    Each field takes ``*``, ``N``, ``N-M``, ``*/S``, ``N-M/S`` or a comma list of those;
    weekday 0 is Sunday. When both day and weekday are restricted, either may match (as in
    cron).
    """

    spec: str
    _sets: tuple[frozenset[int], ...] = attrs.field(init=False, repr=False, eq=False)
    _restricted: tuple[bool, bool] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.spec, str):
            raise UsageError(f"a schedule is a string like '0 * * * *', got {self.spec!r}")
        text = _NICKNAMES.get(self.spec.strip().lower(), self.spec)
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise UsageError(
                f"schedule {self.spec!r} has {len(parts)} field(s); write five "
                "(minute hour day month weekday, e.g. '0 3 * * *') or @hourly / @daily"
            )
        sets = tuple(
            _parse_field(part, name, low, high)
            for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
        )
        object.__setattr__(self, "_sets", sets)
        object.__setattr__(self, "_restricted", (parts[2] != "*", parts[4] != "*"))

    def matches(self, when: datetime) -> bool:
        """Whether the minute ``when`` falls in is one the schedule names (UTC)."""
        when = when.astimezone(timezone.utc)
        minute, hour, _, month, _ = self._sets
        return (
            when.minute in minute
            and when.hour in hour
            and when.month in month
            and self._day_ok(when)
        )

    def next_after(self, when: datetime) -> datetime:
        """The first scheduled minute strictly after ``when`` (UTC), within five years."""
        start = when.astimezone(timezone.utc).replace(second=0, microsecond=0)
        candidate = start + timedelta(minutes=1)
        limit = start + timedelta(days=5 * 366)
        while candidate <= limit:
            if candidate.month not in self._sets[3]:
                year, month = candidate.year + candidate.month // 12, candidate.month % 12 + 1
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_ok(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if candidate.hour not in self._sets[1]:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
                continue
            if self.matches(candidate):
                return candidate
            candidate += timedelta(minutes=1)
        raise UsageError(f"schedule {self.spec!r} never fires (check its day and month)")

    def _day_ok(self, when: datetime) -> bool:
        day_ok = when.day in self._sets[2]
        weekday_ok = (when.isoweekday() % 7) in self._sets[4]
        return (day_ok or weekday_ok) if all(self._restricted) else (day_ok and weekday_ok)


def _to_schedule(value: Any) -> float | Schedule | None:
    if value is None or isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        return Schedule(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"every must be a number of seconds > 0, got {value!r}")
        return float(value)
    raise UsageError(f"every is a number of seconds or a schedule like '0 3 * * *', got {value!r}")


# -- gate ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Gate:
    """How a challenger is judged against the champion.

    The newest ``holdout`` share of the labelled rows (at least ``min_holdout_rows``) is held
    out: neither model trains on it, both predict it. The challenger passes when it beats the
    champion on ``metric`` by at least ``margin`` (in the metric's units; errors count as
    better when lower) *and* a one-sided paired test says so at level ``alpha``: an exact
    McNemar mid-p test for ``accuracy``, a paired bootstrap (``n_resamples``, ``seed``)
    otherwise. ``positive`` is the positive class of a binary F1 (default: macro F1).
    """

    metric: str = attrs.field(default="accuracy", validator=attrs.validators.in_(GATE_METRICS))
    margin: float = attrs.field(default=0.0, validator=_number(0.0))
    alpha: float = attrs.field(default=0.05, validator=_number(0.0, strict=True, high=0.5))
    holdout: float = attrs.field(default=0.2, validator=_number(0.0, strict=True, high=0.9))
    min_holdout_rows: int = attrs.field(default=50, validator=_count(1))
    n_resamples: int = attrs.field(default=1000, validator=_count(100))
    seed: int = 0
    positive: Any = None

    def holdout_rows(self, n: int) -> int:
        """How many of ``n`` time-ordered rows are held out (the newest ones)."""
        return max(self.min_holdout_rows, math.ceil(self.holdout * n))


# -- policy ----------------------------------------------------------------------------------


def _check_data(_inst: object, _attribute: object, value: Any) -> None:
    if value is None or callable(value) or isinstance(value, str):
        return
    raise UsageError(
        "data is None (the recent labelled window of the feedback store), a callable "
        f"returning (X, y), or a CSV / Parquet path or database URL; got {value!r}"
    )


def _check_train(_inst: object, _attribute: object, value: Any) -> None:
    if value is not None and not callable(value):
        raise UsageError(f"train is a callable train(X, y) -> fitted estimator, got {value!r}")


@attrs.frozen(kw_only=True)
class RetrainPolicy:
    """When to retrain a served model, on what, how, and how to judge the result.

    *Triggers* (any one fires a retrain):

    - ``on_drift``: a drift alert of the model was stored since the last retrain;
    - ``on_performance``: a performance alert was stored since the last retrain;
    - ``performance_drop``: the champion's live ``gate.metric``, measured on at least
      ``min_rows`` labelled rows of the feedback store since the last retrain, is worse than
      its training-time value by at least this much;
    - ``every``: a number of seconds since the last retrain, or a :class:`Schedule` spec
      (``"0 3 * * *"``, ``"@daily"``);
    - ``min_new_labels``: this many labelled rows arrived since the champion was registered
      (and since the last retrain).

    *Limits*: no retrain within ``cooldown`` seconds of the previous one; at most
    ``max_retrains`` per ``max_retrains_window`` seconds. A trigger held back is recorded as a
    ``skipped`` event.

    *Data*: ``data=None`` reads the recent labelled window of the feedback store (rows whose
    inputs were recorded, their labels, ordered by prediction time): the newest
    ``window_rows``, at most ``window_seconds`` old, and with ``since_alert`` only rows
    predicted after the first alert that triggered the retrain (the new regime). Or a callable
    ``data() -> (X, y)``, or a CSV / Parquet path or database URL (with ``query``) whose
    ``target`` column holds the labels; rows are taken in time order, oldest first. A retrain
    needs at least ``min_rows`` rows.

    *Training*: ``train=None`` refits a clone of the champion's estimator (same parameters)
    through :func:`modelkit.train` (``cv`` evaluates it; the run is recorded and the artifact
    carries its profile); or ``train(X, y)`` returns a fitted estimator.

    *Judging*: :class:`Gate`; ``approval="manual"`` registers a passing challenger and waits
    for ``modelkit models approve``.

    *After a promotion*, once ``watch_rows`` newly labelled rows were served by the new
    champion, the old champion is scored on the same recorded inputs; if it is better by
    ``rollback_margin`` with the gate's test, the alias moves back (``watch_rows=0``: no
    watch).

    ``lease_seconds``: how long one retrain may hold the model's lease before another
    process may take over (renewed at each step).
    """

    on_drift: bool = True
    on_performance: bool = True
    performance_drop: float | None = attrs.field(
        default=None, validator=_optional(_number(0.0, strict=True))
    )
    every: float | Schedule | None = attrs.field(default=None, converter=_to_schedule)
    min_new_labels: int | None = attrs.field(default=None, validator=_optional(_count(1)))
    cooldown: float = attrs.field(default=3600.0, validator=_number(0.0))
    max_retrains: int | None = attrs.field(default=None, validator=_optional(_count(1)))
    max_retrains_window: float = attrs.field(default=86400.0, validator=_number(0.0, strict=True))
    data: str | Callable[[], tuple[Any, Any]] | None = attrs.field(
        default=None, validator=_check_data
    )
    query: str | None = None
    target: str | None = None
    window_rows: int = attrs.field(default=5000, validator=_count(2))
    window_seconds: float | None = attrs.field(
        default=None, validator=_optional(_number(0.0, strict=True))
    )
    since_alert: bool = False
    min_rows: int = attrs.field(default=200, validator=_count(2))
    train: Callable[[Any, Any], Any] | None = attrs.field(default=None, validator=_check_train)
    cv: int | str | Any = "holdout"
    gate: Gate = attrs.field(factory=Gate, validator=attrs.validators.instance_of(Gate))
    approval: str = attrs.field(default="auto", validator=attrs.validators.in_(APPROVALS))
    watch_rows: int = attrs.field(default=200, validator=_count(0))
    rollback_margin: float = attrs.field(default=0.0, validator=_number(0.0))
    lease_seconds: float = attrs.field(default=900.0, validator=_number(0.0, strict=True))

    def __attrs_post_init__(self) -> None:
        if isinstance(self.data, str) and self.data.strip() == "":
            raise UsageError("data is an empty string; name a file or a database URL")
        if isinstance(self.data, str) and self.target is None:
            raise UsageError(
                f"data {self.data!r} is a file or database: name its label column with target="
            )
        if self.query is not None and not isinstance(self.data, str):
            raise UsageError("query reads a database: give data='<database URL>' with it")
        if self.window_rows < self.min_rows:
            raise UsageError(
                f"window_rows ({self.window_rows}) must be >= min_rows ({self.min_rows})"
            )

    @property
    def triggers(self) -> tuple[str, ...]:
        """The names of the triggers this policy watches."""
        names = []
        if self.on_drift:
            names.append("drift")
        if self.on_performance:
            names.append("performance")
        if self.performance_drop is not None:
            names.append("performance_drop")
        if self.every is not None:
            names.append("schedule")
        if self.min_new_labels is not None:
            names.append("data_volume")
        return tuple(names)
