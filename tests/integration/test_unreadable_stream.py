"""A vendor that keeps sending an unreadable page, over real HTTP on loopback into SQLite: the
page is quarantined whole (once, however many runs meet it), the cursor waits before it, every run
raises an alert saying what to do, and once the vendor mends the page the next sync reads on with
nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.bootstrap import Hub
from cadastre.simulators import ResoSimulator, serve
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock, open_hub

MLS = "test-mls"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    async with open_hub(tmp_path, clock) as hub:
        yield hub


async def alerts(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        pending = await uow.outbox.pending(limit=100_000)
    return [m.event.data for m in pending if m.event.type == "cadastre.alert.raised.v1"]


async def test_a_stream_held_by_an_unreadable_page_alerts_and_reads_on_once_mended(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=60, seed=41, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect_reso(hub, MLS, running.url, page_size=20, select=False)
        first = await hub.sync(TENANT, MLS)
        assert first.tally.created == 60
        assert first.unread == {}
        clock.advance(60)
        await admin.post("/admin/touch", json={"count": 30})
        garbage = {"garbage_rate": 1.0, "paths": ["/odata/Property"]}
        assert (await admin.post("/admin/faults", json=garbage)).status_code == 200

        for _ in range(2):  # the vendor keeps garbling: one entry, one alert per run
            held = await hub.sync(TENANT, MLS)
            assert set(held.unread) == {"Property"}
            assert held.tally.fetched == 0
        async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
            entries = await uow.quarantine.open_items(MLS, code="malformed_page")
            cursor = await uow.cursors.get(MLS, "Property")
        assert len(entries) == 1
        assert first.cursors["Property"] == (cursor.value if cursor else None)
        raised = [a for a in await alerts(hub) if a["alert"] == "stream_held_by_unreadable_page"]
        assert len(raised) == 2
        assert raised[0]["stream"] == "Property"
        assert "quarantine list" in raised[0]["action"]

        await admin.post("/admin/faults", json={})  # mended
        mended = await hub.sync(TENANT, MLS)
        assert mended.unread == {}
        assert mended.tally.updated == 30
    raised = [a for a in await alerts(hub) if a["alert"] == "stream_held_by_unreadable_page"]
    assert len(raised) == 2  # no alert once the stream reads on
