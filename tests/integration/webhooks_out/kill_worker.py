"""One life of the kill -9 trial (``test_sender_kill``): a hub on a SQLite file, its sender
running until no delivery is due. Its clock is a FakeClock standing ``OFFSET`` seconds ahead of
the wall clock, so each life starts past the claims the life before it left (a claim lasts the
attempt timeout plus a minute). The first life creates the tenant, a subscription to ``URL`` and
``N`` deliveries. ``CADASTRE_FAILPOINTS=webhooks.out.answered`` kills it after an endpoint
answered and before the attempt is recorded.

    python -m tests.integration.webhooks_out.kill_worker DATA_DIR URL N OFFSET
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.contract.events import EventEnvelope
from cadastre.ports import BusMessage, DeliveryStatus
from cadastre.testing import FakeClock

TENANT = "acme"
TIMEOUT = 2.0  # seconds an attempt may take: the claim lasts this plus a minute


async def _due(hub: Hub, clock: FakeClock) -> bool:
    found = await hub.webhooks.deliveries.find(TENANT, status=DeliveryStatus.PENDING, limit=1000)
    return any(d.next_attempt_at is not None and d.next_attempt_at <= clock.now() for d in found)


async def main(data_dir: Path, url: str, n: int, offset: float) -> None:
    settings = Settings(
        data_dir=data_dir, gateway_allow_hosts=("127.0.0.0/8",), webhooks_timeout_seconds=TIMEOUT
    )
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=offset))
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    try:
        if await hub.store.get_tenant(TENANT) is None:
            await hub.tenants.create(TENANT, "Acme")
            await hub.webhooks.subscriptions.add(
                TENANT, url=url, event_types=["cadastre.listing.*"]
            )
            events = [
                EventEnvelope(source="/mls/kill", type="cadastre.listing.updated.v1",
                              subject=f"L{i}", time=clock.now(), tenant=TENANT,
                              data={"entity": "Listing", "fields": {"ListPrice": i}})
                for i in range(n)
            ]  # fmt: skip
            messages = [BusMessage(e, f"cadastre.{TENANT}.listing.updated", 1) for e in events]
            await hub.webhooks.dispatcher(hub.bus).handle(messages)
        async with hub.webhooks.sender(batch=4, parallel=4) as sender:
            # the clock stands still: what fails now is due in a later life
            await asyncio.sleep(0.05)
            while await _due(hub, clock) or not sender.idle:
                await asyncio.sleep(0.02)
    finally:
        await hub.close()


if __name__ == "__main__":
    directory, target, count, ahead = sys.argv[1:]
    asyncio.run(main(Path(directory), target, int(count), float(ahead)))
