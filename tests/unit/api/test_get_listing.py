"""``GET /v1/listings/{id}``: the listing, its ETag, 304 on a match, a 404 that reveals nothing."""

from __future__ import annotations

import re

from tests.unit.api.conftest import B, World, assert_problem


async def test_one_listing_with_a_strong_etag(world: World) -> None:
    id = await world.listing("L1", City="Austin", ListPrice="350000.00")
    response = await world.get(f"/v1/listings/{id}")
    assert response.status_code == 200
    assert response.json() == {"id": id, "version": 1, "confidence": 1.0, "ListingKey": "L1",
                               "City": "Austin", "ListPrice": "350000",
                               "field_confidence": {"ListingKey": 1.0, "City": 1.0,
                                                    "ListPrice": 1.0}}  # fmt: skip
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[^"]+"', etag)  # strong: no W/ in front
    assert response.headers["cache-control"] == "private"
    again = await world.get(f"/v1/listings/{id}")
    assert again.headers["etag"] == etag  # the same content, the same tag


async def test_if_none_match_answers_304_without_a_body(world: World) -> None:
    id = await world.listing("L1", City="Austin")
    etag = (await world.get(f"/v1/listings/{id}")).headers["etag"]
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*", f' "x" ,W/{etag} '):
        response = await world.client.get(
            f"/v1/listings/{id}", headers={**world.auth(), "If-None-Match": header}
        )
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private"
    for header in ('"other"', etag.strip('"'), f'"{etag}"', ""):
        response = await world.client.get(
            f"/v1/listings/{id}", headers={**world.auth(), "If-None-Match": header}
        )
        assert response.status_code == 200, header


async def test_a_change_changes_the_etag(world: World) -> None:
    id = await world.listing("L1", City="Austin")
    old = (await world.get(f"/v1/listings/{id}")).headers["etag"]
    await world.listing("L1", City="Round Rock")
    response = await world.client.get(
        f"/v1/listings/{id}", headers={**world.auth(), "If-None-Match": old}
    )
    assert response.status_code == 200
    assert response.json()["City"] == "Round Rock"
    assert response.json()["version"] == 2
    assert response.headers["etag"] != old


async def test_absent_deleted_and_foreign_ids_are_the_same_404(world: World) -> None:
    ours = await world.listing("L1", City="Austin")
    gone = await world.listing("L2", City="Austin")
    await world.delete("L2")
    theirs = await world.listing("G1", tenant=B, City="Austin")
    assert (await world.get(f"/v1/listings/{theirs}", tenant=B)).status_code == 200
    details = set()
    for id in (theirs, gone, "nope", "0" * 300, "%00"):
        body = assert_problem(await world.get(f"/v1/listings/{id}"), 404)
        assert body["type"] == "about:blank"
        assert body["title"] == "Not Found"
        details.add(body["detail"])
    assert details == {"no such listing"}
    # a matching If-None-Match does not turn a foreign id into a 304 either
    response = await world.client.get(
        f"/v1/listings/{theirs}", headers={**world.auth(), "If-None-Match": "*"}
    )
    assert_problem(response, 404)
    assert (await world.get(f"/v1/listings/{ours}")).status_code == 200
