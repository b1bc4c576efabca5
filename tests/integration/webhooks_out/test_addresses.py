"""RELIABILITY.md promise 16 at connect time: a subscription created for a name that resolved to
a public address is refused when the name later resolves to loopback (DNS rebinding). Asserted at
the socket: a TCP server on 127.0.0.1 counts the connections it accepts, and gets none; the same
setup with the host allowed by the operator does connect (the positive control)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cadastre.gateway.address import IPAddress
from cadastre.ports import DeliveryStatus
from cadastre.testing import FakeClock
from cadastre.webhooks.subscriptions import SubscriptionService
from tests.integration.webhooks_out.conftest import A, World, settle, sqlite_settings, world_on


class Rebinding:
    """Answers a public address the first ``public`` times, then 127.0.0.1."""

    def __init__(self, public: int) -> None:
        self.left = public
        self.asked = 0

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked += 1
        self.left -= 1
        return [ipaddress.ip_address("93.184.216.34" if self.left >= 0 else "127.0.0.1")]


@asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that counts accepted connections and closes them."""
    accepted: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()


async def _attempted(world: World) -> bool:
    return all(d.attempts >= 1 for d in await world.deliveries())


async def _rebound_delivery(
    tmp_path: Path, clock: FakeClock, allow_hosts: tuple[str, ...]
) -> tuple[list[int], str, Rebinding]:
    settings = sqlite_settings(tmp_path).model_copy(update={"gateway_allow_hosts": allow_hosts})
    async with counting_server() as (port, accepted), world_on(settings, clock) as world:
        resolver = Rebinding(public=1)
        service = SubscriptionService(
            world.hub.store, world.hub.vault, clock, allow_hosts=allow_hosts, resolver=resolver
        )
        url = f"https://hooks.rebind.test:{port}/in"
        await service.add(A, url=url, event_types=["cadastre.listing.*"])  # public at creation
        assert resolver.asked == 1
        await world.sender(resolver=resolver)
        await world.publish(world.event())
        await settle(lambda: _attempted(world))
        [delivery] = await world.deliveries()
        assert delivery.status is DeliveryStatus.PENDING  # a failed attempt, retried later
        return accepted, delivery.last_error, resolver


async def test_a_name_rebound_to_loopback_is_refused_at_connect_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    accepted, error, resolver = await _rebound_delivery(tmp_path, clock, ())
    assert resolver.asked == 2  # the guard resolved it again, at send time
    assert accepted == []  # no connection reached the loopback server
    assert error.startswith("refused: host 'hooks.rebind.test' resolves only to refused")
    assert "127.0.0.1 (loopback)" in error


async def test_the_same_host_allowed_by_the_operator_connects(
    tmp_path: Path, clock: FakeClock
) -> None:
    accepted, error, _ = await _rebound_delivery(tmp_path, clock, ("hooks.rebind.test",))
    assert accepted == [1]  # the control: the socket was reachable
    assert not error.startswith("refused")
