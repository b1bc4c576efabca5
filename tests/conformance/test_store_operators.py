"""``OperatorsStoreSuite`` (console operators and sessions, issue 9) against every store adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cadastre.store import PostgresStore, SqliteStore
from cadastre.testing import FakeClock, FakeStore
from cadastre.testing.store_operators_suite import OperatorsStoreSuite


class TestFakeStoreOperators(OperatorsStoreSuite):
    @pytest.fixture
    def store(self, clock: FakeClock) -> FakeStore:
        return FakeStore(clock)


class TestSqliteStoreOperators(OperatorsStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "var" / "cadastre.db", clock)
        await store.migrate()
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresStoreOperators(OperatorsStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url, clock)
        async with store.engine.begin() as conn:
            await conn.execute(text("TRUNCATE operators, operator_sessions, audit_log"))
        yield store
        await store.close()
