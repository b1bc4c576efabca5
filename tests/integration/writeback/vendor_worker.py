"""A write-back worker in a process of its own, for the kill trials against the vendor
simulators (``test_kill_vendor_writes.py``).

It starts warm: it opens the hub on the environment's settings (``CADASTRE_DATA_DIR``,
``CADASTRE_DATABASE_URL``...), writes ``ready`` and then obeys one line of stdin at a time:

- ``work``: work until nothing is due, then write ``done``;
- ``work FAILPOINTS``: arm the failpoints first (as ``CADASTRE_FAILPOINTS`` would at start),
  then work: the process SIGKILLs itself at the point (``writeback.acked``: after the vendor's
  answer, before the local commit);
- end of input: close the hub and exit 0.

So one process recovers what the last one left when it was killed (unarmed), then takes the next
write and is killed in turn; the trial starts the next process while this one works."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys

from cadastre import failpoints
from cadastre.bootstrap import Hub, bootstrap


async def main() -> None:
    hub = await bootstrap(configure_logs=False)
    try:
        say("ready")
        while line := await asyncio.to_thread(sys.stdin.readline):
            command, _, armed = line.strip().partition(" ")
            if command != "work":
                raise SystemExit(f"unknown command {command!r}")
            if armed:
                os.environ["CADASTRE_FAILPOINTS"] = armed
                importlib.reload(failpoints)  # the worker looks the points up at each reach
            await work(hub)
            say("done")
    finally:
        await hub.close()


async def work(hub: Hub) -> None:
    worker = hub.writeback.worker()
    for _ in range(400):
        await worker.run_once()
        if not await _due(hub):
            return
        await asyncio.sleep(0.05)


async def _due(hub: Hub) -> bool:
    for tenant in await hub.store.list_tenants():
        async with hub.store.unit_of_work(tenant.id, read_only=True) as uow:
            if await uow.writes.any_due():
                return True
    return False


def say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
