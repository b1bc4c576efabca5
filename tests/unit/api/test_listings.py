"""``GET /v1/listings``: filters, paging, limits and the problems bad parameters get."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.unit.api.conftest import A, B, World, assert_problem

NINE = "2026-11-01T09:00:00Z"


async def seed(world: World) -> dict[str, str]:
    """Six listings of acme by ListingKey -> canonical id (and one of globex)."""
    rows = {
        "L1": {"StandardStatus": "Active", "City": "Austin", "ListPrice": "350000",
               "ModificationTimestamp": "2026-11-01T09:00:00Z"},
        "L2": {"StandardStatus": "Pending", "City": "AUSTIN", "ListPrice": "499999.99",
               "ModificationTimestamp": "2026-11-01T10:00:00+01:00"},  # 09:00Z
        "L3": {"StandardStatus": "Active", "City": "Round Rock", "ListPrice": "275000",
               "ModificationTimestamp": "2026-10-31T23:59:59Z"},
        "L4": {"StandardStatus": "ActiveUnderContract", "City": "austin", "ListPrice": "1200000",
               "ModificationTimestamp": "2026-11-02T08:00:00-05:00"},
        "L5": {"StandardStatus": "Active", "City": "Austin", "ListPrice": "500000",
               "ModificationTimestamp": "2026-11-01T08:59:59.999Z"},
        "L6": {"StandardStatus": "Active", "City": "Georgetown"},  # no price, no timestamp
    }  # fmt: skip
    ids = {key: await world.listing(key, **fields) for key, fields in rows.items()}
    await world.listing("G1", tenant=B, StandardStatus="Active", City="Austin", ListPrice="1")
    return ids


async def keys_of(world: World, **params: Any) -> list[str]:
    response = await world.get("/v1/listings", **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None  # these answers all fit in one page
    return sorted(item["ListingKey"] for item in body["data"])


async def test_lists_every_listing_with_id_version_and_wire_fields(world: World) -> None:
    ids = await seed(world)
    response = await world.get("/v1/listings")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["data"]] == sorted(ids.values())  # by id
    first = next(item for item in body["data"] if item["id"] == ids["L2"])
    assert first == {
        "id": ids["L2"], "version": 1, "confidence": 1.0, "ListingKey": "L2",
        "StandardStatus": "Pending",
        "City": "AUSTIN", "ListPrice": "499999.99",
        "ModificationTimestamp": "2026-11-01T10:00:00+01:00",
    }  # fmt: skip


async def test_each_filter(world: World) -> None:
    await seed(world)
    assert await keys_of(world, status="Active") == ["L1", "L3", "L5", "L6"]
    assert await keys_of(world, status="ActiveUnderContract") == ["L4"]
    assert await keys_of(world, status="Closed") == []
    assert await keys_of(world, city="austin") == ["L1", "L2", "L4", "L5"]
    assert await keys_of(world, city="ROUND ROCK") == ["L3"]
    assert await keys_of(world, city="Aust") == []
    assert await keys_of(world, min_price="350000") == ["L1", "L2", "L4", "L5"]
    assert await keys_of(world, min_price="350000.01") == ["L2", "L4", "L5"]
    assert await keys_of(world, max_price="499999.99") == ["L1", "L2", "L3"]
    assert await keys_of(world, max_price="0") == []
    assert await keys_of(world, modified_since=NINE) == ["L1", "L2", "L4"]  # inclusive
    assert await keys_of(world, modified_since="2026-11-01T04:00:00-05:00") == ["L1", "L2", "L4"]
    assert await keys_of(world, modified_since="2026-11-01T08:59:59.999+00:00") == [
        "L1", "L2", "L4", "L5",
    ]  # fmt: skip
    assert await keys_of(world, modified_since="2026-11-02T13:00:00.001Z") == []


async def test_an_unencoded_plus_in_the_offset_still_reads(world: World) -> None:
    await seed(world)
    # '+' in a query string is a space; clients that forget to encode it still mean '+'
    raw = await world.client.get(
        "/v1/listings?modified_since=2026-11-01T10:00:00+01:00", headers=world.auth()
    )
    assert sorted(i["ListingKey"] for i in raw.json()["data"]) == ["L1", "L2", "L4"]


async def test_combined_filters(world: World) -> None:
    await seed(world)
    assert await keys_of(world, status="Active", city="AUSTIN") == ["L1", "L5"]
    assert await keys_of(world, city="austin", min_price="400000", max_price="600000") == [
        "L2", "L5",
    ]  # fmt: skip
    assert await keys_of(
        world, status="Active", city="Austin", min_price="1", modified_since=NINE
    ) == ["L1"]
    assert await keys_of(world, min_price="600000", max_price="300000") == []


async def walk(world: World, **params: Any) -> tuple[list[str], int]:
    """Follow next_cursor from the first page to the last: (ids in order, pages)."""
    seen: list[str] = []
    pages, cursor = 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = (await world.get("/v1/listings", **query)).json()
        pages += 1
        seen += [item["id"] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


async def test_paging_visits_every_listing_once(world: World) -> None:
    made = {
        await world.listing(f"P{i:02}", City="Austin" if i % 3 else "Cedar Park") for i in range(23)
    }
    seen, pages = await walk(world, limit=5)
    assert (len(seen), pages) == (23, 5)
    assert seen == sorted(made)  # each once, by id
    austin, pages = await walk(world, limit=4, city="austin")
    assert (len(austin), pages) == (15, 4)
    assert len(set(austin)) == 15
    everything = (await world.get("/v1/listings", city="austin", limit=500)).json()["data"]
    assert austin == [item["id"] for item in everything]


async def test_the_last_full_page_has_no_next_cursor(world: World) -> None:
    for i in range(4):
        await world.listing(f"E{i}", City="Austin")
    first = (await world.get("/v1/listings", limit=2)).json()
    assert first["next_cursor"] is not None
    second = (await world.get("/v1/listings", limit=2, cursor=first["next_cursor"])).json()
    assert len(second["data"]) == 2
    assert second["next_cursor"] is None  # no empty third page


async def test_listings_created_while_paging_do_not_disturb_the_walk(world: World) -> None:
    before = {await world.listing(f"A{i}", City="Austin") for i in range(5)}
    first = (await world.get("/v1/listings", limit=2)).json()
    await world.listing("A9", City="Austin")  # its id may fall before or after the cursor
    rest, _ = await walk(world, limit=2, cursor=first["next_cursor"])
    seen = [item["id"] for item in first["data"]] + rest
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


async def test_limit_bounds(world: World) -> None:
    for i in range(3):
        await world.listing(f"B{i}", City="Austin")
    assert len((await world.get("/v1/listings", limit=1)).json()["data"]) == 1
    assert len((await world.get("/v1/listings", limit=500)).json()["data"]) == 3
    for bad in (0, -1, 501, "ten", ""):
        body = assert_problem(await world.get("/v1/listings", limit=bad), 422)
        assert [e["name"] for e in body["errors"]] == ["limit"]


async def test_the_default_limit_is_50(world: World) -> None:
    async with world.hub.store.unit_of_work(A) as uow:  # straight to the store: faster
        for i in range(51):
            await uow.records.put("Listing", f"D{i:02}", {"City": "Austin"}, expected_version=0)
        await uow.commit()
    body = (await world.get("/v1/listings")).json()
    assert len(body["data"]) == 50
    assert body["next_cursor"] is not None


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"status": "Sold"}, ["status"]),
        ({"status": "active"}, ["status"]),
        ({"min_price": "cheap"}, ["min_price"]),
        ({"min_price": "NaN"}, ["min_price"]),
        ({"max_price": "-1"}, ["max_price"]),
        ({"max_price": "1e2000"}, ["max_price"]),
        ({"min_price": "0.0000001"}, ["min_price"]),
        ({"modified_since": "yesterday"}, ["modified_since"]),
        ({"modified_since": "2026-11-01T09:00:00"}, ["modified_since"]),  # no offset
        ({"modified_since": "2026-02-30T09:00:00Z"}, ["modified_since"]),
        ({"city": ""}, ["city"]),
        ({"city": "x" * 51}, ["city"]),
        ({"status": "Sold", "limit": "0"}, ["status", "limit"]),
    ],
)
async def test_bad_parameters_are_a_422_problem(
    world: World, params: dict[str, str], names: list[str]
) -> None:
    body = assert_problem(await world.get("/v1/listings", **params), 422)
    assert body["type"] == "urn:cadastre:problem:invalid-parameters"
    assert [e["name"] for e in body["errors"]] == names
    assert all(e["in"] == "query" and e["problem"] for e in body["errors"])
    assert body["instance"] == "/v1/listings"
    for value in params.values():  # the values sent are not echoed
        if len(value) > 3:
            assert value not in orjson.dumps(body).decode()


@pytest.mark.parametrize(
    "params",
    [
        {"modified_since": "0001-01-01T00:00:00+14:00"},
        {"modified_since": "9999-12-31T23:59:59.999999-14:00"},
        {"min_price": "0.000001", "max_price": "1000000000000"},
        {"city": "Ünïcødé 🏠"},
        {"city": "' OR 1=1 --"},
    ],
)
async def test_extreme_but_valid_parameters_are_answered(
    world: World, params: dict[str, str]
) -> None:
    await world.listing("L1", City="Austin", ListPrice="1",
                        ModificationTimestamp="2026-11-01T09:00:00Z")  # fmt: skip
    first = await world.get("/v1/listings", limit=1, **params)
    assert first.status_code == 200, first.text
    assert first.json()["next_cursor"] is None


async def test_a_garbled_or_foreign_cursor_is_a_400_problem(world: World) -> None:
    for i in range(3):
        await world.listing(f"C{i}", City="Austin", ListPrice="100")
    await world.listing("G1", tenant=B, City="Austin")
    await world.listing("G2", tenant=B, City="Austin")
    cursor = (await world.get("/v1/listings", limit=1)).json()["next_cursor"]
    assert (await world.get("/v1/listings", limit=1, cursor=cursor)).status_code == 200
    body = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged = dict(body, after="0")  # the checksum no longer fits
    reencoded = base64.urlsafe_b64encode(orjson.dumps(forged)).decode().rstrip("=")
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    other_query = (await world.get("/v1/listings", limit=1, city="austin")).json()["next_cursor"]
    other_tenant = (await world.get("/v1/listings", tenant=B, limit=1)).json()["next_cursor"]
    for bad, params in (
        ("garbage", {}), ("", {}), ("!!!", {}), ("é", {}), (cursor[:-3], {}), (flipped, {}),
        (reencoded, {}), (base64.urlsafe_b64encode(b"[1, 2]").decode(), {}),
        (base64.urlsafe_b64encode(b'{"after": 1, "check": 2}').decode(), {}),
        (cursor, {"city": "austin"}), (cursor, {"min_price": "1"}), (other_query, {}),
        (other_tenant, {}),
    ):  # fmt: skip
        response = await world.get("/v1/listings", limit=1, cursor=bad, **params)
        problem = assert_problem(response, 400)
        assert problem["type"] == "urn:cadastre:problem:invalid-cursor"
    # spelling the same query differently keeps the cursor valid
    priced = (await world.get("/v1/listings", limit=1, min_price="100")).json()["next_cursor"]
    again = await world.get("/v1/listings", limit=1, min_price="100.00", cursor=priced)
    assert again.status_code == 200


async def test_deleted_listings_are_not_listed(world: World) -> None:
    ids = await seed(world)
    await world.delete("L1")
    listed = [i["id"] for i in (await world.get("/v1/listings")).json()["data"]]
    assert ids["L1"] not in listed
    assert len(listed) == 5
    assert await keys_of(world, city="austin") == ["L2", "L4", "L5"]


async def test_a_key_sees_only_its_tenants_listings(world: World) -> None:
    ids = await seed(world)
    theirs = [i["ListingKey"] for i in (await world.get("/v1/listings", tenant=B)).json()["data"]]
    assert theirs == ["G1"]
    ours = [i["id"] for i in (await world.get("/v1/listings", tenant=A, limit=500)).json()["data"]]
    assert sorted(ours) == sorted(ids.values())
    assert await keys_of(world, city="austin", max_price="1") == []
