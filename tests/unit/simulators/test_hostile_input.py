"""Bad input to the MLS simulator is a 400 that changes nothing, never a 500: query options a
client could send, skiptokens it could forge, admin bodies a test could get wrong."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from cadastre.simulators import ResoSimulator
from cadastre.testing import FakeClock

from .conftest import bearer, client_for


def _token(names: list[str], values: list[Any]) -> str:
    payload = orjson.dumps({"o": names, "v": values})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _state(sim: ResoSimulator) -> list[tuple[str, str]]:
    return sorted((key, repr(dict(record))) for key, record in sim.records.items())


@pytest.mark.parametrize(
    "url",
    [
        "/odata/Property?$top=²",  # str.isdigit() says yes, int() says no
        "/odata/Property?$skip=²",
        "/odata/Media?$top=²",
        "/odata/Property?$skiptoken="
        + _token(["ModificationTimestamp", "ListingKey"], [None, "ACT00000001"]),
        "/odata/Property?$orderby=ListPrice&$skiptoken="
        + _token(["ListPrice", "ListingKey"], ["cheap", "ACT00000001"]),
        "/odata/Property?$orderby=City&$skiptoken=" + _token(["City", "ListingKey"], [[1], "x"]),
    ],
)
async def test_bad_query_options_are_400(clock: FakeClock, url: str) -> None:
    sim = ResoSimulator(records=20, clock=clock, dialect="mlsgrid", rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        response = await client.get(url)
    assert response.status_code == 400, response.text


async def test_a_huge_top_is_capped_not_a_crash(clock: FakeClock) -> None:
    sim = ResoSimulator(records=20, clock=clock, dialect="trestle", rate_limit=None)
    huge = "9" * 5000  # int() refuses strings this long
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        listings = await client.get(f"/odata/Property?$top={huge}")
        media = await client.get(f"/odata/Media?$top={huge}")
    assert listings.status_code == 200, listings.text
    assert len(listings.json()["value"]) == 20
    assert media.status_code == 200, media.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/touch", {"count": 2, "create": -1}),  # the touch must not happen either
        ("/admin/touch", {"count": 2, "create": "3"}),
        ("/admin/touch", {"keys": ["ACT00000001"], "create": True}),
        ("/admin/touch", {"count": 2, "changes": ["ListPrice", 1]}),
        ("/admin/touch", {"count": 2, "changes": "ListPrice"}),
        ("/admin/touch", {"count": 2, "at": 1_700_000_000}),
        ("/admin/bump", {"at": 5}),
        ("/admin/dialect", {"add_field": {"name": 5, "type": "Edm.String"}}),
    ],
)
async def test_a_bad_admin_body_is_400_and_changes_nothing(
    clock: FakeClock, path: str, body: dict[str, Any]
) -> None:
    sim = ResoSimulator(records=20, clock=clock, rate_limit=None)
    before, fields = _state(sim), dict(sim.fields)
    async with client_for(sim) as client:
        clock.advance(60)
        response = await client.post(path, json=body)
    assert isinstance(response, httpx.Response)
    assert response.status_code == 400, response.text
    assert _state(sim) == before
    assert sim.fields == fields
    assert len(sim.records) == 20
