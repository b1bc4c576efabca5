"""One life of the kill -9 trial (``test_relay_kill``): a hub on a SQLite file applies changes
``K0`` .. ``K<n-1>`` (idempotent: a change applied in an earlier life is not applied again) while
its outbox relay runs, and returns once the outbox is empty. ``CADASTRE_FAILPOINTS`` kills it
between commit and publish, or between publish and marking.

With the in-process bus (``memory``) the consumer lives here too, and dies with the process: its
effect (an audit entry naming the event) commits with its de-duplication mark. With ``nats`` the
test process consumes.

    python -m tests.integration.bus.kill_worker DATA_DIR TENANT N memory|nats [NATS_URL]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from cadastre.bootstrap import bootstrap
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.ports import BusMessage, Store

CONSUMER = "effects"
EFFECT = "event.consumed"


def change(tenant: str, i: int) -> Change:
    return Change(
        tenant=tenant,
        entity="Listing",
        fields={"ListingKey": f"K{i}", "ListPrice": str(1000 + i)},
        origin=Origin(system="mls", connection="kill", external_id=f"K{i}"),
    )


def effect(store: Store, tenant: str, consumer: str = CONSUMER):
    """A consumer whose effect (an audit entry per event) commits with its de-duplication mark."""

    async def handle(messages: Sequence[BusMessage]) -> None:
        async with store.unit_of_work(tenant) as uow:
            ids = [m.event.id for m in messages if m.event.tenant == tenant]
            for event_id in await uow.consumed.first_seen(consumer, ids):
                await uow.audit.append(actor=consumer, action=EFFECT, detail={"event_id": event_id})
            await uow.commit()

    return handle


async def main(data_dir: Path, tenant: str, n: int, bus: str, nats_url: str) -> None:
    settings = Settings.model_validate(
        {"data_dir": data_dir, "bus": bus, "relay_poll_seconds": 0.05, "relay_batch": 7,
         **({"nats_url": nats_url} if nats_url else {})}
    )  # fmt: skip
    hub = await bootstrap(settings, configure_logs=False)
    try:
        if bus == "memory":
            await hub.bus.subscribe(
                CONSUMER, effect(hub.store, tenant), subjects=[f"cadastre.{tenant}.>"]
            )
        async with hub.running():
            for start in range(0, n, 5):
                await hub.engine.apply_batch(
                    [change(tenant, i) for i in range(start, min(n, start + 5))]
                )
            while await hub.store.pending_outbox_tenants():
                await asyncio.sleep(0.02)
    finally:
        await hub.close()


if __name__ == "__main__":
    directory, tenant, count, mode, *rest = sys.argv[1:]
    asyncio.run(main(Path(directory), tenant, int(count), mode, rest[0] if rest else ""))
