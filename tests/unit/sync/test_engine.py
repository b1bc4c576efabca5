from __future__ import annotations

import pytest

from cadastre.contract import Operation, RefusalReason
from cadastre.errors import ContractError, OwnershipViolation
from cadastre.sync import DELETED_FIELD, REFUSED_EVENT

TENANT = "acme"


def reasons(result) -> dict[str, RefusalReason]:
    return {r.field: r.reason for r in result.refused}


async def test_owner_creates_a_record(engine, change, read, at) -> None:
    result = await engine.apply(
        change("mls", {"ListPrice": "350000.00", "City": "Austin"}, t=1, causation="evt-1")
    )
    assert result.applied == ["ListPrice", "City"]
    assert result.refused == []
    assert result.created
    assert result.version == 1
    stored = await read.record("Listing", result.canonical_id)
    assert stored.data == {"ListPrice": "350000", "City": "Austin"}  # validated and normalised
    provenance = await read.provenance("Listing", result.canonical_id)
    assert provenance["ListPrice"].system == "mls"
    assert provenance["ListPrice"].connection == "mls-1"
    assert provenance["ListPrice"].source_time == at(1)
    [event] = await read.events()
    assert event.type == "cadastre.listing.created.v1"
    assert event.id == result.event_id
    assert event.source == "/mls/mls-1"
    assert event.subject == result.canonical_id
    assert event.data["fields"] == {"ListPrice": "350000", "City": "Austin"}
    assert event.data["origin"]["system"] == "mls"
    assert event.data["causation_id"] == "evt-1"
    assert event.data["idempotency_key"] == result.idempotency_key
    [entry] = await read.audit()
    assert entry.action == "change.applied"
    assert entry.actor == "mls"
    assert entry.entity_id == result.canonical_id


async def test_the_same_external_id_maps_to_the_same_record(engine, change, read) -> None:
    first = await engine.apply(change("mls", {"City": "Austin"}, ext="L1", t=1))
    second = await engine.apply(change("mls", {"City": "Round Rock"}, ext="L1", t=2))
    other = await engine.apply(change("mls", {"City": "Austin"}, ext="L2", t=1))
    assert second.canonical_id == first.canonical_id
    assert other.canonical_id != first.canonical_id
    assert await read.resolve("mls", "L1") == first.canonical_id
    assert not second.created
    assert second.version == 2
    assert [e.type for e in await read.events()] == [
        "cadastre.listing.created.v1",
        "cadastre.listing.updated.v1",
        "cadastre.listing.created.v1",
    ]


async def test_partly_refused_change_applies_the_rest(engine, change, read) -> None:
    created = await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", t=1))
    result = await engine.apply(
        change("pms", {"LastName": "Lee", "HomePhone": "555", "Shoe": 9}, entity="Resident", t=2)
    )
    assert result.canonical_id == created.canonical_id
    assert result.applied == ["LastName"]
    assert reasons(result) == {
        "HomePhone": RefusalReason.NO_OWNER_DECLARED,
        "Shoe": RefusalReason.UNKNOWN_FIELD,
    }
    refused = [e for e in await read.audit() if e.action == "write.refused"]
    assert len(refused) == 1
    assert {r["field"]: r["reason"] for r in refused[0].detail["refused"]} == {
        "HomePhone": "no_owner_declared",
        "Shoe": "unknown_field",
    }
    assert [e.type for e in await read.events()].count(REFUSED_EVENT) == 1


async def test_violation_only_when_nothing_may_be_written_and_it_is_recorded(
    engine, change, read, metrics
) -> None:
    created = await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", t=1))
    attempt = change("crm", {"FirstName": "Anne", "LastName": "X"}, entity="Resident",
                     canonical_id=created.canonical_id, t=2)  # fmt: skip
    with pytest.raises(OwnershipViolation) as caught:
        await engine.apply(attempt)
    result = caught.value.result
    assert reasons(result) == {
        "FirstName": RefusalReason.NOT_OWNER,
        "LastName": RefusalReason.NOT_OWNER,
    }
    assert "crm may not write Resident" in str(caught.value)
    assert "owned by pms" in str(caught.value)
    # committed before raising: the audit log and the outbox hold the refusal
    [refused] = [e for e in await read.audit() if e.action == "write.refused"]
    assert refused.actor == "crm"
    assert refused.entity_id == created.canonical_id
    events = await read.events()
    assert [e.type for e in events] == ["cadastre.resident.created.v1", REFUSED_EVENT]
    assert (await read.record("Resident", created.canonical_id)).data == {"FirstName": "Ann"}
    assert await read.applied(attempt.idempotency_key) is not None
    # a re-delivery gets the same answer without a second audit entry
    with pytest.raises(OwnershipViolation) as again:
        await engine.apply(attempt)
    assert again.value.result.duplicate
    assert len([e for e in await read.audit() if e.action == "write.refused"]) == 1
    sample = metrics.registry.get_sample_value(
        "cadastre_fields_refused_total",
        {"tenant": TENANT, "entity": "Resident", "reason": "not_owner"},
    )
    assert sample == 2


