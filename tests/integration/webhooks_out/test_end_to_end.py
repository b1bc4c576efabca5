"""End to end, as ``cadastre serve`` runs it: a change applied -> its event in the outbox (same
transaction) -> the relay -> the bus -> the dispatcher (durable consumer "webhooks-out") -> the
sender -> the subscriber, signed; and an event the bus delivers twice is still one delivery. On
the in-process bus with SQLite, and on NATS JetStream with PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.ports import DeliveryStatus
from cadastre.testing import FakeClock
from tests.integration.vault.conftest import fresh_postgres
from tests.integration.webhooks_out.conftest import A, B, World, master_key, settle, world_on
from tests.nats_server import PrivateNats


@pytest.fixture(params=["memory+sqlite", "nats+postgres"])
def e2e_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    base = Settings(data_dir=tmp_path, gateway_allow_hosts=("127.0.0.0/8",))
    if request.param == "memory+sqlite":
        yield base
        return
    # A private server: the durable consumer "webhooks-out" of a shared one would be shared
    # with every other hub (and test) that runs one.
    nats = PrivateNats(tmp_path)
    nats.start()
    try:
        with fresh_postgres() as url:
            yield base.model_copy(update={
                "database_url": SecretStr(url), "vault_master_key": master_key(), "bus": "nats",
                "nats_url": SecretStr(nats.url),
            })  # fmt: skip
    finally:
        nats.kill()


async def test_a_change_reaches_the_subscriber_once_signed(
    e2e_settings: Settings, clock: FakeClock
) -> None:
    async with world_on(e2e_settings, clock) as world:
        hub = world.hub
        created = await world.subscribe(types=("cadastre.listing.created.v1",))
        other = await world.subscribe(tenant=B)  # another tenant's subscription sees nothing
        async with hub.running():
            result = await hub.engine.apply(Change(
                tenant=A, entity="Listing", fields={"ListingKey": "X1", "ListPrice": "350000"},
                origin=Origin(system="mls", connection="austin-mls", external_id="X1"),
            ))  # fmt: skip
            event_id = result.event_id
            assert event_id is not None
            await settle(lambda: _delivered(world, event_id))
            await asyncio.sleep(0.2)
        [got] = world.sim.of(event_id)
        assert got.verified
        assert b'"type":"cadastre.listing.created.v1"' in got.body
        assert b'"ListPrice":"350000"' in got.body
        [delivery] = await world.deliveries()
        assert (delivery.subscription, delivery.status) == (created.subscription.id,
                                                           DeliveryStatus.DELIVERED)  # fmt: skip
        assert await world.deliveries(B) == []
        assert other.subscription.id not in {d.subscription for d in await world.deliveries()}

        # The bus delivering the same event again (at least once) adds no delivery.
        async with hub.store.unit_of_work(A, read_only=True) as uow:
            [published] = await uow.outbox.feed(limit=10)
        await world.publish(published.event)
        assert len(await world.deliveries()) == 1
        assert len(world.sim.of(event_id)) == 1


async def _delivered(world: World, event_id: str) -> bool:
    return len(world.sim.accepted(event_id)) == 1 and all(
        d.status is DeliveryStatus.DELIVERED for d in await world.deliveries()
    )
