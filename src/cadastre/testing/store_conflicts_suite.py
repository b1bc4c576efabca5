"""``ConflictsStoreSuite``: the conformance tests of ``uow.conflicts`` - version vectors stored
per record and read in bulk, the review queue filtered by state and entity, a resolution that
happens once, and tenants that never see each other's.

``StoreSuite`` inherits it, so FakeStore, SQLite and PostgreSQL all run these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import Conflict, ConflictResolution, ConflictState, FieldVector
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"


def conflict(id: str, entity: str = "Resident", record_id: str = "R1") -> Conflict:
    stamp = {"system": "pms", "connection": "pms-1", "source_time": EPOCH.isoformat(),
             "source_version": None}  # fmt: skip
    return Conflict(
        id=id, entity=entity, record_id=record_id, field="Email",
        current={"value": "a@pms.example", "stamp": stamp},
        incoming={"value": "b@crm.example", "stamp": {**stamp, "system": "crm"}},
        vector={"v": 2, "seen": {"pms-1": 2, "crm-1": 1}}, rule="rule 3 'Resident.Email'",
        created_at=EPOCH,
    )  # fmt: skip


class ConflictsStoreSuite:
    async def test_versions_round_trip_in_bulk_and_per_tenant(self, store: Store) -> None:
        email = FieldVector(2, {"pms-1": 2, "crm-1": 1})
        async with store.unit_of_work(A) as uow:
            await uow.conflicts.put_versions(
                "Resident", {"R1": {"Email": email}, "R2": {"MobilePhone": FieldVector(1, {})}}
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            found = await uow.conflicts.versions("Resident", ["R1", "R2", "R3"])
            assert found == {"R1": {"Email": email}, "R2": {"MobilePhone": FieldVector(1, {})}}
            assert await uow.conflicts.versions("Contact", ["R1"]) == {}
            # a put replaces the record's whole map
            await uow.conflicts.put_versions("Resident", {"R1": {"Email": FieldVector(3, {})}})
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert (await uow.conflicts.versions("Resident", ["R1"]))["R1"] == {
                "Email": FieldVector(3, {})
            }
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.conflicts.versions("Resident", ["R1", "R2"]) == {}

    async def test_the_review_queue(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.conflicts.add_many([conflict("cf_1"), conflict("cf_2", "Contact", "C1")])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            with pytest.raises(AlreadyExists):
                await uow.conflicts.add_many([conflict("cf_1")])
        async with store.unit_of_work(A) as uow:
            assert await uow.conflicts.get("cf_1") == conflict("cf_1")
            assert [c.id for c in await uow.conflicts.find()] == ["cf_1", "cf_2"]
            assert [c.id for c in await uow.conflicts.find(entity="Contact")] == ["cf_2"]
            assert [c.id for c in await uow.conflicts.find(record_id="R1")] == ["cf_1"]
            assert [c.id for c in await uow.conflicts.find(limit=1)] == ["cf_1"]
            done = await uow.conflicts.resolve(
                "cf_1", resolution=ConflictResolution.VALUE, value={"x": [1]}, by="alice",
                at=EPOCH,
            )  # fmt: skip
            assert (done.state, done.resolution, done.resolved_value, done.resolved_by) == (
                ConflictState.RESOLVED,
                ConflictResolution.VALUE,
                {"x": [1]},
                "alice",
            )
            assert done.resolved_at == EPOCH
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.conflicts.get("cf_1") == done
            open_ = await uow.conflicts.find(state=ConflictState.OPEN)
            assert [c.id for c in open_] == ["cf_2"]
            with pytest.raises(ConcurrentUpdate, match="resolved already"):
                await uow.conflicts.resolve(
                    "cf_1", resolution=ConflictResolution.KEEP_CURRENT, value=None, by="bob",
                    at=EPOCH,
                )  # fmt: skip
            with pytest.raises(NotFound):
                await uow.conflicts.resolve(
                    "cf_9", resolution=ConflictResolution.KEEP_CURRENT, value=None, by="bob",
                    at=EPOCH,
                )  # fmt: skip
        async with store.unit_of_work(B) as uow:
            assert await uow.conflicts.get("cf_2") is None
            assert await uow.conflicts.find() == []
            with pytest.raises(NotFound):
                await uow.conflicts.resolve(
                    "cf_2", resolution=ConflictResolution.KEEP_CURRENT, value=None, by="eve",
                    at=EPOCH,
                )  # fmt: skip
