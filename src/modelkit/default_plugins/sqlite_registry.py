"""The ``sqlite`` registry backend: one SQLite file, safe for many threads and processes.

URL: ``sqlite:///absolute/path/registry.db`` (a :class:`~modelkit.Registry` opened on a
directory uses ``<dir>/registry.db``). The optional query ``?timeout=SECONDS`` (default 30)
bounds how long a writer waits for another one.

Each connection uses write-ahead logging (readers never block the writer), a busy timeout,
``synchronous=FULL`` and enforced foreign keys. Writes start with ``BEGIN IMMEDIATE``, which
takes the database's single write lock up front: writers queue instead of failing on a lock
upgrade, and a version number read inside the transaction cannot be taken by anyone else.
Timestamps are stored as ISO 8601 text in UTC with microseconds (``…T12:00:00.123456+00:00``),
which sorts chronologically; JSON columns hold text.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from modelkit._sql import SQLBackend, Tx
from modelkit.exceptions import RegistryError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from modelkit.registry import RegistryBackend

__all__ = ["SQLiteBackend", "register_registry_backends"]

DEFAULT_TIMEOUT = 30.0
"""Seconds a writer waits for the write lock before giving up."""


def _path_and_timeout(url: str) -> tuple[Path, float]:
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/registry.db)")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"sqlite URL {url!r} names host {parts.netloc!r}; SQLite databases are local files "
            "(sqlite:///absolute/path.db)"
        )
    path = unquote(parts.path)
    if not path or path in ("/", "/:memory:") or path.endswith("/"):
        raise ValueError(
            f"sqlite URL {url!r} names no database file; use sqlite:///absolute/path.db "
            "(in-memory databases are not supported: each thread gets its own connection)"
        )
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"timeout"})
    if unknown:
        raise ValueError(f"sqlite URL {url!r}: unknown option(s) {unknown}; known: ['timeout']")
    timeout = float(query.get("timeout", [DEFAULT_TIMEOUT])[-1])
    return Path(path).absolute(), timeout


class SQLiteBackend(SQLBackend):
    """Registry metadata in one SQLite file (see the module docstring)."""

    types: ClassVar[Mapping[str, str]] = {
        "timestamp": "TEXT",
        "json": "TEXT",
        "real": "REAL",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    }
    begin_write: ClassVar[str] = "BEGIN IMMEDIATE"
    begin_read: ClassVar[str] = "BEGIN"
    no_index: ClassVar[str] = "+"
    database_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    def __init__(self, url: str, **kwargs: Any) -> None:
        """Open (creating it and its directory if needed) the database a sqlite URL names."""
        self.path, self.timeout = _path_and_timeout(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__("sqlite://" + self.path.as_posix(), **kwargs)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            mode = self._enable_wal(conn)
        except sqlite3.Error as exc:
            raise RegistryError(
                f"cannot open the registry database {self.path}: {exc}; check the path and "
                "its permissions"
            ) from exc
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a filesystem without mmap
            conn.close()
            raise RegistryError(
                f"cannot use write-ahead logging for {self.path} (journal mode is {mode!r}); "
                "put the registry on a local filesystem"
            )
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch the database to write-ahead logging, waiting out concurrent openers.

        Changing the journal mode needs an exclusive lock, and SQLite answers "database is
        locked" at once, without its busy handler, while another connection holds one (as
        happens when several processes open a new registry together); so retry until the
        busy timeout. Once the file is in WAL mode (which persists) this is a plain read.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
                if mode.lower() == "wal":
                    return mode
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def table_exists(self, tx: Tx, table: str) -> bool:
        """Tell whether ``table`` exists."""
        return (
            tx.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
            is not None
        )

    def append_only(self, table: str) -> list[str]:
        """Triggers refusing UPDATE and DELETE on ``table``."""
        return [
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]

    def to_db_time(self, value: datetime) -> str:
        """ISO 8601 text in UTC with microseconds (fixed width, so it sorts by time)."""
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def from_db_time(self, value: Any) -> datetime:
        """Parse what :meth:`to_db_time` wrote."""
        return datetime.fromisoformat(value).astimezone(timezone.utc)


def _factory(url: str) -> RegistryBackend:
    return SQLiteBackend(url)


@hookimpl
def register_registry_backends(
    register: Callable[[str, Callable[[str], RegistryBackend]], None],
) -> None:
    """Register the ``sqlite`` scheme (also used for registry directories)."""
    register("sqlite", _factory)
