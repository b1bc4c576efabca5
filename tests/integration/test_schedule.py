"""Scheduled syncs and reconciliations through the hub, over real HTTP on loopback into SQLite, on
a fake clock: each connection syncs at its MLS's refresh cadence (from its mapping file, else the
hub's default), a paused connection is not scheduled, and the daily key reconciliation tombstones
what vanished upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cadastre.bootstrap import Hub
from cadastre.errors import SyncInProgress
from cadastre.simulators import ResoSimulator, serve
from cadastre.sync.scheduler import Job, SyncScheduler
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, connect_reso, fake_clock, open_hub

PREFIX = "version: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
MAPPINGS = {
    "quick": f"mapping: quick\n{PREFIX}refresh: {{every_minutes: 5, overlap_minutes: 1}}\n",
    "plain": f"mapping: plain\n{PREFIX}",
}


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    async with open_hub(
        tmp_path, clock, mappings=MAPPINGS, sync_every_seconds=1800, reconcile_every_seconds=3600
    ) as hub:
        yield hub


async def connect(hub: Hub, name: str, url: str, mapping: str) -> None:
    await connect_reso(hub, name, url, mapping=mapping, page_size=100)


async def held(hub: Hub, connection: str) -> int:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return len(await uow.xref.for_connection(connection, "Listing", limit=100_000))


async def deleted_keys(hub: Hub, connection: str) -> set[str]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        refs = await uow.xref.for_connection(connection, "Listing", limit=100_000)
        records = await uow.records.get_many("Listing", [r.canonical_id for r in refs])
    return {r.external_id for r in refs if records[r.canonical_id].deleted}


async def test_jobs_follow_each_mlss_cadence_and_paused_connections_are_left_out(
    hub: Hub,
) -> None:
    await connect(hub, "quick-mls", "http://127.0.0.1:9", "quick")
    await connect(hub, "plain-mls", "http://127.0.0.1:9", "plain")
    await connect(hub, "paused-mls", "http://127.0.0.1:9", "plain")
    await hub.connections.pause(TENANT, "paused-mls")
    jobs = {(j.connection, j.kind): j.every for j in await hub.scheduled_jobs()}
    assert jobs == {
        ("quick-mls", "sync"): 300.0,  # refresh.every_minutes: 5
        ("plain-mls", "sync"): 1800.0,  # no refresh rule: CADASTRE_SYNC_EVERY_SECONDS
        ("quick-mls", "reconcile"): 3600.0,
        ("plain-mls", "reconcile"): 3600.0,
    }
    with pytest.raises(ValueError, match="unknown scheduled job kind"):
        await hub.run_job(Job(TENANT, "quick-mls", "vacuum", 60))


async def test_scheduled_syncs_and_reconciliation_keep_the_store_in_step(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=150, seed=31, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect(hub, "quick-mls", running.url, "quick")
        await connect(hub, "plain-mls", running.url, "plain")
        scheduler = SyncScheduler(clock, hub.scheduled_jobs, hub.run_job, None, tick=60)

        async def minutes(n: int) -> None:
            for _ in range(n):
                await scheduler.tick()
                await scheduler.idle()
                clock.advance(60)

        await minutes(1)  # everything is due at the first tick
        assert scheduler.runs == {
            "schedule:sync:acme:quick-mls": 1, "schedule:sync:acme:plain-mls": 1,
            "schedule:reconcile:acme:quick-mls": 1, "schedule:reconcile:acme:plain-mls": 1,
        }  # fmt: skip
        assert (await held(hub, "quick-mls"), await held(hub, "plain-mls")) == (150, 150)
        gone = set((await admin.post("/admin/delete", json={"count": 3})).json()["deleted"])
        await minutes(29)  # half an hour: the quick MLS synced every 5 minutes, the plain once
        assert scheduler.runs["schedule:sync:acme:quick-mls"] == 6
        assert scheduler.runs["schedule:sync:acme:plain-mls"] == 1
        assert await deleted_keys(hub, "quick-mls") == set()  # replication cannot see deletions
        await minutes(31)  # past the hour: the reconciliations ran again
        assert scheduler.runs["schedule:reconcile:acme:quick-mls"] == 2
        assert scheduler.runs["schedule:sync:acme:plain-mls"] == 3
    assert await deleted_keys(hub, "quick-mls") == gone
    assert await deleted_keys(hub, "plain-mls") == gone


async def test_a_connection_syncs_once_at_a_time_and_the_schedule_skips_a_busy_one(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=40, seed=32, clock=clock, rate_limit=None)
    async with serve(sim.app) as running:
        await connect(hub, "quick-mls", running.url, "quick")
        # another worker (or `cadastre sync` in another shell) is syncing the connection
        async with hub.locks.hold("sync:acme:quick-mls", wait=0, lease=60):
            with pytest.raises(SyncInProgress, match="syncing already"):
                await hub.sync(TENANT, "quick-mls")
            scheduler = SyncScheduler(clock, hub.scheduled_jobs, hub.run_job, None)
            await scheduler.tick()
            await scheduler.idle()
            assert await held(hub, "quick-mls") == 0
        report = await hub.sync(TENANT, "quick-mls")  # free again
        assert report.tally.created == 40
        async with hub.locks.hold("reconcile:acme:quick-mls", wait=0, lease=60):
            with pytest.raises(SyncInProgress, match="reconciled already"):
                await hub.reconcile(TENANT, "quick-mls")
        assert (await hub.reconcile(TENANT, "quick-mls")).deleted == 0


async def test_a_connection_edited_during_a_run_keeps_that_runs_source_open(
    hub: Hub, clock: FakeClock, tmp_path: Path
) -> None:
    sim = ResoSimulator(records=30, seed=33, clock=clock, rate_limit=None)
    async with serve(sim.app) as running:
        await connect(hub, "quick-mls", running.url, "quick")
        first = await hub.open_source(TENANT, "quick-mls")
        async with hub._use(first):  # a sync or reconciliation is running with it
            # ... when the mapping file is edited: the next run gets a new source
            mapping = tmp_path / "mappings" / "quick.yaml"
            mapping.write_text(mapping.read_text().replace("version: 1", "version: 2"))
            second = await hub.open_source(TENANT, "quick-mls")
            assert second is not first
            # the running one can still call its vendor
            assert await first.gateway.get_json(f"{running.url}/odata/Property", params={
                "$top": "1"}) is not None  # fmt: skip
        with pytest.raises(RuntimeError, match="closed"):  # closed once its run ended
            await first.gateway.get_json(f"{running.url}/odata/Property")
        report = await hub.sync(TENANT, "quick-mls")
        assert report.tally.created == 30


async def test_runs_opening_an_edited_connection_at_once_share_one_new_source(
    hub: Hub, clock: FakeClock, tmp_path: Path
) -> None:
    # A sync and a reconciliation start in one tick just after an edit: while the first closes
    # the old source, the second must find the new one, not open a third that nothing closes.
    await connect(hub, "quick-mls", "http://127.0.0.1:9", "quick")
    first = await hub.open_source(TENANT, "quick-mls")
    mapping = tmp_path / "mappings" / "quick.yaml"
    mapping.write_text(mapping.read_text().replace("version: 1", "version: 2"))
    closing, gate = asyncio.Event(), asyncio.Event()
    close = first.connector.aclose

    async def slow_close() -> None:
        closing.set()
        await gate.wait()
        await close()

    first.connector.aclose = slow_close  # type: ignore[method-assign]
    one = asyncio.create_task(hub.open_source(TENANT, "quick-mls"))
    await asyncio.wait_for(closing.wait(), 10)  # the first run is closing the old source
    other = await hub.open_source(TENANT, "quick-mls")
    gate.set()
    assert await one is other
    assert list(hub._sources.values()) == [other]
