"""Two connections editing a shared field through the engine, on FakeStore and SQLite: sequential
edits apply, concurrent edits within the skew hold the field and queue one conflict, a
resolution applies through the engine with an audit entry, and concurrent edits further apart
than the skew go to the later one, recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import RefusalReason
from cadastre.errors import AlreadyExists, NotFound
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


def phone(system: str, value: str, t: float | None, rid: str) -> Any:
    return make_change(system, {"MobilePhone": value}, entity="Resident", canonical_id=rid,
                       ext=f"{system}-R1", t=t)  # fmt: skip


async def vector(store: Store, rid: str) -> dict[str, Any]:
    """The field's ``v`` and ``seen`` (``held``, the value digests, are checked on their own)."""
    async with store.unit_of_work(TENANT) as uow:
        found = (await uow.conflicts.versions("Resident", [rid]))[rid]["MobilePhone"].to_json()
    found.pop("held", None)
    return found


async def test_two_connections_on_a_shared_field(engine: SyncEngine, store: Store) -> None:
    read = Reader(store)
    created = await engine.apply(
        make_change("pms", {"MobilePhone": "1"}, entity="Resident", ext="pms-R1", t=0)
    )
    rid = created.canonical_id
    # sequential: the CRM never held the field, then the PMS hears of its value, then edits
    assert (await engine.apply(phone("crm", "2", 1, rid))).applied == ["MobilePhone"]
    assert (await engine.apply(phone("pms", "2", 1.5, rid))).unchanged == ["MobilePhone"]
    assert (await engine.apply(phone("pms", "3", 2, rid))).applied == ["MobilePhone"]
    assert await vector(store, rid) == {"v": 3, "seen": {"crm-1": 2, "pms-1": 3}}

    # concurrent within the skew: the CRM (holding version 2) edits one second after the PMS
    held = await engine.apply(phone("crm", "4", 2 + 1 / 60, rid))
    assert [r.reason for r in held.refused] == [RefusalReason.CONFLICT]
    assert "held for review" in held.refused[0].detail
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "3"  # keeps its value
    async with store.unit_of_work(TENANT) as uow:
        [conflict] = await uow.conflicts.find(state=ConflictState.OPEN)
    assert (conflict.field, conflict.record_id, conflict.entity) == ("MobilePhone", rid, "Resident")
    assert conflict.current["value"] == "3"
    assert conflict.incoming["value"] == "4"
    assert conflict.current["stamp"]["connection"] == "pms-1"
    assert conflict.incoming["stamp"]["connection"] == "crm-1"
    assert {k: conflict.vector[k] for k in ("v", "seen")} == {
        "v": 3,
        "seen": {"crm-1": 2, "pms-1": 3},
    }
    assert "Resident.MobilePhone" in conflict.rule
    assert "conflict.queued" in [e.action for e in await read.audit()]

    # resolved by a person: applied through the engine as core, caused by the conflict
    resolved = await engine.resolve_conflict(
        TENANT, conflict.id, ConflictResolution.TAKE_INCOMING, actor="alice"
    )
    assert resolved.conflict.state is ConflictState.RESOLVED
    assert resolved.conflict.resolved_by == "alice"
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "4"
    event = next(e for e in await read.events() if e.id == resolved.result.event_id)
    assert event.data["origin"]["system"] == "core"
    assert event.data["causation_id"] == conflict.id
    assert event.data["fields"] == {"MobilePhone": "4"}
    entry = [e for e in await read.audit() if e.action == "conflict.resolved"][-1]
    assert entry.actor == "alice"
    assert entry.detail["resolution"] == "take_incoming"
    assert entry.detail["conflict"] == conflict.id
    assert await vector(store, rid) == {"v": 4, "seen": {"@core": 4, "crm-1": 4, "pms-1": 3}}
    with pytest.raises(AlreadyExists, match="resolved already"):
        await engine.resolve_conflict(TENANT, conflict.id, ConflictResolution.KEEP_CURRENT,
                                      actor="bob")  # fmt: skip

    # concurrent, further apart than the skew: the later edit wins, and it is recorded
    won = await engine.apply(phone("pms", "5", 10, rid))  # the PMS still holds version 3
    assert won.applied == ["MobilePhone"]
    last = [e for e in await read.audit() if e.action == "conflict.resolved"][-1]
    assert last.detail["how"] == "newest_wins"
    assert last.detail["concurrent"] is True
    assert last.detail["winner"]["connection"] == "pms-1"
    lost = await engine.apply(phone("crm", "6", 5, rid))  # concurrent, and older
    assert [r.reason for r in lost.refused] == [RefusalReason.CONFLICT]
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "5"
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.conflicts.find(state=ConflictState.OPEN) == []


async def test_resolving_with_a_value_validates_it(engine: SyncEngine, store: Store) -> None:
    rid = (await engine.apply(
        make_change("pms", {"MobilePhone": "1", "Email": "a@pms.example"}, entity="Resident",
                    ext="pms-R1", t=0)
    )).canonical_id  # fmt: skip
    await engine.apply(phone("crm", "2", 1, rid))
    await engine.apply(phone("pms", "3", 2, rid))
    await engine.apply(phone("crm", "4", 2, rid))  # same instant, concurrent: queued
    async with store.unit_of_work(TENANT) as uow:
        [conflict] = await uow.conflicts.find()
    with pytest.raises(NotFound):
        await engine.resolve_conflict(TENANT, "cf_nope", ConflictResolution.VALUE, value="7",
                                      actor="alice")  # fmt: skip
    done = await engine.resolve_conflict(
        TENANT, conflict.id, ConflictResolution.VALUE, value="555-0100", actor="alice"
    )
    assert done.conflict.resolved_value == "555-0100"
    assert (await Reader(store).record("Resident", rid)).data["MobilePhone"] == "555-0100"


