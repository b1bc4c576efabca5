"""The worked example of docs/ownership.md, against the packaged default registry."""

from __future__ import annotations

import pytest

from cadastre.contract import RefusalReason
from cadastre.errors import OwnershipViolation
from cadastre.ownership import load_registry
from cadastre.sync import SyncEngine


async def test_worked_example(store, clock, change, read) -> None:
    engine = SyncEngine(store, load_registry(), clock)
    resident = await engine.apply(
        change("pms", {"Email": "ann@pms.example"}, entity="Resident", ext="R1", t=600)
    )
    rid = resident.canonical_id
    await engine.apply(change("pms", {"FirstName": "Ann"}, entity="Resident", ext="R1", t=720))
    fields = {"Email": "ann@new.example", "FirstName": "Anne", "LeaseId": "L-9", "Shoe": 9}
    result = await engine.apply(
        change("crm", fields, entity="Resident", canonical_id=rid, ext="C-17", t=660)
    )
    assert result.applied == ["Email"]
    assert {r.field: r.reason for r in result.refused} == {
        "Shoe": RefusalReason.UNKNOWN_FIELD,
        "LeaseId": RefusalReason.NOT_OWNER,
        "FirstName": RefusalReason.CONFLICT,
    }
    assert [e.type for e in await read.events()] == [
        "cadastre.resident.created.v1",
        "cadastre.resident.updated.v1",
        "cadastre.resident.updated.v1",
        "cadastre.write.refused.v1",
    ]
    # (conflict resolutions have audit entries of their own; this example is about ownership)
    assert [e.action for e in await read.audit() if not e.action.startswith("conflict.")] == [
        "change.applied", "change.applied", "change.applied", "write.refused",
    ]  # fmt: skip
    with pytest.raises(OwnershipViolation):
        await engine.apply(
            change("crm", {"LeaseId": "L-9"}, entity="Resident", canonical_id=rid, ext="C-17")
        )
