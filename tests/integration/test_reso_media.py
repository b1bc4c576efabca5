"""Media over real HTTP on loopback into SQLite: nested through ``$expand=Media`` (MLS Grid style)
or read from the Media resource (Trestle style), stored as canonical Media records; an
incremental sync refreshes only the Media of listings whose PhotosChangeTimestamp moved, and a
Media key reconciliation tombstones the photos an agent took away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.bootstrap import Hub
from cadastre.simulators import ResoSimulator, serve
from cadastre.sync.reconcile import ReconcileGuard
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock, open_hub

MLS = "test-mls"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    async with open_hub(
        tmp_path, clock, mappings={}, project_mappings=["mlsgrid", "trestle"]
    ) as hub:
        yield hub


async def connect(hub: Hub, url: str, mapping: str, **config: Any) -> None:
    await connect_reso(hub, MLS, url, mapping=mapping, **config)


async def stored_media(hub: Hub) -> dict[str, dict[str, Any]]:
    async with hub.store.unit_of_work(TENANT) as uow:
        return {
            r.data["MediaKey"]: dict(r.data)
            async for r in uow.records.scan("Media", limit=1_000_000)
            if not r.deleted
        }


def served_media(sim: ResoSimulator) -> dict[str, dict[str, Any]]:
    return {m["MediaKey"]: m for key in sim.records for m in sim.media(key)}


@pytest.mark.parametrize(("dialect", "mode"), [("mlsgrid", "expand"), ("trestle", "resource")])
async def test_media_are_stored_and_refreshed_when_a_listings_photos_change(
    hub: Hub, clock: FakeClock, dialect: str, mode: str
) -> None:
    sim = ResoSimulator(records=40, seed=31, clock=clock, rate_limit=None, dialect=dialect)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect(hub, running.url, dialect, media=mode, page_size=15,
                      expand_page_size=15, media_batch=4, overlap_seconds=0)  # fmt: skip
        full = await hub.sync(TENANT, MLS)
        served = served_media(sim)
        assert len(served) > 40  # listings have several photos each
        assert full.tally.quarantined == 0, full.tally.reasons
        held = await stored_media(hub)
        assert set(held) == set(served)
        for key, media in served.items():
            assert held[key]["MediaURL"] == media["MediaURL"]
            assert held[key]["ResourceRecordKey"] == media["ResourceRecordKey"]

        clock.advance(60)
        listing = sorted(sim.records)[7]
        before = {m["MediaKey"] for m in sim.media(listing)}
        await admin.post("/admin/media", json={"key": listing, "photos": 2})
        sim.touch(keys=[sorted(sim.records)[9]], changes={"ListPrice": 999000})  # no new photos
        incremental = await hub.sync(TENANT, MLS)
        # two listings and the two new photos of one of them: no other listing's Media
        assert incremental.tally.fetched == 2 + 2
        held = await stored_media(hub)
        now = {m["MediaKey"]: m for m in sim.media(listing)}
        assert len(now) == 2
        for key, media in now.items():
            assert held[key]["MediaURL"] == media["MediaURL"]

        # The photos the agent took away are still held until a Media key reconciliation.
        stale = before - set(now)
        assert stale
        assert stale <= set(held)
        report = await hub.reconcile(TENANT, MLS, stream="Media", guard=ReconcileGuard(floor=50))
        assert report.refused is None
        assert set(report.deleted_keys) == stale
    assert set(await stored_media(hub)) == set(served_media(sim))
