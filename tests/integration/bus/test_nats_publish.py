"""Publishing to NATS over a slow link: each event of a record waits for the PubAck of the one
before it, so a batch of one record's events costs a round trip per event. The deadline is per
wait: a deadline for the whole batch would fail that batch on every try, for ever (the relay
sends the same batch again after each failure)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from cadastre.bus import NatsJetStreamBus
from cadastre.testing.bus_suite import Collector, change_event
from tests.nats_server import shared_nats_url

DELAY = 0.004  # seconds added to each hop through the proxy, each way


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            await asyncio.sleep(DELAY)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def slow_url() -> AsyncIterator[str]:
    """A loopback TCP proxy to the shared NATS server that delays everything it passes on."""
    host, port = shared_nats_url().rsplit("@", 1)[-1].removeprefix("nats://").split(":")
    pipes: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for task in (_pipe(reader, up_writer), _pipe(up_reader, writer)):
            pipes.add(asyncio.create_task(task))

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    yield f"nats://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    for task in pipes:
        task.cancel()
    await asyncio.gather(*pipes, return_exceptions=True)


async def test_a_batch_of_one_records_events_is_taken_over_a_slow_link(slow_url: str) -> None:
    tenant, consumer = f"slow-{uuid.uuid4().hex[:10]}", f"slow-{uuid.uuid4().hex[:10]}"
    reader = NatsJetStreamBus(shared_nats_url(), fetch_wait=0.2)
    collector = Collector()
    subscription = await reader.subscribe(consumer, collector, subjects=[f"cadastre.{tenant}.>"])
    # 100 events of one record: 100 round trips of >= 8 ms, far more than the 0.4 s deadline
    publisher = NatsJetStreamBus(slow_url, publish_timeout=0.4, connect_timeout=2.0)
    events = [change_event(tenant, "L1", v) for v in range(1, 101)]
    try:
        await publisher.publish(events)
        await collector.until(100)
        await subscription.stop()
    finally:
        await publisher.close()
        await reader.delete_consumer(consumer)
        await reader.close()
    assert collector.ids == [e.id for e in events]
