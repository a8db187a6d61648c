"""Fixtures for integration tests: a scratch PostgreSQL database per test.

``postgres_url`` creates a database with a random name on the server named by
``MODELKIT_TEST_POSTGRES`` (an admin URL; default ``postgresql://postgres@127.0.0.1:5432/postgres``)
and drops it afterwards. When the server cannot be reached the test is skipped, or fails if
the ``CI`` environment variable is set (CI must run the PostgreSQL tests).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_ENV = "MODELKIT_TEST_POSTGRES"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_connection(admin_url: str):  # type: ignore[no-untyped-def]
    try:
        import psycopg
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc})"
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5), None
    except psycopg.Error as exc:
        return None, f"PostgreSQL is unreachable at {admin_url} ({str(exc).strip()})"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    admin_url = os.environ.get(ADMIN_ENV, DEFAULT_ADMIN_URL)
    conn, problem = _admin_connection(admin_url)
    if conn is None:
        message = f"{problem}; set {ADMIN_ENV} to an admin URL of a running server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"modelkit_test_{uuid.uuid4().hex[:16]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
