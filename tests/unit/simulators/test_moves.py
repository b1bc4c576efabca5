"""Admin calls that move a dialect's MLS: the mass bump, deletions (vanishing or MlgCanView),
photo changes and Media, and schema drift while it runs. Bad bodies are 400 and change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from cadastre.simulators import ResoSimulator
from cadastre.testing import FakeClock

from .conftest import AFTER_DATA, bearer, client_for


def make(dialect: str, clock: FakeClock, records: int = 60) -> ResoSimulator:
    return ResoSimulator(records=records, seed=7, clock=clock, rate_limit=None, dialect=dialect)


async def pages(client: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    body = (await client.get(path, params=params)).json()
    rows = list(body["value"])
    while "@odata.nextLink" in body:
        body = (await client.get(body["@odata.nextLink"])).json()
        rows += body["value"]
    return rows


def snapshot(sim: ResoSimulator) -> dict[str, dict[str, Any]]:
    return {key: dict(record) for key, record in sim.records.items()}


async def test_bump_moves_every_record_to_now(clock: FakeClock) -> None:
    sim = make("spark", clock, records=120)
    clock.advance(3600)
    async with client_for(sim) as client:
        answer = await client.post("/admin/bump")
        assert answer.json() == {"bumped": 120}
        client.headers.update(await bearer(client))
        since = (AFTER_DATA + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
        rows = await pages(client, "/odata/Property",
                           **{"$filter": f"ModificationTimestamp gt {since}"})  # fmt: skip
    assert sorted(row["ListingKey"] for row in rows) == sorted(sim.records)
    assert {row["ModificationTimestamp"] for row in rows} == {"2026-11-02T01:00:00.000Z"}


async def test_deleted_listings_vanish_in_most_dialects(clock: FakeClock) -> None:
    sim = make("trestle", clock)
    victim = next(iter(sim.records))
    async with client_for(sim) as client:
        answer = (await client.post("/admin/delete", json={"keys": [victim]})).json()
        assert answer == {"deleted": [victim], "style": "vanish"}
        picked = (await client.post("/admin/delete", json={"count": 3})).json()["deleted"]
        client.headers.update(await bearer(client))
        keys = {row["ListingKey"] for row in await pages(client, "/odata/Property")}
        missing = await client.get(f"/odata/Property('{victim}')")
    assert len(keys) == 56
    assert not {victim, *picked} & keys
    assert missing.status_code == 404
    assert sim.deleted == [victim, *picked]


async def test_mlsgrid_keeps_deleted_listings_with_mlgcanview_false(clock: FakeClock) -> None:
    sim = make("mlsgrid", clock)
    victim = next(iter(sim.records))
    before = sim.modified_at(victim)
    clock.advance(60)
    async with client_for(sim) as client:
        answer = (await client.post("/admin/delete", json={"keys": [victim]})).json()
        assert answer["style"] == "flag"
        client.headers.update(await bearer(client))
        rows = await pages(client, "/odata/Property", **{"$filter": "MlgCanView eq false"})
    assert [row["ListingKey"] for row in rows] == [victim]
    assert sim.modified_at(victim) > before  # so incremental replication sees it
    assert sum(record["MlgCanView"] for record in sim.records.values()) == 59


@pytest.mark.parametrize(
    "body",
    [{"keys": ["NOPE"]}, {"count": 1000}, {"keys": [], "count": 1}, {}, {"key": "x"}, [1],
     {"count": "2"}, {"keys": "ACT00000001"}],
)  # fmt: skip
async def test_bad_deletes_are_400_and_delete_nothing(clock: FakeClock, body: object) -> None:
    sim = make("trestle", clock)
    async with client_for(sim) as client:
        answer = await client.post("/admin/delete", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadRequest"
    assert len(sim.records) == 60
    assert sim.deleted == []


async def test_mlsgrid_expands_media_and_a_photo_change_moves_it(clock: FakeClock) -> None:
    sim = make("mlsgrid", clock)
    key = next(k for k, r in sim.records.items() if r["PhotosCount"])
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        params = {"$expand": "Media", "$filter": f"ListingKey eq '{key}'"}
        (before,) = (await client.get("/odata/Property", params=params)).json()["value"]
        media = before["Media"]
        assert len(media) == before["PhotosCount"]
        assert [m["Order"] for m in media] == list(range(1, len(media) + 1))
        assert {m["ResourceRecordKey"] for m in media} == {key}
        assert {m["MediaModificationTimestamp"] for m in media} == {before["PhotosChangeTimestamp"]}
        clock.advance(120)
        changed = await client.post("/admin/media", json={"key": key, "photos": 3})
        assert changed.status_code == 200, changed.text
        (after,) = (await client.get("/odata/Property", params=params)).json()["value"]
    assert after["PhotosCount"] == 3
    assert after["PhotosChangeTimestamp"] == "2026-11-02T00:02:00.000Z"
    assert after["ModificationTimestamp"] == after["PhotosChangeTimestamp"]
    assert len(after["Media"]) == 3
    assert after["Media"][0]["MediaURL"] != media[0]["MediaURL"]
    assert {m["MediaModificationTimestamp"] for m in after["Media"]} == {
        after["PhotosChangeTimestamp"]
    }


async def test_the_media_resource_pages_in_replication_order(clock: FakeClock) -> None:
    sim = make("trestle", clock, records=40)
    expected = sorted(
        (m["MediaModificationTimestamp"], m["MediaKey"]) for key in sim.records
        for m in sim.media(key)
    )  # fmt: skip
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        rows = await pages(client, "/odata/Media", **{"$top": "37"})
        key = next(iter(sim.records))
        clock.advance(5)
        await client.post("/admin/media", json={"key": key})
        since = "2026-11-02T00:00:01Z"
        fresh = await pages(client, "/odata/Media",
                            **{"$filter": f"MediaModificationTimestamp gt {since}"})  # fmt: skip
        chosen = (await client.get("/odata/Media", params={"$select": "MediaKey,Order"})).json()
        refused = await client.get("/odata/Media", params={"$orderby": "Order"})
    got = [(m["MediaModificationTimestamp"], m["MediaKey"]) for m in rows]
    assert got == expected
    assert len(got) > 37
    assert {m["ResourceRecordKey"] for m in fresh} == {key}
    assert len(fresh) == sim.records[key]["PhotosCount"]
    assert set(chosen["value"][0]) == {"MediaKey", "Order"}
    assert refused.status_code == 400


async def test_the_default_dialect_has_no_media_resource(clock: FakeClock) -> None:
    sim = make("default", clock, records=3)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        assert (await client.get("/odata/Media")).status_code == 404


@pytest.mark.parametrize(
    "body", [{"key": "NOPE"}, {"key": 5}, {"key": "ACT00000001", "photos": -1}, {"photos": 2}]
)
async def test_bad_media_changes_are_400(clock: FakeClock, body: dict[str, Any]) -> None:
    sim = make("mlsgrid", clock, records=3)
    before = snapshot(sim)
    async with client_for(sim) as client:
        assert (await client.post("/admin/media", json=body)).status_code == 400
    assert snapshot(sim) == before


async def test_drift_adds_removes_and_retypes_fields_while_running(clock: FakeClock) -> None:
    sim = make("bridge", clock, records=30)
    async with client_for(sim) as client:
        added = await client.post(
            "/admin/dialect",
            json={"add_field": {"name": "BRG_GreenScore", "type": "Edm.Int32", "value": 7}},
        )
        assert added.status_code == 200, added.text
        assert added.json()["fields"]["BRG_GreenScore"] == "Edm.Int32"
        await client.post("/admin/dialect", json={"remove_field": "Zoning"})
        await client.post(
            "/admin/dialect", json={"retype_field": {"name": "TaxYear", "type": "Edm.String"}}
        )
        metadata = (await client.get("/odata/$metadata")).text
        await client.post("/admin/touch", json={"create": 1})
        shown = (await client.get("/admin/dialect")).json()
    assert 'Name="BRG_GreenScore" Type="Edm.Int32"' in metadata
    assert 'Name="Zoning"' not in metadata
    assert 'Name="TaxYear" Type="Edm.String"' in metadata
    assert shown["schema_version"] == 3
    for record in sim.records.values():  # the created record included
        assert record["BRG_GreenScore"] == 7
        assert "Zoning" not in record
        assert record["TaxYear"] == "2025"


async def test_drift_adds_an_enumeration_value_that_appears_in_records(clock: FakeClock) -> None:
    sim = make("spark", clock, records=50)
    clock.advance(10)
    async with client_for(sim) as client:
        change = {"add_enum_value": {"field": "StandardStatus", "value": "Kick Out", "count": 4}}
        answer = (await client.post("/admin/dialect", json=change)).json()
        client.headers.update(await bearer(client))
        since = "2026-11-02T00:00:05Z"
        rows = await pages(client, "/odata/Property",
                           **{"$filter": f"ModificationTimestamp gt {since}"})  # fmt: skip
    assert len(answer["touched"]) == 4
    assert {row["StandardStatus"] for row in rows} == {"Kick Out"}
    assert sorted(row["ListingKey"] for row in rows) == sorted(answer["touched"])


@pytest.mark.parametrize(
    "body",
    [
        {"add_field": {"name": "ListPrice", "type": "Edm.Int32"}},
        {"add_field": {"name": "X", "type": "Edm.Nope"}},
        {"add_field": {"name": "not a name", "type": "Edm.String"}},
        {"add_field": {"type": "Edm.String"}},
        {"remove_field": "ListingKey"},
        {"remove_field": "Nope"},
        {"retype_field": {"name": "ModificationTimestamp", "type": "Edm.String"}},
        {"add_enum_value": {"field": "ListPrice", "value": "x", "count": 1}},
        {"add_enum_value": {"field": "StandardStatus", "value": "x", "count": 10_000}},
        {"remove_field": "Zoning", "add_field": {"name": "X", "type": "Edm.String"}},
        {"rename_field": "Zoning"},
    ],
)
async def test_bad_drift_is_400_and_changes_nothing(clock: FakeClock, body: object) -> None:
    sim = make("bridge", clock, records=10)
    before, fields = snapshot(sim), dict(sim.fields)
    async with client_for(sim) as client:
        answer = await client.post("/admin/dialect", json=body)
        metadata = (await client.get("/odata/$metadata")).text
    assert answer.status_code == 400, answer.text
    assert snapshot(sim) == before
    assert sim.fields == fields
    assert sim.schema.version == 0
    assert 'Name="X"' not in metadata


async def test_expanded_pages_carry_the_expansion_into_the_next_link(clock: FakeClock) -> None:
    sim = make("mlsgrid", clock, records=25)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        rows = await pages(client, "/odata/Property", **{"$expand": "Media", "$top": "10"})
    assert len(rows) == 25
    assert all(len(row["Media"]) == row["PhotosCount"] for row in rows)


def test_mlsgrid_deletes_by_count_pick_only_listings_still_shown(clock: FakeClock) -> None:
    sim = make("mlsgrid", clock)  # 60 listings
    first = sim.delete(count=40)
    second = sim.delete(count=20)  # exactly those left: none is deleted twice
    assert not set(first) & set(second)
    assert sum(record["MlgCanView"] for record in sim.records.values()) == 0
    assert len(set(sim.deleted)) == len(sim.deleted) == 60
    with pytest.raises(ValueError, match="between 0 and 0"):
        sim.delete(count=1)
