"""A PostgreSQL database of a test's own, created empty and dropped after it (the vault tests
migrate it themselves, as a hub does on start)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from cadastre.store.postgres import create_database, drop_database
from tests.conformance.conftest import postgres_admin_url
from tests.conftest import service_missing


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new, empty database; fails in CI (skips elsewhere) when PostgreSQL is down."""
    name = f"cadastre_test_{secrets.token_hex(4)}"
    try:
        url = create_database(postgres_admin_url(), name)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server is reported alike
        service_missing("postgres", f"PostgreSQL is not reachable ({type(exc).__name__})")
    try:
        yield url
    finally:
        drop_database(postgres_admin_url(), name)
