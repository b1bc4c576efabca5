"""The Buildium connector against the Buildium simulator over real HTTP on loopback, with a hub on
SQLite and one fake clock: tenants, units and leases synced in full and incrementally (under the
vendor's 10 requests a second, never tripped), offset paging that loses nothing while objects
change, a signed webhook normalised into the record, the write path (read, merge, PUT every
field: nothing blanked, where a naive PUT blanks), read-back of a create whose answer was lost,
and bad pages and records quarantined without stopping the sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.errors import ContractError, VendorUnavailable, WriteIndeterminate
from cadastre.ports import (
    InboxStatus,
    OutboundWrite,
    TargetConnector,
    WriteOperation,
)
from cadastre.simulators import FaultProfile, serve
from cadastre.simulators.buildium import BuildiumSimulator, WebhookSettings
from cadastre.testing import FakeClock

TENANT, PMS = "acme", "pms"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8", "::1")
KEYS = {"x-buildium-client-id": "demo-client-id", "x-buildium-client-secret": "demo-client-secret"}
HOOK_SECRET = "buildium-hook-secret"
API_KEY_META = {"header": "x-buildium-client-secret", "id_header": "x-buildium-client-id",
                "id": "demo-client-id"}  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW, autojump=True)


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    hub = await bootstrap(
        Settings(data_dir=tmp_path, mappings_dir=mappings, gateway_allow_hosts=LOOPBACK),
        clock=clock, configure_logs=False,
    )  # fmt: skip
    await hub.tenants.create(TENANT, "Acme")
    await hub.vault.add(TENANT, "pms-key", "api_key", {"api_key": "demo-client-secret"},
                        API_KEY_META)  # fmt: skip
    await hub.vault.add(TENANT, "pms-hooks", "webhook_secret", {"secret": HOOK_SECRET})
    yield hub
    await hub.close()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[BuildiumSimulator]:
    simulator = BuildiumSimulator(units=40, seed=5, clock=clock)  # the vendor's 10/s
    yield simulator
    await simulator.webhooks.stop()


@pytest.fixture
async def pms(hub: Hub, sim: BuildiumSimulator) -> AsyncIterator[str]:
    async with serve(sim.app) as running:
        await connect(hub, running.url)
        yield running.url


async def connect(hub: Hub, url: str, **config: Any) -> None:
    await hub.connections.put(TENANT, ConnectionSpec(
        name=PMS, system="pms", connector="pms/buildium", credential="pms-key",
        config={"base_url": url, "gateway": {"allow_hosts": list(LOOPBACK)},
                "webhook": {"scheme": "buildium", "credential": "pms-hooks"}, **config},
    ))  # fmt: skip


async def held(hub: Hub, entity: str) -> dict[str, Any]:
    """Buildium id -> the stored record's data (tombstones as None)."""
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        refs = await uow.xref.for_connection(PMS, entity, limit=100_000)
        records = await uow.records.get_many(entity, [r.canonical_id for r in refs])
    return {r.external_id: (None if records[r.canonical_id].deleted
                            else dict(records[r.canonical_id].data)) for r in refs}  # fmt: skip


async def target(hub: Hub) -> TargetConnector:
    source = await hub.open_source(TENANT, PMS)
    connector = source.connector
    assert isinstance(connector, TargetConnector)
    return connector


def update(entity: str, external_id: int, **fields: Any) -> OutboundWrite:
    return OutboundWrite(write_id="w1", key="k1", entity=entity, canonical_id="c1",
                         external_id=str(external_id), operation=WriteOperation.UPDATE,
                         fields=fields)  # fmt: skip


def got(sim: BuildiumSimulator, resource: str, id: int) -> dict[str, Any]:
    """The object as the simulator serves it (it must exist)."""
    found = sim.get(resource, id)
    assert found is not None, (resource, id)
    return found


# ----------------------------------------------------------------------------------- sync