async def test_only_the_record_owner_creates(engine, change, read) -> None:
    with pytest.raises(OwnershipViolation) as caught:
        await engine.apply(change("crm", {"Email": "a@b.co"}, entity="Resident", ext="R9"))
    [refusal] = caught.value.result.refused
    assert refusal.reason is RefusalReason.NOT_OWNER
    assert "only pms may create Resident records" in refusal.detail
    assert await read.resolve("crm", "R9", "Resident") is None
    assert [e.action for e in await read.audit()] == ["write.refused"]


async def test_stale_and_unchanged_changes_return_normally(engine, change, read) -> None:
    first = await engine.apply(change("mls", {"ListPrice": 300000}, t=5))
    stale = await engine.apply(change("mls", {"ListPrice": 290000}, t=4))
    assert reasons(stale) == {"ListPrice": RefusalReason.STALE}
    assert not stale.wrote
    same = await engine.apply(change("mls", {"ListPrice": "300000.0"}, t=6))
    assert same.unchanged == ["ListPrice"]
    assert same.refused == []
    assert same.version == 1
    stored = await read.record("Listing", first.canonical_id)
    assert stored.data == {"ListPrice": "300000"}
    assert stored.version == 1
    # the unchanged write still moved the field's time on, so t=5.5 is now stale too
    late = await engine.apply(change("mls", {"ListPrice": 1}, t=5.5))
    assert reasons(late) == {"ListPrice": RefusalReason.STALE}


async def test_source_version_orders_writes_without_times(engine, change, read) -> None:
    first = await engine.apply(change("mls", {"City": "B"}, version="7"))
    stale = await engine.apply(change("mls", {"City": "A"}, version="6"))
    assert reasons(stale) == {"City": RefusalReason.STALE}
    newer = await engine.apply(change("mls", {"City": "C"}, version="10"))  # numeric, not text
    assert newer.applied == ["City"]
    assert (await read.record("Listing", first.canonical_id)).data == {"City": "C"}


async def test_idempotent_reapply_is_a_duplicate_without_a_second_event(
    engine, change, read
) -> None:
    payload = change("mls", {"City": "Austin"}, t=1)
    first = await engine.apply(payload)
    again = await engine.apply(change("mls", {"City": "Austin"}, t=1))  # same derived key
    assert again.duplicate
    assert not first.duplicate
    assert again.model_dump(exclude={"duplicate"}) == first.model_dump(exclude={"duplicate"})
    assert len(await read.events()) == 1
    assert len(await read.audit()) == 1


async def test_owner_wins_shared_field(engine, change, read) -> None:
    resident = await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", t=1))
    rid = resident.canonical_id

    def crm(email: str, t: float):
        return change("crm", {"Email": email}, entity="Resident", canonical_id=rid, ext="C1", t=t)

    filled = await engine.apply(crm("ann@crm.example", 2))  # the PMS has none: the CRM fills in
    assert filled.applied == ["Email"]
    owner = await engine.apply(change("pms", {"Email": "ann@pms.example"}, entity="Resident", t=3))
    assert owner.applied == ["Email"]
    refused = await engine.apply(crm("ann@new.example", 9))  # later, but the owner's value stands
    assert reasons(refused) == {"Email": RefusalReason.CONFLICT}
    assert "owner_wins" in refused.refused[0].detail
    stored = await read.record("Resident", rid)
    assert stored.data["Email"] == "ann@pms.example"
    assert await read.resolve("crm", "C1", "Resident") == rid


async def test_newest_wins_shared_field(engine, change, read) -> None:
    resident = await engine.apply(change("pms", {"MobilePhone": "1"}, entity="Resident", t=1))
    rid = resident.canonical_id

    def crm(phone: str, t: float | None):
        return change("crm", {"MobilePhone": phone}, entity="Resident", canonical_id=rid,
                      ext=None, t=t)  # fmt: skip

    assert (await engine.apply(crm("2", 2))).applied == ["MobilePhone"]
    older_owner = await engine.apply(change("pms", {"MobilePhone": "3"}, entity="Resident", t=1.5))
    assert reasons(older_owner) == {"MobilePhone": RefusalReason.CONFLICT}  # binds the owner too
    newer_owner = await engine.apply(change("pms", {"MobilePhone": "5"}, entity="Resident", t=3))
    assert newer_owner.applied == ["MobilePhone"]
    untimed = await engine.apply(crm("4", None))  # cannot be ordered against the owner's t=3
    assert reasons(untimed) == {"MobilePhone": RefusalReason.CONFLICT}
    assert "no source_time" in untimed.refused[0].detail
    assert (await read.record("Resident", rid)).data["MobilePhone"] == "5"


async def test_invalid_value_raises_and_writes_nothing(engine, change, read) -> None:
    bad = change("mls", {"City": "Austin", "ListPrice": "cheap"}, t=1)
    with pytest.raises(ContractError, match="ListPrice"):
        await engine.apply(bad)
    assert await read.events() == []
    assert await read.audit() == []
    assert await read.resolve("mls", "L1") is None
    assert await read.applied(bad.idempotency_key) is None
    fixed = await engine.apply(change("mls", {"City": "Austin", "ListPrice": 1}, t=1))
    assert fixed.applied == ["City", "ListPrice"]


