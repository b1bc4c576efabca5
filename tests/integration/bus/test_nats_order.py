"""A record's events stay in order on NATS when a durable consumer has more than one worker, or a
worker dies holding a batch (JetStream hands that batch out again only after ack_wait, and would
meanwhile give the next worker newer events). Shared server: each test has a tenant and durable
consumer of its own, deleted afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from cadastre.bus import NatsJetStreamBus
from cadastre.ports import BusMessage
from cadastre.testing.bus_suite import change_event
from tests.conftest import PROJECT_ROOT
from tests.nats_server import shared_nats_url

ACK_WAIT = 2.0  # seconds: how long a dead worker's batch stays out


@pytest.fixture
async def names() -> AsyncIterator[tuple[str, str]]:
    tenant, consumer = f"ord-{uuid.uuid4().hex[:10]}", f"ord-{uuid.uuid4().hex[:10]}"
    url = shared_nats_url()
    yield tenant, consumer
    bus = NatsJetStreamBus(url)
    try:
        await bus.delete_consumer(consumer)
    finally:
        await bus.close()


class Effects:
    """What a de-duplicating consumer acts on, in the order it acts, and whether two workers
    ever acted at once."""

    def __init__(self) -> None:
        self.first: dict[str, BusMessage] = {}
        self.active = 0
        self.overlapped = False
        self.changed = asyncio.Event()

    def handler(self, pause: float = 0.0):
        async def handle(messages: Sequence[BusMessage]) -> None:
            self.active += 1
            self.overlapped |= self.active > 1
            try:
                await asyncio.sleep(pause)
                for message in messages:
                    self.first.setdefault(message.event.id, message)
            finally:
                self.active -= 1
            self.changed.set()

        return handle

    async def until(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.first) < count:
                self.changed.clear()
                await self.changed.wait()

    def versions(self) -> dict[str, list[int]]:
        by_record: dict[str, list[int]] = {}
        for message in self.first.values():
            by_record.setdefault(message.event.subject or "", []).append(
                message.event.data["version"]
            )
        return by_record


async def test_a_worker_killed_holding_a_batch_is_followed_in_order(
    names: tuple[str, str],
) -> None:
    tenant, consumer = names
    url = shared_nats_url()
    subject = f"cadastre.{tenant}.>"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.bus.nats_holder", url, consumer, subject,
        str(ACK_WAIT), cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert holder.stdout is not None
    publisher = NatsJetStreamBus(url)
    effects = Effects()
    try:
        async with asyncio.timeout(30):
            assert (await holder.stdout.readline()).strip() == b"subscribed"
            await publisher.publish([change_event(tenant, "L1", v) for v in (1, 2, 3)])
            held = (await holder.stdout.readline()).decode().split()
        assert held[:2] == ["held", "1"]
        holder.send_signal(signal.SIGKILL)  # dies holding it: neither acknowledged nor given back
        await holder.wait()
        await publisher.publish([change_event(tenant, "L1", v) for v in (4, 5, 6)])
        worker = NatsJetStreamBus(url, ack_wait=ACK_WAIT, fetch_wait=0.2)
        subscription = await worker.subscribe(consumer, effects.handler(), subjects=[subject])
        try:
            await effects.until(6)
        finally:
            await subscription.stop()
            await worker.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await publisher.close()
    assert effects.versions() == {"L1": [1, 2, 3, 4, 5, 6]}
    first = next(iter(effects.first.values()))
    assert first.delivery >= 2  # the dead worker's batch, delivered again, came first


async def test_two_live_workers_of_one_consumer_keep_each_records_order(
    names: tuple[str, str],
) -> None:
    tenant, consumer = names
    url = shared_nats_url()
    publisher = NatsJetStreamBus(url)
    workers = [NatsJetStreamBus(url, fetch_wait=0.2) for _ in range(2)]
    effects = Effects()
    events = [change_event(tenant, f"L{i % 3}", 1 + i // 3) for i in range(120)]
    try:
        subscriptions = [
            await w.subscribe(consumer, effects.handler(0.005), subjects=[f"cadastre.{tenant}.>"],
                              batch=10)
            for w in workers
        ]  # fmt: skip
        for event in events:  # trickled, so both workers keep fetching
            await publisher.publish([event])
            await asyncio.sleep(0.002)
        await effects.until(len(events))
        for subscription in subscriptions:
            await subscription.stop()
    finally:
        for bus in (*workers, publisher):
            await bus.close()
    assert effects.versions() == {f"L{r}": list(range(1, 41)) for r in range(3)}
    assert not effects.overlapped  # one batch of the consumer at a time, whichever worker
