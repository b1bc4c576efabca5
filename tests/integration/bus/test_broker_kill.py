"""The broker dies mid-stream: a private nats-server (JetStream on disk) is killed -9 while the
relay publishes and a consumer reads, then started again on the same port and store. Every event
arrives, none is lost, each record's events in order, and both sides carry on by themselves."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from cadastre.bus import NatsJetStreamBus, OutboxRelay, nats_consumer
from cadastre.clock import SystemClock
from cadastre.contract.events import EventEnvelope
from cadastre.errors import BusUnavailable
from cadastre.ports import BusMessage
from cadastre.store import SqliteStore
from cadastre.testing.bus_suite import change_event
from cadastre.vault import MemoryLockBackend
from tests.nats_server import PrivateNats

TENANT, RECORDS = "acme", 10


async def test_a_broker_killed_mid_stream_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, full_trials: bool
) -> None:
    total = 2000 if full_trials else 400
    broker = PrivateNats(tmp_path)
    broker.start()
    store = SqliteStore(tmp_path / "cadastre.db")
    await store.migrate()
    first, most = 0.05, 0.5  # backoffs: short, so the test does not wait on them
    publisher = NatsJetStreamBus(broker.url, publish_timeout=1.0, connect_timeout=1.0,
                                 retry_first=first, retry_most=most)  # fmt: skip
    reader = NatsJetStreamBus(broker.url, ack_wait=2.0, fetch_wait=0.2, retry_first=first,
                              retry_most=most)  # fmt: skip
    relay = OutboxRelay(store, publisher, MemoryLockBackend(), SystemClock(), batch=20, poll=0.05,
                        retry_first=first, retry_most=most)  # fmt: skip
    seen: dict[str, BusMessage] = {}
    order: list[str] = []
    arrived = asyncio.Event()

    async def consume(messages: Sequence[BusMessage]) -> None:
        for message in messages:
            if message.event.id not in seen:  # de-duplicate by event id, as consumers do
                seen[message.event.id] = message
                order.append(message.event.id)
        arrived.set()

    events = [change_event(TENANT, f"L{i % RECORDS}", 1 + i // RECORDS) for i in range(total)]
    subscription = await reader.subscribe("broker-kill", consume, subjects=["cadastre.acme.>"])
    caplog.set_level(logging.WARNING, logger="cadastre")
    try:
        async with relay:
            writing = asyncio.create_task(write(store, events))
            while len(seen) < total // 3:
                await asyncio.wait_for(arrived.wait(), 30)
                arrived.clear()
            broker.kill()
            await asyncio.sleep(0.5)  # the relay and the consumer find the broker gone
            broker.start()
            await asyncio.wait_for(writing, 60)
            async with asyncio.timeout(60):
                while len(seen) < total:
                    await arrived.wait()
                    arrived.clear()
        await subscription.stop()
    finally:
        await reader.close()
        await publisher.close()
        await store.close()
        broker.kill()
    assert set(seen) == {e.id for e in events}
    by_record: dict[str, list[int]] = {}
    for event_id in order:
        event = seen[event_id].event
        by_record.setdefault(event.subject or "", []).append(event.data["version"])
    assert all(versions == sorted(versions) for versions in by_record.values())
    assert "BusUnavailable" in caplog.text  # the relay did meet the dead broker


async def write(store: SqliteStore, events: list[EventEnvelope]) -> None:
    for start in range(0, len(events), 10):
        async with store.unit_of_work(TENANT) as uow:
            await uow.outbox.add_many(events[start : start + 10])
            await uow.commit()
        await asyncio.sleep(0.005)


async def test_a_broker_that_lost_its_store_gets_its_consumers_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker restarted without its files has neither the stream nor the durable consumers:
    the publisher makes the stream again, and a subscription whose fetches find nothing asks
    whether its consumer still exists and makes it again, from the start of the new stream.
    (Before, it fetched from a consumer that was gone, silently, for ever.)"""
    monkeypatch.setattr(nats_consumer, "CHECK_EVERY", 0.3)
    broker = PrivateNats(tmp_path)
    broker.start()
    publisher = NatsJetStreamBus(broker.url, publish_timeout=1.0, connect_timeout=1.0)
    reader = NatsJetStreamBus(broker.url, fetch_wait=0.1, retry_first=0.05, retry_most=0.2)
    got: list[int] = []

    async def consume(messages: Sequence[BusMessage]) -> None:
        got.extend(m.event.data["version"] for m in messages)

    subscription = await reader.subscribe("lost", consume, subjects=["cadastre.acme.>"])
    try:
        await publisher.publish([change_event(TENANT, "L1", 1)])
        async with asyncio.timeout(10):
            while got != [1]:
                await asyncio.sleep(0.02)
        broker.kill()
        shutil.rmtree(tmp_path / "jetstream")
        broker.start()
        async with asyncio.timeout(30):
            for version in (2, 3):
                while True:  # as the relay does: the same event again until the bus takes it
                    try:
                        await publisher.publish([change_event(TENANT, "L1", version)])
                        break
                    except BusUnavailable:
                        await asyncio.sleep(0.1)
            while got != [1, 2, 3]:
                await asyncio.sleep(0.02)
        await subscription.stop()
    finally:
        await reader.close()
        await publisher.close()
        broker.kill()
    assert "was gone from NATS; made again" in caplog.text
