"""``SyncEngine.apply`` against the real SQLite store: the same decisions, one real transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change, EventEnvelope, Operation, Origin, RefusalReason
from cadastre.errors import ContractError, OwnershipViolation
from cadastre.ownership import load_registry
from cadastre.ports import Store
from cadastre.store import open_store
from cadastre.sync import REFUSED_EVENT, SyncEngine
from cadastre.testing import EPOCH, FakeClock

TENANT = "acme"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(
        f"sqlite+aiosqlite:///{(tmp_path / 'c.db').as_posix()}", clock=FakeClock()
    )
    await store.create_tenant(TENANT, "Acme")
    yield store
    await store.close()


@pytest.fixture
def engine(store: Store) -> SyncEngine:
    return SyncEngine(store, load_registry(), FakeClock())  # the packaged default registry


def change(system: str, fields: dict[str, Any], *, entity: str = "Listing", ext: str | None = "L1",
           minute: int | None = None, op: Operation = Operation.UPSERT,
           canonical_id: str | None = None) -> Change:  # fmt: skip
    return Change(
        tenant=TENANT,
        entity=entity,
        canonical_id=canonical_id,
        operation=op,
        fields=fields,
        origin=Origin(
            system=system,
            connection=f"{system}-1",
            external_id=ext,
            source_time=None if minute is None else EPOCH + timedelta(minutes=minute),
        ),
    )


async def events(store: Store) -> list[EventEnvelope]:
    async with store.unit_of_work(TENANT) as uow:
        return [m.event for m in await uow.outbox.pending(limit=1000)]


async def test_apply_refuse_and_dedupe(engine: SyncEngine, store: Store) -> None:
    created = await engine.apply(
        change("mls", {"ListPrice": "350000.00", "City": "Austin"}, minute=1)
    )
    assert created.created
    again = await engine.apply(
        change("mls", {"ListPrice": "350000.00", "City": "Austin"}, minute=1)
    )
    assert again.duplicate
    stale = await engine.apply(change("mls", {"City": "Round Rock"}, minute=0))
    assert [r.reason for r in stale.refused] == [RefusalReason.STALE]
    with pytest.raises(OwnershipViolation):
        await engine.apply(
            change("crm", {"City": "X"}, canonical_id=created.canonical_id, ext=None)
        )
    async with store.unit_of_work(TENANT) as uow:
        record = await uow.records.get("Listing", created.canonical_id)
        actions = [e.action async for e in uow.audit.entries()]
        report = await uow.audit.verify()
    assert record is not None
    assert record.data == {"ListPrice": "350000", "City": "Austin"}
    assert actions == ["change.applied", "write.refused", "write.refused"]
    assert report.ok
    assert [e.type for e in await events(store)] == [
        "cadastre.listing.created.v1", REFUSED_EVENT, REFUSED_EVENT,
    ]  # fmt: skip


async def test_shared_field_and_tombstone(engine: SyncEngine, store: Store) -> None:
    resident = await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", minute=1))
    rid = resident.canonical_id
    filled = await engine.apply(
        change("crm", {"Email": "ann@example.com"}, entity="Resident", canonical_id=rid,
               ext="C1", minute=2)
    )  # fmt: skip
    assert filled.applied == ["Email"]
    deleted = await engine.apply(
        change("pms", {}, entity="Resident", op=Operation.DELETE, minute=5)
    )
    assert deleted.deleted
    late = await engine.apply(change("pms", {"LastName": "Lee"}, entity="Resident", minute=4))
    assert [r.reason for r in late.refused] == [RefusalReason.STALE]
    async with store.unit_of_work(TENANT) as uow:
        record = await uow.records.get("Resident", rid)
        linked = await uow.xref.resolve("crm", "crm-1", "Resident", "C1")
    assert record is not None
    assert record.deleted
    assert linked == rid


async def test_invalid_value_leaves_nothing(engine: SyncEngine, store: Store) -> None:
    with pytest.raises(ContractError):
        await engine.apply(change("mls", {"ListPrice": "cheap"}, minute=1))
    assert await events(store) == []
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count() == 0
        assert await uow.xref.resolve("mls", "mls-1", "Listing", "L1") is None