@pytest.mark.usefixtures("pms")
async def test_full_then_incremental_sync_of_the_three_streams(
    hub: Hub, sim: BuildiumSimulator, clock: FakeClock
) -> None:
    full = await hub.sync(TENANT, PMS)
    counts = {r: len(sim.ids(r)) for r in ("tenants", "units", "leases")}
    assert full.tally.fetched == sum(counts.values())
    assert full.tally.created == sum(counts.values())
    assert full.tally.quarantined == 0
    residents, units = await held(hub, "Resident"), await held(hub, "Unit")
    leases = await held(hub, "Lease")
    assert len(residents) == counts["tenants"]
    assert len(units) == counts["units"]
    tenant = sim.ids("tenants")[0]
    served = got(sim, "tenants", tenant)
    stored = residents[str(tenant)]
    assert stored["Email"] == served["Email"]
    assert stored["LastName"] == served["LastName"]
    cell = next(p["Number"] for p in served["PhoneNumbers"] if p["Type"] == "Cell")
    assert stored["MobilePhone"] == cell
    assert stored["LeaseId"] == str(served["Leases"][0]["Id"])
    unit = got(sim, "units", sim.ids("units")[0])
    assert units[str(unit["Id"])]["UnitNumber"] == unit["UnitNumber"]
    assert units[str(unit["Id"])]["Currency"] == "USD"
    lease = got(sim, "leases", sim.ids("leases")[0])
    held_lease = leases[str(lease["Id"])]
    assert held_lease["StartDate"] == lease["LeaseFromDate"]
    assert held_lease["ResidentIds"] == [str(t["Id"]) for t in lease["CurrentTenants"]]
    assert sim.stats.rate_limit_violations == 0  # the gateway kept under 10/s

    clock.advance(600)
    sim.ui_edit("tenants", tenant, {"Email": "changed@example.com"})
    sim.ui_edit("units", unit["Id"], {"MarketRent": 4321.0})
    sim.ui_edit("leases", lease["Id"], {"LeaseToDate": "2030-01-31"})
    # (an edit in the very second a read starts is the next read's: the bound has whole seconds)
    clock.advance(5)
    incremental = await hub.sync(TENANT, PMS)
    assert incremental.tally.fetched == 3  # only what changed since the last read
    assert incremental.tally.updated == 3
    assert (await held(hub, "Resident"))[str(tenant)]["Email"] == "changed@example.com"
    assert float((await held(hub, "Unit"))[str(unit["Id"])]["MarketRent"]) == 4321.0
    assert (await held(hub, "Lease"))[str(lease["Id"])]["EndDate"] == "2030-01-31"
    clock.advance(60)
    overlap = await hub.sync(TENANT, PMS)  # within the overlap: read again, changes nothing
    assert overlap.tally.fetched == 3
    assert overlap.tally.updated == overlap.tally.created == 0
    clock.advance(600)
    await hub.sync(TENANT, PMS)  # its window still reaches back over the edits
    clock.advance(600)
    quiet = await hub.sync(TENANT, PMS)
    assert quiet.tally.fetched == 0
    assert sim.stats.rate_limit_violations == 0


@pytest.mark.usefixtures("pms")
async def test_objects_leaving_the_window_mid_read_do_not_make_offset_paging_skip_others(
    hub: Hub, sim: BuildiumSimulator, clock: FakeClock
) -> None:
    await hub.connections.put(TENANT, ConnectionSpec(
        name=PMS, system="pms", connector="pms/buildium", credential="pms-key",
        config={**(await hub.connections.get(TENANT, PMS)).config, "page_size": 7},
    ))  # fmt: skip
    connector = (await hub.open_source(TENANT, PMS)).connector
    seen: list[str] = []
    pages = 0
    async for page in connector.read("units", None):
        seen.extend(r.external_id for r in page.records if r.external_id)
        pages += 1
        if pages == 2:
            # Three units already read are edited now: they move past the read's upper bound,
            # and every unit after them slides three places towards the start.
            clock.advance(2)
            for unit in sim.ids("units")[:3]:
                sim.ui_edit("units", unit, {"Description": "painted"})
    assert set(seen) == {str(u) for u in sim.ids("units")}  # none skipped


