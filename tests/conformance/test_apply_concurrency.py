"""``SyncEngine.apply`` under concurrent writers, against the real databases.

Two first-time changes for one external id race to create its record; identical changes race on
one idempotency key. The engine must end with one record, one ledger entry per key, the newest
value, and an intact audit chain - with no error surfacing to the callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from cadastre.contract import Change, Origin
from cadastre.ownership import load_registry
from cadastre.store import PostgresStore, SqlAlchemyStore, SqliteStore
from cadastre.store.tables import TABLE_NAMES
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WRITERS = 12


def _change(minute: int, price: int) -> Change:
    return Change(
        tenant="acme",
        entity="Listing",
        fields={"ListingKey": "L1", "ListPrice": str(price), "City": "Austin"},
        origin=Origin(system="mls", connection="austin", external_id="L1",
                      source_time=T0 + timedelta(minutes=minute)),
    )  # fmt: skip


class ApplyConcurrency:
    async def test_racing_creates_end_in_one_record_with_the_newest_value(
        self, store: SqlAlchemyStore
    ) -> None:
        engine = SyncEngine(store, load_registry(), FakeClock())
        changes = [_change(minute, 300_000 + minute) for minute in range(WRITERS)]
        results = await asyncio.gather(*(engine.apply(c) for c in changes))

        assert sum(r.created for r in results) == 1
        assert {r.canonical_id for r in results} == {results[0].canonical_id}
        async with store.unit_of_work("acme") as uow:
            assert await uow.records.count("Listing") == 1
            record = await uow.records.get("Listing", results[0].canonical_id)
            assert record is not None
            assert record.data["ListPrice"] == str(300_000 + WRITERS - 1)
            wrote = [r for r in results if r.wrote]
            assert record.version == len(wrote)
            assert len(await uow.outbox.pending(limit=1000)) == len(wrote) + sum(
                1 for r in results if r.refused
            )
            assert (await uow.audit.verify()).ok

    async def test_identical_changes_take_effect_once(self, store: SqlAlchemyStore) -> None:
        engine = SyncEngine(store, load_registry(), FakeClock())
        change = _change(0, 450_000)
        results = await asyncio.gather(*(engine.apply(change) for _ in range(WRITERS)))
        assert sum(not r.duplicate for r in results) == 1
        assert all(r.canonical_id == results[0].canonical_id for r in results)
        async with store.unit_of_work("acme") as uow:
            assert len(await uow.outbox.pending(limit=1000)) == 1
            assert (await uow.audit.verify()).entries == 1


class TestSqliteApply(ApplyConcurrency):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(tmp_path / "cadastre.db")
        await store.migrate()
        await store.create_tenant("acme", "Acme")
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresApply(ApplyConcurrency):
    @pytest.fixture
    async def store(self, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(postgres_url)
        async with store.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLE_NAMES)} RESTART IDENTITY"))
        await store.create_tenant("acme", "Acme")
        yield store
        await store.close()
