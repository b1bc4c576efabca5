"""What the in-process bus adds to the conformance suite: ``publish`` waits for the consumers it
delivers to, backoffs run on the bus's clock, and the rules on names and patterns."""

from __future__ import annotations

import asyncio

import pytest

from cadastre.bus import InProcessBus, matches
from cadastre.errors import BusUnavailable, ConfigurationError
from cadastre.testing import FakeClock
from cadastre.testing.bus_suite import Collector, change_event

T = "acme"


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_publish_returns_once_the_consumer_has_handled_the_events() -> None:
    bus = InProcessBus(FakeClock())
    gate = asyncio.Event()
    handled: list[str] = []

    async def slow(messages):
        await gate.wait()
        handled.extend(m.event.id for m in messages)

    await bus.subscribe("slow", slow)
    event = change_event(T, "L1", 1)
    publishing = asyncio.create_task(bus.publish([event]))
    await settle()
    assert not publishing.done()
    gate.set()
    await asyncio.wait_for(publishing, 5)
    assert handled == [event.id]
    await bus.close()


async def test_a_failing_consumer_waits_its_backoff_on_the_clock() -> None:
    clock = FakeClock()
    bus = InProcessBus(clock, retry_first=1.0, retry_most=3.0)
    collector = Collector(fail=3)
    await bus.subscribe("flaky", collector)
    publishing = asyncio.create_task(bus.publish([change_event(T, "L1", 1)]))
    await settle()
    assert len(collector.batches) == 1
    clock.advance(0.99)
    await settle()
    assert len(collector.batches) == 1  # not before its backoff
    for expected, wait in ((2, 0.01), (3, 2.0), (4, 3.0)):  # 1 s, 2 s, then capped at 3 s
        clock.advance(wait - 0.01)
        await settle()
        assert len(collector.batches) == expected - 1
        clock.advance(0.01)
        await settle()
        assert len(collector.batches) == expected
    await asyncio.wait_for(publishing, 5)
    assert [m.delivery for b in collector.batches for m in b] == [1, 2, 3, 4]
    await bus.close()


async def test_publish_does_not_wait_for_a_stopped_consumer_whose_events_wait_for_it() -> None:
    bus = InProcessBus(FakeClock())
    first, second = Collector(), Collector()
    sub = await bus.subscribe("durable", first)
    await sub.stop()
    await sub.stop()  # twice is harmless
    event = change_event(T, "L1", 1)
    await asyncio.wait_for(bus.publish([event]), 5)
    assert first.handled == []
    await bus.subscribe("durable", second)
    await second.until(1)
    assert second.ids == [event.id]
    await bus.close()


async def test_stopping_a_consumer_releases_a_publisher_waiting_for_it() -> None:
    bus = InProcessBus(FakeClock())
    sub = await bus.subscribe("stuck", Collector(fail=10**6))
    publishing = asyncio.create_task(bus.publish([change_event(T, "L1", 1)]))
    await settle()
    assert not publishing.done()
    await sub.stop()
    await asyncio.wait_for(publishing, 5)
    await bus.close()


async def test_one_name_one_subscription_and_checked_names_and_patterns() -> None:
    bus = InProcessBus(FakeClock())
    await bus.subscribe("one", Collector())
    with pytest.raises(ConfigurationError, match="subscribed already"):
        await bus.subscribe("one", Collector())
    for name in ("has.dot", "star*", "", "x" * 101, "space d"):
        with pytest.raises(ConfigurationError, match="consumer name"):
            await bus.subscribe(name, Collector())
    for patterns in ([], ["other.>"], ["cadastre.>.x"], ["cadastre..x"], "cadastre.>"):
        with pytest.raises(ConfigurationError, match=r"subject pattern|non-empty"):
            await bus.subscribe("two", Collector(), subjects=patterns)
    with pytest.raises(ConfigurationError, match="batch"):
        await bus.subscribe("two", Collector(), batch=0)
    await bus.close()
    with pytest.raises(BusUnavailable):
        await bus.publish([change_event(T, "L1", 1)])


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("cadastre.>", "cadastre.acme.listing.updated", True),
        ("cadastre.acme.>", "cadastre.acme.listing.updated", True),
        ("cadastre.acme.>", "cadastre.acme", False),
        ("cadastre.*.listing.*", "cadastre.acme.listing.created", True),
        ("cadastre.*.listing.*", "cadastre.acme.member.created", False),
        ("cadastre.*.listing", "cadastre.acme.listing.created", False),
        ("cadastre.acme.listing.updated", "cadastre.acme.listing.updated", True),
        ("cadastre.acme.listing.updated", "cadastre.acme.listing.updated.x", False),
        ("cadastre.acme.sync.*", "cadastre.acme.sync.mass_update", True),
    ],
)
def test_subject_patterns_match_as_nats_matches_them(
    pattern: str, subject: str, expected: bool
) -> None:
    assert matches(pattern, subject) is expected
