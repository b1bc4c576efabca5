"""The store conformance suite against every adapter, plus what only a real database can show:
the append-only audit log refuses changes, tampering is found and named by its entry, and the bulk
methods send a handful of statements however many rows they carry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope
from cadastre.errors import StoreError
from cadastre.ports import AuditDraft, ExternalRef, FieldProvenance, RecordWrite
from cadastre.store import PostgresStore, SqlAlchemyStore, SqliteStore
from cadastre.store.tables import TABLE_NAMES
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.testing.store_idempotency_suite import IdempotencyStoreSuite
from cadastre.testing.store_suite import StoreSuite
from cadastre.testing.store_writes_suite import WritesStoreSuite


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

    async def test_a_read_only_unit_of_work_does_not_wait_for_a_writer(
        self, store: SqlAlchemyStore
    ) -> None:
        async with store.unit_of_work("acme") as uow:
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.commit()
        async with store.unit_of_work("acme") as writer:
            await writer.records.put("Listing", "L1", {"n": 2}, expected_version=1)
            # the writer holds its lock; a reader sees the last committed state at once
            async with store.unit_of_work("acme", read_only=True) as reader:
                seen = await asyncio.wait_for(reader.records.get("Listing", "L1"), timeout=5)
            await writer.commit()
        assert seen is not None
        assert seen.data == {"n": 1}

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

    async def test_bulk_methods_send_a_constant_number_of_statements(
        self, store: SqlAlchemyStore
    ) -> None:
        n = 200
        ids = [f"L{i:03}" for i in range(n)]
        events = [
            EventEnvelope(source="/mls", type="cadastre.listing.updated.v1", subject=id,
                          time=EPOCH, tenant="acme", data={})
            for id in ids
        ]  # fmt: skip
        results = [
            ApplyResult(tenant="acme", entity="Listing", canonical_id=id, idempotency_key=id,
                        applied=[], version=1, created=True, event_id=None)
            for id in ids
        ]  # fmt: skip
        provenance = [
            FieldProvenance("Listing", id, "n", "mls", None, None, None, 1.0, EPOCH) for id in ids
        ]
        refs = [ExternalRef("mls", "c", "Listing", f"X{id}", id) for id in ids]
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(store.engine.sync_engine, "before_cursor_execute", record)
        try:
            async with store.unit_of_work("acme") as uow:
                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "records.put_many (new)": lambda: uow.records.put_many(
                        [RecordWrite("Listing", id, {"n": 1}, 0) for id in ids]
                    ),
                    "records.put_many (update)": lambda: uow.records.put_many(
                        [RecordWrite("Listing", id, {"n": 2}, 1) for id in ids]
                    ),
                    "records.get_many": lambda: uow.records.get_many("Listing", ids),
                    "records.get_many (for_update)": lambda: uow.records.get_many(
                        "Listing", ids, for_update=True
                    ),
                    "provenance.record": lambda: uow.provenance.record(provenance),
                    "provenance.for_records": lambda: uow.provenance.for_records("Listing", ids),
                    "xref.link_many": lambda: uow.xref.link_many(refs),
                    "xref.resolve_many": lambda: uow.xref.resolve_many(
                        "mls", "c", "Listing", [r.external_id for r in refs]
                    ),
                    "outbox.add_many": lambda: uow.outbox.add_many(events),
                    "audit.append_many": lambda: uow.audit.append_many(
                        [AuditDraft("mls", "change.applied")] * n
                    ),
                    "applied.put_many": lambda: uow.applied.put_many(results),
                    "applied.get_many": lambda: uow.applied.get_many(ids),
                }
                await uow.records.count()  # the transaction has begun before counting starts
                counted = {}
                for name, call in calls.items():
                    statements.clear()
                    await call()
                    counted[name] = len(statements)
                await uow.commit()
        finally:
            event.remove(store.engine.sync_engine, "before_cursor_execute", record)
        # the audit chain is locked, then its head read, then the entries inserted; PostgreSQL
        # takes the lock with a statement of its own (SQLite holds it since BEGIN IMMEDIATE)
        audit = 3 if isinstance(store, PostgresStore) else 2
        expected = {name: audit if name.startswith("audit") else 1 for name in counted}
        # provenance is one JSON row per record: the rows are read, merged, then upserted
        expected["provenance.record"] = 2
        assert counted == expected


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


# ---------------------------------------------------------------- API idempotency keys (issue 8)


class TestFakeStoreIdempotency(IdempotencyStoreSuite):
    @pytest.fixture
    def store(self, clock: FakeClock) -> FakeStore:
        return FakeStore(clock)


class TestSqliteStoreIdempotency(IdempotencyStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "var" / "cadastre.db", clock)
        await store.migrate()
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresStoreIdempotency(IdempotencyStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url, clock)
        async with store.engine.begin() as conn:
            await conn.execute(text("TRUNCATE api_idempotency"))
        yield store
        await store.close()


# ---------------------------------------------------------------- write-back (issue 8)


class TestFakeStoreWrites(WritesStoreSuite):
    @pytest.fixture
    def store(self, clock: FakeClock) -> FakeStore:
        return FakeStore(clock)


class TestSqliteStoreWrites(WritesStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "var" / "cadastre.db", clock)
        await store.migrate()
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresStoreWrites(WritesStoreSuite):
    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url, clock)
        async with store.engine.begin() as conn:
            await conn.execute(
                text("TRUNCATE writes, write_targets, writeback_switches, writeback_echoes")
            )
        yield store
        await store.close()
