"""A redelivery is delivered once: ten concurrent redelivery requests of one dead delivery, with
two senders running, make one POST, answered once; and many due deliveries shared by two senders
are each sent exactly once (the claim). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

from cadastre.ports import DeliveryStatus
from cadastre.simulators.subscriber import Reply
from tests.integration.webhooks_out.conftest import A, World, settle


async def _dead(world: World) -> str:
    world.sim.default = Reply(500)
    event = world.event()
    await world.publish(event)
    while (due := await world.next_due()) is not None:
        await world.step(due)
    [delivery] = await world.deliveries()
    assert delivery.status is DeliveryStatus.DEAD
    return delivery.id


async def test_concurrent_redeliveries_with_two_senders_post_once(world: World) -> None:
    await world.subscribe()
    await world.sender()
    await world.sender()
    id = await _dead(world)
    event_id = (await world.delivery(id)).event_id
    before = len(world.sim.of(event_id))

    # The subscriber holds the redelivered POST (on the shared clock) while every other request
    # arrives: the delivery is pending, claimed by one sender, in flight.
    world.sim.default = Reply(204, hang=30)
    first = await world.hub.webhooks.deliveries.redeliver(A, [id], actor="test")
    await settle(lambda: _in_flight(world, event_id, before + 1))
    reports = await asyncio.gather(
        *(world.hub.webhooks.deliveries.redeliver(A, [id], actor="test") for _ in range(10))
    )
    world.clock.advance(30)  # the subscriber answers
    await settle(lambda: _status(world, id, DeliveryStatus.DELIVERED))
    world.clock.advance(86_400)
    await asyncio.sleep(0.2)

    assert [d.id for d in first.redelivered] == [id]
    assert all(r.redelivered == [] for r in reports)
    assert {why for r in reports for why in r.skipped.values()} == {"pending: already on its way"}
    assert len(world.sim.of(event_id)) == before + 1  # one POST for the redelivery
    assert len(world.sim.accepted(event_id)) == 1
    done = await world.delivery(id)
    assert (done.redeliveries, done.attempts) == (1, 1)


async def _in_flight(world: World, event_id: str, count: int) -> bool:
    # the subscriber has the request (it records it once it answers): count the held one too
    return world.sim.stats.in_flight == 1 and len(world.sim.of(event_id)) == count - 1


async def _status(world: World, id: str, status: DeliveryStatus) -> bool:
    return (await world.delivery(id)).status is status


async def test_two_senders_share_due_deliveries_and_send_each_once(world: World) -> None:
    await world.subscribe()
    await world.subscribe(types=("cadastre.listing.updated.v1",))
    events = [world.event(subject=f"L{i}") for i in range(30)]
    await world.publish(*events)  # 60 deliveries due now, before any sender runs
    await world.sender(batch=7)
    await world.sender(batch=7)
    await settle(lambda: _all_delivered(world, 60))
    counts = Counter(r.webhook_id for r in world.sim.received)
    assert counts == Counter({e.id: 2 for e in events})  # once per subscription, no more
    assert all(r.verified for r in world.sim.received)


async def _all_delivered(world: World, count: int) -> bool:
    done = await world.deliveries(status=DeliveryStatus.DELIVERED)
    return len(done) == count
