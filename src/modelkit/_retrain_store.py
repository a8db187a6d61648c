"""Retraining decisions and retraining leases, as the registry stores them.

Two records and the :class:`~modelkit.Registry` methods that store and read them
(:class:`RetrainStoreMixin`, a base class of ``Registry``), with their SQL
(:class:`RetrainSQLMixin`, a base class of the SQL backend):

- a :class:`RetrainEvent` is one decision of a retraining loop (triggered, trained, rejected,
  promoted, rolled back, skipped, ...) with its numbers (metric values, row counts, p-value,
  margin, versions, trigger reasons), in an append-only log per model;
- a :class:`Lease` gives one holder the right to retrain one model until it expires, so that
  one retrain per model runs at a time across processes and hosts. It is acquired
  atomically (an insert, or an update of an expired or own lease, in one statement),
  renewed while the work goes on and released at the end; a crashed holder's lease expires.

Lease times come from the clocks of the hosts that take them: keep hosts' clocks in sync
(NTP) and leases much longer than the expected skew.
"""

# ruff: noqa: S608
# (S608: queries interpolate only module constants; every value is a bound parameter.)
from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from modelkit.exceptions import RegistryError, UsageError

if TYPE_CHECKING:
    from modelkit._sql import Tx
    from modelkit.registry import RegistryBackend

__all__ = [
    "EVENT_KINDS",
    "Lease",
    "RetrainEvent",
    "RetrainSQLMixin",
    "RetrainStore",
    "RetrainStoreMixin",
]

EVENT_KINDS = (
    "triggered",
    "skipped",
    "trained",
    "failed",
    "rejected",
    "pending",
    "promoted",
    "approved",
    "kept",
    "rolled_back",
)
"""What a :class:`RetrainEvent` records: a trigger fired (``triggered``) or fired but was
held back by the cooldown, the frequency limit, another holder's lease or a hook's veto
(``skipped``); a challenger was trained (``trained``) or training failed (``failed``); the
gate rejected it (``rejected``), left it for a person to approve (``pending``) or passed it
and the alias moved (``promoted``); a person approved it (``approved``); the watch window
after a promotion kept the new champion (``kept``) or moved the alias back
(``rolled_back``)."""

MAX_HOLDER = 200
"""Longest lease holder name, in characters."""


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise UsageError(f"expected a timezone-aware datetime, got {value!r}")
    return value.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _optional_version(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{attribute.name} must be a version number >= 1 or None, got {value!r}")


def _json_details(value: Any) -> dict[str, Any]:
    """A JSON-compatible copy (NaN and infinities become ``None``: JSON has no such numbers)."""
    if not isinstance(value, Mapping):
        raise UsageError(f"event details must be a mapping, got {type(value).__name__}")

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, Mapping):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        if hasattr(item, "item") and callable(item.item):  # a numpy scalar
            return clean(item.item())
        return item

    try:
        return dict(json.loads(json.dumps(clean(dict(value)), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"event details must be JSON-compatible: {exc}") from exc


def _check_kind(_inst: object, _attribute: object, value: Any) -> None:
    if value not in EVENT_KINDS:
        raise UsageError(f"kind must be one of {', '.join(EVENT_KINDS)}, got {value!r}")


@attrs.frozen(kw_only=True)
class RetrainEvent:
    """One decision of a retraining loop, with the numbers it was taken on.

    ``kind`` is one of :data:`EVENT_KINDS`; ``name`` the model; ``alias`` the alias the loop
    follows (``"production"``); ``champion`` the version the alias pointed to, ``challenger``
    the version trained (``None`` when none was); ``actor`` who decided (``user@host``, or the
    approver); ``reason`` one line a person reads; ``details`` the numbers (the gate's metric
    values, ``n``, ``p_value``, ``margin``, the trigger reasons, the training rows, ...).
    ``id`` orders events (``None`` before it is stored).
    """

    id: int | None = None
    name: str
    kind: str = attrs.field(validator=_check_kind)
    at: datetime = attrs.field(converter=_utc)
    alias: str | None = None
    champion: int | None = attrs.field(default=None, validator=_optional_version)
    challenger: int | None = attrs.field(default=None, validator=_optional_version)
    actor: str = ""
    reason: str | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_json_details)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (time as ISO 8601 UTC)."""
        out = attrs.asdict(self)
        out["at"] = self.at.isoformat(timespec="microseconds")
        out["details"] = dict(self.details)
        return out


@attrs.frozen(kw_only=True)
class Lease:
    """The right of ``holder`` to retrain model ``name`` until ``expires_at``."""

    name: str
    holder: str
    acquired_at: datetime = attrs.field(converter=_utc)
    expires_at: datetime = attrs.field(converter=_utc)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the lease is over at ``now`` (default: the current time)."""
        return (now or _now()) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "holder": self.holder,
            "acquired_at": self.acquired_at.isoformat(timespec="microseconds"),
            "expires_at": self.expires_at.isoformat(timespec="microseconds"),
        }


