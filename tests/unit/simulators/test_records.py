"""The simulated data: deterministic, valid against the canonical Listing, and bad on purpose
only where asked."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest

from cadastre.contract.reso import (
    STANDARD_NAMES,
    AreaUnits,
    FeeFrequency,
    Listing,
    PropertySubType,
    PropertyType,
    StandardStatus,
)
from cadastre.simulators import ResoSimulator
from cadastre.simulators.reso import DATA_EPOCH, DEFECTS
from cadastre.simulators.reso.schema import STANDARD_FIELDS
from cadastre.testing import FakeClock

from .conftest import bearer, client_for

LOOKUPS: dict[str, type[StrEnum]] = {
    "StandardStatus": StandardStatus,
    "PropertyType": PropertyType,
    "PropertySubType": PropertySubType,
    "LivingAreaUnits": AreaUnits,
    "AssociationFeeFrequency": FeeFrequency,
}


def as_listing(record: dict[str, Any]) -> Listing:
    """What a hub would do: display names back to enumeration values, local fields aside."""
    payload: dict[str, Any] = {"LocalFields": {}}
    for name, value in record.items():
        if name.startswith("ACT_"):
            payload["LocalFields"][name] = value
        elif name in LOOKUPS and value is not None:
            display = {shown: key for key, shown in STANDARD_NAMES[LOOKUPS[name]].items()}
            payload[name] = display.get(value, value)
        else:
            payload[name] = value
    return Listing.model_validate(payload)


def test_every_standard_field_is_a_field_of_the_canonical_listing() -> None:
    listing_fields = set(Listing.wire_fields())
    assert {spec.name for spec in STANDARD_FIELDS} <= listing_fields


def test_every_record_is_a_valid_canonical_listing() -> None:
    sim = ResoSimulator(records=1500, seed=11)
    for record in sim.records.values():
        listing = as_listing(dict(record))
        assert listing.listing_key == record["ListingKey"]
    statuses = Counter(record["StandardStatus"] for record in sim.records.values())
    assert set(statuses) == {
        "Active", "Active Under Contract", "Pending", "Closed", "Coming Soon", "Withdrawn",
        "Expired", "Canceled", "Hold",
    }  # fmt: skip
    types = {record["PropertyType"] for record in sim.records.values()}
    assert types == {"Residential", "Residential Lease", "Land", "Commercial Sale"}


def test_timestamps_are_utc_milliseconds_and_spread_over_the_year_before_the_epoch() -> None:
    sim = ResoSimulator(records=2000)
    stamps = [record["ModificationTimestamp"] for record in sim.records.values()]
    for stamp in stamps[:50]:
        assert len(stamp) == 24
        assert stamp.endswith("Z")
        assert stamp[19] == "."
    instants = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert min(instants) >= DATA_EPOCH - timedelta(days=365)
    assert max(instants) < DATA_EPOCH
    assert max(instants) - min(instants) > timedelta(days=300)
    distinct = len(set(stamps))
    assert 1900 < distinct < 2000  # many distinct, some shared (bulk updates)


def test_keys_are_unique_and_zero_padded() -> None:
    sim = ResoSimulator(records=300)
    keys = list(sim.records)
    assert keys[0] == "ACT00000001"
    assert len(set(keys)) == 300


def test_same_seed_same_records_other_seed_other_records() -> None:
    one, two = ResoSimulator(records=200, seed=7), ResoSimulator(records=200, seed=7)
    assert [dict(r) for r in one.records.values()] == [dict(r) for r in two.records.values()]
    other = ResoSimulator(records=200, seed=8)
    assert [dict(r) for r in other.records.values()] != [dict(r) for r in one.records.values()]
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert one.touch(count=5, at=at) == two.touch(count=5, at=at)
    assert one.create(3, at=at) == two.create(3, at=at) == ["ACT00000201", "ACT00000202",
                                                            "ACT00000203"]  # fmt: skip
    assert dict(one.records["ACT00000202"]) == dict(two.records["ACT00000202"])


def test_the_local_prefix_names_the_local_fields() -> None:
    sim = ResoSimulator(records=3, local_prefix="XYZ_")
    record = sim.records["ACT00000001"]
    assert {"XYZ_SchoolDistrict", "XYZ_HOAName", "XYZ_Waterfront", "XYZ_ShowingInstructions"} <= (
        set(record)
    )
    assert isinstance(record["XYZ_Waterfront"], bool)


def test_bad_record_rate_breaks_exactly_that_share_in_each_way() -> None:
    sim = ResoSimulator(records=400, seed=5, bad_record_rate=0.1)
    assert len(sim.defects) == 40
    assert set(sim.defects.values()) == set(DEFECTS)
    for key, kind in sim.defects.items():
        record = sim.records[key]
        if kind == "unknown_status":
            assert record["StandardStatus"] == "Sold-ish"
        elif kind == "price_not_a_number":
            assert record["ListPrice"] == "N/A"
        elif kind == "missing_key":
            assert "ListingKey" not in record
        else:
            assert record["ModificationTimestamp"] == "yesterday"
    again = ResoSimulator(records=400, seed=5, bad_record_rate=0.1)
    assert again.defects == sim.defects
    assert ResoSimulator(records=400, seed=5).defects == {}


async def test_bad_records_are_still_paged_and_filtered_by_their_true_values() -> None:
    sim = ResoSimulator(records=200, seed=2, bad_record_rate=0.2, rate_limit=None)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        body = (await client.get("/odata/Property", params={"$top": "30"})).json()
        rows = body["value"]
        while "@odata.nextLink" in body:
            body = (await client.get(body["@odata.nextLink"])).json()
            rows += body["value"]
        assert len(rows) == 200
        assert sum(1 for row in rows if "ListingKey" not in row) == sum(
            1 for kind in sim.defects.values() if kind == "missing_key"
        )
        late_key = next(k for k, kind in sim.defects.items() if kind == "bad_timestamp")
        stamp = sim.modified_at(late_key).isoformat().replace("+00:00", "Z")
        response = await client.get(
            "/odata/Property", params={"$filter": f"ModificationTimestamp eq {stamp}"}
        )
        assert late_key in [r.get("ListingKey") for r in response.json()["value"]]


async def test_admin_touch_changes_fields_and_timestamps(clock: FakeClock) -> None:
    sim = ResoSimulator(records=30, clock=clock, rate_limit=None)
    old_price = sim.records["ACT00000004"]["ListPrice"]
    async with client_for(sim) as client:
        response = await client.post(
            "/admin/touch",
            json={"keys": ["ACT00000004"], "changes": {"ListPrice": 123000}},
        )
        assert response.json() == {"touched": ["ACT00000004"], "created": []}
        record = sim.records["ACT00000004"]
        assert record["ListPrice"] == 123000
        assert record["PreviousListPrice"] == old_price
        assert record["ModificationTimestamp"] == "2026-11-02T00:00:00.000Z"
        assert record["PriceChangeTimestamp"] == record["ModificationTimestamp"]

        response = await client.post(
            "/admin/touch", json={"count": 2, "at": "2026-11-05T10:00:00+02:00", "create": 1}
        )
        body = response.json()
        assert len(body["touched"]) == 3
        assert body["created"] == ["ACT00000031"]
        for key in body["touched"]:
            assert sim.records[key]["ModificationTimestamp"] == "2026-11-05T08:00:00.000Z"
        assert len(sim.records) == 31


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"keys": ["ACT99999999"]}, "unknown ListingKey"),
        ({"keys": ["ACT00000001"], "changes": {"Nope": 1}}, "unknown field"),
        ({"keys": ["ACT00000001"], "changes": {"ListPrice": "cheap"}}, "not a number"),
        ({"keys": ["ACT00000001"], "changes": {"ListingKey": "X"}}, "not changed this way"),
        ({"keys": ["ACT00000001"], "at": "yesterday"}, "DateTimeOffset"),
        ({"count": 1000}, "count is between"),
        ({"keys": ["ACT00000001"], "count": 1}, "keys or count"),
        ({"wat": 1}, "unknown fields"),
        ([], "JSON object"),
    ],
)
async def test_admin_touch_refuses_bad_requests(body: Any, message: str) -> None:
    sim = ResoSimulator(records=10, rate_limit=None)
    async with client_for(sim) as client:
        response = await client.post("/admin/touch", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_touch_in_python_refuses_naive_times_and_fixes_a_broken_field() -> None:
    sim = ResoSimulator(records=100, seed=5, bad_record_rate=0.5)
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.touch(keys=["ACT00000001"], at=datetime(2026, 1, 1))  # noqa: DTZ001
    broken = next(k for k, kind in sim.defects.items() if kind == "price_not_a_number")
    sim.touch(keys=[broken], changes={"ListPrice": 250000})
    assert sim.records[broken]["ListPrice"] == 250000
    assert broken not in sim.defects


def test_records_view_is_read_only() -> None:
    sim = ResoSimulator(records=2)
    with pytest.raises(TypeError):
        sim.records["ACT00000001"]["ListPrice"] = 1  # type: ignore[index]


async def test_a_shared_fake_clock_dates_touches(clock: FakeClock) -> None:
    sim = ResoSimulator(records=5, clock=clock, rate_limit=None)
    clock.advance(90.5)
    sim.touch(keys=["ACT00000002"])
    assert sim.records["ACT00000002"]["ModificationTimestamp"] == "2026-11-02T00:01:30.500Z"
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        response = await client.get(
            "/odata/Property", params={"$filter": "ModificationTimestamp ge 2026-11-02T00:00:00Z"}
        )
    assert [r["ListingKey"] for r in response.json()["value"]] == ["ACT00000002"]


def test_constructor_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="bad_record_rate"):
        ResoSimulator(records=1, bad_record_rate=2)
    with pytest.raises(ValueError, match="page_size_max"):
        ResoSimulator(records=1, page_size_max=0)
