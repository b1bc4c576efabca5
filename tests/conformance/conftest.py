"""A PostgreSQL database of its own for this test session.

The admin URL comes from ``CADASTRE_TEST_POSTGRES_URL`` (default: user postgres on loopback). The
session creates ``cadastre_test_<random>``, migrates it once and drops it at the end; each test
starts from empty tables (TRUNCATE), which is much faster than migrating per test. When
PostgreSQL does not answer, the tests fail in CI (``CI`` set) and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest

from cadastre.store import PostgresStore
from cadastre.store.postgres import create_database, drop_database
from tests.conftest import service_missing

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    return os.environ.get("CADASTRE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, migrated database that lives as long as the session."""
    admin = postgres_admin_url()
    name = f"cadastre_test_{secrets.token_hex(4)}"
    try:
        url = create_database(admin, name)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server is reported alike
        message = f"PostgreSQL is not reachable for the store tests ({type(exc).__name__}: {exc})"
        service_missing("postgres", message)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        drop_database(admin, name)


async def _migrate(url: str) -> None:
    store = PostgresStore(url)
    try:
        await store.migrate()
    finally:
        await store.close()
