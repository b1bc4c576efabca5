"""Scheduled API-key rotation as ``cadastre serve`` runs it, on a fake clock shared with the auth
simulator: a key with ``rotate_every_days: 30`` is rotated once when 30 days have passed, not
before, and again 30 days later; the old key keeps working through the vendor's overlap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx

from cadastre.bootstrap import bootstrap
from cadastre.cli.serve import rotate_keys
from cadastre.config import Settings
from cadastre.simulators import serve
from cadastre.simulators.auth import AuthSimulator
from cadastre.testing import FakeClock

TENANT = "acme"
DAY = 86400.0
FIRST = "first-key-000000000001"


async def asleep(clock: FakeClock) -> None:
    """Until the scheduler waits for its next round."""
    for _ in range(2000):
        if clock.sleepers >= 1:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the scheduler never went back to sleep")


async def test_a_due_key_is_rotated_by_the_schedule_and_only_when_due(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC), autojump=True)
    settings = Settings(data_dir=tmp_path, gateway_allow_hosts=("127.0.0.0/8", "::1"))
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    sim = AuthSimulator(clock=clock, api_keys=[FIRST])
    sim.configure(key_overlap=DAY)
    try:
        async with serve(sim.app) as vendor:
            await hub.tenants.create(TENANT, "Acme")
            await hub.vault.add(TENANT, "pms", "api_key", {"api_key": FIRST},
                                {"rotate_url": f"{vendor.url}/keys/rotate",
                                 "rotate_every_days": 30})  # fmt: skip
            scheduler = asyncio.create_task(rotate_keys(hub, 3600.0))
            await asleep(clock)
            rotations = []
            for _ in range(24 * 29 + 23):  # one hour short of 30 days
                clock.advance(3600)
                await asleep(clock)
            rotations.append(sim.stats.api_key_rotations)
            clock.advance(3600)  # 30 days
            await asleep(clock)
            rotations.append(sim.stats.api_key_rotations)
            async with httpx.AsyncClient(base_url=vendor.url) as client:  # the overlap
                old = await client.get("/api/keyed", headers={"X-Api-Key": FIRST})
            for _ in range(24 * 30):
                clock.advance(3600)
                await asleep(clock)
            rotations.append(sim.stats.api_key_rotations)
            scheduler.cancel()
            opened = await hub.vault.open(TENANT, "pms", actor="test", purpose="test")
    finally:
        await hub.close()
    assert rotations == [0, 1, 2]
    assert old.status_code == 200
    assert opened.field("api_key").reveal() != FIRST
    assert opened.field("previous_api_key").reveal() != FIRST  # the second rotation's old key