@pytest.mark.usefixtures("pms")
async def test_a_read_that_stopped_part_way_resumes_in_its_window_at_its_offset(
    hub: Hub, sim: BuildiumSimulator, clock: FakeClock
) -> None:
    await hub.connections.put(TENANT, ConnectionSpec(
        name=PMS, system="pms", connector="pms/buildium", credential="pms-key",
        config={**(await hub.connections.get(TENANT, PMS)).config, "page_size": 7},
    ))  # fmt: skip
    connector = (await hub.open_source(TENANT, PMS)).connector
    first: list[str] = []
    cursor: Any = None
    async for page in connector.read("units", None):
        first.extend(r.external_id for r in page.records if r.external_id)
        cursor = page.cursor
        if len(first) == 14:
            break  # the run dies after its second page
    assert cursor["Offset"] == 14
    window = cursor["Window"]
    clock.advance(3600)
    sim.ui_edit("units", sim.ids("units")[-1], {"Description": "after the window"})
    rest: list[str] = []
    last: Any = None
    async for page in connector.read("units", cursor):
        rest.extend(r.external_id for r in page.records if r.external_id)
        last = page.cursor
    units = [str(u) for u in sim.ids("units")]
    # The same window from offset 14 (not from the start), except: the edited unit left the
    # window (the next read takes it), and its leaving made the read step back one place.
    assert rest[:7] == units[14:21]
    assert set(rest) == set(units[13:-1])
    assert last == {"LastUpdatedFrom": window[1]}  # the window's end, not the resume's time
    clock.advance(5)  # (an edit in the second a read starts is the next read's)
    following = [r.external_id async for page in connector.read("units", last)
                 for r in page.records]  # fmt: skip
    assert following == [units[-1]]


# ------------------------------------------------------------------------------- webhooks


async def test_a_signed_webhook_is_read_through_the_gateway_into_the_record(
    hub: Hub, sim: BuildiumSimulator, pms: str
) -> None:
    await hub.sync(TENANT, PMS)
    tenant, gone = sim.ids("tenants")[1], sim.ids("tenants")[2]
    async with serve_app(create_app(hub)) as api:
        sim.webhooks.configure(WebhookSettings(url=f"{api.url}/webhooks/{TENANT}/{PMS}",
                                               secret=HOOK_SECRET, duplicate_rate=1.0))  # fmt: skip
        async with hub.webhooks_in.normaliser(hub):
            sim.ui_edit("tenants", tenant, {"FirstName": "Pushed"})
            sim.ui_delete("tenants", gone)
            await sim.webhooks.drain()
            await settled(hub, sim.webhooks.stats.sent)
    assert sim.webhooks.stats.sent == 4  # each event twice: Buildium does not promise once
    residents = await held(hub, "Resident")
    assert residents[str(tenant)]["FirstName"] == "Pushed"
    assert residents[str(gone)] is None  # LeaseTenant.Deleted: a tombstone


async def test_a_webhook_driven_tenant_is_dated_by_the_event_not_by_its_late_read(
    hub: Hub, sim: BuildiumSimulator, pms: str, clock: FakeClock
) -> None:
    await hub.sync(TENANT, PMS)
    tenant = sim.ids("tenants")[1]
    async with serve_app(create_app(hub)) as api:
        sim.webhooks.configure(WebhookSettings(url=f"{api.url}/webhooks/{TENANT}/{PMS}",
                                               secret=HOOK_SECRET, hold=True))  # fmt: skip
        async with hub.webhooks_in.normaliser(hub):
            edited_at = clock.now()
            sim.ui_edit("tenants", tenant, {"FirstName": "Late"})
            clock.advance(1800)  # delivered (and read) half an hour after the edit
            sim.webhooks.release()
            await sim.webhooks.drain()
            await settled(hub, 2)
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        ref = next(r for r in await uow.xref.for_connection(PMS, "Resident", limit=100_000)
                   if r.external_id == str(tenant))  # fmt: skip
        stamps = await uow.provenance.for_record("Resident", ref.canonical_id)
    assert (await held(hub, "Resident"))[str(tenant)]["FirstName"] == "Late"
    assert stamps["FirstName"].source_time == edited_at  # EventDateTime, not the read time


