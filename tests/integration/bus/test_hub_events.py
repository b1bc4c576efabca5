"""A hub's events reach a bus subscriber end to end: a change applied, its outbox row committed,
the relay woken by the commit, the bus delivering - on the in-process bus and on NATS. A commit
made by another process (another store on the same SQLite file) is found by the relay's poll."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.bus import NatsJetStreamBus
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.store import SqliteStore
from cadastre.testing.bus_suite import Collector, change_event
from tests.nats_server import shared_nats_url


def listing(tenant: str, key: str) -> Change:
    return Change(
        tenant=tenant, entity="Listing", fields={"ListingKey": key, "ListPrice": "1"},
        origin=Origin(system="mls", connection="austin", external_id=key),
    )  # fmt: skip


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await bootstrap(
        Settings(data_dir=tmp_path, relay_poll_seconds=0.05), configure_logs=False
    )
    yield hub
    await hub.close()


async def test_a_change_reaches_a_subscriber_of_the_in_process_bus(
    hub: Hub, tmp_path: Path
) -> None:
    collector = Collector()
    await hub.bus.subscribe("audit", collector, subjects=["cadastre.acme.listing.*"])
    async with hub.running():
        result = await hub.engine.apply(listing("acme", "K1"))
        await collector.until(1)
        # written by another process: no commit in this one to wake the relay, the poll finds it
        other = SqliteStore(tmp_path / "cadastre.db")
        elsewhere = change_event("acme", "L9", 1)
        try:
            async with other.unit_of_work("acme") as uow:
                await uow.outbox.add(elsewhere)
                await uow.commit()
        finally:
            await other.close()
        await collector.until(2)
    assert collector.ids == [result.event_id, elsewhere.id]
    assert collector.handled[0].event.type == "cadastre.listing.created.v1"
    assert collector.handled[0].subject == "cadastre.acme.listing.created"


async def test_a_change_reaches_a_subscriber_over_nats(tmp_path: Path) -> None:
    url = shared_nats_url()
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "bus": "nats", "nats_url": url, "relay_poll_seconds": 0.05}
    )
    hub = await bootstrap(settings, configure_logs=False)
    tenant, consumer = f"hub-{uuid.uuid4().hex[:10]}", f"hub-{uuid.uuid4().hex[:10]}"
    collector = Collector()
    assert isinstance(hub.bus, NatsJetStreamBus)
    try:
        await hub.bus.subscribe(consumer, collector, subjects=[f"cadastre.{tenant}.>"])
        async with hub.running():
            results = [await hub.engine.apply(listing(tenant, f"K{i}")) for i in range(3)]
            await collector.until(3)
            async with asyncio.timeout(10):  # marked once JetStream has them: maybe a bit later
                while await hub.store.pending_outbox_tenants():
                    await asyncio.sleep(0.01)
        assert collector.ids == [r.event_id for r in results]
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            assert [m.feed_seq for m in await uow.outbox.feed()] == [1, 2, 3]
    finally:
        await hub.bus.delete_consumer(consumer)
        await hub.close()


async def test_a_hub_starts_while_nats_is_down_and_its_relay_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.redis_server import free_port

    settings = Settings.model_validate(
        {"data_dir": tmp_path, "bus": "nats", "nats_url": f"nats://127.0.0.1:{free_port()}"}
    )
    hub = await bootstrap(settings, configure_logs=False)  # the bus connects on first use
    try:
        # Consumers subscribe when the hub starts running, and fail then (loudly); the relay
        # alone keeps trying: what it could not publish stays in the outbox.
        async with hub.relay:
            await hub.engine.apply(listing("acme", "K1"))
            async with asyncio.timeout(30):
                while "BusUnavailable" not in caplog.text:
                    await asyncio.sleep(0.05)
        assert await hub.store.pending_outbox_tenants() == ["acme"]
    finally:
        await hub.close()