@runtime_checkable
class RetrainStore(Protocol):
    """The backend methods retraining needs; the built-in SQL backends have them.

    A third-party :class:`~modelkit.registry.RegistryBackend` that lacks them can still
    version models, but :meth:`Registry.acquire_lease` and the event methods refuse to run.
    """

    def record_retrain_event(self, event: RetrainEvent) -> RetrainEvent:
        """Store an event; return it with its ``id`` (increasing in insertion order)."""

    def list_retrain_events(
        self,
        name: str | None,
        kinds: Sequence[str] | None,
        since: datetime | None,
        limit: int | None,
    ) -> list[RetrainEvent]:
        """Return events (of one model and some kinds, or all) at or after ``since``, newest
        first, at most ``limit``."""

    def acquire_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        """Take the lease of ``name`` if it is free, expired or already ``holder``'s; atomically."""

    def release_lease(self, name: str, holder: str) -> bool:
        """Drop ``holder``'s lease of ``name``; tell whether there was one."""

    def get_lease(self, name: str) -> Lease | None:
        """Return the lease of ``name`` (expired or not), or ``None``."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise UsageError(f"a model name is a non-empty string, got {name!r}")
    return name


def _check_holder(holder: object) -> str:
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER:
        raise UsageError(f"a lease holder is a string of 1-{MAX_HOLDER} characters, got {holder!r}")
    return holder


def _check_limit(limit: object) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit must be a non-negative integer or None, got {limit!r}")


class RetrainStoreMixin:
    """The :class:`~modelkit.Registry` methods for retraining events and leases."""

    backend: RegistryBackend

    def _retrain_store(self) -> RetrainStore:
        if not isinstance(self.backend, RetrainStore):
            raise RegistryError(
                f"the registry backend {type(self.backend).__name__} cannot store retraining "
                "events and leases; use the sqlite or postgresql backend"
            )
        return self.backend

    def record_retrain_event(
        self,
        name: str,
        kind: str,
        *,
        alias: str | None = None,
        champion: int | None = None,
        challenger: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> RetrainEvent:
        """Store one retraining decision of model ``name``; return it with its id.

        ``kind`` is one of :data:`EVENT_KINDS`; ``details`` a JSON-compatible mapping of the
        numbers behind it (NaN is stored as ``null``); ``actor`` defaults to
        ``$MODELKIT_ACTOR`` or ``user@host``.
        """
        from modelkit.registry import _default_actor

        event = RetrainEvent(
            name=_check_name(name),
            kind=kind,
            at=_now() if at is None else at,
            alias=alias,
            champion=champion,
            challenger=challenger,
            actor=actor or _default_actor(),
            reason=reason,
            details=details or {},
        )
        return self._retrain_store().record_retrain_event(event)

    def retrain_events(
        self,
        name: str | None = None,
        *,
        kind: str | Sequence[str] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> builtins.list[RetrainEvent]:
        """Return stored retraining decisions, newest first: of model ``name`` (default all),
        of one kind or several, at or after ``since``, at most ``limit``."""
        kinds = [kind] if isinstance(kind, str) else None if kind is None else list(kind)
        for item in kinds or ():
            _check_kind(None, None, item)
        _check_limit(limit)
        return self._retrain_store().list_retrain_events(
            None if name is None else _check_name(name),
            kinds,
            None if since is None else _utc(since),
            limit,
        )

    def acquire_lease(self, name: str, holder: str, *, seconds: float) -> Lease | None:
        """Take (or renew) the retraining lease of model ``name`` for ``seconds``.

        Returns the lease when ``holder`` has it now, ``None`` when someone else holds an
        unexpired one. Atomic across processes and hosts sharing the registry database.
        """
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise UsageError(f"a lease lasts a number of seconds > 0, got {seconds!r}")
        name, holder = _check_name(name), _check_holder(holder)
        now = _now()
        expires = now + timedelta(seconds=float(seconds))
        if not self._retrain_store().acquire_lease(name, holder, now, expires):
            return None
        return Lease(name=name, holder=holder, acquired_at=now, expires_at=expires)

    def renew_lease(self, name: str, holder: str, *, seconds: float) -> Lease:
        """Extend ``holder``'s lease of ``name``; RegistryError if another holder took it."""
        lease = self.acquire_lease(name, holder, seconds=seconds)
        if lease is None:
            current = self.lease(name)
            raise RegistryError(
                f"the retraining lease of {name!r} is held by "
                f"{current.holder if current else 'nobody'}, not {holder!r}: it expired and "
                "was taken; stop this retrain"
            )
        return lease

    def release_lease(self, name: str, holder: str) -> bool:
        """Give up ``holder``'s lease of ``name``; tell whether it held one."""
        return self._retrain_store().release_lease(_check_name(name), _check_holder(holder))

    def lease(self, name: str) -> Lease | None:
        """Return the retraining lease of ``name`` (possibly expired), or ``None``."""
        return self._retrain_store().get_lease(_check_name(name))


# -- SQL ------------------------------------------------------------------------------------