async def settled(hub: Hub, sent: int) -> None:
    for _ in range(1000):
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            counts = {s: n for (c, s), n in (await uow.webhooks_in.counts()).items() if c == PMS}
        if not counts.get(InboxStatus.PENDING) and sum(counts.values()) >= sent // 2:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"webhooks not normalised: {counts}")


# --------------------------------------------------------------------------------- writes


@pytest.mark.usefixtures("pms")
async def test_an_update_of_one_field_sends_every_other_field_unchanged(
    hub: Hub, sim: BuildiumSimulator
) -> None:
    connector = await target(hub)
    assert connector.writable()["Resident"] >= {"Email", "MobilePhone", "FirstName"}
    tenant = next(t for t in sim.ids("tenants")
                  if len(got(sim, "tenants", t)["PhoneNumbers"]) == 2)  # fmt: skip
    before = got(sim, "tenants", tenant)
    receipt = await connector.write(update("Resident", tenant, Email="new@example.com"))
    after = got(sim, "tenants", tenant)
    assert after == {**before, "Email": "new@example.com"}  # nothing blanked
    assert sim.stats.puts[f"tenants/{tenant}"] == 1
    assert receipt.external_id == str(tenant)
    assert receipt.values["Email"] == "new@example.com"
    assert receipt.values["HomePhone"] == before["PhoneNumbers"][1]["Number"]
    assert receipt.source_version
    assert receipt.source_version.startswith("sha256:")

    unit = sim.ids("units")[0]
    before_unit = got(sim, "units", unit)
    await connector.write(update("Unit", unit, Bedrooms=3, Bathrooms=1.5))
    assert got(sim, "units", unit) == {**before_unit, "UnitBedrooms": "ThreeBed",
                                      "UnitBathrooms": "OnePointFiveBath"}  # fmt: skip
    lease = sim.ids("leases")[0]
    before_lease = got(sim, "leases", lease)
    done = await connector.write(update("Lease", lease, EndDate="2031-12-31"))
    after_lease = got(sim, "leases", lease)
    assert after_lease["LeaseToDate"] == "2031-12-31"
    assert {k: v for k, v in after_lease.items() if k not in ("LeaseToDate", "LastUpdatedDateTime")
            } == {k: v for k, v in before_lease.items()
                  if k not in ("LeaseToDate", "LastUpdatedDateTime")}  # fmt: skip
    assert done.source_version == after_lease["LastUpdatedDateTime"]


@pytest.mark.usefixtures("pms")
async def test_an_update_carrying_the_tenants_own_lease_is_written_another_lease_is_refused(
    hub: Hub, sim: BuildiumSimulator
) -> None:
    # Resident.LeaseId is writable (on create); an update that carries it unchanged (a whole
    # record propagated, a patch repeating it) is written, one that moves the tenant is refused
    # before anything is sent (Buildium moves tenants by a move-in, not by a PUT).
    connector = await target(hub)
    tenant = sim.ids("tenants")[0]
    lease = got(sim, "tenants", tenant)["Leases"][0]["Id"]
    receipt = await connector.write(update("Resident", tenant, Email="same@example.com",
                                           LeaseId=str(lease)))  # fmt: skip
    assert got(sim, "tenants", tenant)["Email"] == "same@example.com"
    assert receipt.values["LeaseId"] == str(lease)
    other = next(i for i in sim.ids("leases") if i != lease)
    with pytest.raises(ContractError, match="move-in"):
        await connector.write(update("Resident", tenant, Email="x@example.com",
                                     LeaseId=str(other)))  # fmt: skip
    assert sim.stats.puts[f"tenants/{tenant}"] == 1  # the refused one sent nothing
    assert got(sim, "tenants", tenant)["Email"] == "same@example.com"


