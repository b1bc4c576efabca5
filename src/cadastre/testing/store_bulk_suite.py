"""``BulkStoreSuite``: the conformance tests of the store's bulk methods (``get_many``,
``put_many``, ``for_records``, ``resolve_many``, ``link_many``, ``add_many``, ``append_many``).

``StoreSuite`` inherits it, so every adapter that passes ``StoreSuite`` passes these too; it lives
in a module of its own only to keep both modules short. Each test holds the bulk method to the
rules of its single-row twin: same results, same errors, same tenant scoping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope
from cadastre.errors import AlreadyExists, ConcurrentUpdate, ContractError
from cadastre.ports import AuditDraft, ExternalRef, FieldProvenance, ProvenanceWrite, RecordWrite
from cadastre.store.audit import GENESIS_HASH, audit_entry_hash
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store, StoredRecord, UnitOfWork
    from cadastre.testing.clock import FakeClock

A, B = "acme", "globex"
MANY = 1_200  # more than one IN list's worth (500) and one multi-row INSERT's (1000 rows)


def _event(tenant: str, subject: str) -> EventEnvelope:
    return EventEnvelope(
        source="/mls/austin", type="cadastre.listing.updated.v1", subject=subject, time=EPOCH,
        tenant=tenant, data={"ListPrice": 100},
    )  # fmt: skip


def _result(tenant: str, key: str) -> ApplyResult:
    return ApplyResult(
        tenant=tenant, entity="Listing", canonical_id="L1", idempotency_key=key,
        applied=["ListPrice"], version=1, created=True, event_id="e1",
    )  # fmt: skip


def _same(a: StoredRecord, b: StoredRecord) -> bool:
    return (a.entity, a.id, a.version, dict(a.data), a.content_hash, a.deleted, a.updated_at) == (
        b.entity, b.id, b.version, dict(b.data), b.content_hash, b.deleted, b.updated_at,
    )  # fmt: skip


async def _puts(uow: UnitOfWork, writes: list[RecordWrite]) -> list[StoredRecord]:
    return [
        await uow.records.put(w.entity, w.id, w.data, expected_version=w.expected_version,
                              deleted=w.deleted)
        for w in writes
    ]  # fmt: skip


class BulkStoreSuite:
    # ------------------------------------------------------------------ records

    async def test_put_many_and_get_many_match_the_single_methods(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = [
            RecordWrite("Listing", "L2", {"ListPrice": 1, "City": "Austin"}, 0),
            RecordWrite("Listing", "L1", {"Features": ["Pool"]}, 0),
            RecordWrite("Property", "L1", {}, 0, deleted=True),
        ]
        second = [
            RecordWrite("Listing", "L1", {"Features": []}, 1),
            RecordWrite("Listing", "L3", {"n": 3}, 0),
            RecordWrite("Listing", "L2", {}, 1, deleted=True),
        ]
        bulk: list[StoredRecord] = []
        single: list[StoredRecord] = []
        for writes in (first, second):
            async with store.unit_of_work(A) as uow:
                bulk += await uow.records.put_many(writes)
                await uow.commit()
            async with store.unit_of_work(B) as uow:
                single += await _puts(uow, writes)
                await uow.commit()
            clock.advance(1)
        assert [(r.entity, r.id, r.version, r.deleted) for r in bulk] == [
            ("Listing", "L2", 1, False), ("Listing", "L1", 1, False), ("Property", "L1", 1, True),
            ("Listing", "L1", 2, False), ("Listing", "L3", 1, False), ("Listing", "L2", 2, True),
        ]  # fmt: skip
        assert all(_same(a, b) for a, b in zip(bulk, single, strict=True))
        async with store.unit_of_work(A) as uow:
            ids = ["L3", "L1", "nope", "L2", "L1"]
            expected = {id: r for id in ids if (r := await uow.records.get("Listing", id))}
            assert await uow.records.get_many("Listing", ids) == expected
            assert await uow.records.get_many("Listing", ids, for_update=True) == expected
            assert set(expected) == {"L1", "L2", "L3"}
            assert expected["L2"].deleted  # tombstones included
            assert await uow.records.get_many("Property", ["L1", "L2"]) == {
                "L1": await uow.records.get("Property", "L1")
            }

    async def test_put_many_version_mismatch_stores_nothing(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.records.put_many([RecordWrite("Listing", f"L{i}", {"n": i}, 0)
                                        for i in range(50)])  # fmt: skip
            await uow.commit()
        refused = {
            "stale update": [RecordWrite("Listing", f"L{i}", {"n": -i}, 1 if i != 25 else 5)
                             for i in range(50)],
            "insert of an existing record": [RecordWrite("Listing", "N1", {}, 0),
                                             RecordWrite("Listing", "L7", {}, 0)],
            "update of a missing record": [RecordWrite("Listing", "L1", {}, 1),
                                           RecordWrite("Listing", "N2", {}, 1)],
        }  # fmt: skip
        names = {"stale update": "L25", "insert of an existing record": "L7",
                 "update of a missing record": "N2"}  # fmt: skip
        for case, writes in refused.items():
            async with store.unit_of_work(A) as uow:  # left without commit
                with pytest.raises(ConcurrentUpdate, match=names[case]):
                    await uow.records.put_many(writes)
            async with store.unit_of_work(A) as uow:
                now = await uow.records.get_many("Listing", [w.id for w in writes])
                assert {id: r.version for id, r in now.items()} == {
                    w.id: 1 for w in writes if w.id.startswith("L")
                }, case
                assert all(dict(r.data) == {"n": int(r.id[1:])} for r in now.values()), case
        async with store.unit_of_work(A) as uow:
            with pytest.raises(ValueError, match="one write per record"):
                await uow.records.put_many([RecordWrite("Listing", "N3", {}, 0),
                                            RecordWrite("Listing", "N3", {"n": 1}, 0)])  # fmt: skip
            with pytest.raises(ContractError):
                await uow.records.put_many([RecordWrite("Listing", "N4", {"v": {1, 2}}, 0)])

    async def test_get_many_of_more_ids_than_one_in_list(self, store: Store) -> None:
        ids = [f"L{i:05}" for i in range(MANY)]
        async with store.unit_of_work(A) as uow:
            put = await uow.records.put_many([RecordWrite("Listing", id, {"i": id}, 0)
                                              for id in ids])  # fmt: skip
            await uow.xref.link_many([ExternalRef("mls", "c", "Listing", f"X{id}", id)
                                      for id in ids])  # fmt: skip
            await uow.commit()
        assert [r.id for r in put] == ids
        async with store.unit_of_work(A) as uow:
            got = await uow.records.get_many("Listing", [*reversed(ids), "missing"])
            locked = await uow.records.get_many("Listing", ids, for_update=True)
            updated = await uow.records.put_many([RecordWrite("Listing", id, {}, 1)
                                                  for id in ids])  # fmt: skip
            linked = await uow.xref.resolve_many("mls", "c", "Listing", [f"X{id}" for id in ids])
            await uow.commit()
        assert len(got) == len(locked) == MANY
        assert all(_same(got[r.id], r) for r in put)
        assert {r.version for r in updated} == {2}
        assert linked == {f"X{id}": id for id in ids}
        async with store.unit_of_work(A) as uow:
            assert await uow.records.count("Listing") == MANY
            assert {r.version for r in (await uow.records.get_many("Listing", ids)).values()} == {2}

    # ------------------------------------------------------------------ provenance, xref

    async def test_provenance_for_records(self, store: Store) -> None:
        def prov(id: str, field: str) -> FieldProvenance:
            return FieldProvenance("Listing", id, field, "mls", "c", EPOCH, "v1", 0.5, EPOCH)

        async with store.unit_of_work(A) as uow:
            await uow.provenance.record(
                [prov("L1", "ListPrice"), prov("L1", "City"), prov("L2", "City")]
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.provenance.for_records("Listing", ["L1", "L2", "L3", "L1"])
            assert got == {
                "L1": await uow.provenance.for_record("Listing", "L1"),
                "L2": await uow.provenance.for_record("Listing", "L2"),
            }
            assert set(got["L1"]) == {"ListPrice", "City"}
            assert await uow.provenance.for_records("Property", ["L1"]) == {}

    async def test_provenance_record_many_merges_by_field_in_order(self, store: Store) -> None:
        later = EPOCH + timedelta(hours=1)
        mls = ("mls", "c", EPOCH, "v1", 1.0, EPOCH)
        newer = ("mls", "c", later, "v2", 1.0, later)
        crm = ("crm", None, later, None, 0.5, later)
        async with store.unit_of_work(A) as uow:
            await uow.provenance.record_many([
                ProvenanceWrite("Listing", "L1", (mls,), {"ListPrice": 0, "City": 0, "Beds": 0}),
                ProvenanceWrite("Listing", "L2", (mls, crm), {"City": 0, "Remarks": 1}),
                ProvenanceWrite("Listing", "L1", (newer,), {"ListPrice": 0}),  # same call
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.provenance.record_many(
                [ProvenanceWrite("Listing", "L1", (crm, newer), {"City": 0, "Beds": 1})]
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.provenance.for_records("Listing", ["L1", "L2"])
        assert {f: (p.system, p.source_version) for f, p in got["L1"].items()} == {
            "ListPrice": ("mls", "v2"), "City": ("crm", None), "Beds": ("mls", "v2"),
        }  # fmt: skip
        assert got["L1"]["ListPrice"] == FieldProvenance(
            "Listing", "L1", "ListPrice", "mls", "c", later, "v2", 1.0, later
        )
        assert {f: p.system for f, p in got["L2"].items()} == {"City": "mls", "Remarks": "crm"}
        assert got["L2"]["Remarks"].confidence == 0.5

    async def test_link_many_and_resolve_many(self, store: Store) -> None:
        mls = ExternalRef("mls", "austin-mls", "Listing", "MLS-1", "L1")
        refs = [mls, ExternalRef("mls", "austin-mls", "Listing", "MLS-2", "L2"),
                ExternalRef("crm", "", "Listing", "C-9", "L1"), mls]  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.xref.link_many(refs)
            await uow.xref.link_many(refs)  # idempotent
            await uow.xref.link(mls)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            ids = ["MLS-2", "MLS-1", "MLS-9"]
            assert await uow.xref.resolve_many("mls", "austin-mls", "Listing", ids) == {
                x: found
                for x in ids
                if (found := await uow.xref.resolve("mls", "austin-mls", "Listing", x))
            }
            assert await uow.xref.resolve_many("crm", "", "Listing", ["C-9"]) == {"C-9": "L1"}
            assert [r.system for r in await uow.xref.for_record("Listing", "L1")] == ["crm", "mls"]
            moved = ExternalRef("mls", "austin-mls", "Listing", "MLS-1", "L9")
            fresh = ExternalRef("mls", "austin-mls", "Listing", "MLS-3", "L3")
            with pytest.raises(AlreadyExists, match="MLS-1"):
                await uow.xref.link_many([fresh, moved])
            with pytest.raises(AlreadyExists, match="MLS-4"):  # two ids for one ref in one call
                await uow.xref.link_many([ExternalRef("mls", "austin-mls", "Listing", "MLS-4", c)
                                          for c in ("L4", "L5")])  # fmt: skip

    # ------------------------------------------------------------------ outbox, audit, ledger

    async def test_outbox_add_many(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            one = await uow.outbox.add(_event(A, "L0"))
            events = [_event(A, f"L{i}") for i in range(1, 4)]
            many = await uow.outbox.add_many(events)
            await uow.commit()
        assert [m.event for m in many] == events
        positions = [one.position, *(m.position for m in many)]
        assert positions == sorted(set(positions))
        async with store.unit_of_work(A) as uow:
            assert await uow.outbox.pending() == [one, *many]
        for refused in ([_event(A, "L5"), events[1]], [events[0]], [_event(A, "L6")] * 2):
            async with store.unit_of_work(A) as uow:
                with pytest.raises(AlreadyExists):
                    await uow.outbox.add_many(refused)
        async with store.unit_of_work(A) as uow:  # left without commit
            with pytest.raises(ValueError, match="tenant"):
                await uow.outbox.add_many([_event(A, "L7"), _event(B, "L8")])
        async with store.unit_of_work(A) as uow:
            assert [m.event for m in await uow.outbox.pending()] == [one.event, *events]

    async def test_audit_append_many_continues_the_chain(
        self, store: Store, clock: FakeClock
    ) -> None:
        drafts = [
            AuditDraft("mls", "change.applied", "Listing", "L1", {"fields": ["ListPrice"]}),
            AuditDraft("mls", "change.applied", "Listing", "L2"),
            AuditDraft("cli", "connection.paused", detail={"why": "maintenance"}),
        ]
        async with store.unit_of_work(A) as uow:
            first = await uow.audit.append(actor="cli", action="tenant.created")
            clock.advance(2)
            many = await uow.audit.append_many(drafts)
            last = await uow.audit.append(actor="cli", action="x")
            await uow.commit()
        assert [e.seq for e in many] == [2, 3, 4]
        assert [e.prev_hash for e in many] == [first.hash, many[0].hash, many[1].hash]
        assert last.prev_hash == many[-1].hash
        for entry, draft in zip(many, drafts, strict=True):
            assert (entry.tenant, entry.at) == (A, clock.now())
            assert (entry.actor, entry.action, entry.entity, entry.entity_id, entry.detail) == (
                draft.actor, draft.action, draft.entity, draft.entity_id, draft.detail,
            )  # fmt: skip
            assert entry.hash == audit_entry_hash(
                prev_hash=entry.prev_hash, tenant=A, seq=entry.seq, at=entry.at,
                actor=draft.actor, action=draft.action, entity=draft.entity,
                entity_id=draft.entity_id, detail=draft.detail,
            )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            assert [e async for e in uow.audit.entries()] == [first, *many, last]
            report = await uow.audit.verify()
            assert (report.ok, report.entries) == (True, 5)
            with pytest.raises(ContractError):
                await uow.audit.append_many([AuditDraft("t", "x", detail={"v": EPOCH})])
        async with store.unit_of_work(B) as uow:  # a chain of its own, started by append_many
            other = await uow.audit.append_many(drafts[:1])
        assert (other[0].seq, other[0].prev_hash) == (1, GENESIS_HASH)

    async def test_applied_get_many_and_put_many(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.applied.put_many([_result(A, "k1"), _result(A, "k2")])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            keys = ["k2", "k1", "k3"]
            assert await uow.applied.get_many(keys) == {
                k: found for k in keys if (found := await uow.applied.get(k))
            }
            assert set(await uow.applied.get_many(keys)) == {"k1", "k2"}
        for refused in ([_result(A, "k3"), _result(A, "k1")], [_result(A, "k4")] * 2):
            async with store.unit_of_work(A) as uow:
                with pytest.raises(ConcurrentUpdate):
                    await uow.applied.put_many(refused)
        async with store.unit_of_work(A) as uow:
            with pytest.raises(ValueError, match="tenant"):
                await uow.applied.put_many([_result(B, "k5")])
        async with store.unit_of_work(A) as uow:
            assert await uow.applied.get_many(["k3", "k4", "k5"]) == {}

    # ------------------------------------------------------------------ edges

    async def test_bulk_methods_accept_empty_inputs(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.records.get_many("Listing", []) == {}
            assert await uow.records.get_many("Listing", [], for_update=True) == {}
            assert await uow.records.put_many([]) == []
            assert await uow.provenance.for_records("Listing", []) == {}
            assert await uow.xref.resolve_many("mls", "c", "Listing", []) == {}
            await uow.xref.link_many([])
            assert await uow.outbox.add_many([]) == []
            assert await uow.audit.append_many([]) == []
            assert await uow.applied.get_many([]) == {}
            await uow.applied.put_many([])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert [e async for e in uow.audit.entries()] == []
            assert await uow.outbox.pending() == []

    async def test_bulk_reads_see_only_their_tenant(self, store: Store) -> None:
        ids = ["L1", "L2"]
        async with store.unit_of_work(A) as uow:
            await uow.records.put_many([RecordWrite("Listing", id, {"n": 1}, 0) for id in ids])
            await uow.provenance.record(
                [FieldProvenance("Listing", id, "n", "mls", None, None, None, 1.0, EPOCH)
                 for id in ids]
            )  # fmt: skip
            await uow.xref.link_many([ExternalRef("mls", "c", "Listing", f"X{id}", id)
                                      for id in ids])  # fmt: skip
            await uow.applied.put_many([_result(A, "k1")])
            await uow.audit.append_many([AuditDraft("a", "x")])
            await uow.outbox.add_many([_event(A, "L1")])
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            assert await uow.records.get_many("Listing", ids) == {}
            assert await uow.records.get_many("Listing", ids, for_update=True) == {}
            assert await uow.provenance.for_records("Listing", ids) == {}
            assert await uow.xref.resolve_many("mls", "c", "Listing", ["XL1", "XL2"]) == {}
            assert await uow.applied.get_many(["k1"]) == {}
            # the same keys are free in B
            put = await uow.records.put_many([RecordWrite("Listing", id, {"n": 2}, 0)
                                              for id in ids])  # fmt: skip
            await uow.xref.link_many([ExternalRef("mls", "c", "Listing", "XL1", "OTHER")])
            await uow.applied.put_many([_result(B, "k1")])
            entries = await uow.audit.append_many([AuditDraft("b", "y")])
            await uow.commit()
        assert [r.version for r in put] == [1, 1]
        assert entries[0].seq == 1
        async with store.unit_of_work(A) as uow:
            mine = await uow.records.get_many("Listing", ids)
            assert {id: dict(r.data) for id, r in mine.items()} == {"L1": {"n": 1}, "L2": {"n": 1}}
            assert await uow.xref.resolve_many("mls", "c", "Listing", ["XL1"]) == {"XL1": "L1"}
