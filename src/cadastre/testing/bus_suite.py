"""``BusSuite``: the conformance suite every ``EventBus`` adapter passes (``InProcessBus``,
``NatsJetStreamBus``, and yours).

Subclass it and provide a ``bus`` fixture: a bus whose retry backoff is short (tens of ms), that
deletes, when the test ends, the durable consumers named in the suite's ``consumers`` fixture
(a bus shared between tests must not keep them)::

    class TestMyBus(BusSuite):
        @pytest.fixture
        async def bus(self, consumers):
            bus = MyBus(retry_first=0.02)
            yield bus
            await bus.close()  # and delete ``consumers`` from the broker

Each test publishes for a tenant of its own and subscribes to that tenant's subjects only, so a
broker shared with other tests (or other runs) does not disturb it. Importing this module needs
pytest; ``cadastre.testing`` itself does not import it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.bus.pinned import pinned
from cadastre.contract.events import EventEnvelope, bus_subject, entity_event_type
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.ports import BusMessage, BusSubscription, EventBus

WAIT = 20.0  # seconds a test waits for deliveries before failing


def change_event(
    tenant: str, record: str, version: int, *, verb: str = "updated", entity: str = "Listing",
    major: int = 1, data: dict[str, Any] | None = None,
) -> EventEnvelope:  # fmt: skip
    """An entity change event shaped as the hub emits it (v1), or as a newer producer would
    (v2)."""
    cause = f"req-{record}"
    origin = {
        "system": "mls", "connection": "austin", "external_id": record, "source_version": None,
        "source_time": None, "causation_id": cause,
    }  # fmt: skip
    key = f"{record}-{version}"
    if data is None and major == 1:
        data = {
            "entity": entity, "fields": {"ListPrice": version, "City": None},
            "removed": ["City"], "origin": origin, "version": version, "idempotency_key": key,
            "causation_id": cause,
        }  # fmt: skip
    elif data is None:
        data = {
            "entity": entity, "changed": {"ListPrice": version}, "removed": ["City"],
            "origin": origin, "version": version, "idempotency_key": key,
            "confidence": {"record": 0.9, "fields": {"ListPrice": 0.8}},
        }  # fmt: skip
    return EventEnvelope(
        source="/mls/austin", type=entity_event_type(entity, verb, major), subject=record,
        time=EPOCH + timedelta(seconds=version), tenant=tenant, data=data,
    )  # fmt: skip


class Collector:
    """A handler that records every delivery and fails the first ``fail`` batches it gets."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[BusMessage]] = []  # every delivery, failed ones too
        self.handled: list[BusMessage] = []  # batches the handler returned from
        self.fail = fail
        self._changed = asyncio.Event()

    async def __call__(self, messages: Sequence[BusMessage]) -> None:
        self.batches.append(list(messages))
        self._changed.set()
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("this consumer was told to fail")
        self.handled.extend(messages)
        self._changed.set()

    @property
    def ids(self) -> list[str]:
        return [m.event.id for m in self.handled]

    def first_ids(self) -> list[str]:
        """Handled ids with repeats dropped (what a de-duplicating consumer acts on)."""
        return list(dict.fromkeys(self.ids))

    async def until(self, count: int, *, batches: bool = False) -> None:
        async def reached() -> None:
            while (len(self.batches) if batches else len(self.first_ids())) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(reached(), WAIT)
        except TimeoutError:
            have = len(self.batches) if batches else len(self.first_ids())
            raise AssertionError(f"waited {WAIT:g} s for {count}, got {have}") from None


