"""A write-back worker in a process of its own, for the kill trials: it opens the hub on the
environment's settings, registers the loopback test connector, and works until nothing is due
(or it is killed at a failpoint: ``CADASTRE_FAILPOINTS=writeback.acked``)."""

from __future__ import annotations

import asyncio

from cadastre.bootstrap import bootstrap
from tests.integration.writeback.http_target import install


async def main() -> None:
    install()
    hub = await bootstrap(configure_logs=False)
    try:
        worker = hub.writeback.worker()
        for _ in range(200):
            await worker.run_once()
            if not await _due(hub):
                return
            await asyncio.sleep(0.05)
    finally:
        await hub.close()


async def _due(hub: object) -> bool:
    store = hub.store  # type: ignore[attr-defined]
    for tenant in await store.list_tenants():
        async with store.unit_of_work(tenant.id, read_only=True) as uow:
            if await uow.writes.any_due():
                return True
    return False


if __name__ == "__main__":
    asyncio.run(main())
