"""The HubSpot connector against the HubSpot simulator over real HTTP on loopback, into SQLite
through a hub, on one fake clock: full and incremental syncs of contacts and deals, a token
refreshed in the middle of a sync, webhook batches through the hub's endpoint and normaliser
(a malformed one quarantined, the next applied), merges as merge records, write-back (PATCH,
upsert by email sent twice, a lost deal create read back, archive) and 429s absorbed by the
gateway without a violation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub
from cadastre.cli.serve import serve_app
from cadastre.connectors.crm.hubspot import HubSpotConnector
from cadastre.directory import ConnectionSpec
from cadastre.errors import VendorRejected
from cadastre.ports import (
    InboxStatus,
    OutboundWrite,
    StoredRecord,
    TargetConnector,
    WriteOperation,
)
from cadastre.simulators import FaultProfile, serve
from cadastre.simulators.hubspot import HubSpotSimulator
from cadastre.simulators.hubspot.webhooks import sign_v3
from cadastre.testing import FakeClock
from tests.integration.mls_hub import LOOPBACK, TENANT, fake_clock, open_hub

CRM = "crm"
SECRET = "demo-secret"
APP = {"client_id": "demo-client", "client_secret": SECRET}
META = {"auth_method": "client_secret_post", "refresh_token_reuse": "allowed"}


@dataclass
class Setup:
    hub: Hub
    sim: HubSpotSimulator
    url: str
    clock: FakeClock

    async def connect(self, **config: Any) -> None:
        await self.hub.connections.put(TENANT, ConnectionSpec(
            name=CRM, system="crm", connector="crm/hubspot", credential="crm-app",
            config={"base_url": self.url, "gateway": {"allow_hosts": list(LOOPBACK)}, **config},
        ))  # fmt: skip

    async def connector(self) -> HubSpotConnector:
        source = await self.hub.open_source(TENANT, CRM)
        assert isinstance(source.connector, HubSpotConnector)
        return source.connector


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
async def setup(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Setup]:
    sim = HubSpotSimulator(clock=clock, contacts=120, deals=30)
    async with serve(sim.app) as up, open_hub(tmp_path, clock, mappings={}, credentials={}) as hub:
        grant = sim.oauth.grant()  # the user installed the app: its refresh token is ours
        secrets = {**APP, "refresh_token": str(grant["refresh_token"])}
        await hub.vault.add(TENANT, "crm-app", "oauth2_authorization_code", secrets, META)
        yield Setup(hub, sim, up.url, clock)
        await sim.webhooks.stop()


async def held(hub: Hub, entity: str) -> dict[str, StoredRecord]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        refs = await uow.xref.for_connection(CRM, entity, limit=100_000)
        records = await uow.records.get_many(entity, [r.canonical_id for r in refs])
    return {r.external_id: records[r.canonical_id] for r in refs}


async def test_sync_contacts_and_deals_then_incrementally_by_search(setup: Setup) -> None:
    await setup.connect(page_size=25)
    await setup.hub.sync(TENANT, CRM)
    contacts, deals = await held(setup.hub, "Contact"), await held(setup.hub, "Deal")
    assert len(contacts) == 120
    assert len(deals) == 30
    some = setup.sim.get("contacts", "1007")
    assert contacts["1007"].data["Email"] == some.properties["email"]
    assert contacts["1007"].data["MobilePhone"] == some.properties["mobilephone"]
    deal = setup.sim.get("deals", "5003")
    assert deals["5003"].data["DealName"] == deal.properties["dealname"]
    assert float(deals["5003"].data["Amount"]) == float(deal.properties["amount"] or "nan")
    assert setup.sim.stats.searches == 0  # a first sync lists

    setup.clock.advance(600)
    setup.sim.ui_edit("contacts", "1007", {"lastname": "Renamed", "jobtitle": "agent"})
    setup.sim.ui_edit("deals", "5003", {"dealstage": "closedwon", "hs_contact_ids": "1007;1008"})
    made = setup.sim.ui_create("contacts", {"email": "late@example.com", "firstname": "Late"})
    before = setup.sim.stats.requests
    await setup.hub.sync(TENANT, CRM)
    assert setup.sim.stats.searches >= 2  # one search per stream at least, no list
    assert setup.sim.stats.requests - before <= 6
    contacts, deals = await held(setup.hub, "Contact"), await held(setup.hub, "Deal")
    assert contacts["1007"].data["LastName"] == "Renamed"
    assert contacts[made.id].data["FirstName"] == "Late"
    assert deals["5003"].data["DealStage"] == "closedwon"
    assert deals["5003"].data["ContactIds"] == ["1007", "1008"]


async def test_incremental_search_pages_past_many_changes_without_skipping(setup: Setup) -> None:
    await setup.connect(search_page_size=7, streams=["contacts"])
    await setup.hub.sync(TENANT, CRM)
    setup.clock.advance(600)
    edited = [f"{1001 + n}" for n in range(0, 120, 3)]
    for n, object_id in enumerate(edited):  # 40 edits; pairs share a millisecond
        if n % 2 == 0:
            setup.clock.advance(1)
        setup.sim.ui_edit("contacts", object_id, {"jobtitle": f"title {n}"})
    await setup.hub.sync(TENANT, CRM)
    contacts = await held(setup.hub, "Contact")
    assert {k for k, r in contacts.items() if str(r.data.get("JobTitle", "")).startswith("title")} \
        == set(edited)  # fmt: skip


async def test_a_record_read_last_and_edited_again_is_read_again(setup: Setup) -> None:
    # The cursor remembers the ids read at its instant; the same id at a later instant is a new
    # change, not one already read.
    await setup.connect(streams=["contacts"])
    await setup.hub.sync(TENANT, CRM)
    setup.clock.advance(600)
    setup.sim.ui_edit("contacts", "1007", {"jobtitle": "first"})
    await setup.hub.sync(TENANT, CRM)
    assert (await held(setup.hub, "Contact"))["1007"].data["JobTitle"] == "first"
    setup.clock.advance(50)
    setup.sim.ui_edit("contacts", "1007", {"jobtitle": "second"})
    await setup.hub.sync(TENANT, CRM)
    assert (await held(setup.hub, "Contact"))["1007"].data["JobTitle"] == "second"


async def test_every_incremental_read_looks_back_120_seconds(setup: Setup) -> None:
    # A change HubSpot's search index shows late (its time is before the cursor's) is found by
    # the next read's look-back, also when the cursor holds ids already read at its instant.
    await setup.connect(streams=["contacts"])
    connector = await setup.connector()
    setup.clock.advance(600)
    late = setup.sim.ui_edit("contacts", "1020", {"jobtitle": "indexed late"})
    setup.clock.advance(60)
    read = setup.sim.ui_edit("contacts", "1021", {"jobtitle": "read"})
    cursor = {"since": read.updated.isoformat(), "seen": ["1021"]}
    setup.clock.advance(600)
    pages = [p async for p in connector.read("contacts", cursor)]
    ids = [r.external_id for p in pages for r in p.records]
    assert late.id in ids
    assert "1021" not in ids  # read at that very instant already
    assert pages[-1].cursor["since"] == read.updated.isoformat()  # never moves back
    # with nothing new, the cursor stays where it was (the look-back does not drag it back)
    again = [p async for p in connector.read("contacts", pages[-1].cursor)]
    assert again[-1].cursor["since"] == read.updated.isoformat()


async def test_the_token_is_refreshed_in_the_middle_of_a_sync(
    tmp_path: Path, clock: FakeClock
) -> None:
    sim = HubSpotSimulator(clock=clock, contacts=60, token_ttl=120)
    async with serve(sim.app) as up, open_hub(tmp_path, clock, mappings={}, credentials={}) as hub:
        grant = sim.oauth.grant()
        secrets = {**APP, "refresh_token": str(grant["refresh_token"])}
        await hub.vault.add(TENANT, "crm-app", "oauth2_authorization_code", secrets, META)
        s = Setup(hub, sim, up.url, clock)
        await s.connect(streams=["contacts"], page_size=10)
        await hub.sync(TENANT, CRM)
        clock.advance(600)
        for n in range(30):
            sim.ui_edit("contacts", str(1001 + n), {"jobtitle": f"t{n}"})
            clock.advance(1)
        # searches 5 records at a time, 40 s apart: the read outlives several access tokens
        await s.connect(streams=["contacts"], search_page_size=5, search_interval=40)
        refreshes = sim.oauth.counts.refreshes
        await hub.sync(TENANT, CRM)
        contacts = await held(hub, "Contact")
    assert sim.oauth.counts.refreshes - refreshes >= 2
    assert {contacts[str(1001 + n)].data["JobTitle"] for n in range(30)} == {
        f"t{n}" for n in range(30)
    }
    assert sim.stats.unauthorized == 0  # refreshed before expiry, not after a 401


async def test_429s_are_absorbed_by_the_gateway_without_violations(setup: Setup) -> None:
    for n in range(700):
        setup.sim.ui_create("contacts", {"email": f"bulk{n}@example.com"})
    # 82 list pages at once: more than 100 requests in 10 s unless the gateway paces them
    await setup.connect(page_size=10, streams=["contacts"])
    setup.sim.faults = FaultProfile(throttle_rate=0.05, retry_after=2, seed=3)
    await setup.hub.sync(TENANT, CRM)
    assert len(await held(setup.hub, "Contact")) == 820
    assert setup.sim.stats.faults_injected["throttle"] > 0  # vendor 429s, answered by retries
    assert setup.sim.stats.rate_limit_violations == 0


# ------------------------------------------------------------------------------- webhooks


@dataclass
class Pushed:
    setup: Setup
    endpoint: str


@pytest.fixture
async def pushed(setup: Setup) -> AsyncIterator[Pushed]:
    await setup.hub.vault.add(TENANT, "crm-hooks", "webhook_secret", {"secret": SECRET})
    async with serve_app(create_app(setup.hub)) as api:
        endpoint = f"{api.url}/webhooks/{TENANT}/{CRM}"
        await setup.connect(ingestion="webhook", webhook={
            "scheme": "hubspot_v3", "credential": "crm-hooks", "url": endpoint})  # fmt: skip
        yield Pushed(setup, endpoint)


async def settled(hub: Hub, count: int) -> dict[InboxStatus, int]:
    for _ in range(1000):
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            counts = {s: n for (c, s), n in (await uow.webhooks_in.counts()).items() if c == CRM}
        if not counts.get(InboxStatus.PENDING) and sum(counts.values()) >= count:
            return counts
        await asyncio.sleep(0.01)
    raise AssertionError(f"webhooks not normalised: {counts}")


async def test_webhook_batches_are_normalised_and_a_malformed_one_quarantined(
    pushed: Pushed,
) -> None:
    setup, hub, sim = pushed.setup, pushed.setup.hub, pushed.setup.sim
    await hub.sync(TENANT, CRM)
    from cadastre.simulators.hubspot import WebhookSettings

    sim.webhooks.configure(WebhookSettings(url=pushed.endpoint, secret=SECRET))
    setup.clock.advance(60)
    async with hub.webhooks_in.normaliser(hub):
        # a signed body that is not an event array: stored (2xx), then quarantined
        body = b'{"not": "a batch"}'
        stamp_ms = str(int(setup.clock.now().timestamp() * 1000))
        headers = {"content-type": "application/json", "X-HubSpot-Request-Timestamp": stamp_ms,
                   "X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", pushed.endpoint, body,
                                                     stamp_ms)}  # fmt: skip
        async with httpx.AsyncClient() as client:
            answer = await client.post(pushed.endpoint, content=body, headers=headers)
        assert answer.status_code < 300
        sim.ui_edit("contacts", "1010", {"firstname": "Pushed"})
        sim.ui_archive("contacts", "1011")
        sim.ui_edit("deals", "5002", {"amount": "2500.00"})
        made = sim.ui_create("contacts", {"email": "hook@example.com", "lastname": "Hook"})
        await sim.webhooks.drain()
        counts = await settled(hub, 2)
    assert sim.webhooks.stats.sent == 1  # one batch of four events
    assert counts == {InboxStatus.PROCESSED: 1, InboxStatus.QUARANTINED: 1}
    contacts, deals = await held(hub, "Contact"), await held(hub, "Deal")
    assert contacts["1010"].data["FirstName"] == "Pushed"
    assert contacts["1011"].deleted
    assert float(deals["5002"].data["Amount"]) == 2500.0
    assert contacts[made.id].data["LastName"] == "Hook"
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        quarantined = await uow.quarantine.open_counts(code="malformed_webhook")
    assert sum(quarantined.values()) == 1


async def _merge_audits(hub: Hub) -> list[Any]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return [e async for e in uow.audit.entries() if e.action == "identity.merged"]


async def test_a_merge_webhook_repoints_the_xref_through_the_hub_once(pushed: Pushed) -> None:
    setup, hub, sim = pushed.setup, pushed.setup.hub, pushed.setup.sim
    await hub.sync(TENANT, CRM)
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        kept = await uow.xref.resolve("crm", CRM, "Contact", "1001")
        gone = await uow.xref.resolve("crm", CRM, "Contact", "1002")
    assert kept is not None
    assert gone is not None
    assert kept != gone
    from cadastre.simulators.hubspot import WebhookSettings

    sim.webhooks.configure(WebhookSettings(url=pushed.endpoint, secret=SECRET))
    setup.clock.advance(60)
    async with hub.webhooks_in.normaliser(hub):
        sim.merge("1001", "1002")  # someone merges the two in HubSpot's UI
        await sim.webhooks.drain()
        await settled(hub, 1)
    assert sim.webhooks.stats.sent == 1
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        assert await uow.xref.resolve("crm", CRM, "Contact", "1002") == kept
        merged_away = await uow.records.get_many("Contact", [gone, kept])
    assert merged_away[gone].deleted
    assert not merged_away[kept].deleted
    audits = await _merge_audits(hub)
    assert [(a.entity_id, a.detail["merged_into"]) for a in audits] == [(gone, kept)]

    # Every later read of the survivor announces the merge again (hs_merged_object_ids): the
    # identity service takes it as done, no second tombstone, no second audit entry.
    for _ in range(2):
        setup.clock.advance(30)
        sim.ui_edit("contacts", "1001", {"jobtitle": f"again {setup.clock.now().second}"})
        report = await hub.sync(TENANT, CRM)
        assert report.tally.merged == 1
        assert report.tally.deleted == 0
    assert [a.entity_id for a in await _merge_audits(hub)] == [gone]
    contacts = await held(hub, "Contact")
    assert not contacts["1001"].deleted
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        assert await uow.xref.resolve("crm", CRM, "Contact", "1002") == kept
        assert (await uow.audit.verify()).ok


async def test_a_merge_event_yields_merge_records_and_names_who_changed_what(
    setup: Setup,
) -> None:
    await setup.connect()
    connector = await setup.connector()
    sim = setup.sim
    setup.clock.advance(5)
    sim.merge("1001", "1002")
    occurred = int(setup.clock.now().timestamp() * 1000)
    batch = [
        {"eventId": 1, "subscriptionId": 104, "portalId": 62515, "appId": 4711,
         "occurredAt": occurred, "subscriptionType": "contact.merge", "attemptNumber": 0,
         "objectId": 1001, "primaryObjectId": 1001, "mergedObjectIds": [1002],
         "newObjectId": 1001, "numberOfPropertiesMoved": 1, "changeSource": "CRM_UI",
         "sourceId": "userId:501"},
        # a change to the merged id, read back: it answers as the survivor
        {"eventId": 2, "subscriptionId": 101, "portalId": 62515, "appId": 4711,
         "occurredAt": occurred - 1, "subscriptionType": "contact.propertyChange",
         "attemptNumber": 0, "objectId": 1002, "propertyName": "email", "propertyValue": "x",
         "changeSource": "INTEGRATION", "sourceId": "4711"},
        {"eventId": 3, "subscriptionId": 103, "occurredAt": occurred, "objectId": 55,
         "subscriptionType": "company.creation"},  # another object type: passed over
        "not an event",
    ]  # fmt: skip
    import orjson

    records = await connector.webhook_records(orjson.dumps(batch), {})
    merges = [r for r in records if r.merged_into is not None]
    assert {(r.external_id, r.merged_into) for r in merges} == {("1002", "1001")}
    survivor = [r for r in records if r.external_id == "1001" and r.merged_into is None]
    assert len(survivor) == 1
    assert survivor[0].data["hs_merged_object_ids"] == "1002"
    assert survivor[0].data["@changeSource"] == "CRM_UI"
    assert survivor[0].source_version == sim.get("contacts", "1001").properties["lastmodifieddate"]
    problems = [r for r in records if r.problem is not None]
    assert len(problems) == 1
    # a poll of the survivor announces the merge too
    pages = [p async for p in connector.read("contacts", None)]
    polled = [r for p in pages for r in p.records if r.merged_into is not None]
    assert [(r.external_id, r.merged_into) for r in polled] == [("1002", "1001")]
    with pytest.raises(ValueError, match="JSON array"):
        await connector.webhook_records(b'{"value": []}', {})


# ----------------------------------------------------------------------------- write-back


def _write(entity: str, op: WriteOperation, fields: dict[str, Any], external_id: str | None = None,
           key: str = "w-1") -> OutboundWrite:  # fmt: skip
    return OutboundWrite(write_id="write-1", key=key, entity=entity, canonical_id="c-1",
                         external_id=external_id, operation=op, fields=fields)  # fmt: skip


async def test_writes_patch_upsert_once_create_archive_and_read_back(setup: Setup) -> None:
    await setup.connect()
    connector = await setup.connector()
    sim = setup.sim
    assert isinstance(connector, TargetConnector)
    assert connector.writable()["Contact"] >= {"FirstName", "Email", "MobilePhone"}

    setup.clock.advance(30)
    patch = {"FirstName": "Patched", "HomePhone": None}
    receipt = await connector.write(_write("Contact", WriteOperation.UPDATE, patch, "1003"))
    held_now = sim.get("contacts", "1003")
    assert held_now.properties["firstname"] == "Patched"
    assert "phone" not in held_now.properties  # cleared
    assert receipt.source_version == held_now.properties["lastmodifieddate"]
    assert receipt.values == {"FirstName": "Patched", "HomePhone": None}
    assert sim.stats.patches == {"1003": 1}

    create = _write("Contact", WriteOperation.CREATE,
                    {"Email": "Once@Example.com", "FirstName": "Once"}, key="c-once")  # fmt: skip
    first = await connector.write(create)
    second = await connector.write(create)  # a resend after a crash: the same contact
    assert first.external_id == second.external_id
    assert sim.stats.creates_by_id_property["once@example.com"] == 1
    assert await connector.read_back(create) is not None

    # a deal create whose answer is lost: never resent by the gateway, found by read-back
    deal = _write("Deal", WriteOperation.CREATE, {"DealName": "Unit 4B lease", "Amount": "1850"})
    sim.fail_writes(1, "lost")
    with pytest.raises(Exception):  # noqa: B017, PT011 - VendorUnavailable, whatever its text
        await connector.write(deal)
    assert sim.stats.creates == 2  # the contact and the deal: nothing sent twice
    found = await connector.read_back(deal)
    assert found is not None
    assert sim.get("deals", found.external_id).properties["dealname"] == "Unit 4B lease"
    assert connector.idempotency("Deal", WriteOperation.CREATE).value == "none"
    assert connector.idempotency("Contact", WriteOperation.CREATE).value == "natural"

    gone = _write("Deal", WriteOperation.DELETE, {}, found.external_id)
    await connector.write(gone)
    await connector.write(gone)  # archived already: done
    assert sim.get("deals", found.external_id).archived
    assert await connector.read_back(gone) is not None

    with pytest.raises(VendorRejected, match="needs an Email"):
        await connector.write(_write("Contact", WriteOperation.CREATE, {"FirstName": "X"}))
    with pytest.raises(VendorRejected, match="cannot write"):
        await connector.write(_write("Contact", WriteOperation.UPDATE, {"ContactKey": "9"}, "1"))


async def test_a_write_to_a_merged_id_reaches_the_survivor(setup: Setup) -> None:
    await setup.connect()
    connector = await setup.connector()
    setup.sim.merge("1001", "1002")
    receipt = await connector.write(_write("Contact", WriteOperation.UPDATE,
                                           {"LastName": "Merged"}, "1002"))  # fmt: skip
    assert receipt.external_id == "1001"
    back = await connector.read_back(_write("Contact", WriteOperation.UPDATE, {}, "1002"))
    assert back is not None
    assert back.external_id == "1001"
    assert setup.sim.get("contacts", "1001").properties["lastname"] == "Merged"


async def test_a_merge_into_a_new_record_retires_the_primary_id_too(setup: Setup) -> None:
    # HubSpot's newer merges make a new record: primary and secondary both answer as it.
    await setup.connect(streams=["contacts"])
    connector = await setup.connector()
    event = {"eventId": 9, "subscriptionId": 104, "portalId": 62515, "appId": 4711,
             "occurredAt": int(setup.clock.now().timestamp() * 1000),
             "subscriptionType": "contact.merge", "attemptNumber": 0, "objectId": 1001,
             "primaryObjectId": 1001, "mergedObjectIds": [1002], "newObjectId": 1003,
             "numberOfPropertiesMoved": 2, "changeSource": "CRM_UI"}  # fmt: skip
    import orjson

    records = await connector.webhook_records(orjson.dumps([event]), {})
    merges = [(r.external_id, r.merged_into) for r in records if r.merged_into is not None]
    assert merges == [("1001", "1003"), ("1002", "1003")]  # the primary first
    assert [r.external_id for r in records if r.merged_into is None] == ["1003"]


async def test_a_merge_into_a_new_record_through_the_hub(pushed: Pushed) -> None:
    setup, hub, sim = pushed.setup, pushed.setup.hub, pushed.setup.sim
    sim.merge_new_id = True
    await hub.sync(TENANT, CRM)
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        primary = await uow.xref.resolve("crm", CRM, "Contact", "1001")
        secondary = await uow.xref.resolve("crm", CRM, "Contact", "1002")
    assert primary is not None
    assert secondary is not None
    from cadastre.simulators.hubspot import WebhookSettings

    sim.webhooks.configure(WebhookSettings(url=pushed.endpoint, secret=SECRET))
    setup.clock.advance(60)
    async with hub.webhooks_in.normaliser(hub):
        made = sim.merge("1001", "1002")
        await sim.webhooks.drain()
        await settled(hub, 1)
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        for external_id in ("1001", "1002", made.id):  # one record under all three ids
            assert await uow.xref.resolve("crm", CRM, "Contact", external_id) == primary
        records = await uow.records.get_many("Contact", [primary, secondary])
    assert records[secondary].deleted
    assert not records[primary].deleted
    assert records[primary].data["Email"] == made.properties["email"]
    await hub.sync(TENANT, CRM)  # the poll agrees: nothing more merged away
    assert [a.entity_id for a in await _merge_audits(hub)] == [primary, secondary]
