"""``/reso/odata`` read from outside our code: python-odata (a third-party OData v4 client, on
requests) reflects our ``$metadata`` into entity classes and queries the endpoint over real HTTP
on loopback (uvicorn in this event loop; the blocking client runs in a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from odata import ODataService  # type: ignore[import-untyped]

from cadastre.api import create_app
from cadastre.api.reso import MAX_PAGE
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.contract import Change, Origin
from cadastre.ports import ApiKeyScope
from cadastre.testing import FakeClock

T = TypeVar("T")
LISTINGS = MAX_PAGE + 20  # more than one page: the client must follow @odata.nextLink


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await bootstrap(Settings(data_dir=tmp_path), clock=FakeClock(), configure_logs=False)
    await hub.tenants.create("acme", "Acme")
    changes = [
        Change(
            tenant="acme", entity="Listing",
            fields={"ListingKey": f"K{i:04d}", "BedroomsTotal": i % 6,
                    "ListPrice": f"{100000 + i * 1000}.50",
                    "StandardStatus": "ActiveUnderContract" if i % 3 == 0 else "Active",
                    "Appliances": ["Dryer"] if i % 2 else ["Dishwasher", "Dryer"],
                    "ListingContractDate": "2024-01-15",
                    "ModificationTimestamp": f"2024-01-15T10:{i % 60:02d}:00Z"},
            origin=Origin(system="mls", connection="austin-mls", external_id=f"K{i:04d}"),
        )
        for i in range(LISTINGS)
    ]  # fmt: skip
    items = await hub.engine.apply_batch(changes)
    assert len(items) == LISTINGS
    yield hub
    await hub.close()


async def in_thread(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


def client(url: str, key: str) -> ODataService:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return ODataService(f"{url}/reso/odata/", session=session, reflect_entities=True,
                        quiet_progress=True)  # fmt: skip


async def test_python_odata_reads_the_endpoint(hub: Hub) -> None:
    key = (await hub.keys.create("acme", ApiKeyScope.READ)).plaintext
    async with serve_app(create_app(hub)) as running:
        service = await in_thread(lambda: client(running.url, key))
        assert {"Property", "Member", "Office", "Media", "Lookup"} <= set(service.entities)
        prop = service.entities["Property"]

        every: list[Any] = await in_thread(lambda: service.query(prop).all())
        assert len(every) == LISTINGS  # followed the server's nextLink past the first page
        assert len({p.ListingKey for p in every}) == LISTINGS

        def filtered() -> Any:
            query = service.query(prop).filter(prop.BedroomsTotal > 2)
            query = query.filter(prop.StandardStatus == "ActiveUnderContract")
            return query.order_by(prop.ListPrice.desc()).limit(5).all()

        top = await in_thread(filtered)
        expected = sorted((i for i in range(LISTINGS) if i % 6 > 2 and i % 3 == 0), reverse=True)[
            :5
        ]
        assert [p.ListingKey for p in top] == [f"K{i:04d}" for i in expected]
        first = top[0]
        assert Decimal(str(first.ListPrice)) == Decimal(f"{100000 + expected[0] * 1000}.50")
        assert first.Appliances == (["Dryer"] if expected[0] % 2 else ["Dishwasher", "Dryer"])

        one = await in_thread(lambda: service.query(prop).get("K0007"))
        assert one.ListingKey == "K0007"
        assert one.BedroomsTotal == 1
        counted = await in_thread(lambda: service.query(prop).filter(prop.BedroomsTotal == 0)
                                  .count())  # fmt: skip
        assert counted == len([i for i in range(LISTINGS) if i % 6 == 0])

        lookup = service.entities["Lookup"]
        statuses = await in_thread(
            lambda: service.query(lookup).filter(lookup.LookupName == "StandardStatus").all()
        )
        assert "ActiveUnderContract" in {s.LookupValue for s in statuses}
