"""The four regional dialects synced at once through one hub over loopback, each with its mapping
file from ``mappings/``: every good record is stored, every planted defect quarantined, and the
regional spellings, units and date formats arrive canonical."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cadastre.bootstrap import Hub, bootstrap
from cadastre.config import Settings
from cadastre.directory import ConnectionSpec
from cadastre.simulators import ResoSimulator, serve
from cadastre.testing import FakeClock
from tests.conftest import PROJECT_ROOT

TENANT = "acme"
DIALECTS = ("mlsgrid", "trestle", "bridge", "spark")
LOOPBACK = ("127.0.0.0/8", "::1")
RECORDS = 150


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC), autojump=True)


@pytest.fixture
async def hub(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Hub]:
    settings = Settings(data_dir=tmp_path, mappings_dir=PROJECT_ROOT / "mappings",
                        gateway_allow_hosts=LOOPBACK)  # fmt: skip
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    await hub.tenants.create(TENANT, "Acme")
    login = {"client_id": "demo-client", "client_secret": "demo-secret"}
    for name in DIALECTS:  # a login each: a token is good at the MLS that issued it only
        await hub.vault.add(TENANT, name, "oauth2_client_credentials", login)
    yield hub
    await hub.close()


async def connect(hub: Hub, name: str, url: str, page_size: int) -> None:
    await hub.connections.put(TENANT, ConnectionSpec(
        name=name, system="mls", connector="mls/reso", credential=name,
        config={"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token", "mapping": name,
                "page_size": page_size, "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip


async def stored(hub: Hub, connection: str) -> dict[str, dict[str, Any]]:
    """The vendor key -> the stored listing, for one connection's records."""
    async with hub.store.unit_of_work(TENANT) as uow:
        refs = await uow.xref.for_connection(connection, "Listing", limit=10_000)
        held = {}
        for ref in refs:
            record = await uow.records.get("Listing", ref.canonical_id)
            if record is not None:
                held[ref.external_id] = dict(record.data)
        return held


async def test_four_dialects_sync_concurrently_into_one_tenant(hub: Hub, clock: FakeClock) -> None:
    sims = {name: ResoSimulator(records=RECORDS, seed=13, clock=clock, rate_limit=None,
                                dialect=name, bad_record_rate=0.02)
            for name in DIALECTS}  # fmt: skip
    base = ResoSimulator(records=RECORDS, seed=13, clock=clock, rate_limit=None).records
    async with AsyncExitStack() as stack:
        for name, sim in sims.items():
            running = await stack.enter_async_context(serve(sim.app))
            await connect(hub, name, running.url, sim.dialect.page.max)
        results = await asyncio.gather(*(hub.sync(TENANT, name) for name in DIALECTS))
    for name, result in zip(DIALECTS, results, strict=True):
        sim = sims[name]
        assert result.tally.fetched == RECORDS, name
        assert result.tally.quarantined == len(sim.defects) == 3, name
        held = await stored(hub, name)
        assert set(held) == set(sim.records) - set(sim.defects), name
        for key, listing in held.items():
            expected = base[key]
            assert Decimal(str(listing["ListPrice"])) == expected["ListPrice"], (name, key)
            assert listing["ListingContractDate"] == expected["ListingContractDate"], (name, key)
            if expected["StandardStatus"] == "Active Under Contract":
                assert listing["StandardStatus"] == "ActiveUnderContract", (name, key)
            assert listing["PropertyType"] == expected["PropertyType"].replace(" ", ""), name
            if expected["LivingArea"] is not None:
                area = Decimal(str(listing["LivingArea"]))
                assert abs(area - expected["LivingArea"]) <= 1, (name, key)


async def test_mlsgrid_with_its_rate_windows_on_is_synced_whole(hub: Hub, clock: FakeClock) -> None:
    # The MLS's own limits, on the shared fake clock: 2 requests a second. A client that goes
    # faster is answered 429 with Retry-After and waits; nothing is lost either way.
    sim = ResoSimulator(records=300, seed=13, clock=clock, dialect="mlsgrid")
    async with serve(sim.app) as running:
        await connect(hub, "mlsgrid", running.url, 50)
        result = await hub.sync(TENANT, "mlsgrid")
    assert result.tally.fetched == 300
    assert set(await stored(hub, "mlsgrid")) == set(sim.records)
    assert sim.stats.requests >= 6  # six pages at least, under the 2/s window
