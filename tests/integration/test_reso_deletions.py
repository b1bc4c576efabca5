"""Deletions upstream, over real HTTP on loopback into SQLite: listings that vanish from the feed
are found by key reconciliation and tombstoned with events; a feed that seems to lose most of its
listings at once deletes nothing and raises an alert; MLS Grid style ``MlgCanView=false``
records come through replication as deletes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
    async with open_hub(tmp_path, clock, project_mappings=["mlsgrid"]) as hub:
        yield hub


async def connect(hub: Hub, url: str, mapping: str = "test-mls", **config: Any) -> None:
    await connect_reso(hub, MLS, url, mapping=mapping, **config)


async def listings(hub: Hub) -> dict[str, bool]:
    """ListingKey -> deleted, for every listing held (tombstones included)."""
    async with hub.store.unit_of_work(TENANT) as uow:
        refs = await uow.xref.for_connection(MLS, "Listing", limit=100_000)
        records = await uow.records.get_many("Listing", [r.canonical_id for r in refs])
    return {r.external_id: records[r.canonical_id].deleted for r in refs}


async def events(hub: Hub, kind: str) -> list[Any]:
    async with hub.store.unit_of_work(TENANT) as uow:
        return [m.event for m in await uow.outbox.pending(limit=100_000) if m.event.type == kind]


async def test_listings_that_vanish_upstream_are_tombstoned_by_key_reconciliation(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=120, seed=21, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect(hub, running.url, page_size=50, keys_page_size=40)
        await hub.sync(TENANT, MLS)
        assert len(await listings(hub)) == 120
        gone_keys = set((await admin.post("/admin/delete", json={"count": 4})).json()["deleted"])
        assert len(gone_keys) == 4

        incremental = await hub.sync(TENANT, MLS)  # replication alone cannot see them go
        assert incremental.tally.fetched < 120
        assert not any((await listings(hub)).values())

        clock.advance(60)
        report = await hub.reconcile(TENANT, MLS)
        assert (report.upstream, report.held, report.deleted) == (116, 120, 4)
        assert set(report.deleted_keys) == gone_keys
    held = await listings(hub)
    assert {k for k, deleted in held.items() if deleted} == gone_keys
    deleted = await events(hub, "cadastre.listing.deleted.v1")
    assert {e.data["origin"]["external_id"] for e in deleted} == gone_keys


async def test_a_feed_that_loses_most_listings_at_once_deletes_nothing_and_alerts(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=100, seed=22, clock=clock, rate_limit=None)
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect(hub, running.url, page_size=100)
        await hub.sync(TENANT, MLS)
        clock.advance(60)  # records written at the instant a reconciliation starts are left
        await admin.post("/admin/delete", json={"count": 60})  # a glitch, as far as we can tell
        report = await hub.reconcile(TENANT, MLS)
        assert report.refused is not None
        assert (report.upstream, report.held, report.missing, report.deleted) == (40, 100, 60, 0)
        assert not any((await listings(hub)).values())
        (alert,) = await events(hub, "cadastre.alert.raised.v1")
        assert alert.data["alert"] == "reconciliation_refused"

        forced = await hub.reconcile(TENANT, MLS, force=True)  # a person checked the feed
        assert forced.deleted == 60
    assert sum((await listings(hub)).values()) == 60


async def test_mls_grid_hidden_listings_arrive_as_deletes_through_replication(
    hub: Hub, clock: FakeClock
) -> None:
    sim = ResoSimulator(records=80, seed=23, clock=clock, rate_limit=None, dialect="mlsgrid")
    async with serve(sim.app) as running, httpx.AsyncClient(base_url=running.url) as admin:
        await connect(hub, running.url, mapping="mlsgrid", page_size=1000)
        first = await hub.sync(TENANT, MLS)
        assert first.tally.fetched == 80
        hidden = set((await admin.post("/admin/delete", json={"count": 3})).json()["deleted"])
        clock.advance(60)
        await hub.sync(TENANT, MLS)
        held = await listings(hub)
        assert {k for k, deleted in held.items() if deleted} == hidden
        # Still listed upstream (MlgCanView false): reconciliation has nothing to add.
        report = await hub.reconcile(TENANT, MLS)
        assert (report.upstream, report.missing, report.deleted) == (80, 0, 0)


def test_cadastre_reconcile_tombstones_and_refuses_a_glitch(tmp_path: Path) -> None:
    """The command as a user runs it, against the simulator in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", "--records", "60",
         "--no-rate-limit"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("ready "), line
        url = line.split(" ", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
        env |= {"COLUMNS": "120", "CADASTRE_LOG_LEVEL": "WARNING", "CADASTRE_MLS__CLIENT_ID":
                "demo-client", "CADASTRE_MLS__CLIENT_SECRET": "demo-secret",
                "CADASTRE_GATEWAY_ALLOW_HOSTS": '["127.0.0.0/8", "::1"]'}  # fmt: skip
        (tmp_path / "mappings").mkdir()
        (tmp_path / "mappings" / "mls.yaml").write_text(
            "mapping: mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
        )

        def cli(*args: str, code: int = 0) -> str:
            done = subprocess.run(
                [str(Path(sys.executable).with_name("cadastre")), *args], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            out = done.stdout + done.stderr
            assert done.returncode == code, out
            return out

        config = {"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token", "mapping": "mls",
                  "gateway": {"allow_hosts": ["127.0.0.0/8", "::1"]}}  # fmt: skip
        cli("tenants", "create", "acme", "--name", "Acme")
        cli("credentials", "add", "mls", "-t", "acme", "--scheme", "oauth2_client_credentials",
            "--from-env", "CADASTRE_MLS")  # fmt: skip
        cli("connections", "add", "mls", "-t", "acme", "--system", "mls", "--connector",
            "mls/reso", "--credential", "mls", "--config", json.dumps(config))  # fmt: skip
        cli("sync", "mls")
        with httpx.Client(base_url=url) as admin:
            admin.post("/admin/delete", json={"count": 2}).raise_for_status()
            out = cli("reconcile", "mls")
            assert re.search(r"tombstoned\s+│\s+2\b", out), out
            admin.post("/admin/delete", json={"count": 30}).raise_for_status()
        out = cli("reconcile", "mls", code=1)
        assert "nothing deleted: 30 of 58 held records (52%) are gone at once" in out
        assert re.search(r"tombstoned\s+│\s+30\b", cli("reconcile", "mls", "--force"))
    finally:
        process.terminate()
        process.communicate(timeout=10)