@pytest.mark.usefixtures("pms")
async def test_a_naive_put_of_one_field_blanks_the_others(pms: str, sim: BuildiumSimulator) -> None:
    tenant = sim.ids("tenants")[0]
    before = got(sim, "tenants", tenant)
    assert before["Email"]
    assert before["PhoneNumbers"]
    async with httpx.AsyncClient(base_url=pms, headers=KEYS) as client:
        answer = await client.put(
            f"/v1/leases/tenants/{tenant}",
            json={
                "FirstName": "Only",
                "LastName": before["LastName"],
                "Address": before["Address"],
            },
        )
    assert answer.status_code == 200
    after = got(sim, "tenants", tenant)
    assert after["Email"] is None
    assert after["PhoneNumbers"] == []


@pytest.mark.usefixtures("pms")
async def test_read_back_finds_a_create_whose_answer_was_lost(
    hub: Hub, sim: BuildiumSimulator
) -> None:
    connector = await target(hub)
    lease = next(i for i in sim.ids("leases") if got(sim, "leases", i)["LeaseStatus"] == "Active")
    create = OutboundWrite(
        write_id="w2", key="k2", entity="Resident", canonical_id="c2", external_id=None,
        operation=WriteOperation.CREATE,
        fields={"LeaseId": str(lease), "FirstName": "Lost", "LastName": "Answer",
                "Email": "lost.answer@example.com"},
    )  # fmt: skip
    assert await connector.read_back(create) is None  # nothing created yet
    sim.fail_writes(1, after_commit=True)
    with pytest.raises(VendorUnavailable):
        await connector.write(create)  # the POST is not resent (no idempotency key)
    assert sim.stats.api_creates["tenants"] == 1
    found = await connector.read_back(create)
    assert found is not None
    created = got(sim, "tenants", int(found.external_id))
    assert created["Email"] == "lost.answer@example.com"
    assert created["Address"] == got(sim, "units", got(sim, "leases", lease)["UnitId"])["Address"]
    assert sim.stats.api_creates["tenants"] == 1  # one create for one logical write

    sim.ui_create("tenants", {"LeaseId": lease, "FirstName": "Lost", "LastName": "Answer",
                              "Email": "lost.answer@example.com"})  # fmt: skip
    with pytest.raises(WriteIndeterminate, match="2 Buildium tenants"):
        await connector.read_back(create)


# ------------------------------------------------------------------------------ bad input


async def test_unreadable_pages_and_records_without_id_are_quarantined_not_fatal(
    hub: Hub, sim: BuildiumSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = sim.ids("tenants")[3]
    served = sim.book.tenant

    def without_id(row: Any, *, nested: bool = False) -> dict[str, Any]:
        item = served(row, nested=nested)
        if row.id == broken and not nested:
            del item["Id"]
        return item

    monkeypatch.setattr(sim.book, "tenant", without_id)
    sim.faults = FaultProfile(garbage_rate=1.0, paths=("/v1/rentals/units",))
    async with serve(sim.app) as running:
        await connect(hub, running.url, page_attempts=2)
        report = await hub.sync(TENANT, PMS)
    assert report.tally.unreadable_pages == 1  # the units page: an HTML error page
    assert report.tally.quarantined == 1  # the tenant without Id
    assert report.tally.created == len(sim.ids("tenants")) - 1 + len(sim.ids("leases"))
    async with hub.store.unit_of_work(TENANT) as uow:
        items = await uow.quarantine.open_items(PMS)
    codes = sorted(q.code for q in items)
    assert codes == ["malformed_page", "missing_key"]
    page = next(q for q in items if q.code == "malformed_page")
    assert "<html>" in page.payload["body"]
    assert page.stream == "units"
