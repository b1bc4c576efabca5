"""The store conformance suite against every adapter, plus what only a real database can show:
the append-only audit log refuses changes, and tampering is found and named by its entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cadastre.errors import StoreError
from cadastre.store import PostgresStore, SqlAlchemyStore, SqliteStore
from cadastre.store.tables import TABLE_NAMES
from cadastre.testing import FakeClock, FakeStore
from cadastre.testing.store_suite import StoreSuite


class TestFakeStore(StoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[FakeStore]:
        store = FakeStore(clock)
        yield store
        await store.close()


class SqlStoreChecks:
    """Checks that need the database underneath a store."""

    async def tamper(self, store: SqlAlchemyStore, sql: str, **params: object) -> None:
        raise NotImplementedError

    async def _three_entries(self, store: SqlAlchemyStore) -> None:
        async with store.unit_of_work("acme") as uow:
            for i in range(3):
                await uow.audit.append(actor="cli", action="test.appended", detail={"i": i})
            await uow.commit()

    async def test_audit_log_refuses_update_and_delete(self, store: SqlAlchemyStore) -> None:
        await self._three_entries(store)
        for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
            with pytest.raises(StoreError, match="append-only"):
                async with store.unit_of_work("acme") as uow:
                    await uow.execute(text(sql))
        async with store.unit_of_work("acme") as uow:
            assert (await uow.audit.verify()).ok

    async def test_verify_names_the_tampered_entry(self, store: SqlAlchemyStore) -> None:
        await self._three_entries(store)
        await self.tamper(store, """UPDATE audit_log SET detail = '{"i": 99}' WHERE seq = 2""")
        async with store.unit_of_work("acme") as uow:
            report = await uow.audit.verify()
        assert (report.ok, report.first_bad_seq, report.entries) == (False, 2, 1)
        assert "hash mismatch" in (report.problem or "")

    async def test_verify_finds_a_broken_link_and_a_gap(self, store: SqlAlchemyStore) -> None:
        await self._three_entries(store)
        await self.tamper(
            store, "UPDATE audit_log SET prev_hash = :zeros WHERE seq = 3", zeros="0" * 64
        )
        async with store.unit_of_work("acme") as uow:
            report = await uow.audit.verify()
        assert (report.first_bad_seq, report.entries) == (3, 2)
        assert "broken link" in (report.problem or "")
        await self.tamper(store, "DELETE FROM audit_log WHERE seq >= 2")
        await self.tamper(store, "UPDATE audit_log SET seq = 3 WHERE seq = 1")
        async with store.unit_of_work("acme") as uow:
            report = await uow.audit.verify()
        assert (report.first_bad_seq, report.problem) == (1, "gap: expected entry 1, found entry 3")


class TestSqliteStore(StoreSuite, SqlStoreChecks):
    @pytest.fixture
    async def store(self, clock: FakeClock, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "var" / "cadastre.db", clock)
        await store.migrate()
        yield store
        await store.close()

    async def tamper(self, store: SqlAlchemyStore, sql: str, **params: object) -> None:
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            await conn.execute(text(sql), params)

    async def test_connection_settings(self, store: SqliteStore) -> None:
        async with store.engine.connect() as conn:
            settings = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        assert settings == ["wal", 1, 1, 10_000]  # synchronous 1 is NORMAL
        assert store.path.parent.is_dir()


@pytest.mark.postgres
class TestPostgresStore(StoreSuite, SqlStoreChecks):
    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url, clock)
        async with store.engine.begin() as conn:  # each test starts from empty tables
            await conn.execute(text(f"TRUNCATE {', '.join(TABLE_NAMES)} RESTART IDENTITY"))
        yield store
        await store.close()

    async def tamper(self, store: SqlAlchemyStore, sql: str, **params: object) -> None:
        # Ordinary triggers do not fire for a replication session: the bypass an attacker with
        # superuser rights has, and what the hash chain is there to catch.
        async with store.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(sql), params)
