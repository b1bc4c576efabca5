"""Key-set paging while the MLS keeps changing: nothing is skipped, touched records come again."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from cadastre.simulators import ResoSimulator
from cadastre.testing import FakeClock

from .conftest import AFTER_DATA, bearer, client_for


async def full_pass(
    sim: ResoSimulator,
    clock: FakeClock,
    rng: random.Random,
    params: dict[str, str],
    churn: float,
) -> tuple[list[dict[str, Any]], set[str]]:
    """Page through everything; between pages (at most 15 times, so the pass ends), agents touch
    and create records."""
    touched: set[str] = set()
    rounds = 15
    seen: list[dict[str, Any]] = []
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        response = await client.get("/odata/Property", params=params)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            seen += body["value"]
            if "@odata.nextLink" not in body:
                return seen, touched
            if rounds and rng.random() < churn:
                rounds -= 1
                clock.advance(rng.uniform(0.001, 5))
                keys = rng.sample(list(sim.records), rng.randrange(1, 6))
                touched.update(sim.touch(keys=keys, changes={"ListPrice": rng.randrange(10**6)}))
                touched.update(sim.create(rng.randrange(0, 3)))
            response = await client.get(body["@odata.nextLink"])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    top=st.integers(1, 40),
    churn=st.sampled_from([0.0, 0.5, 1.0]),
    order=st.sampled_from([None, "ModificationTimestamp", "ModificationTimestamp,ListingKey"]),
)
def test_every_record_is_seen_and_only_touched_ones_twice(
    seed: int, top: int, churn: float, order: str | None
) -> None:
    clock = FakeClock(start=AFTER_DATA)
    sim = ResoSimulator(records=150, seed=seed, clock=clock, rate_limit=None)
    params = {"$top": str(top)} | ({"$orderby": order} if order else {})
    rows, touched = asyncio.run(full_pass(sim, clock, random.Random(seed), params, churn))
    keys = [row["ListingKey"] for row in rows]
    assert set(sim.records) <= set(keys)  # every record present at the end was seen
    repeated = {key for key in keys if keys.count(key) > 1}
    assert repeated <= touched  # only records changed mid-pass come twice
    for key in repeated:
        last = max(r["ModificationTimestamp"] for r in rows if r["ListingKey"] == key)
        assert last == sim.records[key]["ModificationTimestamp"]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), top=st.integers(1, 30))
def test_paging_by_price_is_stable_while_other_fields_change(seed: int, top: int) -> None:
    clock = FakeClock(start=AFTER_DATA)
    sim = ResoSimulator(records=100, seed=seed, clock=clock, rate_limit=None)
    rng = random.Random(seed)

    async def run() -> list[str]:
        seen: list[str] = []
        async with client_for(sim) as client:
            client.headers.update(await bearer(client))
            params = {"$top": str(top), "$orderby": "ListPrice desc", "$select": "ListingKey"}
            body = (await client.get("/odata/Property", params=params)).json()
            seen += [r["ListingKey"] for r in body["value"]]
            while "@odata.nextLink" in body:
                clock.advance(1)
                sim.touch(count=3, changes={"PublicRemarks": f"edit {rng.random()}"})
                body = (await client.get(body["@odata.nextLink"])).json()
                seen += [r["ListingKey"] for r in body["value"]]
        return seen

    seen = asyncio.run(run())
    assert sorted(seen) == sorted(sim.records)  # each exactly once: prices did not move


async def test_a_record_touched_after_it_was_served_comes_again_at_its_new_place(
    clock: FakeClock,
) -> None:
    sim = ResoSimulator(records=50, clock=clock, rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        first = (await client.get("/odata/Property", params={"$top": "10"})).json()
        served, ahead = first["value"][3]["ListingKey"], None
        order = sorted(sim.records, key=lambda k: (sim.modified_at(k), k))
        ahead = order[30]
        clock.advance(60)
        sim.touch(keys=[served, ahead], changes={"StandardStatus": "Pending"})
        rows = list(first["value"])
        body = first
        while "@odata.nextLink" in body:
            body = (await client.get(body["@odata.nextLink"])).json()
            rows += body["value"]
    keys = [r["ListingKey"] for r in rows]
    assert keys.count(served) == 2
    assert keys.count(ahead) == 1  # not at its old place, once at its new one
    assert keys[-2:] == sorted([served, ahead])  # both now the newest
    assert rows[-1]["StandardStatus"] == "Pending"
    assert rows[-1]["StatusChangeTimestamp"] == rows[-1]["ModificationTimestamp"]
    assert len(set(keys)) == 50


async def test_a_late_commit_lands_behind_a_running_pass(clock: FakeClock) -> None:
    # A change stamped in the past (committed late upstream) is not seen by a pass that is past
    # that point: the reason replication clients re-read a window behind their cursor.
    sim = ResoSimulator(records=40, clock=clock, rate_limit=None)
    order = sorted(sim.records, key=lambda k: (sim.modified_at(k), k))
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        body = (await client.get("/odata/Property", params={"$top": "20"})).json()
        late = order[35]
        sim.touch(keys=[late], at=sim.modified_at(order[0]) - timedelta(days=1))
        keys = [r["ListingKey"] for r in body["value"]]
        while "@odata.nextLink" in body:
            body = (await client.get(body["@odata.nextLink"])).json()
            keys += [r["ListingKey"] for r in body["value"]]
    assert late not in keys
    assert len(keys) == 39


async def test_next_link_keeps_filter_select_orderby_and_top(client: httpx.AsyncClient) -> None:
    params = {
        "$filter": "ModificationTimestamp gt 2026-01-01T00:00:00+01:00 and City ne 'O''Hare'",
        "$select": "ListingKey,ModificationTimestamp",
        "$orderby": "ModificationTimestamp asc",
        "$top": "5",
    }
    link = httpx.URL((await client.get("/odata/Property", params=params)).json()["@odata.nextLink"])
    for name, value in params.items():
        assert link.params[name] == value
    assert link.params["$skiptoken"]
