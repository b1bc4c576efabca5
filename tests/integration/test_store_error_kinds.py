"""Errors say whether waiting helps: a missing table or database, or a wrong role, is Terminal;
only a busy database or a refused connection is Transient."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from cadastre.errors import StoreError, StoreUnavailable, Transient
from cadastre.store import PostgresStore, SqliteStore

ADMIN = os.environ.get(
    "CADASTRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


async def test_sqlite_without_its_tables_is_not_temporary(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "empty.db")  # never migrated
    try:
        with pytest.raises(StoreError) as caught:
            await store.create_tenant("acme", "Acme")
    finally:
        await store.close()
    assert not isinstance(caught.value, Transient)
    assert "no such table" in str(caught.value)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"database": "cadastre_no_such_database"}, "does not exist"),
        ({"username": "cadastre_no_such_role"}, "does not exist"),
    ],
)
async def test_postgres_wrong_names_are_terminal(change: dict[str, Any], words: str) -> None:
    store = PostgresStore(make_url(ADMIN).set(**change).render_as_string(hide_password=False))
    try:
        with pytest.raises(StoreError) as caught:
            await store.migrate()
    finally:
        await store.close()
    assert not isinstance(caught.value, Transient)
    assert words in str(caught.value)


@pytest.mark.postgres
async def test_a_refused_connection_is_temporary() -> None:
    store = PostgresStore(make_url(ADMIN).set(port=1).render_as_string(hide_password=False))
    try:
        with pytest.raises(StoreUnavailable):
            await store.migrate()
    finally:
        await store.close()
