"""``MlsStoreSuite``: the conformance tests of what issue 6 added to the store port: a record's
data confidence and ``min_confidence``, an API key's payload class, quarantine entries that can be
replayed (stream, code, attempts, paging), one connection's refs for key reconciliation, and
schema snapshots.

``StoreSuite`` inherits it (as it does ``BulkStoreSuite``), so every adapter runs these too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.errors import NotFound
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    ExternalRef,
    PayloadClass,
    RecordWrite,
    SchemaSnapshot,
)
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store
    from cadastre.testing.clock import FakeClock

A, B = "acme", "globex"


class MlsStoreSuite:
    async def test_record_confidence_is_the_last_writes_score(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            first = await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0,
                                          confidence=0.75)  # fmt: skip
            unscored = await uow.records.put("Listing", "L2", {"n": 2}, expected_version=0)
            await uow.commit()
        assert first.confidence == 0.75
        assert unscored.confidence is None
        async with store.unit_of_work(A) as uow:
            kept = await uow.records.put("Listing", "L1", {"n": 3}, expected_version=1)
            rescored = await uow.records.put_many(
                [RecordWrite("Listing", "L2", {"n": 4}, 1, confidence=0.5)]
            )
            await uow.commit()
        assert kept.confidence is None  # an unscored write leaves the record unscored
        assert rescored[0].confidence == 0.5
        async with store.unit_of_work(A, read_only=True) as uow:
            assert (await uow.records.get("Listing", "L1")) == kept
            assert (await uow.records.get("Listing", "L2")) == rescored[0]

    async def test_min_confidence_keeps_unscored_records(self, store: Store) -> None:
        scores = {"L1": 0.2, "L2": 0.8, "L3": None, "L4": 0.79999, "L5": 1.0}
        async with store.unit_of_work(A) as uow:
            await uow.records.put_many(
                [RecordWrite("Listing", i, {}, 0, confidence=c) for i, c in scores.items()]
            )
            await uow.commit()
        async with store.unit_of_work(B) as uow:  # another tenant's record never shows
            await uow.records.put("Listing", "L9", {}, expected_version=0, confidence=1.0)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.records.query("Listing", min_confidence=0.8)
            everything = await uow.records.query("Listing")
        assert [r.id for r in found] == ["L2", "L3", "L5"]
        assert [r.id for r in everything] == ["L1", "L2", "L3", "L4", "L5"]

    async def test_api_key_payload_class_round_trips(self, store: Store) -> None:
        await store.create_tenant(A, "Acme")
        idx = ApiKey("kidx000000001", A, ApiKeyScope.READ, "ab" * 32, EPOCH, label="site",
                     payload_class=PayloadClass.IDX)  # fmt: skip
        full = ApiKey("kful000000001", A, ApiKeyScope.READ, "cd" * 32, EPOCH)
        async with store.unit_of_work(A) as uow:
            await uow.keys.add(idx)
            await uow.keys.add(full)
            await uow.commit()
        assert await store.find_api_key("kidx000000001") == idx
        found = await store.find_api_key("kful000000001")
        assert found is not None
        assert found.payload_class is PayloadClass.FULL

    async def test_quarantine_keeps_stream_and_code_and_pages(
        self, store: Store, clock: FakeClock
    ) -> None:
        async with store.unit_of_work(A) as uow:
            items = [
                await uow.quarantine.add(
                    connection="mls",
                    entity="Listing",
                    external_id=f"X{i}",
                    reason=f"bad {i}",
                    payload={"i": i},
                    stream="Property",
                    code="unknown_enum_value" if i % 2 else "invalid_value",
                )
                for i in range(5)
            ]
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            other = await uow.quarantine.add(
                connection="mls", entity="Listing", external_id="Y", reason="r", payload={},
                stream="Property", code="invalid_value",
            )  # fmt: skip
            await uow.commit()
        assert items[0].stream == "Property"
        assert items[1].code == "unknown_enum_value"
        assert items[0].attempts == 0
        async with store.unit_of_work(A) as uow:
            odd = await uow.quarantine.open_items(code="unknown_enum_value")
            assert [q.external_id for q in odd] == ["X1", "X3"]
            first_two = await uow.quarantine.open_items("mls", limit=2)
            assert [q.external_id for q in first_two] == ["X0", "X1"]
            rest = await uow.quarantine.open_items("mls", after=first_two[-1].id)
            assert [q.external_id for q in rest] == ["X2", "X3", "X4"]
            assert await uow.quarantine.get(items[2].id) == items[2]
            assert await uow.quarantine.open_counts() == {"mls": 5}
            assert await uow.quarantine.open_counts(code="unknown_enum_value") == {"mls": 2}
            assert await uow.quarantine.open_counts(code="nothing") == {}
            assert await uow.quarantine.get(other.id) is None  # another tenant's entry
            clock.advance(60)
            await uow.quarantine.note_failed_replay(
                items[1].id, reason="still unknown: 'Sold-ish'", code="unknown_enum_value"
            )
            with pytest.raises(NotFound):
                await uow.quarantine.note_failed_replay(other.id, reason="x", code="y")
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            again = await uow.quarantine.get(items[1].id)
            assert again is not None
            assert (again.attempts, again.reason, again.payload) == (
                1,
                "still unknown: 'Sold-ish'",
                {"i": 1},
            )
            assert again.resolved_at is None
        async with store.unit_of_work(A) as uow:
            await uow.quarantine.resolve(items[0].id)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.quarantine.open_counts() == {"mls": 4}  # resolved ones not counted
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.quarantine.open_items() == [other]
            assert await uow.quarantine.open_counts() == {"mls": 1}

    async def test_refs_of_one_connection_page_by_external_id(self, store: Store) -> None:
        refs = [ExternalRef("mls", "north", "Listing", f"K{i:03}", f"c{i}") for i in range(7)]
        async with store.unit_of_work(A) as uow:
            await uow.xref.link_many(refs[::-1])
            await uow.xref.link(ExternalRef("mls", "south", "Listing", "K000", "s0"))
            await uow.xref.link(ExternalRef("mls", "north", "Media", "M1", "m1"))
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            await uow.xref.link(ExternalRef("mls", "north", "Listing", "K999", "b"))
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            page = await uow.xref.for_connection("north", "Listing", limit=3)
            assert page == refs[:3]
            rest = await uow.xref.for_connection("north", "Listing", after=page[-1].external_id)
            assert rest == refs[3:]
            assert await uow.xref.for_connection("north", "Contact") == []

    async def test_schema_snapshot_is_replaced_per_connection_stream(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = SchemaSnapshot(
            "north", "Property", {"ListPrice": "Edm.Decimal", "NWM_Tag": "Edm.String"},
            ["ListPrice", "NWM_Tag"], {"StandardStatus": ["Active", "Pending"]}, EPOCH,
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            assert await uow.schemas.get("north", "Property") is None
            await uow.schemas.put(first)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.schemas.get("north", "Property") == first
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.schemas.get("north", "Property") is None
        second = SchemaSnapshot(
            "north", "Property", {"ListPrice": "Edm.String"}, ["ListPrice"], {},
            EPOCH + timedelta(hours=1),
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.schemas.put(second)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.schemas.get("north", "Property") == second
            assert await uow.schemas.get("north", "Media") is None
