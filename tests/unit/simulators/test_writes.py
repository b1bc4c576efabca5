"""RESO Add (``POST /odata/Property``) and the Idempotency-Key header: a replay answers the first
response without applying again, another body under the same key is 422, a key still in progress
is 409, and without a key every request applies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import orjson

from cadastre.simulators import FaultProfile, RateLimit, ResoSimulator
from cadastre.simulators.reso.records import format_timestamp
from cadastre.testing import FakeClock

from .conftest import bearer, client_for

KEY = "NEW00000001"
RECORD = {"ListingKey": KEY, "ListPrice": 425000, "StandardStatus": "Active", "City": "Austin"}


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_an_add_stores_the_record_and_answers_201(
    sim: ResoSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    response = await client.post("/odata/Property", json=RECORD)
    assert response.status_code == 201
    body = response.json()
    assert body["@odata.context"].endswith("/odata/$metadata#Property/$entity")
    assert (body["ListingKey"], body["ListPrice"], body["City"]) == (KEY, 425000, "Austin")
    assert body["ModificationTimestamp"] == format_timestamp(clock.now())
    assert body["BedroomsTotal"] is None  # an Add stores the whole record it was given
    assert response.headers["location"] == f"http://mls.test/odata/Property('{KEY}')"
    fetched = await client.get(f"/odata/Property('{KEY}')")
    assert fetched.json()["ListPrice"] == 425000
    changed = await client.get(
        "/odata/Property",
        params={"$filter": f"ModificationTimestamp ge {body['ModificationTimestamp']}"},
    )
    assert [row["ListingKey"] for row in changed.json()["value"]] == [KEY]
    assert (sim.stats.creates, sim.stats.applied_by_listing) == (1, {KEY: 1})


async def test_without_a_key_every_post_applies(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    for _ in range(2):
        assert (await client.post("/odata/Property", json=RECORD)).status_code == 201
    assert sim.stats.applied_by_listing[KEY] == 2
    assert sim.stats.creates == 2
    assert len(sim.records) == 121  # replaced, not added twice


async def test_the_same_key_and_body_replays_the_first_answer(
    sim: ResoSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await client.post("/odata/Property", json=RECORD, headers=idem("k-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    clock.advance(30.0)
    # The same JSON written differently is the same body.
    same = orjson.dumps(dict(reversed(RECORD.items())), option=orjson.OPT_INDENT_2)
    again = await client.post(
        "/odata/Property",
        content=same,
        headers={**idem("k-1"), "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content  # the first answer, old timestamp and all
    assert again.headers["location"] == first.headers["location"]
    assert sim.stats.applied_by_listing == {KEY: 1}
    assert (sim.stats.creates, sim.stats.idempotent_replays) == (1, 1)
    assert sim.modified_at(KEY) == clock.now() - timedelta(seconds=30)


async def test_the_same_key_with_another_body_is_422(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/odata/Property", json=RECORD, headers=idem("k-2"))).is_success
    other = await client.post(
        "/odata/Property", json={**RECORD, "ListPrice": 1}, headers=idem("k-2")
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "UnprocessableEntity"
    assert sim.records[KEY]["ListPrice"] == 425000
    assert sim.stats.applied_by_listing == {KEY: 1}
    fresh = await client.post(
        "/odata/Property", json={**RECORD, "ListPrice": 1}, headers=idem("k-3")
    )
    assert fresh.status_code == 201  # keys are independent
    assert sim.stats.applied_by_listing == {KEY: 2}


async def test_a_key_still_in_progress_is_409(
    sim: ResoSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.write_latency = 5.0
    original = asyncio.ensure_future(
        client.post("/odata/Property", json=RECORD, headers=idem("k-4"))
    )
    for _ in range(50):
        await asyncio.sleep(0)
        if clock.sleepers:
            break
    assert clock.sleepers == 1
    retry = await client.post("/odata/Property", json=RECORD, headers=idem("k-4"))
    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "Conflict"
    other_key = asyncio.ensure_future(
        client.post("/odata/Property", json=RECORD, headers=idem("k-5"))
    )
    for _ in range(50):
        await asyncio.sleep(0)
        if clock.sleepers == 2:
            break
    assert sim.stats.applied_by_listing == {}  # nothing is applied before the write time passes
    clock.advance(5.0)
    assert (await original).status_code == 201
    assert (await other_key).status_code == 201
    sim.write_latency = 0.0
    late = await client.post("/odata/Property", json=RECORD, headers=idem("k-4"))
    assert (late.status_code, late.headers["idempotent-replayed"]) == (201, "true")
    assert sim.stats.applied_by_listing == {KEY: 2}  # k-4 once, k-5 once


async def test_a_key_is_in_progress_while_its_body_arrives(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    more = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        body = orjson.dumps(RECORD)
        yield body[:10]
        await more.wait()
        yield body[10:]

    headers = {**idem("k-8"), "Content-Type": "application/json"}
    original = asyncio.ensure_future(
        client.post("/odata/Property", content=slow_body(), headers=headers)
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert (
        await client.post("/odata/Property", json=RECORD, headers=idem("k-8"))
    ).status_code == 409
    more.set()
    assert (await original).status_code == 201
    assert sim.stats.applied_by_listing == {KEY: 1}


async def test_a_write_needs_the_bearer_token_and_a_refusal_keeps_the_key_free(
    sim: ResoSimulator,
) -> None:
    async with client_for(sim) as anonymous:
        refused = await anonymous.post("/odata/Property", json=RECORD, headers=idem("k-6"))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="odata"'
        assert KEY not in sim.records
        headers = {**idem("k-6"), **await bearer(anonymous)}
        assert (
            await anonymous.post("/odata/Property", json=RECORD, headers=headers)
        ).status_code == 201
    assert sim.stats.applied_by_listing == {KEY: 1}


async def test_bad_bodies_are_400_and_apply_nothing(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    bad = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"ListPrice": 1}),
        orjson.dumps({"ListingKey": ""}),
        orjson.dumps({"ListingKey": KEY, "Colour": "blue"}),
        orjson.dumps({"ListingKey": KEY, "ListPrice": "lots"}),
        orjson.dumps({"ListingKey": KEY, "OnMarketDate": "soon"}),
    ]
    for content in bad:
        response = await client.post(
            "/odata/Property", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, content
        assert response.json()["error"]["code"] == "BadRequest"
    empty_key = await client.post("/odata/Property", json=RECORD, headers=idem(" "))
    assert empty_key.status_code == 400
    assert sim.stats.creates == 0
    assert KEY not in sim.records


async def test_an_add_replaces_an_existing_record_whole(
    sim: ResoSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    clock.advance(60.0)
    existing = "ACT00000001"
    assert sim.records[existing]["City"] is not None
    body = {"ListingKey": existing, "ListPrice": 99000, "@odata.etag": "W/\"1\"",
            "ModificationTimestamp": "2000-01-01T00:00:00Z"}  # fmt: skip
    response = await client.post("/odata/Property", json=body)
    assert response.status_code == 201
    assert sim.records[existing]["ListPrice"] == 99000
    assert sim.records[existing]["City"] is None
    assert sim.modified_at(existing) == clock.now()  # the server stamps writes
    assert len(sim.records) == 120


async def test_create_skips_keys_a_client_wrote(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    taken = {**RECORD, "ListingKey": "ACT00000121"}
    assert (await client.post("/odata/Property", json=taken)).status_code == 201
    assert sim.create(1) == ["ACT00000122"]


async def test_writes_go_through_the_rate_limit_and_the_faults(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=RateLimit(1, per=60))
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        assert (await client.post("/odata/Property", json=RECORD)).status_code == 201
        limited = await client.post("/odata/Property", json={**RECORD, "ListPrice": 1})
        assert limited.status_code == 429
        sim.rate_limit = None
        sim.faults = FaultProfile(error_rate=1.0)
        failed = await client.post("/odata/Property", json={**RECORD, "ListPrice": 2})
        assert failed.status_code >= 500
    assert sim.records[KEY]["ListPrice"] == 425000
    assert sim.stats.applied_by_listing == {KEY: 1}


async def test_reset_stats_forgets_the_write_counts(
    sim: ResoSimulator, client: httpx.AsyncClient
) -> None:
    await client.post("/odata/Property", json=RECORD, headers=idem("k-7"))
    await client.post("/odata/Property", json=RECORD, headers=idem("k-7"))
    stats = (await client.get("/admin/stats")).json()
    assert (stats["creates"], stats["applied_by_listing"], stats["idempotent_replays"]) == (
        1, {KEY: 1}, 1,
    )  # fmt: skip
    sim.stats.reset()
    assert (sim.stats.creates, sim.stats.applied_by_listing, sim.stats.idempotent_replays) == (
        0, {}, 0,
    )  # fmt: skip
