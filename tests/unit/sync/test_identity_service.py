"""Identity resolution over a FakeStore with the packaged ownership file: the consumer links a
contact and a resident, carries linked fields both ways without a loop, never re-suggests a
rejected pair, and refuses bad requests with nothing written; a vendor merge through the runner
re-points the cross-reference and the links and tombstones the merged contact."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change, Origin
from cadastre.errors import AlreadyExists, LinkRefused, NotFound
from cadastre.mapping import MappingRegistry
from cadastre.ownership import load_registry
from cadastre.ports import BusMessage, LinkState, RawPage, RawRecord
from cadastre.sync import SyncEngine, SyncRunner
from cadastre.sync.identity import Thresholds
from cadastre.sync.identity_consumer import IdentityConsumer
from cadastre.sync.identity_service import IdentityService
from cadastre.testing import EPOCH, FakeClock, FakeStore

T = "acme"


class Hub:
    """The parts identity resolution needs, and a pump for the outbox's events."""

    def __init__(self) -> None:
        self.clock = FakeClock(autojump=True)
        self.store = FakeStore(self.clock)
        self.engine = SyncEngine(self.store, load_registry(None), self.clock)
        self.service = IdentityService(self.store, self.engine, self.clock, Thresholds())
        self.consumer = IdentityConsumer(None, self.store, self.engine, self.service)  # type: ignore[arg-type]
        self.seen: list[Any] = []

    async def apply(self, system: str, entity: str, ext: str, minutes: float, **fields: Any) -> str:
        origin = Origin(system=system, connection=f"{system}-1", external_id=ext,
                        source_time=EPOCH + timedelta(minutes=minutes))  # fmt: skip
        result = await self.engine.apply(
            Change(tenant=T, entity=entity, fields=fields, origin=origin)
        )
        return result.canonical_id

    async def pump(self) -> list[Any]:
        """Hand every unpublished event to the consumer, until none is left (its own changes'
        events included): what the relay and the bus do. The events it handed."""
        handed: list[Any] = []
        while True:
            async with self.store.unit_of_work(T) as uow:
                events = [m.event for m in await uow.outbox.pending(limit=1000)]
                await uow.outbox.mark_published([e.id for e in events])
                await uow.commit()
            if not events:
                return handed
            handed += events
            await self.consumer.handle([BusMessage(e, "s", 1) for e in events])

    async def record(self, entity: str, id: str) -> Any:
        async with self.store.unit_of_work(T, read_only=True) as uow:
            return await uow.records.get(entity, id)

    async def links(self, state: LinkState | None = None) -> list[Any]:
        return await self.service.find(T, state=state)

    async def audit(self) -> list[Any]:
        async with self.store.unit_of_work(T, read_only=True) as uow:
            return [e async for e in uow.audit.entries()]


@pytest.fixture
def hub() -> Hub:
    return Hub()


ADA = {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"}


async def test_a_contact_and_a_resident_of_one_person_are_linked(hub: Hub) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7",
                               **{**ADA, "Email": "ADA@Example.com"})  # fmt: skip
    await hub.pump()
    (link,) = await hub.links()
    assert (link.left_id, link.right_id, link.state.value, link.how.value) == (
        contact, resident, "linked", "auto")  # fmt: skip
    assert link.confidence >= 0.9
    assert link.evidence["email"]["value"] == "ada@example.com"
    assert link.evidence["name"]["similarity"] == 1.0
    assert (await hub.record("Resident", resident)).data["ContactKey"] == contact
    assert [e.action for e in await hub.audit()].count("identity.linked") == 1
    await hub.pump()  # the events of the link's own changes make nothing more
    assert len(await hub.links()) == 1


