"""The review queue with several conflicts on one field, and with a record deleted after its
conflict was queued (FakeStore and SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Operation
from cadastre.errors import AlreadyExists, ContractError
from cadastre.ports import ConflictResolution, ConflictState, Store
from cadastre.store import SqliteStore
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock, FakeStore
from tests.unit.sync.conftest import TENANT, Reader, make_change


@pytest.fixture(params=["fake", "sqlite"])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
                ) -> AsyncIterator[Store]:  # fmt: skip
    if request.param == "fake":
        yield FakeStore(clock)
        return
    sqlite = SqliteStore(tmp_path / "cadastre.db", clock)
    await sqlite.migrate()
    yield sqlite
    await sqlite.close()


@pytest.fixture
def engine(store: Store, registry: Any, clock: FakeClock) -> SyncEngine:
    return SyncEngine(store, registry, clock)


def phone(system: str, value: str, t: float, rid: str | None = None) -> Any:
    return make_change(system, {"MobilePhone": value}, entity="Resident", canonical_id=rid,
                       ext=f"{system}-R1", t=t)  # fmt: skip


async def open_conflicts(store: Store) -> list[Any]:
    async with store.unit_of_work(TENANT) as uow:
        return await uow.conflicts.find(state=ConflictState.OPEN)


async def queued_twice(engine: SyncEngine, store: Store) -> tuple[str, list[Any]]:
    """The CRM edits the phone twice without having seen the PMS's value, both within the
    skew of it: two open conflicts on one field."""
    rid = (await engine.apply(phone("pms", "1", 0))).canonical_id
    await engine.apply(phone("crm", "2", 1, rid))
    await engine.apply(phone("pms", "3", 2, rid))
    await engine.apply(phone("crm", "4", 2 + 1 / 60, rid))
    await engine.apply(phone("crm", "5", 2 + 1.5 / 60, rid))
    found = await open_conflicts(store)
    assert [c.incoming["value"] for c in found] == ["4", "5"]
    return rid, found


async def test_resolving_one_conflict_of_a_field_settles_the_others(
    engine: SyncEngine, store: Store
) -> None:
    read = Reader(store)
    rid, (first, second) = await queued_twice(engine, store)
    done = await engine.resolve_conflict(TENANT, first.id, ConflictResolution.TAKE_INCOMING,
                                         actor="alice")  # fmt: skip
    assert done.conflict.state is ConflictState.RESOLVED
    assert await open_conflicts(store) == []  # one decision per field
    async with store.unit_of_work(TENANT) as uow:
        settled = await uow.conflicts.get(second.id)
    assert settled is not None
    assert settled.state is ConflictState.RESOLVED
    assert settled.resolved_value == "4"
    assert settled.resolved_by == f"alice (superseded by {first.id})"
    # resolving the superseded one later cannot undo the decision
    with pytest.raises(AlreadyExists, match="resolved already"):
        await engine.resolve_conflict(TENANT, second.id, ConflictResolution.TAKE_INCOMING,
                                      actor="bob")  # fmt: skip
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "4"
    [entry] = [e for e in await read.audit() if e.action == "conflict.superseded"]
    assert (entry.actor, entry.detail["conflict"], entry.detail["by_conflict"]) == (
        "alice", second.id, first.id)  # fmt: skip
    assert (await _verify(store)).ok


async def test_resolving_after_the_record_was_deleted_says_so_and_writes_nothing(
    engine: SyncEngine, store: Store
) -> None:
    read = Reader(store)
    rid, (first, _) = await queued_twice(engine, store)
    gone = await engine.apply(make_change("pms", entity="Resident", ext="pms-R1", t=10,
                                          op=Operation.DELETE))  # fmt: skip
    assert gone.deleted
    before = len(await read.audit())
    with pytest.raises(ContractError, match=f"was deleted since conflict {first.id}"):
        await engine.resolve_conflict(TENANT, first.id, ConflictResolution.KEEP_CURRENT,
                                      actor="alice")  # fmt: skip
    assert len(await read.audit()) == before
    assert (await read.record("Resident", rid)).deleted
    assert len(await open_conflicts(store)) == 2


async def _verify(store: Store) -> Any:
    async with store.unit_of_work(TENANT) as uow:
        return await uow.audit.verify()


async def test_a_receipt_of_our_value_leaves_its_connection_seen_at_the_new_version(
    engine: SyncEngine, store: Store
) -> None:
    """The PMS's value reaches the CRM by write-back; the CRM's receipt (the same value, dated
    by the CRM's write) leaves the CRM holding the new version, so its next edit is causal and
    applies, neither queued nor judged concurrent."""
    rid = (await engine.apply(phone("pms", "1", 0))).canonical_id
    await engine.apply(phone("crm", "2", 1, rid))
    await engine.apply(phone("pms", "3", 2, rid))  # v3; the CRM still holds v2
    receipt = make_change("crm", {"MobilePhone": "3"}, entity="Resident", canonical_id=rid,
                          ext="crm-R1", t=2 + 1 / 60, key="writeback:w1:crm-1",
                          causation="w1")  # fmt: skip
    assert (await engine.apply(receipt)).unchanged == ["MobilePhone"]
    async with store.unit_of_work(TENANT) as uow:
        vector = (await uow.conflicts.versions("Resident", [rid]))[rid]["MobilePhone"]
    assert (vector.v, vector.seen["crm-1"]) == (3, 3)
    edit = await engine.apply(phone("crm", "4", 2 + 1.5 / 60, rid))  # within the skew: causal
    assert edit.applied == ["MobilePhone"]
    assert await open_conflicts(store) == []
