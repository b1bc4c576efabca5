"""The bus conformance suite against the in-process bus and NATS JetStream (the shared server:
each test uses a tenant of its own and deletes the durable consumers it made)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cadastre.bus import InProcessBus, NatsJetStreamBus
from cadastre.testing.bus_suite import BusSuite
from tests.nats_server import shared_nats_url


class TestInProcessBus(BusSuite):
    @pytest.fixture
    async def bus(self, consumers: list[str]) -> AsyncIterator[InProcessBus]:
        bus = InProcessBus(retry_first=0.02, retry_most=0.1)
        yield bus
        await bus.close()


class TestNatsJetStreamBus(BusSuite):
    @pytest.fixture
    async def bus(self, consumers: list[str]) -> AsyncIterator[NatsJetStreamBus]:
        bus = NatsJetStreamBus(shared_nats_url(), retry_first=0.02, retry_most=0.1,
                               fetch_wait=0.2)  # fmt: skip
        yield bus
        try:
            for name in consumers:
                await bus.delete_consumer(name)
        finally:
            await bus.close()