async def test_linked_fields_travel_both_ways_with_the_same_origin(hub: Hub) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    await hub.apply("crm", "Contact", "101", 10, MobilePhone="5125550100")
    handed = await hub.pump()
    held = await hub.record("Resident", resident)
    assert held.data["MobilePhone"] == "5125550100"
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        stamp = (await uow.provenance.for_record("Resident", resident))["MobilePhone"]
    assert (stamp.system, stamp.connection, stamp.source_time) == (
        "crm", "crm-1", EPOCH + timedelta(minutes=10))  # fmt: skip
    derived = [e for e in handed if e.data["entity"] == "Resident"
               and "MobilePhone" in e.data["fields"]]  # fmt: skip
    cause = next(e for e in handed if e.data["entity"] == "Contact")
    assert [e.data["causation_id"] for e in derived] == [cause.id]
    # no loop: the contact got no change back from its own value
    assert [e for e in handed if e.data["entity"] == "Contact"] == [cause]
    # and the other way: the PMS edits the e-mail later
    await hub.apply("pms", "Resident", "7", 20, Email="ada@lovelace.example")
    await hub.pump()
    assert (await hub.record("Contact", contact)).data["Email"] == "ada@lovelace.example"


async def test_an_older_edit_does_not_overwrite_a_newer_one_across_the_link(hub: Hub) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    await hub.apply("pms", "Resident", "7", 30, LastName="King")
    await hub.apply("crm", "Contact", "101", 20, LastName="Byron")  # older than the PMS edit
    await hub.pump()
    assert (await hub.record("Resident", resident)).data["LastName"] == "King"
    assert (await hub.record("Contact", contact)).data["LastName"] == "King"


async def test_a_rejected_pair_is_never_suggested_again(hub: Hub) -> None:
    await hub.apply("crm", "Contact", "101", 1, ContactKey="101", Email="ada@example.com")
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", LastName="L",
                               Email="ada@example.com")  # fmt: skip
    await hub.pump()
    (suggestion,) = await hub.links()
    assert suggestion.state is LinkState.SUGGESTED
    assert (await hub.record("Resident", resident)).data.get("ContactKey") is None
    await hub.service.reject(T, suggestion.id, by="cli", reason="two people")
    await hub.apply("crm", "Contact", "101", 5, FirstName="Ada", LastName="L",
                    MobilePhone="5125550100")  # fmt: skip
    await hub.apply("pms", "Resident", "7", 6, MobilePhone="512-555-0100")
    await hub.pump()
    (still,) = await hub.links()
    assert (still.id, still.state) == (suggestion.id, LinkState.REJECTED)


async def test_confirm_then_unlink_stops_the_link_and_clears_contact_key(hub: Hub) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", Email="a@x.example")
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", LastName="L",
                               Email="a@x.example")  # fmt: skip
    await hub.pump()
    (suggestion,) = await hub.links()
    confirmed = await hub.service.confirm(T, suggestion.id, by="cli")
    assert confirmed.state is LinkState.LINKED
    assert (await hub.record("Resident", resident)).data["ContactKey"] == contact
    broken = await hub.service.unlink(T, confirmed.id, by="cli", reason="not the same person")
    assert broken.broken_reason == "not the same person"
    assert (await hub.record("Resident", resident)).data.get("ContactKey") is None
    await hub.pump()
    await hub.apply("crm", "Contact", "101", 10, MobilePhone="5125550100")
    await hub.pump()
    assert "MobilePhone" not in (await hub.record("Resident", resident)).data
    (rejected,) = await hub.links()
    assert rejected.state is LinkState.REJECTED
    actions = [e.action for e in await hub.audit() if e.action.startswith("identity.")]
    assert actions == ["identity.suggested", "identity.confirmed", "identity.unlinked"]


async def test_link_unlink_link_at_one_clock_reading_sets_contact_key_again(hub: Hub) -> None:
    # the fake clock stands still: the second "ContactKey = contact" change has the content of
    # the first, and must not be taken for a repeat of it
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", LastName="L")
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", LastName="K")
    made = await hub.service.link(T, contact, resident, by="cli")
    await hub.service.unlink(T, made.id, by="cli", reason="oops")
    assert (await hub.record("Resident", resident)).data.get("ContactKey") is None
    await hub.service.link(T, contact, resident, by="cli")
    assert (await hub.record("Resident", resident)).data["ContactKey"] == contact


