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
    fields = {"Email": "ann@new.example", "FirstName": "Anne", "ContactKey": "C-17", "Shoe": 9}
    result = await engine.apply(
        change("crm", fields, entity="Resident", canonical_id=rid, ext="C-17", t=660)
    )
    assert result.applied == ["ContactKey"]
    assert {r.field: r.reason for r in result.refused} == {
        "Shoe": RefusalReason.UNKNOWN_FIELD,
        "FirstName": RefusalReason.NOT_OWNER,
        "Email": RefusalReason.CONFLICT,
    }
    assert [e.type for e in await read.events()] == [
        "cadastre.resident.created.v1",
        "cadastre.resident.updated.v1",
        "cadastre.write.refused.v1",
    ]
    assert [e.action for e in await read.audit()] == [
        "change.applied", "change.applied", "write.refused",
    ]  # fmt: skip
    with pytest.raises(OwnershipViolation):
        await engine.apply(
            change("crm", {"FirstName": "Anne"}, entity="Resident", canonical_id=rid, ext="C-17")
        )
