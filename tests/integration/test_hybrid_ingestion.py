"""Hybrid ingestion (issue 7, item 6): a webhook-driven RESO connection, over real HTTP on loopback
into SQLite, on one fake clock shared by the hub and the simulator.

The connector reads what the simulator pushes as a poll reads it (records, key-only events read
back through the gateway, vanished and MLS Grid style deletions); a webhook-driven connection is
polled only every ``CADASTRE_WEBHOOK_POLL_SECONDS``; `cadastre connections add --ingestion`
takes the setting. End to end, with the hub's webhook endpoint and normaliser: the simulator drops
30 % of its notifications on purpose, the records whose webhooks arrived are applied and the
dropped ones are not, until the slow poll (the scheduled job, on the fake clock) catches every
missed one and the store equals the simulator; duplicated and reordered notifications never
regress a record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadastre.api import create_app
from cadastre.bootstrap import Hub
from cadastre.cli.serve import serve_app
from cadastre.connectors.mls.reso import ResoConnector
from cadastre.contract import Change, Operation
from cadastre.errors import ConfigurationError
from cadastre.mapping.records import parse_time
from cadastre.ports import InboxStatus, StoredRecord
from cadastre.simulators import ResoSimulator, serve
from cadastre.sync.scheduler import SyncScheduler
from cadastre.testing import FakeClock
from cadastre.webhooks.standard import new_secret
from tests.integration.cli_env import LOOPBACK, cli
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock, open_hub

QUICK = "mapping: quick\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n" \
        "refresh: {every_minutes: 5, overlap_minutes: 1}\n"  # fmt: skip
MAPPINGS = {"test-mls": "mapping: test-mls\nversion: 1\nextends: mls/reso\n"
            "local_prefixes: [ACT_]\n", "quick": QUICK}  # fmt: skip
HOOKS = "mls-hooks"  # the vault credential that verifies the MLS's webhooks
WEBHOOK = {"scheme": "standard_webhooks", "credential": HOOKS}
MLS = "austin"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    async with open_hub(tmp_path, clock, mappings=MAPPINGS, project_mappings=["mlsgrid"]) as hub:
        yield hub


@dataclass
class Capture:
    """A subscriber that keeps what it is sent (the hub's endpoint stands in for it later)."""

    url: str = ""
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.got.append((await request.body(), dict(request.headers)))
        return Response(status_code=204)


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    catcher = Capture()
    async with serve(Starlette(routes=[Route("/", catcher.endpoint, methods=["POST"])])) as up:
        catcher.url = f"{up.url}/"
        yield catcher


# --------------------------------------------------------------------------- reading pushes


@pytest.mark.parametrize(
    ("dialect", "mapping", "payload"),
    [("default", "test-mls", "records"), ("default", "test-mls", "keys"),
     ("mlsgrid", "mlsgrid", "records")],
)  # fmt: skip
async def test_the_connector_reads_what_the_mls_pushes_as_a_poll_reads_it(
    hub: Hub, clock: FakeClock, capture: Capture, dialect: str, mapping: str, payload: str
) -> None:
    sim = ResoSimulator(records=60, seed=41, clock=clock, rate_limit=None, dialect=dialect,
                        bad_record_rate=0.1)  # fmt: skip
    async with serve(sim.app) as running:
        await connect_reso(hub, "austin", running.url, mapping=mapping, ingestion="webhook",
                           webhook=WEBHOOK)  # fmt: skip
        source = await hub.open_source(TENANT, "austin")
        assert isinstance(source.connector, ResoConnector)  # a ReceivesWebhooks
        mapper = source.mappers["Property"]
        await _subscribe(running.url, capture.url, payload=payload, batch=7)
        clock.advance(60)
        touched = set(sim.touch(count=20, changes={"ListPrice": 777_000}))
        touched |= set(sim.create(3))
        gone = set(sim.delete(count=4))
        await sim.webhooks.drain()
        pushed: dict[str, Change | Any] = {}
        for body, headers in capture.got:
            for raw in await source.connector.webhook_records(body, headers):
                pushed[raw.external_id or repr(raw.data)] = mapper.map(
                    raw, tenant=TENANT, connection="austin", system="mls")  # fmt: skip
        polled: dict[str, Change | Any] = {}
        async for page in source.connector.read("Property", None):
            for raw in page.records:
                if raw.external_id in touched | gone:
                    polled[raw.external_id] = mapper.map(
                        raw, tenant=TENANT, connection="austin", system="mls")  # fmt: skip
        await sim.webhooks.stop()
    deletes = {k for k, c in pushed.items() if isinstance(c, Change)
               and c.operation is Operation.DELETE}  # fmt: skip
    assert deletes == gone
    for key in touched - gone:
        if key in polled:
            assert pushed[key] == polled[key], key  # the same change, idempotency key and all
        else:  # served without its key (bad data): quarantined either way
            assert key not in pushed
    if dialect == "mlsgrid":  # withdrawn listings stay in its feed: the deletion rule reads both
        assert all(polled[key] == pushed[key] for key in gone)


# -------------------------------------------------------------------------------- schedule


async def test_a_webhook_driven_connection_is_polled_slowly(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_hub(tmp_path, clock, mappings=MAPPINGS, sync_every_seconds=1800,
                        reconcile_every_seconds=86_400) as hub:  # fmt: skip
        await connect_reso(hub, "pushed", "http://127.0.0.1:9", mapping="quick",
                           ingestion="webhook", webhook=WEBHOOK)  # fmt: skip
        await connect_reso(hub, "polled", "http://127.0.0.1:9", mapping="quick")
        await connect_reso(hub, "plain", "http://127.0.0.1:9", ingestion="poll")
        jobs = {(j.connection, j.kind): j.every for j in await hub.scheduled_jobs()}
    assert jobs == {
        ("pushed", "sync"): 21_600.0,  # CADASTRE_WEBHOOK_POLL_SECONDS, not the MLS's 5 minutes
        ("polled", "sync"): 300.0,  # refresh.every_minutes: 5
        ("plain", "sync"): 1800.0,  # CADASTRE_SYNC_EVERY_SECONDS
        ("pushed", "reconcile"): 86_400.0,
        ("polled", "reconcile"): 86_400.0,
        ("plain", "reconcile"): 86_400.0,
    }
    (tmp_path / "again").mkdir()
    async with open_hub(tmp_path / "again", clock, mappings=MAPPINGS,
                        webhook_poll_seconds=3600) as hub:  # fmt: skip
        await connect_reso(hub, "pushed", "http://127.0.0.1:9", ingestion="webhook",
                           webhook=WEBHOOK)  # fmt: skip
        await connect_reso(hub, "misspelt", "http://127.0.0.1:9", ingestion="push")
        await connect_reso(hub, "deaf", "http://127.0.0.1:9", ingestion="webhook")
        jobs = {(j.connection, j.kind): j.every for j in await hub.scheduled_jobs()}
        with pytest.raises(ConfigurationError, match="ingestion"):
            await hub.sync(TENANT, "misspelt")
        with pytest.raises(ConfigurationError, match="no webhook block"):
            await hub.sync(TENANT, "deaf")
    assert jobs[("pushed", "sync")] == 3600.0
    # a refused setting is scheduled at the default cadence; each sync says what is wrong
    assert jobs[("misspelt", "sync")] == jobs[("deaf", "sync")] == 900.0


# ------------------------------------------------------------------------------------- CLI


def test_connections_add_takes_the_ingestion_mode(tmp_path: Path) -> None:
    run = cli(tmp_path)
    run("tenants", "create", "acme", "--name", "Acme")
    config = {"base_url": "http://127.0.0.1:9/odata", "gateway": {"allow_hosts": LOOPBACK},
              "webhook": WEBHOOK}  # fmt: skip
    add = ["connections", "add", "-t", "acme", "--system", "mls"]
    run(*add, "austin", "--connector", "mls/reso", "--config", json.dumps(config),
        "--ingestion", "webhook")  # fmt: skip
    assert '"ingestion": "webhook"' in run("connections", "show", "austin", "-t", "acme")
    refused = run(*add, "other", "--connector", "mls/reso", "--ingestion", "push", code=2)
    assert "poll or webhook" in refused
    # checked against the connector before anything is saved (a connection without a webhook
    # block is refused the same way: test_a_webhook_driven_connection_is_polled_slowly)
    rets = json.dumps({"login_url": "http://127.0.0.1:9/login", "webhook": WEBHOOK})
    refused = run(*add, "old", "--connector", "mls/rets", "--config", rets, "--ingestion",
                  "webhook", code=2)  # fmt: skip
    assert "mls/rets cannot read webhooks" in refused


# ------------------------------------------------------------------------------ end to end


@dataclass
class Pushed:
    """The simulator pushing to the hub's webhook endpoint (served on loopback)."""

    sim: ResoSimulator
    sim_url: str
    endpoint: str  # POST /webhooks/acme/austin
    secret: str

    async def subscribe(self, **extra: Any) -> None:
        await _subscribe(self.sim_url, self.endpoint, secret=self.secret, **extra)


@pytest.fixture
async def pushed(hub: Hub, clock: FakeClock) -> AsyncIterator[Pushed]:
    secret = new_secret()
    await hub.vault.add(TENANT, HOOKS, "webhook_secret", {"secret": secret})
    sim = ResoSimulator(records=150, seed=51, clock=clock, rate_limit=None)
    async with serve(sim.app) as mls, serve_app(create_app(hub)) as api:
        await connect_reso(hub, MLS, mls.url, ingestion="webhook", webhook=WEBHOOK,
                           page_size=100)  # fmt: skip
        yield Pushed(sim, mls.url, f"{api.url}/webhooks/{TENANT}/{MLS}", secret)
        await sim.webhooks.stop()


async def _subscribe(sim_url: str, url: str, *, secret: str | None = None, **extra: Any) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as admin:
        body = {"url": url, "secret": secret or new_secret(), **extra}
        answer = await admin.post("/admin/webhooks", json=body)
        assert answer.status_code == 200, answer.text


async def held(hub: Hub) -> dict[str, StoredRecord]:
    """ListingKey -> the record the store holds for the connection (tombstones too)."""
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        refs = await uow.xref.for_connection(MLS, "Listing", limit=100_000)
        records = await uow.records.get_many("Listing", [r.canonical_id for r in refs])
    return {r.external_id: records[r.canonical_id] for r in refs}


async def differences(hub: Hub, sim: ResoSimulator) -> set[str]:
    """The keys on which the store and the MLS disagree: price, timestamp, or being there."""
    store = await held(hub)
    out = {key for key in sim.records if key not in store or store[key].deleted}
    for key, record in store.items():
        served = sim.records.get(key)
        if served is None:
            if not record.deleted:
                out.add(key)
        elif (
            record.deleted
            or _price(record.data) != _price(served)
            or parse_time(record.data.get("ModificationTimestamp"))
            != parse_time(served["ModificationTimestamp"])
        ):
            out.add(key)
    return out


def _price(data: Any) -> Decimal:
    return Decimal(str(data.get("ListPrice")))  # the store keeps decimals as text


async def normalised(hub: Hub, sent: int) -> dict[InboxStatus, int]:
    """Wait until the normaliser has settled ``sent`` webhooks; their counts by status."""
    for _ in range(1000):
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            counts = {s: n for (c, s), n in (await uow.webhooks_in.counts()).items() if c == MLS}
        if not counts.get(InboxStatus.PENDING) and sum(counts.values()) >= sent:
            return counts
        await asyncio.sleep(0.01)
    raise AssertionError(f"webhooks not normalised: {counts}")


async def test_dropped_webhooks_are_caught_by_the_slow_poll(
    pushed: Pushed, hub: Hub, clock: FakeClock
) -> None:
    sim = pushed.sim
    scheduler = SyncScheduler(clock, hub.scheduled_jobs, hub.run_job, None, tick=60)
    await scheduler.tick()  # everything is due at the first tick: the first sync, keys
    await scheduler.idle()
    assert await differences(hub, sim) == set()
    # one record a notification; seed 4 drops 17 of the 51, deletions among them
    await pushed.subscribe(drop_rate=0.3, seed=4, batch=1)
    clock.advance(60)
    async with hub.webhooks_in.normaliser(hub):
        touched = sim.touch(count=40, changes={"ListPrice": 999_000})
        created = sim.create(6)
        gone = sim.delete(keys=[k for k in sim.records if k not in touched][:5])
        await sim.webhooks.drain()
        counts = await normalised(hub, sim.webhooks.stats.sent)
    dropped, sent = sim.webhooks.keys("dropped"), sim.webhooks.keys("sent")
    assert dropped | sent == {*touched, *created, *gone}
    assert 10 <= len(dropped) <= 25  # about 30 % of 51, drawn with a fixed seed
    assert counts == {InboxStatus.PROCESSED: len(sent)}  # every one read and applied
    # what arrived is applied (deletions too); what was dropped is not
    assert await differences(hub, sim) == dropped

    # An hour on, a polled connection of this MLS would have synced four times: not this one.
    clock.advance(3600)
    assert await scheduler.tick() == []
    assert await differences(hub, sim) == dropped

    clock.advance(6 * 3600)  # the slow reconciliation poll is due
    assert [j.kind for j in await scheduler.tick()] == ["sync"]
    await scheduler.idle()
    # every missed change is caught; a listing that vanished is not in any page: only the
    # key reconciliation, on its own daily cadence, sees it go
    assert await differences(hub, sim) == dropped & set(gone)
    assert dropped & set(gone)  # the seed drops at least one deletion
    clock.advance(18 * 3600)  # a day on: the reconciliation (and the next slow poll)
    assert {j.kind for j in await scheduler.tick()} == {"sync", "reconcile"}
    await scheduler.idle()
    assert await differences(hub, sim) == set()
    runs = {k.split(":")[1]: n for k, n in scheduler.runs.items()}
    assert runs == {"sync": 3, "reconcile": 2}


@pytest.mark.parametrize("order", ["reverse", "shuffle"])
async def test_duplicated_and_reordered_webhooks_never_regress_a_record(
    pushed: Pushed, hub: Hub, clock: FakeClock, order: str
) -> None:
    sim = pushed.sim
    await hub.sync(TENANT, MLS)
    keys = list(sim.records)
    # held, then each sent twice; a notification carries one change of ten listings
    await pushed.subscribe(hold=True, duplicate_rate=1.0, seed=5, batch=10)
    for step in range(1, 6):  # five versions of each of ten listings
        clock.advance(1)
        sim.touch(keys=keys[:10], changes={"ListPrice": 100_000 * step})
    doomed = keys[10:13]
    clock.advance(1)
    sim.touch(keys=doomed, changes={"ListPrice": 1})
    clock.advance(1)
    sim.delete(keys=doomed)  # deleted after its last update: the update may now come after it
    assert sim.webhooks.release(order) == 2 * (5 + 1 + 1)
    async with hub.webhooks_in.normaliser(hub):
        await sim.webhooks.drain()
        counts = await normalised(hub, sim.webhooks.stats.sent)
    assert sim.webhooks.stats.sent == 14
    assert counts == {InboxStatus.PROCESSED: 14}  # a copy is a new message: stored, applied
    store = await held(hub)
    assert await differences(hub, sim) == set()  # the newest of each won, whatever came last
    assert {_price(store[key].data) for key in keys[:10]} == {500_000}
    assert all(store[key].deleted for key in doomed)  # no older update brought one back
    if order == "reverse":  # newest first: every older copy was stale, and nothing was written
        versions = {key: store[key].version for key in keys[:10]}
        assert set(versions.values()) == {2}  # the first sync, then the newest push
    # A late copy is routine for pushed records: skipped, never a quarantine entry to clear.
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        assert await uow.quarantine.open_counts(code="timestamp_backwards") == {}
