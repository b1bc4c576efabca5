"""Review fixes of identity resolution: linked-field changes keyed by event and target (not by
content), a hand link that lost a race refused, and a merge's tombstone that retires the whole
record (or is counted and logged when it cannot)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change, Operation, Origin
from cadastre.errors import LinkRefused
from cadastre.mapping import MappingRegistry
from cadastre.ports import BusMessage, LinkState, RawRecord
from cadastre.sync import SyncRunner
from cadastre.sync import runner as runner_module
from cadastre.testing import EPOCH
from tests.unit.sync.test_identity_service import ADA, CONTACT_MAPPING, Contacts, Hub, T, contact


@pytest.fixture
def hub() -> Hub:
    return Hub()


async def test_linked_changes_are_keyed_by_event_and_target_not_content(hub: Hub) -> None:
    """Two events that set a linked field to one value with one origin (a source without
    times or versions, or the platform at one clock reading) are two propagations: a content
    key would take the second for a repeat of the first and drop it."""
    await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    sent: list[Change] = []
    apply = hub.engine.apply

    async def spy(change: Change) -> Any:
        sent.append(change)
        return await apply(change)

    hub.engine.apply = spy  # type: ignore[method-assign]
    await hub.apply("crm", "Contact", "101", 10, MobilePhone="5125550100")
    (event,) = [e for e in await hub.pump() if e.data["entity"] == "Contact"]
    first = [c for c in sent if c.entity == "Resident"]
    assert [c.fields for c in first] == [{"MobilePhone": "5125550100"}]
    async with hub.store.unit_of_work(T) as uow:  # the resident's value moves meanwhile
        record = await uow.records.get("Resident", resident)
        assert record is not None
        await uow.records.put("Resident", resident, {**record.data, "MobilePhone": "0"},
                              expected_version=record.version)  # fmt: skip
        await uow.commit()
    again = event.model_copy(update={"id": "ev-2"})  # another event, the same content
    await hub.consumer.handle([BusMessage(again, "s", 1)])
    second = [c for c in sent if c.entity == "Resident"][1:]
    assert [c.canonical_id for c in second] == [resident]
    assert second[0].idempotency_key != first[0].idempotency_key
    assert (await hub.record("Resident", resident)).data["MobilePhone"] == "5125550100"


async def test_a_hand_link_whose_update_lost_a_race_is_refused(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", Email="a@x.example")
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", LastName="L",
                               Email="a@x.example")  # fmt: skip
    await hub.pump()
    (suggestion,) = await hub.links()
    assert suggestion.state is LinkState.SUGGESTED
    before = len(await hub.audit())

    async def lost(self: Any, link: Any, *, expected_state: LinkState) -> bool:
        return False  # another writer changed the link between our read and our update

    from cadastre.testing.fake_identities import FakeIdentities

    monkeypatch.setattr(FakeIdentities, "update", lost)
    with pytest.raises(LinkRefused, match="changed meanwhile"):
        await hub.service.link(T, contact, resident, by="cli")
    assert len(await hub.audit()) == before  # no identity.linked entry, no ContactKey
    assert (await hub.record("Resident", resident)).data.get("ContactKey") is None


async def test_a_merge_tombstones_fields_written_after_the_merge_time(
    hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The merged contact holds a linked field the resident carried over after the vendor's
    merge time: a tombstone dated by the merge alone would clear only the older fields."""
    family = tmp_path / "crm.yaml"
    family.write_text(CONTACT_MAPPING)
    mapper = MappingRegistry(tmp_path / "registry", {"crm/test": family}).load("crm/test")
    runner = SyncRunner(hub.engine, hub.store, hub.clock)

    async def sync(*records: RawRecord) -> Any:
        return await runner.run(tenant=T, connection="crm-1", connector=Contacts(records),
                                mappers={"contacts": mapper}, full=True)  # fmt: skip

    await sync(
        contact("101", 1, email="ada@example.com", firstname="Ada", lastname="Lovelace"),
        contact("102", 1, email="a.l@example.com", firstname="Ada", lastname="L."),
    )
    await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    await hub.apply("pms", "Resident", "7", 30, MobilePhone="5125550100")  # after the merge
    await hub.pump()
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        merged = await uow.xref.resolve("crm", "crm-1", "Contact", "101")
    assert merged is not None
    assert (await hub.record("Contact", merged)).data["MobilePhone"] == "5125550100"

    merge = RawRecord("contacts", "101", {}, EPOCH + timedelta(minutes=5), merged_into="102")
    with caplog.at_level(logging.WARNING, logger="cadastre.sync.runner"):
        report = await sync(merge)
    assert report.tally.merged == 1
    assert report.tally.merges_incomplete == 0
    assert (await hub.record("Contact", merged)).deleted
    assert "merge on" not in caplog.text


async def test_a_merge_change_that_falls_short_is_counted_and_logged(
    hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge's tombstone that leaves fields behind is not dropped in silence: the runner
    counts it (``merges_incomplete``) and logs which fields remain."""
    family = tmp_path / "crm.yaml"
    family.write_text(CONTACT_MAPPING)
    mapper = MappingRegistry(tmp_path / "registry", {"crm/test": family}).load("crm/test")
    runner = SyncRunner(hub.engine, hub.store, hub.clock)

    async def sync(*records: RawRecord) -> Any:
        return await runner.run(tenant=T, connection="crm-1", connector=Contacts(records),
                                mappers={"contacts": mapper}, full=True)  # fmt: skip

    await sync(contact("101", 1, email="ada@example.com", firstname="Ada", lastname="Lovelace"))
    await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    await hub.apply("pms", "Resident", "7", 30, MobilePhone="5125550100")
    await hub.pump()
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        merged = await uow.xref.resolve("crm", "crm-1", "Contact", "101")
    assert merged is not None

    def dated_by_the_merge(merges: Any, clock: Any) -> Any:
        async def before(uow: Any) -> list[Change]:
            origin = Origin(system="crm", connection="crm-1",
                            source_time=EPOCH + timedelta(minutes=5))  # fmt: skip
            return [Change(tenant=T, entity="Contact", canonical_id=merged,
                           operation=Operation.DELETE, origin=origin,
                           idempotency_key="merge:test")]  # fmt: skip

        return before

    monkeypatch.setattr(runner_module, "merging", dated_by_the_merge)
    merge = RawRecord("contacts", "101", {}, EPOCH + timedelta(minutes=5), merged_into="102")
    with caplog.at_level(logging.WARNING, logger="cadastre.sync.runner"):
        report = await sync(merge)
    assert report.tally.merged == 1
    assert report.tally.merges_incomplete == 1
    assert "only partly deleted (fields" in caplog.text
    assert not (await hub.record("Contact", merged)).deleted