RETRAIN_TABLES = (
    """CREATE TABLE modelkit_retrain_events (
        id {serial},
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('triggered', 'skipped', 'trained', 'failed',
            'rejected', 'pending', 'promoted', 'approved', 'kept', 'rolled_back')),
        at {timestamp} NOT NULL,
        alias TEXT,
        champion INTEGER,
        challenger INTEGER,
        actor TEXT NOT NULL,
        reason TEXT,
        details {json} NOT NULL
    )""",
    "CREATE INDEX modelkit_retrain_events_by_name ON modelkit_retrain_events (name, id)",
    """CREATE TABLE modelkit_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at {timestamp} NOT NULL,
        expires_at {timestamp} NOT NULL
    )""",
)
"""Schema 5: the retraining decisions (append-only) and the retraining leases."""

_EV_COLS = "id, name, kind, at, alias, champion, challenger, actor, reason, details"


def create_retrain_tables(tx: Tx) -> None:
    """Migration 5: create :data:`RETRAIN_TABLES` (the event log refuses UPDATE and DELETE)."""
    for statement in RETRAIN_TABLES:
        tx.execute(tx.backend.ddl(statement))
    for statement in tx.backend.append_only("modelkit_retrain_events"):
        tx.execute(statement)


class RetrainSQLMixin:
    """:class:`RetrainStore` over the SQL backend's transactions (a base class of it)."""

    def _retrain_event(self, row: Sequence[Any]) -> RetrainEvent:
        backend: Any = self
        return RetrainEvent(
            id=int(row[0]),
            name=row[1],
            kind=row[2],
            at=backend.from_db_time(row[3]),
            alias=row[4],
            champion=None if row[5] is None else int(row[5]),
            challenger=None if row[6] is None else int(row[6]),
            actor=row[7],
            reason=row[8],
            details=backend.from_db_json(row[9]),
        )

    def record_retrain_event(self, event: RetrainEvent) -> RetrainEvent:
        """See :meth:`RetrainStore.record_retrain_event`."""
        backend: Any = self
        with backend.transaction(write=True) as tx:
            row = tx.one(
                "INSERT INTO modelkit_retrain_events "
                "(name, kind, at, alias, champion, challenger, actor, reason, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    event.name,
                    event.kind,
                    backend.to_db_time(event.at),
                    event.alias,
                    event.champion,
                    event.challenger,
                    event.actor,
                    event.reason,
                    backend.to_db_json(dict(event.details)),
                ),
            )
        assert row is not None
        return attrs.evolve(event, id=int(row[0]))

    def list_retrain_events(
        self,
        name: str | None,
        kinds: Sequence[str] | None,
        since: datetime | None,
        limit: int | None,
    ) -> list[RetrainEvent]:
        """See :meth:`RetrainStore.list_retrain_events`."""
        backend: Any = self
        clauses: list[str] = []
        params: list[Any] = []
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if kinds is not None:
            if not kinds:
                return []
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if since is not None:
            clauses.append("at >= ?")
            params.append(backend.to_db_time(since))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        query = f"SELECT {_EV_COLS} FROM modelkit_retrain_events {where}ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with backend.transaction(write=False) as tx:
            return [self._retrain_event(row) for row in tx.all(query, params)]

    def acquire_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        """See :meth:`RetrainStore.acquire_lease`: one ``INSERT … ON CONFLICT … WHERE``."""
        backend: Any = self
        with backend.transaction(write=True) as tx:
            row = tx.one(
                "INSERT INTO modelkit_leases (name, holder, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "holder = excluded.holder, expires_at = excluded.expires_at, "
                "acquired_at = CASE WHEN modelkit_leases.holder = excluded.holder "
                "THEN modelkit_leases.acquired_at ELSE excluded.acquired_at END "
                "WHERE modelkit_leases.holder = excluded.holder "
                "OR modelkit_leases.expires_at <= ? RETURNING holder",
                (
                    name,
                    holder,
                    backend.to_db_time(now),
                    backend.to_db_time(expires_at),
                    backend.to_db_time(now),
                ),
            )
        return row is not None and row[0] == holder

    def release_lease(self, name: str, holder: str) -> bool:
        """See :meth:`RetrainStore.release_lease`."""
        backend: Any = self
        with backend.transaction(write=True) as tx:
            cursor = tx.execute(
                "DELETE FROM modelkit_leases WHERE name = ? AND holder = ?", (name, holder)
            )
            return int(cursor.rowcount) > 0

    def get_lease(self, name: str) -> Lease | None:
        """See :meth:`RetrainStore.get_lease`."""
        backend: Any = self
        with backend.transaction(write=False) as tx:
            row = tx.one(
                "SELECT name, holder, acquired_at, expires_at FROM modelkit_leases WHERE name = ?",
                (name,),
            )
        if row is None:
            return None
        return Lease(
            name=row[0],
            holder=row[1],
            acquired_at=backend.from_db_time(row[2]),
            expires_at=backend.from_db_time(row[3]),
        )
