"""Schema drift over the FakeStore: the first sync takes a snapshot only; later ones turn added,
removed and retyped fields and new enumeration values into one event, and replace the snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cadastre.ports import StreamSchema
from cadastre.sync.drift import DRIFT_EVENT, VALUES_CAP, SchemaDrift, record_drift
from cadastre.testing import FakeClock, FakeStore

from .conftest import TENANT, Reader

DECLARED = {"ListingKey": "Edm.String", "ListPrice": "Edm.Decimal", "StandardStatus": "Edm.String"}


async def observe(
    store: FakeStore,
    clock: FakeClock,
    declared: Mapping[str, str] | None,
    seen: Iterable[str] = (),
    values: Mapping[str, Iterable[str]] | None = None,
    cap: int = VALUES_CAP,
) -> SchemaDrift | None:
    async with store.unit_of_work(TENANT) as uow:
        drift = await record_drift(
            uow, tenant=TENANT, system="mls", connection="mls-1", stream="Property",
            declared=StreamSchema(dict(declared)) if declared is not None else None,
            seen_fields=seen, seen_values=values or {}, now=clock.now(), cap=cap,
        )  # fmt: skip
        await uow.commit()
    return drift


async def drift_events(read: Reader) -> list[dict[str, object]]:
    return [e.data for e in await read.events() if e.type == DRIFT_EVENT]


async def test_the_first_sync_takes_a_snapshot_and_raises_nothing(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    assert (
        await observe(store, clock, DECLARED, ["ListingKey"], {"StandardStatus": ["Active"]})
        is None
    )
    assert await drift_events(read) == []
    async with store.unit_of_work(TENANT) as uow:
        snapshot = await uow.schemas.get("mls-1", "Property")
    assert snapshot is not None
    assert dict(snapshot.declared) == DECLARED
    assert dict(snapshot.seen_values) == {"StandardStatus": ["Active"]}


async def test_added_removed_retyped_fields_and_new_values_are_one_event(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    await observe(
        store, clock, DECLARED, ["ListingKey", "ListPrice"], {"StandardStatus": ["Active"]}
    )
    now = {"ListingKey": "Edm.String", "ListPrice": "Edm.String", "NWM_View": "Edm.Boolean"}
    drift = await observe(
        store, clock, now, ["ListingKey", "ListPrice", "NWM_Seen"],
        {"StandardStatus": ["Active", "Active Under Contract"]},
    )  # fmt: skip
    assert drift == SchemaDrift(
        added={"NWM_Seen": "", "NWM_View": "Edm.Boolean"},
        removed={"StandardStatus": "Edm.String"},
        retyped={"ListPrice": ("Edm.Decimal", "Edm.String")},
        new_values={"StandardStatus": ["Active Under Contract"]},
    )
    (event,) = await drift_events(read)
    assert event["retyped"] == {"ListPrice": {"was": "Edm.Decimal", "is": "Edm.String"}}
    assert event["new_values"] == {"StandardStatus": ["Active Under Contract"]}
    assert event["stream"] == "Property"

    same = await observe(store, clock, now, ["ListingKey"], {"StandardStatus": ["Active"]})
    assert not same  # the snapshot was replaced: the same schema again is no drift
    assert len(await drift_events(read)) == 1


async def test_what_one_sync_did_not_see_is_not_called_removed(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    await observe(
        store, clock, DECLARED, ["ListingKey", "ListPrice"], {"StandardStatus": ["A", "B"]}
    )
    # An incremental sync of a few records, and a vendor that did not answer for $metadata.
    assert not await observe(store, clock, None, ["ListingKey"], {"StandardStatus": ["B"]})
    assert not await observe(store, clock, DECLARED, [], {})
    assert await drift_events(read) == []


async def test_a_fields_first_values_are_its_baseline(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    await observe(store, clock, DECLARED, [], {"StandardStatus": []})
    assert not await observe(store, clock, DECLARED, [], {"StandardStatus": ["Active"]})
    drift = await observe(store, clock, DECLARED, [], {"StandardStatus": ["Pending"]})
    assert drift == SchemaDrift(new_values={"StandardStatus": ["Pending"]})


async def test_declarations_first_heard_after_a_silent_first_sync_are_a_baseline(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    # $metadata did not answer on the first sync: nothing was declared to compare with, so the
    # first declarations are not "added" (only a field newly seen in the data is).
    await observe(store, clock, None, ["ListingKey", "ListPrice"])
    drift = await observe(store, clock, DECLARED, ["ListingKey", "ListPrice", "NWM_View"])
    assert drift is not None
    assert drift.added == {"NWM_View": ""}
    later = await observe(store, clock, {**DECLARED, "NWM_Pool": "Edm.Boolean"})
    assert later is not None
    assert later.added == {"NWM_Pool": "Edm.Boolean"}


async def test_a_field_past_the_values_cap_is_open_ended_said_once_and_no_longer_grows(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    # Free text in a lookup field: every sync brings new "values".
    await observe(store, clock, DECLARED, [], {"Remarks": ["r0"], "StandardStatus": ["Active"]})
    under = await observe(store, clock, DECLARED, [], {"Remarks": ["r1", "r2"]}, cap=3)
    assert under == SchemaDrift(new_values={"Remarks": ["r1", "r2"]})
    values = {"Remarks": ["r3", "r4"], "StandardStatus": ["Pending"]}
    past = await observe(store, clock, DECLARED, [], values, cap=3)
    assert past == SchemaDrift(new_values={"StandardStatus": ["Pending"]}, open_ended=["Remarks"])
    (_, event) = await drift_events(read)
    assert event["open_ended"] == ["Remarks"]
    for n in range(3):  # said once: later values are neither kept nor reported
        assert not await observe(store, clock, DECLARED, [], {"Remarks": [f"x{n}", f"y{n}"]},
                                 cap=3)  # fmt: skip
    async with store.unit_of_work(TENANT) as uow:
        snapshot = await uow.schemas.get("mls-1", "Property")
    assert snapshot is not None
    assert len(snapshot.seen_values["Remarks"]) == 1  # the open-ended mark, not the values
    assert snapshot.seen_values["StandardStatus"] == ["Active", "Pending"]
    # Other fields still drift as before.
    drift = await observe(store, clock, DECLARED, [], {"StandardStatus": ["Sold"]}, cap=3)
    assert drift == SchemaDrift(new_values={"StandardStatus": ["Sold"]})


async def test_the_default_cap_keeps_a_thousand_values_a_field(
    store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    await observe(store, clock, DECLARED, [], {"Remarks": [f"r{n:04d}" for n in range(1000)]})
    assert not await observe(store, clock, DECLARED, [], {"Remarks": ["r0000"]})
    drift = await observe(store, clock, DECLARED, [], {"Remarks": ["one more"]})
    assert drift == SchemaDrift(open_ended=["Remarks"])
    assert not await observe(store, clock, DECLARED, [], {"Remarks": ["and another"]})