async def test_owner_wins_a_concurrent_owner_edit_wins_recorded(engine: SyncEngine,
                                                                 store: Store) -> None:  # fmt: skip
    read = Reader(store)
    rid = (await engine.apply(
        make_change("pms", {"FirstName": "Ann"}, entity="Resident", ext="pms-R1", t=0)
    )).canonical_id  # fmt: skip

    def email(system: str, value: str, t: float) -> Any:
        return make_change(system, {"Email": value}, entity="Resident", canonical_id=rid,
                           ext=f"{system}-R1", t=t)  # fmt: skip

    await engine.apply(email("crm", "c@crm.example", 1))  # fills in: the PMS has none
    await engine.apply(email("pms", "p@pms.example", 2))  # never held it: causal
    await engine.apply(email("crm", "c2@crm.example", 3))  # concurrent: the owner's value stands
    await engine.apply(email("crm", "c3@crm.example", 3))  # crm edits again, still behind
    assert (await read.record("Resident", rid)).data["Email"] == "p@pms.example"
    resolved = [e.detail for e in await read.audit() if e.action == "conflict.resolved"]
    assert [(d["how"], d["winner"]["system"]) for d in resolved] == [
        ("owner_wins", "pms"),
        ("owner_wins", "pms"),
    ]


async def test_a_writer_repeating_the_value_it_held_is_no_edit(engine: SyncEngine,
                                                                store: Store) -> None:  # fmt: skip
    """A vendor that stamps records with the read time (Buildium tenants) re-reads an unchanged
    record after the CRM's newer edit: a newer stamp on the PMS's old value. Not an edit, so it
    neither undoes the CRM's value (newest_wins) nor queues a conflict; a real PMS edit after it
    is still weighed as one. A concurrent value that lost is held too: its re-reads are quiet."""
    read = Reader(store)
    rid = (await engine.apply(
        make_change("pms", {"MobilePhone": "1"}, entity="Resident", ext="pms-R1", t=0)
    )).canonical_id  # fmt: skip
    assert (await engine.apply(phone("crm", "2", 10, rid))).applied == ["MobilePhone"]
    again = await engine.apply(phone("pms", "1", 60, rid))  # the poll's re-read, stamped later
    assert [r.reason for r in again.refused] == [RefusalReason.STALE]
    assert "not an edit" in again.refused[0].detail
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "2"
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.conflicts.find() == []
    # a real PMS edit, made without having seen "2", is concurrent and, later, wins
    assert (await engine.apply(phone("pms", "3", 70, rid))).applied == ["MobilePhone"]
    # the CRM's concurrent, older edit loses; its re-reads are not new conflicts
    lost = await engine.apply(phone("crm", "4", 65, rid))
    assert [r.reason for r in lost.refused] == [RefusalReason.CONFLICT]
    reread = await engine.apply(phone("crm", "4", 80, rid))
    assert [r.reason for r in reread.refused] == [RefusalReason.STALE]
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "3"
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.conflicts.find() == []


async def test_a_late_receipt_of_an_older_write_does_not_revert_a_newer_value(
    engine: SyncEngine, store: Store
) -> None:
    """Write-back sent the CRM's "2" to the PMS; before its receipt came back, the CRM changed
    the field again to "3". The receipt (the PMS now holds "2", stamped with the PMS's later
    write time) is not an edit: it must not undo "3", which goes to the PMS as its own write."""
    read = Reader(store)
    rid = (await engine.apply(
        make_change("pms", {"MobilePhone": "1"}, entity="Resident", ext="pms-R1", t=0)
    )).canonical_id  # fmt: skip
    assert (await engine.apply(phone("crm", "2", 10, rid))).applied == ["MobilePhone"]
    assert (await engine.apply(phone("crm", "3", 20, rid))).applied == ["MobilePhone"]
    receipt = make_change("pms", {"MobilePhone": "2"}, entity="Resident", canonical_id=rid,
                          ext="pms-R1", t=30, key="writeback:W1:pms-1", causation="W1")  # fmt: skip
    late = await engine.apply(receipt)
    assert [r.reason for r in late.refused] == [RefusalReason.STALE]
    assert "receipt of an earlier write" in late.refused[0].detail
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "3"
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.conflicts.find() == []
    # the receipt of the newer write then settles the PMS as holding the current version
    settled = make_change("pms", {"MobilePhone": "3"}, entity="Resident", canonical_id=rid,
                          ext="pms-R1", t=40, key="writeback:W2:pms-1", causation="W2")  # fmt: skip
    assert (await engine.apply(settled)).unchanged == ["MobilePhone"]
    assert await vector(store, rid) == {"v": 3, "seen": {"crm-1": 3, "pms-1": 3}}


async def test_a_re_read_of_an_unchanged_shared_field_keeps_its_stamp(
    engine: SyncEngine, store: Store
) -> None:
    """A whole-object read that finds the value unchanged is no edit of it: the stamp stays the
    value's, so another system's edit made after the value was set (but before the re-read) is
    newer, not refused (the bisync findings ``linked-apart`` and
    ``crashed-platform-write-overwritten``)."""
    created = await engine.apply(
        make_change("pms", {"MobilePhone": "1"}, entity="Resident", ext="pms-R1", t=0)
    )
    rid = created.canonical_id
    assert (await engine.apply(phone("pms", "1", 10, rid))).unchanged == ["MobilePhone"]
    assert (await engine.apply(phone("crm", "2", 5, rid))).applied == ["MobilePhone"]
    assert (await Reader(store).record("Resident", rid)).data["MobilePhone"] == "2"