async def test_two_contacts_tied_for_a_resident_are_only_suggested(hub: Hub) -> None:
    await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    await hub.apply("crm", "Contact", "102", 1, ContactKey="102", **ADA)
    await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    assert {x.state for x in await hub.links()} == {LinkState.SUGGESTED}
    assert len(await hub.links()) == 2


async def test_bad_requests_are_refused_with_nothing_written(hub: Hub) -> None:
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", Email="a@x.example")
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", LastName="L")
    other = await hub.apply("crm", "Contact", "102", 3, ContactKey="102", LastName="X")
    before = len(await hub.audit())
    with pytest.raises(NotFound, match="Resident 'nope' does not exist"):
        await hub.service.link(T, contact, "nope", by="cli")
    with pytest.raises(NotFound, match="Contact 'nope' does not exist"):
        await hub.service.link(T, "nope", resident, by="cli")
    with pytest.raises(NotFound, match="identity link 'idl_x' does not exist"):
        await hub.service.unlink(T, "idl_x", by="cli", reason="r")
    made = await hub.service.link(T, contact, resident, by="cli", note="checked by phone")
    after_link = len(await hub.audit())
    with pytest.raises(LinkRefused, match="needs a reason"):
        await hub.service.unlink(T, made.id, by="cli", reason="  ")
    with pytest.raises(LinkRefused, match="is linked, not suggested"):
        await hub.service.confirm(T, made.id, by="cli")
    with pytest.raises(LinkRefused, match="unlink a linked one"):
        await hub.service.reject(T, made.id, by="cli")
    with pytest.raises(AlreadyExists, match="linked to another contact"):
        await hub.service.link(T, other, resident, by="cli")
    assert len(await hub.audit()) == after_link == before + 2  # link + ContactKey change
    assert [x.id for x in await hub.links()] == [made.id]
    with pytest.raises(NotFound):
        await hub.service.link("globex", contact, resident, by="cli")  # another tenant


# ------------------------------------------------------------------------------ merges

CONTACT_MAPPING = """
mapping: crm/test
version: 1
entity: Contact
stream: contacts
key: id
timestamp: updatedAt
standard_names: false
unknown_fields: ignore
fields: {id: ContactKey, email: Email, firstname: FirstName, lastname: LastName, updatedAt: null}
"""


class Contacts:
    system = "crm"

    def __init__(self, records: Sequence[RawRecord]) -> None:
        self.records = list(records)

    def streams(self) -> Sequence[str]:
        return ["contacts"]

    async def aclose(self) -> None:
        return None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        yield RawPage(stream, self.records, {"n": len(self.records)})


def contact(id: str, minutes: float, **data: Any) -> RawRecord:
    when = EPOCH + timedelta(minutes=minutes)
    return RawRecord("contacts", id, {"id": id, "updatedAt": when.isoformat(), **data}, when)


async def test_a_vendor_merge_repoints_xref_and_links_and_tombstones(
    hub: Hub, tmp_path: Path
) -> None:
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
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        merged = await uow.xref.resolve("crm", "crm-1", "Contact", "101")
        survivor = await uow.xref.resolve("crm", "crm-1", "Contact", "102")
    assert merged is not None
    assert survivor is not None
    (old,) = await hub.links(LinkState.LINKED)
    assert old.left_id == merged

    merge = RawRecord("contacts", "101", {}, EPOCH + timedelta(minutes=5), merged_into="102")
    report = await sync(merge)
    assert report.tally.merged == 1
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        assert await uow.xref.resolve("crm", "crm-1", "Contact", "101") == survivor
        every = await uow.identities.for_record("Resident", resident, include_broken=True)
    assert (await hub.record("Contact", merged)).deleted
    (moved,) = await hub.links(LinkState.LINKED)
    assert moved.left_id == survivor
    assert moved.evidence["merged_from"] == {"record": merged, "link": old.id}
    assert moved.evidence["email"] == old.evidence["email"]  # the evidence is kept
    assert [x.broken_reason for x in every if not x.live] == [f"merged into {survivor}"]
    assert (await hub.record("Resident", resident)).data["ContactKey"] == survivor
    (entry,) = [e for e in await hub.audit() if e.action == "identity.merged"]
    assert (entry.entity_id, entry.detail["merged_into"]) == (merged, survivor)
    await hub.pump()  # the tombstone's event breaks nothing more: the links have moved
    assert [x.id for x in await hub.links(LinkState.LINKED)] == [moved.id]
    again = await sync(merge)  # the same merge record again changes nothing
    assert again.tally.merged == 1
    assert (await hub.record("Contact", survivor)).deleted is False


