"""The ``postgresql`` registry backend (psycopg 3), for registries shared by many hosts.

URL: any libpq URL, ``postgresql://user:password@host:5432/database?sslmode=require``
(``postgres://`` is accepted too). Install the ``postgres`` extra (``psycopg[binary]``). The
tables live in the connection's default schema; choose another with
``?options=-csearch_path%3Dmyschema``. Every host sharing the database must also share the
artifact store.

Each thread and process gets its own connection, in autocommit mode with explicit
transactions at READ COMMITTED; the session time zone is UTC. A write locks the model's row
(``SELECT … FOR UPDATE``) before reading the version counter or an alias, so concurrent
writers of one model queue while writers of different models proceed in parallel. Registers
hold a shared advisory lock that gc takes exclusively for each deletion, and schema migrations
run under their own advisory lock. Timestamps are ``TIMESTAMPTZ`` (microseconds), JSON
columns ``JSONB``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from modelkit._sql import SQLBackend, Tx
from modelkit.exceptions import MissingDependencyError, RegistryError
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from modelkit.registry import RegistryBackend

__all__ = ["PostgresBackend", "mask_password", "register_registry_backends"]

CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection unless the URL sets ``connect_timeout``."""


def mask_password(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError(
            "the PostgreSQL registry backend needs psycopg 3: pip install 'modelkit[postgres]'"
        ) from exc
    return psycopg


class PostgresBackend(SQLBackend):
    """Registry metadata in a PostgreSQL database (see the module docstring)."""

    placeholder: ClassVar[str] = "%s"
    types: ClassVar[Mapping[str, str]] = {
        "timestamp": "TIMESTAMPTZ",
        "json": "JSONB",
        "real": "DOUBLE PRECISION",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    }
    begin_write: ClassVar[str] = "BEGIN ISOLATION LEVEL READ COMMITTED"
    begin_read: ClassVar[str] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    for_update: ClassVar[str] = " FOR UPDATE"

    def __init__(self, url: str, **kwargs: Any) -> None:
        """Connect to the database a ``postgresql://`` URL names and migrate its schema."""
        psycopg = _import_psycopg()
        self.database_errors = (psycopg.Error,)  # type: ignore[misc]  # per instance: lazy import
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://…)")
        self._dsn = "postgresql://" + rest
        super().__init__(mask_password(self._dsn), **kwargs)

    def _connect(self) -> Any:
        psycopg = _import_psycopg()
        options: dict[str, Any] = {"autocommit": True, "application_name": "modelkit"}
        if not re.search(r"[?&]connect_timeout=", self._dsn):
            options["connect_timeout"] = CONNECT_TIMEOUT
        try:
            conn = psycopg.connect(self._dsn, **options)
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise RegistryError(
                f"cannot connect to the PostgreSQL registry {self.url}: {exc}; check that the "
                "server is running and the URL, user and password are right"
            ) from exc
        return conn

    def _describe_error(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {str(exc).strip()}"

    def table_exists(self, tx: Tx, table: str) -> bool:
        """Tell whether ``table`` exists in the schema new tables go to.

        A catalog *query* (a fresh snapshot per statement) rather than ``to_regclass``, whose
        cached "no such relation" can outlive another session's commit we waited for.
        """
        row = tx.one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables "
            "WHERE schemaname = current_schema() AND tablename = ?)",
            (table,),
        )
        return bool(row and row[0])

    def lock(self, tx: Tx, key: int, *, shared: bool) -> None:
        """Take a transaction-scoped advisory lock."""
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        tx.execute(f"SELECT {function}(?)", (key,))

    def append_only(self, table: str) -> list[str]:
        """A trigger function and triggers refusing UPDATE, DELETE and TRUNCATE on ``table``."""
        return [
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$",
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
        ]

    def to_db_json(self, value: Any) -> Any:
        """Wrap for a JSONB parameter."""
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def to_db_rows(self, value: list[Any]) -> Any:
        """Wrap recorded rows for a JSONB parameter, encoded fast (see ``rows_json``)."""
        from psycopg.types.json import Jsonb

        from modelkit._json import rows_json

        return Jsonb(value, dumps=rows_json)

    def from_db_time(self, value: Any) -> datetime:
        """TIMESTAMPTZ values arrive as aware datetimes; normalise to ``timezone.utc``."""
        assert isinstance(value, datetime)
        return value.astimezone(timezone.utc)


def _factory(url: str) -> RegistryBackend:
    return PostgresBackend(url)


@hookimpl
def register_registry_backends(
    register: Callable[[str, Callable[[str], RegistryBackend]], None],
) -> None:
    """Register the ``postgresql`` and ``postgres`` schemes."""
    register("postgresql", _factory)
    register("postgres", _factory)