async def test_refused_fields_are_not_validated(engine, change) -> None:
    await engine.apply(change("mls", {"City": "Austin"}, t=1))
    result = await engine.apply(
        change("mls", {"PropertyId": {"not": "a string"}, "City": "X"}, t=2)
    )
    assert reasons(result) == {"PropertyId": RefusalReason.NOT_OWNER}


async def test_unknown_entity_is_a_contract_error(engine, change) -> None:
    with pytest.raises(ContractError, match="unknown entity 'Listings'"):
        await engine.apply(change("mls", {"City": "Austin"}, entity="Listings"))


async def test_canonical_id_contradicting_the_xref_is_refused(engine, change) -> None:
    await engine.apply(change("mls", {"City": "Austin"}, ext="L1", t=1))
    with pytest.raises(ContractError, match="is linked to"):
        await engine.apply(change("mls", {"City": "X"}, ext="L1", canonical_id="other", t=2))


async def test_outbox_holds_one_event_per_record_write(engine, change, read) -> None:
    results = [
        await engine.apply(change("mls", {"City": "A"}, t=1)),
        await engine.apply(change("mls", {"City": "A"}, t=2)),  # unchanged: no write
        await engine.apply(change("mls", {"City": "B"}, t=3)),
        await engine.apply(change("mls", {"City": "C"}, t=2.5)),  # stale: no write
        await engine.apply(change("mls", {"City": "B"}, t=3)),  # duplicate
        await engine.apply(change("mls", {}, op=Operation.DELETE, t=4)),
    ]
    events = [e for e in await read.events() if e.type != REFUSED_EVENT]
    writes = [r for r in results if r.wrote and not r.duplicate]
    assert [e.id for e in events] == [r.event_id for r in writes]
    assert len({e.id for e in events}) == 3
    assert [e.data["version"] for e in events] == [1, 2, 3]


async def test_delete_tombstones_and_an_older_upsert_does_not_resurrect(
    engine, change, read
) -> None:
    created = await engine.apply(change("mls", {"City": "Austin"}, t=1))
    deleted = await engine.apply(change("mls", {}, op=Operation.DELETE, t=3))
    assert deleted.deleted
    stored = await read.record("Listing", created.canonical_id)
    assert stored.deleted
    assert stored.data == {}
    late = await engine.apply(change("mls", {"City": "Round Rock"}, t=2))
    assert reasons(late) == {"City": RefusalReason.STALE}
    untimed = await engine.apply(change("mls", {"City": "Round Rock"}))
    assert reasons(untimed) == {"City": RefusalReason.STALE}
    assert (await read.record("Listing", created.canonical_id)).deleted
    revived = await engine.apply(change("mls", {"City": "Cedar Park"}, t=4))
    assert revived.created
    stored = await read.record("Listing", created.canonical_id)
    assert not stored.deleted
    assert stored.data == {"City": "Cedar Park"}
    assert [e.type.split(".")[2] for e in await read.events() if e.type != REFUSED_EVENT] == [
        "created", "deleted", "created",
    ]  # fmt: skip


async def test_delete_arriving_before_the_create_leaves_a_tombstone(engine, change, read) -> None:
    gone = await engine.apply(change("mls", {}, op=Operation.DELETE, t=5))
    assert gone.deleted
    late = await engine.apply(change("mls", {"City": "Austin"}, t=1))
    assert late.canonical_id == gone.canonical_id
    assert reasons(late) == {"City": RefusalReason.STALE}
    assert (await read.record("Listing", gone.canonical_id)).deleted


async def test_late_delete_clears_only_older_fields(engine, change, read) -> None:
    await engine.apply(change("mls", {"City": "Austin"}, t=1))
    newer = await engine.apply(change("mls", {"ListPrice": 5}, t=3))
    late = await engine.apply(change("mls", {}, op=Operation.DELETE, t=2))
    assert not late.deleted
    assert late.applied == ["City"]  # cleared
    stored = await read.record("Listing", newer.canonical_id)
    assert not stored.deleted
    assert stored.data == {"ListPrice": "5"}
    assert (await read.provenance("Listing", newer.canonical_id))[DELETED_FIELD].source_time


async def test_only_the_record_owner_deletes(engine, change, read) -> None:
    created = await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", t=1))
    with pytest.raises(OwnershipViolation, match="only pms may delete Resident records"):
        await engine.apply(
            change("crm", {}, entity="Resident", op=Operation.DELETE,
                   canonical_id=created.canonical_id, ext=None, t=2)
        )  # fmt: skip
    assert not (await read.record("Resident", created.canonical_id)).deleted


async def test_audit_chain_verifies_after_a_mix(engine, change, store) -> None:
    await engine.apply(change("mls", {"City": "A", "Nope": 1}, t=1))
    with pytest.raises(OwnershipViolation):
        await engine.apply(change("crm", {"City": "B"}, t=2, ext="X"))
    async with store.unit_of_work(TENANT) as uow:
        report = await uow.audit.verify()
    assert report.ok
    assert report.entries == 3