class BusSuite:
    @pytest.fixture
    def tenant(self) -> str:
        return f"bus-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def consumers(self) -> list[str]:
        """Durable consumer names the test used (the ``bus`` fixture deletes them)."""
        return []

    @pytest.fixture
    def name(self, consumers: list[str]) -> Any:
        def new(label: str = "c") -> str:
            consumers.append(f"{label}-{uuid.uuid4().hex[:12]}")
            return consumers[-1]

        return new

    async def _subscribe(
        self, bus: EventBus, consumer: str, tenant: str, handler: Any, *, batch: int = 100,
        subjects: Sequence[str] | None = None,
    ) -> BusSubscription:  # fmt: skip
        return await bus.subscribe(
            consumer, handler, subjects=subjects or [f"cadastre.{tenant}.>"], batch=batch
        )

    async def test_a_consumer_gets_every_event_once_in_publish_order(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector()
        sub = await self._subscribe(bus, name(), tenant, collector)
        events = [change_event(tenant, f"L{i % 4}", i, verb=("created", "updated")[i > 3],
                               entity=("Listing", "Member")[i % 2]) for i in range(30)]  # fmt: skip
        await bus.publish(events[:10])
        await bus.publish(events[10:])
        await collector.until(30)
        await sub.stop()
        assert collector.ids == [e.id for e in events]
        assert [m.event for m in collector.handled] == events
        assert [m.subject for m in collector.handled] == [bus_subject(e) for e in events]
        assert {m.delivery for m in collector.handled} == {1}

    async def test_a_handler_gets_at_most_its_batch(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector()
        sub = await self._subscribe(bus, name(), tenant, collector, batch=5)
        events = [change_event(tenant, f"L{i}", 1) for i in range(12)]
        await bus.publish(events)
        await collector.until(12)
        await sub.stop()
        assert max(len(b) for b in collector.batches) <= 5
        assert collector.ids == [e.id for e in events]

    async def test_a_failed_batch_comes_again_before_anything_newer(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector(fail=2)
        sub = await self._subscribe(bus, name(), tenant, collector, batch=10)
        events = [change_event(tenant, "L1", v) for v in range(1, 6)]
        # in process, publish returns once the consumer has handled the events: a task
        first = asyncio.create_task(bus.publish(events[:3]))
        await collector.until(1, batches=True)
        second = asyncio.create_task(bus.publish(events[3:]))
        await collector.until(5)
        await asyncio.wait_for(asyncio.gather(first, second), WAIT)
        await sub.stop()
        # a batch holds what had arrived (NATS may hand over the first event alone) ...
        failed = [m.event.id for m in collector.batches[0]]
        assert failed == [e.id for e in events[: len(failed)]], [
            [(m.event.data["version"], m.delivery) for m in b] for b in collector.batches
        ]
        # ... and comes again, counted, before anything after it
        for n, retried in ((2, collector.batches[1]), (3, collector.batches[2])):
            assert [m.event.id for m in retried[: len(failed)]] == failed
            assert {m.delivery for m in retried[: len(failed)]} == {n}
        assert collector.ids == [e.id for e in events], [
            [(m.event.data["version"], m.delivery) for m in b] for b in collector.batches
        ]

    async def test_a_durable_consumer_resumes_where_it_stopped(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        consumer, before, after = name(), Collector(), Collector()
        sub = await self._subscribe(bus, consumer, tenant, before)
        events = [change_event(tenant, f"L{i}", 1) for i in range(6)]
        await bus.publish(events[:3])
        await before.until(3)
        await sub.stop()
        await bus.publish(events[3:])  # nobody is subscribed to it now
        again = await self._subscribe(bus, consumer, tenant, after)
        await after.until(3)
        await again.stop()
        assert before.ids == [e.id for e in events[:3]]  # nothing after it stopped
        assert after.first_ids() == [e.id for e in events[3:]]  # nor anything twice

    async def test_each_consumer_gets_every_event(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        one, two = Collector(), Collector()
        subs = [await self._subscribe(bus, name(), tenant, c) for c in (one, two)]
        events = [change_event(tenant, f"L{i}", 1) for i in range(5)]
        await bus.publish(events)
        await one.until(5)
        await two.until(5)
        for sub in subs:
            await sub.stop()
        assert one.ids == two.ids == [e.id for e in events]

    async def test_subjects_choose_what_a_consumer_gets(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        listings, some = Collector(), Collector()
        subs = [
            await self._subscribe(bus, name(), tenant, listings,
                                  subjects=[f"cadastre.{tenant}.listing.*"]),
            await self._subscribe(bus, name(), tenant, some, subjects=[
                f"cadastre.{tenant}.member.deleted", f"cadastre.{tenant}.listing.created"]),
        ]  # fmt: skip
        events = [
            change_event(tenant, "L1", 1, verb="created"),
            change_event(tenant, "M1", 1, verb="created", entity="Member"),
            change_event(tenant, "L1", 2),
            change_event(tenant, "M1", 2, verb="deleted", entity="Member"),
            change_event(tenant, "L1", 3, verb="deleted"),
        ]
        await bus.publish(events)
        await listings.until(3)
        await some.until(2)
        for sub in subs:
            await sub.stop()
        assert listings.ids == [events[0].id, events[2].id, events[4].id]
        assert some.ids == [events[0].id, events[3].id]

    async def test_publishing_an_event_again_is_harmless(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector()
        sub = await self._subscribe(bus, name(), tenant, collector)
        one, two = change_event(tenant, "L1", 1), change_event(tenant, "L1", 2)
        await bus.publish([one])
        await bus.publish([one, two])
        await collector.until(2)
        await sub.stop()
        assert collector.first_ids() == [one.id, two.id]

    async def test_one_records_events_stay_in_order_through_failures(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector(fail=3)
        sub = await self._subscribe(bus, name(), tenant, collector, batch=7)
        events = [change_event(tenant, f"L{i % 10}", 1 + i // 10) for i in range(200)]
        published = asyncio.create_task(self._publish_in_batches(bus, events, 40))
        await collector.until(200)
        await asyncio.wait_for(published, WAIT)
        await sub.stop()
        versions: dict[str, list[int]] = {}
        for id in collector.first_ids():
            event = next(e for e in events if e.id == id)
            versions.setdefault(event.subject or "", []).append(event.data["version"])
        assert versions == {f"L{r}": list(range(1, 21)) for r in range(10)}

    async def _publish_in_batches(
        self, bus: EventBus, events: list[EventEnvelope], size: int
    ) -> None:
        for start in range(0, len(events), size):
            await bus.publish(events[start : start + size])

    async def test_an_older_consumer_reads_a_newer_producers_event(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector()
        handler = pinned(collector, {"cadastre.listing.updated.v1"})
        sub = await self._subscribe(bus, name(), tenant, handler)
        newer = change_event(tenant, "L1", 7, major=2)
        other = change_event(tenant, "M1", 1, entity="Member", major=2)  # not pinned: as sent
        await bus.publish([newer, other])
        await collector.until(2)
        await sub.stop()
        read, passed = (m.event for m in collector.handled)
        assert (read.id, read.type, read.subject) == (newer.id, "cadastre.listing.updated.v1", "L1")
        assert read.data["fields"] == {"City": None, "ListPrice": 7}
        assert read.data["removed"] == ["City"]
        assert read.data["causation_id"] == "req-L1" == read.data["origin"]["causation_id"]
        assert passed == other

    async def test_a_newer_consumer_reads_the_v1_the_hub_emits(
        self, bus: EventBus, tenant: str, name: Any
    ) -> None:
        collector = Collector()
        handler = pinned(collector, ["cadastre.listing.updated.v2", "cadastre.listing.created.v2"])
        sub = await self._subscribe(bus, name(), tenant, handler)
        older = change_event(tenant, "L1", 3)
        await bus.publish([older])
        await collector.until(1)
        await sub.stop()
        read = collector.handled[0].event
        assert (read.id, read.type) == (older.id, "cadastre.listing.updated.v2")
        assert read.data["changed"] == {"ListPrice": 3}
        assert read.data["removed"] == ["City"]
        assert read.data["confidence"] == {"record": None, "fields": {}}
        assert "causation_id" not in read.data
        assert read.data["origin"]["causation_id"] == "req-L1"
