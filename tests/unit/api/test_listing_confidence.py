"""Confidence on ``/v1/listings``: each listing's score, per-field scores on one listing, and the
``min_confidence`` filter (also on ``/reso/odata``)."""

from __future__ import annotations

from typing import Any

from cadastre.contract import Change, Origin
from tests.unit.api.conftest import World, assert_problem


async def scored(world: World, key: str, confidence: float, **extra: Any) -> str:
    result = await world.hub.engine.apply(
        Change(
            tenant="acme", entity="Listing", fields={"ListingKey": key, "City": "Austin"},
            origin=Origin(system="mls", connection="austin-mls", external_id=key),
            confidence=confidence, **extra,
        )
    )  # fmt: skip
    return result.canonical_id


async def test_each_listing_says_its_confidence_and_min_confidence_filters(world: World) -> None:
    await scored(world, "LOW", 0.5)
    await scored(world, "HIGH", 0.9)
    response = await world.get("/v1/listings")
    scores = {item["ListingKey"]: item["confidence"] for item in response.json()["data"]}
    assert scores == {"LOW": 0.5, "HIGH": 0.9}

    async def keys(**params: Any) -> set[str]:
        response = await world.get("/v1/listings", **params)
        assert response.status_code == 200, response.text
        return {item["ListingKey"] for item in response.json()["data"]}

    assert await keys(min_confidence=0.8) == {"HIGH"}
    assert await keys(min_confidence=0.9) == {"HIGH"}  # inclusive
    assert await keys(min_confidence=0.5) == {"LOW", "HIGH"}
    assert await keys(min_confidence=0.95) == set()
    assert await keys(min_confidence=0) == {"LOW", "HIGH"}
    for bad in ("1.5", "-0.1", "high"):
        assert_problem(await world.get("/v1/listings", min_confidence=bad), 422)

    odata = await world.get(
        "/reso/odata/Property", **{"min_confidence": "0.8", "$select": "ListingKey"}
    )
    assert odata.json()["value"] == [{"ListingKey": "HIGH"}]


async def test_a_cursor_belongs_to_its_min_confidence(world: World) -> None:
    for i in range(3):
        await scored(world, f"K{i}", 0.9)
    first = (await world.get("/v1/listings", limit=1, min_confidence=0.8)).json()
    cursor = first["next_cursor"]
    following = await world.get("/v1/listings", limit=1, min_confidence=0.8, cursor=cursor)
    assert following.status_code == 200
    others: list[dict[str, Any]] = [{"min_confidence": 0.7}, {}]
    for other in others:
        body = assert_problem(await world.get("/v1/listings", limit=1, cursor=cursor, **other), 400)
        assert body["type"] == "urn:cadastre:problem:invalid-cursor"


async def test_one_listing_has_per_field_confidence(world: World) -> None:
    listing = await scored(world, "F1", 0.75, field_confidence={"City": 0.5})
    body = (await world.get(f"/v1/listings/{listing}")).json()
    assert body["confidence"] == 0.75
    assert body["field_confidence"] == {"ListingKey": 0.75, "City": 0.5}
