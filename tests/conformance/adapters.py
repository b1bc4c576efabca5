"""The ``store`` fixture of a conformance suite, once per adapter: a test class takes a suite and
one of these (``class TestSqliteStoreAlerts(OnSqliteStore, AlertsStoreSuite)``), and the
PostgreSQL one names the tables it empties first (``truncate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import text

from cadastre.store import PostgresStore, SqliteStore
from cadastre.testing import FakeClock, FakeStore


class OnFakeStore:
    @pytest.fixture
    def store(self, clock: FakeClock) -> FakeStore:
        return FakeStore(clock)


class OnSqliteStore:
    @pytest.fixture
    async def store(self, clock: FakeClock, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "var" / "cadastre.db", clock)
        await store.migrate()
        yield store
        await store.close()


class OnPostgresStore:
    truncate: ClassVar[str]  # what follows TRUNCATE: "alerts, outbox RESTART IDENTITY"

    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url, clock)
        async with store.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {self.truncate}"))
        yield store
        await store.close()
