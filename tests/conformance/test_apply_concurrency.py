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

    async def test_overlapping_pages_in_opposite_orders_all_land(
        self, store: SqlAlchemyStore
    ) -> None:
        """Pages that create and update the same records in opposite orders: no deadlock
        surfaces, nothing is lost, and every record ends at its newest value."""
        engine = SyncEngine(store, load_registry(), FakeClock())
        keys = [f"L{n:02d}" for n in range(30)]

        def page(order: list[str], minute: int) -> list[Change]:
            return [
                Change(
                    tenant="acme",
                    entity="Listing",
                    fields={"ListingKey": k, "ListPrice": str(minute * 1000 + i)},
                    origin=Origin(
                        system="mls",
                        connection="austin",
                        external_id=k,
                        source_time=T0 + timedelta(minutes=minute, seconds=i),
                    ),
                )
                for i, k in enumerate(order)
            ]

        pages = [page(keys if m % 2 else keys[::-1], m) for m in range(1, 7)]
        results = await asyncio.gather(*(engine.apply_batch(p) for p in pages))
        assert all(item.error is None for items in results for item in items)
        async with store.unit_of_work("acme") as uow:
            assert await uow.records.count("Listing") == len(keys)
            newest = {item.change.origin.external_id: item.change for item in results[-1]}
            for key, change in newest.items():
                assert key is not None
                canonical = await uow.xref.resolve("mls", "austin", "Listing", key)
                assert canonical is not None
                record = await uow.records.get("Listing", canonical)
                assert record is not None
                assert record.data["ListPrice"] == change.fields["ListPrice"]
            assert (await uow.audit.verify()).ok


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


@pytest.mark.postgres
async def test_a_real_deadlock_is_a_lost_race_not_an_outage(postgres_url: str) -> None:
    from cadastre.errors import ConcurrentUpdate

    store = PostgresStore(postgres_url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLE_NAMES)} RESTART IDENTITY"))
        await store.create_tenant("t1", "one")
        await store.create_tenant("t2", "two")
        both_locked = asyncio.Barrier(2)

        async def cross(first: str, second: str) -> None:
            async with store.unit_of_work("t1") as uow:
                await uow.execute(
                    text("UPDATE tenants SET name = name WHERE id = :i").bindparams(i=first)
                )
                await both_locked.wait()
                await uow.execute(
                    text("UPDATE tenants SET name = name WHERE id = :i").bindparams(i=second)
                )
                await uow.commit()

        outcomes = await asyncio.gather(
            cross("t1", "t2"), cross("t2", "t1"), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1, outcomes  # PostgreSQL picks one victim
        assert isinstance(errors[0], ConcurrentUpdate)
        assert "deadlock" in str(errors[0]).lower()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_batches_over_two_entities_in_opposite_orders_never_deadlock(
    postgres_url: str,
) -> None:
    """Records are locked in one order (entity, then id) whatever order a page lists them in,
    so PostgreSQL records no deadlock at all - not one that a retry then hides."""
    store = PostgresStore(postgres_url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLE_NAMES)} RESTART IDENTITY"))
        await store.create_tenant("acme", "Acme")
        engine = SyncEngine(store, load_registry(), FakeClock())

        def listing(minute: int) -> Change:
            return Change(
                tenant="acme", entity="Listing",
                fields={"ListingKey": "L1", "ListPrice": str(minute)},
                origin=Origin(system="mls", connection="austin", external_id="L1",
                              source_time=T0 + timedelta(minutes=minute)),
            )  # fmt: skip

        def prop(minute: int) -> Change:
            return Change(
                tenant="acme", entity="Property", fields={"PropertyId": "P1", "City": f"C{minute}"},
                origin=Origin(system="core", external_id="P1",
                              source_time=T0 + timedelta(minutes=minute)),
            )  # fmt: skip

        await engine.apply_batch([listing(0), prop(0)])  # both rows exist: later pages lock them
        deadlocks = text(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        async with store.engine.connect() as conn:
            before = (await conn.execute(deadlocks)).scalar_one()
        for round_ in range(1, 9):
            a, b = 2 * round_, 2 * round_ + 1
            results = await asyncio.gather(
                engine.apply_batch([listing(a), prop(a)]), engine.apply_batch([prop(b), listing(b)])
            )
            assert all(item.error is None for items in results for item in items)
        async with store.engine.connect() as conn:
            after = (await conn.execute(deadlocks)).scalar_one()
        assert after == before
    finally:
        await store.close()
