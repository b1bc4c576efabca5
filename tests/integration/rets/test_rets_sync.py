"""A RETS connection synced into SQLite through the hub: the vault's ``digest`` credential, the
gateway, the ``mls/rets`` family mapping, the sync runner; in-process on one fake clock, and as a
user runs it (``cadastre sync``) against the simulator in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.simulators import serve
from cadastre.simulators.rets import RetsSimulator
from cadastre.testing import FakeClock

TENANT, MLS = "acme", "legacy-mls"
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8", "::1")
CADASTRE = Path(sys.executable).with_name("cadastre")
STATUS = {"A": "Active", "U": "ActiveUnderContract", "P": "Pending", "S": "Closed",
          "X": "Expired", "W": "Withdrawn"}  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW, autojump=True)


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    settings = Settings(data_dir=tmp_path, mappings_dir=mappings, gateway_allow_hosts=LOOPBACK)
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    await hub.tenants.create(TENANT, "Acme")
    await hub.vault.add(TENANT, "rets-login", "digest",
                        {"username": "demo-user", "password": "demo-password"})  # fmt: skip
    yield hub
    await hub.close()


async def stored(hub: Hub) -> dict[str, dict[str, Any]]:
    async with hub.store.unit_of_work(TENANT) as uow:
        return {
            r.data["ListingKey"]: dict(r.data)
            async for r in uow.records.scan("Listing", limit=1_000_000)
        }


def same_as_the_mls(held: dict[str, dict[str, Any]], sim: RetsSimulator) -> None:
    assert set(held) == set(sim.records)
    for key, record in sim.records.items():
        listing = held[key]
        assert Decimal(listing["ListPrice"]) == Decimal(record["ListPrice"]), key
        assert listing["StandardStatus"] == STATUS[record["Status"]], key
        stamp = datetime.fromisoformat(listing["ModificationTimestamp"])
        assert sim.local_time(stamp) == record["ModificationTimestamp"], key
        assert listing["LocalFields"]["LOC_SchoolDistrict"] == record["LOC_SchoolDistrict"]


async def test_a_rets_feed_syncs_into_sqlite_and_then_incrementally(
    hub: Hub, clock: FakeClock
) -> None:
    sim = RetsSimulator(records=250, seed=4, clock=clock, max_rows=60, ignore_offset=True)
    async with serve(sim.app) as running:
        await hub.connections.put(TENANT, ConnectionSpec(
            name=MLS, system="mls", connector="mls/rets", credential="rets-login",
            config={"login_url": f"{running.url}/rets/login", "page_size": 100,
                    "gateway": {"allow_hosts": list(LOOPBACK)}},
        ))  # fmt: skip
        full = await hub.sync(TENANT, MLS)
        assert full.tally.fetched == 250
        assert full.tally.created == 250
        assert full.tally.quarantined == 0
        same_as_the_mls(await stored(hub), sim)

        clock.advance(120)
        changed = sim.touch(count=6, changes={"ListPrice": 432100, "Status": "P"})
        sim.malformed.add(changed[0])  # one of them comes back unreadable
        incremental = await hub.sync(TENANT, MLS)
        assert incremental.tally.fetched == 6
        assert incremental.tally.updated == 5
        assert incremental.tally.quarantined == 1
        async with hub.store.unit_of_work(TENANT) as uow:
            held = await uow.quarantine.open_items(MLS)
        assert len(held) == 1
        assert changed[0] in str(held[0].payload)
    assert sim.logins.logins == 1  # one session across both syncs
    listings = await stored(hub)
    assert {listings[k]["StandardStatus"] for k in changed[1:]} == {"Pending"}


async def test_photos_arrive_as_media_records_beside_their_listings(
    hub: Hub, clock: FakeClock
) -> None:
    sim = RetsSimulator(records=80, seed=6, clock=clock)
    async with serve(sim.app) as running:
        await hub.connections.put(TENANT, ConnectionSpec(
            name=MLS, system="mls", connector="mls/rets", credential="rets-login",
            config={"login_url": f"{running.url}/rets/login", "media": True,
                    "gateway": {"allow_hosts": list(LOOPBACK)}},
        ))  # fmt: skip
        report = await hub.sync(TENANT, MLS)
    photos = sum(int(r["PhotoCount"]) for r in sim.records.values())
    assert report.tally.fetched == 80 + photos
    assert report.tally.quarantined == 0
    async with hub.store.unit_of_work(TENANT) as uow:
        media = [dict(r.data) async for r in uow.records.scan("Media", limit=10_000)]
    assert len(media) == photos
    assert {m["ResourceRecordKey"] for m in media} == {
        k for k, r in sim.records.items() if r["PhotoCount"] != "0"
    }
    assert all(m["MediaCategory"] == "Photo" and m["MediaURL"] for m in media)


@pytest.fixture(scope="module")
def rets_process() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cadastre.simulators", "rets", "--port", "0", "--records", "120",
         "--max-rows", "50", "--ignore-offset"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("ready "), line
    yield line.split(" ", 1)[1]
    process.terminate()
    process.communicate(timeout=10)


def test_cadastre_sync_of_a_rets_connection(tmp_path: Path, rets_process: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env |= {"COLUMNS": "120", "CADASTRE_LOG_LEVEL": "WARNING",
            "CADASTRE_RETS__USERNAME": "demo-user", "CADASTRE_RETS__PASSWORD": "demo-password",
            "CADASTRE_GATEWAY_ALLOW_HOSTS": json.dumps(LOOPBACK)}  # fmt: skip

    def run(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [str(CADASTRE), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == code, out
        return out

    run("tenants", "create", "acme", "--name", "Acme")
    run("credentials", "add", "rets", "-t", "acme", "--scheme", "digest",
        "--from-env", "CADASTRE_RETS")  # fmt: skip
    config = {"login_url": f"{rets_process}/rets/login",
              "gateway": {"allow_hosts": list(LOOPBACK)}}  # fmt: skip
    run("connections", "add", "legacy", "-t", "acme", "--system", "mls", "--connector",
        "mls/rets", "--credential", "rets", "--config", json.dumps(config))  # fmt: skip
    out = run("sync", "legacy", "-t", "acme")
    assert "read from the vendor" in out
    assert "120" in out
    assert "demo-password" not in out
