"""A hub (SQLite file, or PostgreSQL) on a fake clock, two tenants, and a subscriber simulator on
loopback sharing that clock. Events reach the dispatcher's handler directly (as the bus hands
them over), and a sender runs for the test's length."""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract.events import EventEnvelope
from cadastre.ports import BusMessage, Delivery, DeliveryStatus, SubscriptionStatus
from cadastre.simulators import serve
from cadastre.simulators.subscriber import SubscriberSimulator
from cadastre.testing import FakeClock
from cadastre.vault.crypto import new_key_id
from cadastre.webhooks.delivery_sender import DeliverySender
from cadastre.webhooks.subscriptions import Created
from tests.integration.vault.conftest import fresh_postgres

A, B = "acme", "globex"
LOOPBACK = ("127.0.0.0/8",)


@dataclass
class World:
    hub: Hub
    clock: FakeClock
    sim: SubscriberSimulator
    url: str  # the subscriber's endpoint
    senders: AsyncExitStack = field(default_factory=AsyncExitStack)
    running: list[DeliverySender] = field(default_factory=list)

    async def subscribe(
        self, tenant: str = A, types: tuple[str, ...] = ("cadastre.listing.*",),
        url: str | None = None, verify: bool = True,
    ) -> Created:  # fmt: skip
        created = await self.hub.webhooks.subscriptions.add(
            tenant, url=url or self.url, event_types=types, description="test"
        )
        if verify:
            self.sim.secrets.append(created.secret.reveal())
        return created

    def event(
        self, tenant: str = A, type: str = "cadastre.listing.updated.v1", subject: str = "L1",
        **data: Any,
    ) -> EventEnvelope:  # fmt: skip
        return EventEnvelope(
            source="/mls/austin", type=type, subject=subject, time=self.clock.now(),
            tenant=tenant, data={"entity": "Listing", "fields": {"ListPrice": 1}, **data},
        )  # fmt: skip

    async def publish(self, *events: EventEnvelope) -> None:
        """What the bus does for the dispatcher's durable consumer."""
        messages = [BusMessage(e, f"cadastre.{e.tenant}.listing.updated", 1) for e in events]
        await self.hub.webhooks.dispatcher(self.hub.bus).handle(messages)

    async def sender(self, **options: Any) -> DeliverySender:
        options.setdefault("rng", random.Random(7))
        sender = await self.senders.enter_async_context(self.hub.webhooks.sender(**options))
        self.running.append(sender)
        return sender

    async def deliveries(self, tenant: str = A, **filters: Any) -> list[Delivery]:
        return await self.hub.webhooks.deliveries.find(tenant, limit=1000, **filters)

    async def delivery(self, id: str, tenant: str = A) -> Delivery:
        return (await self.hub.webhooks.deliveries.get(tenant, id))[0]

    async def alerts(self, tenant: str = A) -> list[EventEnvelope]:
        async with self.hub.store.unit_of_work(tenant, read_only=True) as uow:
            pending = await uow.outbox.pending(limit=1000)
        return [m.event for m in pending if m.event.type == "cadastre.alert.raised.v1"]

    async def _waiting(self, tenant: str) -> list[datetime]:
        """When the pending deliveries of active subscriptions are due (held ones are not)."""
        active = {
            s.id for s in await self.hub.webhooks.subscriptions.all(tenant)
            if s.status is SubscriptionStatus.ACTIVE
        }  # fmt: skip
        return [
            d.next_attempt_at for d in await self.deliveries(tenant, status=DeliveryStatus.PENDING)
            if d.subscription in active and d.next_attempt_at is not None
        ]  # fmt: skip

    async def due_now(self, tenant: str = A) -> int:
        """Deliveries due by now: what the senders still owe."""
        now = self.clock.now()
        return sum(1 for due in await self._waiting(tenant) if due <= now)

    async def next_due(self, tenant: str = A) -> datetime | None:
        return min(await self._waiting(tenant), default=None)

    async def step(self, to: datetime, tenant: str = A) -> None:
        """Move the clock to ``to`` and wait for the senders to attempt what is due."""
        await settle(self.quiet)  # time moves only while every sender waits on it
        if to > self.clock.now():
            self.clock.set(to)
        await settle(lambda: self._settled(tenant))

    async def quiet(self) -> bool:
        return all(s.idle for s in self.running)

    async def _settled(self, tenant: str) -> bool:
        return await self.due_now(tenant) == 0 and await self.quiet()


async def settle(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait (real time) until ``condition`` holds: the sender works in its own task."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.005)


def master_key() -> SecretStr:
    return SecretStr(f"{new_key_id()}:{base64.b64encode(os.urandom(32)).decode()}")


@asynccontextmanager
async def world_on(
    settings: Settings, clock: FakeClock, sim: SubscriberSimulator | None = None
) -> AsyncIterator[World]:
    sim = sim or SubscriberSimulator(clock=clock)
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    try:
        for tenant in (A, B):
            await hub.tenants.create(tenant, tenant.title())
        async with serve(sim.app) as running:
            world = World(hub, clock, sim, f"{running.url}/hooks")
            async with world.senders:
                yield world
    finally:
        await hub.close()


def sqlite_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, gateway_allow_hosts=LOOPBACK, **overrides)


@pytest.fixture
def clock() -> FakeClock:
    # Near the wall clock: the standardwebhooks package checks timestamps against it.
    return FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1))


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield sqlite_settings(tmp_path)
        return
    with fresh_postgres() as url:
        yield sqlite_settings(tmp_path, database_url=SecretStr(url), vault_master_key=master_key())


@pytest.fixture
async def world(settings: Settings, clock: FakeClock) -> AsyncIterator[World]:
    async with world_on(settings, clock) as built:
        yield built


@pytest.fixture
async def embedded(tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    """SQLite only: for what does not depend on the database."""
    async with world_on(sqlite_settings(tmp_path), clock) as built:
        yield built