async def test_scan_matches_the_backlog_once(hub: Hub) -> None:
    # records stored while no consumer ran: no keys, no links
    contact = await hub.apply("crm", "Contact", "101", 1, ContactKey="101", **ADA)
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.apply("pms", "Resident", "8", 2, ResidentId="8", LastName="Babbage",
                    Email="ada@example.com")  # fmt: skip
    seen: list[tuple[int, int]] = []
    report = await hub.service.scan(T, progress=lambda done, total: seen.append((done, total)))
    assert (report.indexed, report.residents, report.linked, report.suggested) == (3, 2, 1, 0)
    assert seen[-1] == (5, 5)
    (link,) = await hub.links()
    assert (link.left_id, link.right_id) == (contact, resident)
    assert (await hub.record("Resident", resident)).data["ContactKey"] == contact
    again = await hub.service.scan(T)
    assert (again.linked, again.suggested) == (0, 0)
    assert len(await hub.links()) == 1


async def test_a_merge_onto_a_rejected_pair_clears_contact_key(hub: Hub, tmp_path: Path) -> None:
    # The merged contact is linked to the resident, but a person rejected the survivor and the
    # resident as one person: the link is not carried, so the resident's ContactKey must not
    # keep naming the merged (tombstoned) contact.
    family = tmp_path / "crm.yaml"
    family.write_text(CONTACT_MAPPING)
    mapper = MappingRegistry(tmp_path / "registry", {"crm/test": family}).load("crm/test")
    runner = SyncRunner(hub.engine, hub.store, hub.clock)

    async def sync(*records: RawRecord) -> Any:
        return await runner.run(tenant=T, connection="crm-1", connector=Contacts(records),
                                mappers={"contacts": mapper}, full=True)  # fmt: skip

    await sync(
        contact("101", 1, email="ada@example.com", firstname="Ada", lastname="Lovelace"),
        contact("102", 1, email="other@example.com", firstname="Ann", lastname="Other"),
    )
    resident = await hub.apply("pms", "Resident", "7", 2, ResidentId="7", **ADA)
    await hub.pump()
    async with hub.store.unit_of_work(T, read_only=True) as uow:
        merged = await uow.xref.resolve("crm", "crm-1", "Contact", "101")
        survivor = await uow.xref.resolve("crm", "crm-1", "Contact", "102")
    assert merged is not None
    assert survivor is not None
    (auto,) = await hub.links(LinkState.LINKED)
    await hub.service.unlink(T, auto.id, by="cli", reason="check")
    wrong = await hub.service.link(T, survivor, resident, by="cli")
    await hub.service.unlink(T, wrong.id, by="cli", reason="not Ann")  # the pair is rejected
    await hub.service.link(T, merged, resident, by="cli")
    assert (await hub.record("Resident", resident)).data["ContactKey"] == merged
    await hub.pump()

    merge = RawRecord("contacts", "101", {}, EPOCH + timedelta(minutes=5), merged_into="102")
    assert (await sync(merge)).tally.merged == 1
    await hub.pump()
    assert (await hub.record("Contact", merged)).deleted
    assert await hub.links(LinkState.LINKED) == []
    assert (await hub.record("Resident", resident)).data.get("ContactKey") is None
