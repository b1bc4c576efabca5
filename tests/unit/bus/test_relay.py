"""The outbox relay over the fake store and the in-process bus, on a fake clock: order, batches,
marking and numbering, backoff on bus errors, the per-tenant lock, waking on commit, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from cadastre.bus import InProcessBus, OutboxRelay
from cadastre.contract.events import EventEnvelope
from cadastre.errors import BusUnavailable
from cadastre.testing import FakeClock, FakeStore
from cadastre.testing.bus_suite import Collector, change_event
from cadastre.vault import MemoryLockBackend

A, B = "acme", "globex"


class FlakyBus(InProcessBus):
    """Refuses the first ``refuse`` publishes, then behaves; records every batch offered."""

    def __init__(self, clock: FakeClock, refuse: int = 0) -> None:
        super().__init__(clock)
        self.refuse = refuse
        self.offered: list[list[str]] = []

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        self.offered.append([e.id for e in events])
        if self.refuse:
            self.refuse -= 1
            raise BusUnavailable("the broker is away")
        await super().publish(events)


async def add(store: FakeStore, tenant: str, events: list[EventEnvelope]) -> None:
    async with store.unit_of_work(tenant) as uow:
        await uow.outbox.add_many(events)
        await uow.commit()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> FakeStore:
    return FakeStore(clock)


async def test_drain_publishes_in_position_order_in_batches_and_numbers_the_feed(
    store: FakeStore, clock: FakeClock
) -> None:
    bus = FlakyBus(clock)
    collector = Collector()
    await bus.subscribe("audit", collector)
    a = [change_event(A, f"L{i % 3}", i) for i in range(7)]
    b = [change_event(B, "L1", 1)]
    await add(store, A, a[:4])
    await add(store, B, b)
    await add(store, A, a[4:])
    relay = OutboxRelay(store, bus, MemoryLockBackend(), clock, batch=3)
    assert await relay.drain() == 8
    assert await relay.drain() == 0
    assert bus.offered == [[e.id for e in a[:3]], [e.id for e in a[3:6]], [a[6].id], [b[0].id]]
    assert collector.ids == [e.id for e in [*a, *b]]
    async with store.unit_of_work(A) as uow:
        feed = await uow.outbox.feed(limit=100)
        assert await uow.outbox.pending() == []
    assert [(m.event.id, m.feed_seq) for m in feed] == [(e.id, i + 1) for i, e in enumerate(a)]
    assert await store.pending_outbox_tenants() == []


async def test_a_bus_error_backs_off_on_the_clock_and_the_same_batch_goes_again(
    store: FakeStore, clock: FakeClock
) -> None:
    bus = FlakyBus(clock, refuse=3)
    collector = Collector()
    await bus.subscribe("audit", collector)
    events = [change_event(A, "L1", v) for v in range(1, 5)]
    await add(store, A, events)
    relay = OutboxRelay(store, bus, MemoryLockBackend(), clock, batch=10, retry_first=1.0)
    async with relay:
        await settle()
        assert len(bus.offered) == 1
        for wait, tries in ((1.0, 2), (2.0, 3), (4.0, 4)):  # doubling backoff on the clock
            clock.advance(wait - 0.001)
            await settle()
            assert len(bus.offered) == tries - 1
            clock.advance(0.001)
            await settle()
            assert len(bus.offered) == tries
        await collector.until(4)
    assert bus.offered == [[e.id for e in events]] * 4  # never a partial or reordered batch
    assert collector.ids == [e.id for e in events]
    async with store.unit_of_work(A) as uow:
        assert [m.event.id for m in await uow.outbox.feed()] == [e.id for e in events]


async def test_a_tenant_another_relay_holds_is_left_to_it(
    store: FakeStore, clock: FakeClock
) -> None:
    bus, locks = FlakyBus(clock), MemoryLockBackend()
    await add(store, A, [change_event(A, "L1", 1)])
    await add(store, B, [change_event(B, "L1", 1)])
    relay = OutboxRelay(store, bus, locks, clock)
    async with locks.hold(f"outbox-relay:{A}", wait=0, lease=60):
        assert await relay.drain() == 1
        assert await store.pending_outbox_tenants() == [A]
    assert await relay.drain() == 1
    assert await store.pending_outbox_tenants() == []


async def test_a_commit_wakes_the_relay_and_the_poll_finds_the_rest(
    store: FakeStore, clock: FakeClock
) -> None:
    bus = FlakyBus(clock)
    collector = Collector()
    await bus.subscribe("audit", collector)
    relay = OutboxRelay(store, bus, MemoryLockBackend(), clock, poll=5.0)
    async with relay:
        await settle()
        first = change_event(A, "L1", 1)
        await add(store, A, [first])  # the clock stands still: only the commit can wake it
        await collector.until(1)
        # a commit this process did not make (another worker's) is not heard of ...
        quiet = change_event(A, "L2", 1)
        async with store.unit_of_work(A) as uow:
            await uow.outbox.add(quiet)
            uow.wrote_outbox = False  # as if written elsewhere
            await uow.commit()
        await settle()
        assert collector.ids == [first.id]
        clock.advance(5.0)  # ... until the poll
        await collector.until(2)
    assert collector.ids == [first.id, quiet.id]
    assert relay.relayed == 2


async def test_wait_published_wakes_readers_or_times_out_on_the_clock(
    store: FakeStore, clock: FakeClock
) -> None:
    relay = OutboxRelay(store, FlakyBus(clock), MemoryLockBackend(), clock)
    waiting = asyncio.create_task(relay.wait_published(10.0))
    await settle()
    clock.advance(10.0)
    assert await waiting is False
    async with relay:
        waiting = asyncio.create_task(relay.wait_published(10.0))
        await settle()
        await add(store, A, [change_event(A, "L1", 1)])
        assert await asyncio.wait_for(waiting, 5) is True


async def test_old_de_duplication_marks_are_pruned_at_most_hourly(
    store: FakeStore, clock: FakeClock
) -> None:
    relay = OutboxRelay(store, FlakyBus(clock), MemoryLockBackend(), clock, keep=timedelta(days=7))
    minute, version = 60.0, 0

    async def relay_something() -> None:
        nonlocal version
        version += 1
        await add(store, A, [change_event(A, "L1", version)])
        assert await relay.drain() == 1

    async def marked(ids: list[str]) -> list[str]:
        async with store.unit_of_work(A) as uow:  # asked, then rolled back
            return sorted(set(ids) - set(await uow.consumed.first_seen("audit", ids)))

    async with store.unit_of_work(A) as uow:
        await uow.consumed.first_seen("audit", ["old"])
        await uow.commit()
    clock.advance(timedelta(days=7).total_seconds() - 10 * minute)
    await relay_something()  # prunes: "old" is not a week old yet
    assert await marked(["old"]) == ["old"]
    clock.advance(20 * minute)
    await relay_something()  # "old" is past a week, but the last prune was 20 minutes ago
    assert await marked(["old"]) == ["old"]
    clock.advance(41 * minute)
    await relay_something()
    assert await marked(["old"]) == []
