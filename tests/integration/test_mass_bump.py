"""A mass timestamp bump over real HTTP on loopback: one MLS touches every record at once while a
second connection shares its vendor and rate quota. The bumped connection's incremental sync is
detected as a mass update, replicated at a paced rate and reported (event and log line); the
other connection's sync, run at the same time, completes with a bounded wait.

Times are the fake clock's. It jumps at every sleep, so a wall-clock span would mix both
connections' waits; each connection's own waits are summed instead (a context variable set per
sync follows it into the tasks it starts).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.bootstrap import Hub
from cadastre.simulators import ResoSimulator, serve
from cadastre.sync import SyncReport
from cadastre.sync.pacing import MASS_UPDATE_EVENT
from cadastre.testing import FakeClock
from tests.integration.mls_hub import LOOPBACK, NOW, RESO_LOGIN, TENANT, connect_reso, open_hub

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="")
PAGE_SECONDS = 3.0


class WaitsByConnection(FakeClock):
    """An autojumping FakeClock that sums each connection's jumped sleeps."""

    def __init__(self) -> None:
        super().__init__(NOW, autojump=True)
        self.waited: defaultdict[str, float] = defaultdict(float)

    async def sleep(self, seconds: float) -> None:
        if 0 < seconds <= 600:  # longer ones are the watchdog's, not waits
            self.waited[WHO.get()] += seconds
        await super().sleep(seconds)


@pytest.fixture
def clock() -> WaitsByConnection:
    return WaitsByConnection()


@pytest.fixture
async def hub(tmp_path: Path, clock: WaitsByConnection) -> AsyncIterator[Hub]:
    # a credential is one account at one vendor: one each
    logins = dict.fromkeys(("bumped-mls", "other-mls"), RESO_LOGIN)
    async with open_hub(tmp_path, clock, credentials=logins) as hub:
        yield hub


async def connect(hub: Hub, name: str, url: str) -> None:
    # Both connections spend one vendor's quota: 4 requests a second between them.
    gateway = {"allow_hosts": list(LOOPBACK), "vendor": "reso-sim", "quota": "reso-sim-quota",
               "rate_limit": {"requests": 4, "per": 1}}  # fmt: skip
    await connect_reso(
        hub,
        name,
        url,
        credential=name,
        gateway=gateway,
        page_size=50,
        overlap_seconds=0,
        mass_update_records=100,
        mass_update_page_seconds=PAGE_SECONDS,
    )


async def sync_as(hub: Hub, name: str) -> SyncReport:
    WHO.set(name)
    return await hub.sync(TENANT, name)


async def mass_updates(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.unit_of_work(TENANT) as uow:
        return [m.event.data for m in await uow.outbox.pending(limit=100_000)
                if m.event.type == MASS_UPDATE_EVENT]  # fmt: skip


async def test_a_bump_is_replicated_paced_and_reported_while_the_other_connection_keeps_its_turn(
    hub: Hub, clock: WaitsByConnection, caplog: pytest.LogCaptureFixture
) -> None:
    bumped = ResoSimulator(records=400, seed=51, clock=clock, rate_limit=None)
    other = ResoSimulator(records=100, seed=52, clock=clock, rate_limit=None)
    async with serve(bumped.app) as a, serve(other.app) as b:
        await connect(hub, "bumped-mls", a.url)
        await connect(hub, "other-mls", b.url)
        await asyncio.gather(sync_as(hub, "bumped-mls"), sync_as(hub, "other-mls"))
        assert await mass_updates(hub) == []  # full syncs are not mass updates
        clock.advance(60)

        async with httpx.AsyncClient(base_url=a.url) as admin:
            assert (await admin.post("/admin/bump", json={})).json()["bumped"] == 400
        other.touch(count=5, changes={"ListPrice": 250000})
        clock.waited.clear()
        with caplog.at_level(logging.WARNING, logger="cadastre"):
            bump, ordinary = await asyncio.gather(
                sync_as(hub, "bumped-mls"), sync_as(hub, "other-mls")
            )
    assert bump.tally.fetched == 400
    assert bump.tally.updated == 400
    assert ordinary.tally.fetched == 5
    # Once the first page's count (400) and the count of all records (400) said "bump", the 7
    # pages left go at most one per PAGE_SECONDS: 6 gaps (the span is the shared clock's, which
    # the other sync moves too, so it is a lower bound only).
    assert bump.seconds >= 6 * PAGE_SECONDS
    assert clock.waited["bumped-mls"] > 0
    assert clock.waited["other-mls"] <= 2.0  # a few rate-limit slots, not the bump's queue
    (event,) = await mass_updates(hub)
    assert event["connection"] == "bumped-mls"
    assert (event["changed"], event["total"], event["page_seconds"]) == (400, 400, PAGE_SECONDS)
    assert any("mass update on bumped-mls" in r.getMessage() for r in caplog.records)
