"""Schema drift over real HTTP on loopback into SQLite: the MLS changes its dialect while it runs
(a field added, one removed, one retyped, a new enumeration value) and the next sync raises one
``cadastre.schema.drifted.v1`` event that lists every difference; the first sync raises none, and
syncing keeps working across the change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.bootstrap import Hub
from cadastre.simulators import ResoSimulator, serve
from cadastre.sync.drift import DRIFT_EVENT
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


async def point(hub: Hub, url: str) -> None:
    await connect_reso(hub, MLS, url, page_size=100)


async def drift_events(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.unit_of_work(TENANT) as uow:
        return [m.event.data for m in await uow.outbox.pending(limit=100_000)
                if m.event.type == DRIFT_EVENT]  # fmt: skip


async def test_a_dialect_changed_while_the_mls_runs_is_one_drift_event(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=60, seed=41, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await point(hub, running.url)
        first = await hub.sync(TENANT, MLS)
        assert first.tally.fetched == 60
        assert await drift_events(hub) == []  # the first sync only takes the snapshot
        again = await hub.sync(TENANT, MLS)
        assert again.tally.created == 0
        assert await drift_events(hub) == []  # nothing changed, nothing said

        clock.advance(60)
        for change in (
            {"add_field": {"name": "ACT_GreenCertified", "type": "Edm.Boolean", "value": True}},
            {"remove_field": "ACT_HOAName"},
            {"retype_field": {"name": "ACT_Waterfront", "type": "Edm.String"}},
            {"add_enum_value": {"field": "StandardStatus", "value": "Active Kick Out",
                                "count": 3}},
        ):  # fmt: skip
            answer = await admin.post("/admin/dialect", json=change)
            assert answer.status_code == 200, answer.text
        after = await hub.sync(TENANT, MLS)
        assert after.tally.fetched >= 3  # the sync goes on; $select no longer names ACT_HOAName
        (drift,) = await drift_events(hub)
    assert drift["stream"] == "Property"
    assert drift["added"] == {"ACT_GreenCertified": "Edm.Boolean"}
    assert drift["removed"] == {"ACT_HOAName": "Edm.String"}
    assert drift["retyped"] == {"ACT_Waterfront": {"was": "Edm.Boolean", "is": "Edm.String"}}
    assert drift["new_values"] == {"StandardStatus": ["Active Kick Out"]}
