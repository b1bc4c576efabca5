"""RELIABILITY.md promise 15: outbound deliveries follow the published schedule and end in the
dead-letter queue, never in silence. A subscriber on loopback answers 500, 302, 410, 429 with
Retry-After, or hangs; the hub's clock is a FakeClock the subscriber shares, so the attempt times
are read on it."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

from cadastre.ports import DeliveryStatus, Subscription, SubscriptionStatus
from cadastre.simulators import serve
from cadastre.simulators.subscriber import Reply, SubscriberSimulator
from cadastre.testing import FakeClock
from cadastre.webhooks.standard import new_secret
from tests.integration.webhooks_out.conftest import (
    A,
    World,
    settle,
    sqlite_settings,
    world_on,
)


async def received(world: World, event_id: str, count: int) -> None:
    async def enough() -> bool:
        return len(world.sim.of(event_id)) >= count

    await settle(enough)


async def test_failures_follow_the_schedule_then_land_dead_with_one_alert(world: World) -> None:
    created = await world.subscribe()
    world.sim.default = Reply(500)
    sender = await world.sender()
    event = world.event()
    await world.publish(event)
    await received(world, event.id, 1)
    while (due := await world.next_due()) is not None:
        await world.step(due)

    got = world.sim.of(event.id)
    assert len(got) == sender.schedule.attempts == 8
    assert got[0].at == event.time  # the first attempt is immediate
    for attempt, (before, after) in enumerate(pairwise(got), start=2):
        low, high = sender.schedule.bounds(attempt)
        assert low <= (after.at - before.at).total_seconds() <= high, attempt
    assert all(r.verified and r.body == got[0].body for r in got)  # signed, the same bytes
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status) == (DeliveryStatus.DEAD, 8,
                                                                          500)  # fmt: skip
    _, attempts = await world.hub.webhooks.deliveries.get(A, delivery.id)
    assert [(a.number, a.status) for a in attempts] == [(n, 500) for n in range(1, 9)]

    [alert] = await world.alerts()
    assert alert.data["alert"] == "webhook_delivery_dead"
    assert alert.data["subscription"] == created.subscription.id
    assert alert.data["delivery"] == delivery.id
    assert alert.data["last_error"] == "HTTP 500"
    assert alert.data["failing_since"] == event.time.isoformat()
    assert f"cadastre deliveries redeliver {delivery.id} --tenant {A}" in alert.data["action"]
    secret = created.secret.reveal()
    assert secret not in alert.model_dump_json()

    # Redrive: delivered exactly once, and nothing after that.
    world.sim.default = Reply(204)
    report = await world.hub.webhooks.deliveries.redeliver(A, [delivery.id], actor="test")
    assert [d.id for d in report.redelivered] == [delivery.id]
    await settle(lambda: _delivered(world, delivery.id))
    world.clock.advance(3 * 86_400)
    await asyncio.sleep(0.2)
    assert len(world.sim.accepted(event.id)) == 1
    assert len(world.sim.of(event.id)) == 9
    done = await world.delivery(delivery.id)
    assert (done.attempts, done.redeliveries) == (1, 1)
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        actions = [e.action async for e in uow.audit.entries()]
    assert actions.count("delivery.redelivered") == 1
    assert len(await world.alerts()) == 1


async def _delivered(world: World, id: str) -> bool:
    return (await world.delivery(id)).status is DeliveryStatus.DELIVERED


async def test_a_redirect_is_a_failure_and_never_followed(embedded: World) -> None:
    world = embedded
    await world.subscribe()
    world.sim.answer(Reply(302, location=f"{world.url}?followed=yes"))
    sender = await world.sender()
    event = world.event()
    await world.publish(event)
    await received(world, event.id, 1)
    await settle(lambda: _attempted(world))
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.last_status) == (DeliveryStatus.PENDING, 302)
    assert delivery.last_error == "302 redirect, not followed"
    assert len(world.sim.received) == 1  # the Location was not asked for
    assert delivery.next_attempt_at is not None
    low, high = sender.schedule.bounds(2)
    assert low <= (delivery.next_attempt_at - world.clock.now()).total_seconds() <= high
    await world.step(delivery.next_attempt_at)
    assert len(world.sim.accepted(event.id)) == 1  # the retry went to the subscription's URL


async def _attempted(world: World) -> bool:
    return all(d.attempts >= 1 for d in await world.deliveries())


async def test_410_disables_the_subscription_and_holds_its_deliveries(embedded: World) -> None:
    world = embedded
    created = await world.subscribe()
    sub = created.subscription.id
    world.sim.answer(Reply(410))
    await world.sender()
    first, second = world.event(subject="L1"), world.event(subject="L2")
    await world.publish(first)
    await received(world, first.id, 1)
    await settle(lambda: _attempted(world))

    found = await world.hub.webhooks.subscriptions.get(A, sub)
    assert (found.status, found.status_reason) == (SubscriptionStatus.DISABLED,
                                                   "the endpoint answered 410 Gone")  # fmt: skip
    [alert] = await world.alerts()
    assert alert.data["alert"] == "webhook_subscription_disabled"
    assert f"cadastre subscriptions enable {sub} --tenant {A}" in alert.data["action"]
    await world.publish(second)  # a disabled subscription is sent no new events
    world.clock.advance(6 * 3600)  # past its retry: held while disabled
    await asyncio.sleep(0.2)
    assert len(world.sim.received) == 1
    [held] = await world.deliveries()
    assert held.status is DeliveryStatus.PENDING

    await world.hub.webhooks.subscriptions.enable(A, sub, actor="test")
    await settle(lambda: _delivered(world, held.id))
    assert len(world.sim.accepted(first.id)) == 1
    assert world.sim.of(second.id) == []
    assert (await world.hub.webhooks.subscriptions.get(A, sub)).failing_since is None


async def test_429_waits_for_retry_after_but_never_less_than_the_schedule(embedded: World) -> None:
    world = embedded
    await world.subscribe()
    world.sim.answer(Reply(429, retry_after="120"), Reply(429, retry_after="1"))
    sender = await world.sender()
    event = world.event()
    await world.publish(event)
    await received(world, event.id, 1)
    await settle(lambda: _attempted(world))
    [delivery] = await world.deliveries()
    assert delivery.next_attempt_at is not None
    assert (delivery.next_attempt_at - world.clock.now()).total_seconds() == 120  # not ~5 s

    world.clock.advance(119)
    await asyncio.sleep(0.1)
    assert len(world.sim.received) == 1  # nothing early
    await world.step(delivery.next_attempt_at)
    assert len(world.sim.received) == 2
    [delivery] = await world.deliveries()
    assert delivery.next_attempt_at is not None
    low, high = sender.schedule.bounds(3)  # Retry-After: 1 is shorter than the 5-minute step
    assert low <= (delivery.next_attempt_at - world.clock.now()).total_seconds() <= high
    await world.step(delivery.next_attempt_at)
    assert len(world.sim.accepted(event.id)) == 1


async def test_an_endpoint_that_hangs_times_out_and_is_retried(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = sqlite_settings(tmp_path, webhooks_timeout_seconds=0.3)
    async with world_on(settings, clock) as world:
        await world.subscribe()
        world.sim.answer(Reply(hang=math.inf))
        sender = await world.sender()
        event = world.event()
        await world.publish(event)
        await settle(lambda: _attempted(world))
        [delivery] = await world.deliveries()
        assert (delivery.status, delivery.last_status) == (DeliveryStatus.PENDING, None)
        assert "no answer" in delivery.last_error
        assert world.sim.received[0].status is None  # it never answered
        low, high = sender.schedule.bounds(2)
        assert delivery.next_attempt_at is not None
        assert low <= (delivery.next_attempt_at - clock.now()).total_seconds() <= high
        await world.step(delivery.next_attempt_at)
        assert len(world.sim.accepted(event.id)) == 1


async def test_an_attempt_that_cannot_be_made_is_a_recorded_failure(embedded: World) -> None:
    """Whatever stops an attempt before it leaves (here a URL the HTTP client cannot send, as
    one stored before the creation check refused such URLs) is a failed attempt on the
    schedule, never a claim left to run out and be taken again, unrecorded, for ever."""
    world = embedded
    now = world.clock.now()
    bad = Subscription(
        id="sub_bad", url="https://xn--zz.example.com/hooks", event_types=("cadastre.listing.*",),
        description="", status=SubscriptionStatus.ACTIVE, status_reason="", failing_since=None,
        credential="subscription-sub_bad", created_at=now, updated_at=now,
    )  # fmt: skip
    await world.hub.vault.add(A, bad.credential, "webhook_secret", {"secret": new_secret()})
    async with world.hub.store.unit_of_work(A) as uow:
        await uow.subscriptions.add(bad)
        await uow.commit()
    sender = await world.sender()
    await world.publish(world.event())
    await settle(lambda: _attempted(world))
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status) == (
        DeliveryStatus.PENDING, 1, None,
    )  # fmt: skip
    assert delivery.last_error.startswith("cannot send:")
    assert delivery.next_attempt_at is not None
    low, high = sender.schedule.bounds(2)
    assert low <= (delivery.next_attempt_at - world.clock.now()).total_seconds() <= high


async def _run_days(world: World, days: float, every: timedelta, fail: bool = True) -> None:
    """Publish an event every ``every`` and let the sender attempt what comes due, for ``days``."""
    end = world.clock.now() + timedelta(days=days)
    next_event = world.clock.now()
    while True:
        due = await world.next_due()
        moments = [m for m in (due, next_event) if m is not None]
        when = min(moments)
        if when > end:
            break
        await world.step(when)
        if when == next_event:
            await world.publish(world.event(subject=f"L{when.timestamp():.0f}"))
            await settle(lambda: world._settled(A))
            next_event += every
    world.clock.set(max(end, world.clock.now()))


async def test_disabled_after_days_of_failure_and_one_success_resets_the_clock(
    embedded: World,
) -> None:
    """Svix test_endpoint_disable_on_sporadic_failure: 4 days failing, one success, 4 more days
    failing: still active (no 5 days without a success); failing on, it is disabled."""
    world = embedded
    created = await world.subscribe()
    sub = created.subscription.id
    world.sim.default = Reply(503)
    await world.sender()
    started = world.clock.now()
    await _run_days(world, 4, timedelta(hours=20))
    assert (await world.hub.webhooks.subscriptions.get(A, sub)).failing_since == started

    world.sim.answer(Reply(200))  # one success, then failures again
    await _run_days(world, 4.5, timedelta(hours=20))
    found = await world.hub.webhooks.subscriptions.get(A, sub)
    assert found.status is SubscriptionStatus.ACTIVE
    assert found.failing_since is not None
    assert found.failing_since > started + timedelta(days=4)
    assert len(world.sim.accepted()) == 1

    await _run_days(world, 1.5, timedelta(hours=20))
    found = await world.hub.webhooks.subscriptions.get(A, sub)
    assert found.status is SubscriptionStatus.DISABLED
    assert found.status_reason.startswith("every attempt failed for 5 days")
    alerts = await world.alerts()
    disabled = [a for a in alerts if a.data["alert"] == "webhook_subscription_disabled"]
    assert len(disabled) == 1
    assert found.failing_since is not None
    assert disabled[0].data["failing_since"] == found.failing_since.isoformat()


async def test_an_endpoint_that_hangs_holds_up_no_other(tmp_path: Path, clock: FakeClock) -> None:
    """Attempts run apart: while one subscriber hangs for the whole timeout, another's delivery,
    due later, is sent at once."""
    settings = sqlite_settings(tmp_path, webhooks_timeout_seconds=5)
    slow = SubscriberSimulator(clock=clock, default=Reply(hang=math.inf))
    async with world_on(settings, clock) as world, serve(slow.app) as running:
        await world.subscribe(url=f"{running.url}/hooks", types=("cadastre.office.*",))
        await world.subscribe()
        await world.sender()
        stuck = world.event(type="cadastre.office.updated.v1")
        await world.publish(stuck)
        await settle(lambda: _hung(slow))
        event = world.event()
        await world.publish(event)
        await received(world, event.id, 1)
        # delivered while the other attempt still hangs, not after its timeout
        assert slow.stats.in_flight == 1
        [waiting] = [d for d in await world.deliveries() if d.event_id == stuck.id]
        assert waiting.attempts == 0  # its attempt is not over
        assert world.sim.accepted(event.id)


async def _hung(sim: SubscriberSimulator) -> bool:
    return sim.stats.in_flight == 1


async def test_the_sender_prunes_what_nothing_sends_again(embedded: World) -> None:
    """Delivered deliveries go after ``keep`` (with their attempts); one still waiting (held by
    a subscription that a 410 disabled) stays, however old."""
    world = embedded
    await world.subscribe()
    world.sim.answer(Reply(204), Reply(410))
    await world.sender(keep=timedelta(days=1))
    done, held = world.event(subject="L1"), world.event(subject="L2")
    await world.publish(done)
    await received(world, done.id, 1)
    await world.publish(held)
    await received(world, held.id, 1)
    await settle(lambda: _attempted(world))
    [delivered] = await world.deliveries(status=DeliveryStatus.DELIVERED)

    world.clock.advance(2 * 86_400)  # the sender's poll comes round, past keep

    async def pruned() -> bool:
        return [d.event_id for d in await world.deliveries()] == [held.id]

    await settle(pruned)
    _, attempts = await world.hub.webhooks.deliveries.get(A, (await world.deliveries())[0].id)
    assert len(attempts) == 1
    async with world.hub.store.unit_of_work(A, read_only=True) as uow:
        assert await uow.deliveries.attempts(delivered.id) == []
