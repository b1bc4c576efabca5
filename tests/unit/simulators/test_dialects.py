"""Regional dialects, configured by data files: each knob as a client sees it over HTTP."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from cadastre.simulators import ResoSimulator
from cadastre.simulators.reso import DEFAULT_RATE_LIMIT, Dialect, dialect_names, load_dialect
from cadastre.testing import FakeClock

from .conftest import bearer, client_for

DIALECTS = ("mlsgrid", "trestle", "bridge", "spark")


def make(dialect: str, clock: FakeClock, records: int = 300, **kwargs: Any) -> ResoSimulator:
    return ResoSimulator(records=records, seed=7, clock=clock, rate_limit=None, dialect=dialect,
                         **kwargs)  # fmt: skip


async def get(sim: ResoSimulator, path: str, **params: str) -> httpx.Response:
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        return await client.get(path, params=params)


def test_the_four_regional_dialects_and_the_default_are_data_files() -> None:
    assert set(dialect_names()) == {"default", *DIALECTS}
    prefixes = {name: load_dialect(name).local_prefix for name in dialect_names()}
    assert prefixes == {"default": "ACT_", "mlsgrid": "NWM_", "trestle": "TRS_",
                        "bridge": "BRG_", "spark": "SPK_"}  # fmt: skip


def test_the_default_dialect_is_the_simulator_as_it_was(clock: FakeClock) -> None:
    default = load_dialect("default")
    assert default.rate_limit == DEFAULT_RATE_LIMIT
    assert (default.page.max, default.page.default, default.token_ttl) == (1000, 100, 3600)
    assert default.is_base  # records are served as generated
    assert ResoSimulator(records=5, clock=clock).dialect is default


def test_an_unknown_dialect_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown dialect 'nowhere'.*mlsgrid"):
        ResoSimulator(records=1, dialect="nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"absent": ["ListingKey"]}, "never absent"),
        ({"absent": ["NoSuchField"]}, "not a standard field"),
        ({"renamed": {"ModificationTimestamp": "Stamp"}}, "never absent"),
        ({"local_fields": ["Nope"]}, "local_fields"),
        ({"values": {"Nope": {"scale": 2}}}, "not a field of this dialect"),
        ({"values": {"ListPrice": {}}}, "a scale"),
        ({"enums": {"MlsStatus": {"A": "B"}}, "absent": ["MlsStatus"]}, "enums"),
        ({"added": {"X": {"type": "Edm.Nope"}}}, "type is one of"),
        ({"added": {"X": {"type": "Edm.String", "template": "{Nope}"}}}, "unknown fields"),
        ({"deletion": {"style": "flag"}}, "names its field"),
        ({"page": {"default": 500, "max": 200}}, "page.default"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_a_bad_dialect_is_refused_with_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dialect.model_validate({"name": "x", **change})


@pytest.mark.parametrize(
    ("dialect", "spelling"),
    [
        ("default", "Active Under Contract"),
        ("mlsgrid", "Active Under Contract"),
        ("trestle", "ActiveUnderContract"),
        ("bridge", "AUC"),
        ("spark", "Contingent"),
    ],
)
def test_active_under_contract_is_spelled_the_regional_way(
    clock: FakeClock, dialect: str, spelling: str
) -> None:
    statuses = Counter(r["StandardStatus"] for r in make(dialect, clock).records.values())
    assert statuses[spelling] > 0
    others = {"Active Under Contract", "ActiveUnderContract", "AUC", "Contingent"} - {spelling}
    assert not others & set(statuses)


def test_property_types_and_subtypes_have_regional_spellings(clock: FakeClock) -> None:
    def values(dialect: str, field: str) -> set[str]:
        return {r[field] for r in make(dialect, clock).records.values()}

    assert "A" in values("spark", "PropertyType")
    assert "Residential" not in values("spark", "PropertyType")
    assert "ResidentialLease" in values("trestle", "PropertyType")
    assert {"Single Family", "Townhome"} <= values("bridge", "PropertySubType")
    assert "Condo" in values("mlsgrid", "PropertySubType")
    # The same seed gives the same listings: only the spelling differs.
    base = make("default", clock).records
    spark = make("spark", clock).records
    assert all(
        (base[k]["PropertyType"] == "Residential") == (spark[k]["PropertyType"] == "A")
        for k in base
    )


@pytest.mark.parametrize(
    ("dialect", "absent", "present"),
    [
        ("spark", {"LotSizeAcres"}, {"SPK_SchoolDistrict", "LotSizeSquareFeet"}),
        ("bridge", {"MlsStatus", "LivingArea", "BRG_HOAName"}, {"LivingAreaSqM", "BRG_Waterfront"}),
        ("mlsgrid", {"TaxAnnualAmount"}, {"MlgCanView", "PrivateRemarks", "NWM_HOAName"}),
        ("trestle", {"MLSAreaMajor", "TRS_Waterfront"}, {"PrivateRemarks", "TRS_HOAName"}),
    ],
)
def test_fields_present_in_one_region_and_missing_in_another(
    clock: FakeClock, dialect: str, absent: set[str], present: set[str]
) -> None:
    sim = make(dialect, clock, records=20)
    for record in sim.records.values():
        assert not absent & set(record)
        assert present <= set(record)
        assert not any(name.startswith("ACT_") for name in record)
    assert not absent & set(sim.fields)


def test_bridge_sends_living_area_in_square_meters(clock: FakeClock) -> None:
    base, bridge = make("default", clock).records, make("bridge", clock).records
    for key, record in base.items():
        if record["LivingArea"] is None:
            assert bridge[key]["LivingAreaSqM"] is None
        else:
            assert bridge[key]["LivingAreaSqM"] == round(record["LivingArea"] * 0.09290304, 1)


def test_spark_sends_the_contract_date_as_month_day_year(clock: FakeClock) -> None:
    base, spark = make("default", clock).records, make("spark", clock).records
    for key, record in base.items():
        shown = spark[key]["ListingContractDate"]
        assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", shown)
        day = datetime.strptime(shown, "%m/%d/%Y").date()  # noqa: DTZ007 - a date only
        assert day.isoformat() == record["ListingContractDate"]


async def test_metadata_reflects_the_dialect(clock: FakeClock) -> None:
    spark = (await get(make("spark", clock, records=3), "/odata/$metadata")).text
    assert 'Name="ListingContractDate" Type="Edm.String"' in spark
    assert 'Name="SPK_SchoolDistrict"' in spark
    assert "LotSizeAcres" not in spark
    assert 'EntitySet Name="Media"' in spark
    assert "NavigationProperty" not in spark  # Media is a resource there, not an expansion
    grid = (await get(make("mlsgrid", clock, records=3), "/odata/$metadata")).text
    assert 'Name="MlgCanView" Type="Edm.Boolean"' in grid
    assert '<NavigationProperty Name="Media"' in grid
    default = (await get(make("default", clock, records=3), "/odata/$metadata")).text
    assert "Media" not in default


@pytest.mark.parametrize(
    ("dialect", "default_page", "largest"),
    [("bridge", 10, 200), ("trestle", 100, 1000), ("spark", 1000, 1000), ("default", 100, 1000)],
)
async def test_page_sizes_by_default_and_at_most(
    clock: FakeClock, dialect: str, default_page: int, largest: int
) -> None:
    sim = make(dialect, clock, records=1200)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        plain = (await client.get("/odata/Property")).json()
        assert len(plain["value"]) == default_page
        assert "$top" not in plain["@odata.nextLink"]
        big = (await client.get("/odata/Property", params={"$top": "5000"})).json()
        assert len(big["value"]) == largest  # capped, not refused
        following = (await client.get(big["@odata.nextLink"])).json()
        assert len(following["value"]) == min(largest, 1200 - largest)


async def test_mlsgrid_refuses_a_top_beyond_its_caps(clock: FakeClock) -> None:
    sim = make("mlsgrid", clock, records=30)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        assert (await client.get("/odata/Property", params={"$top": "5000"})).status_code == 200
        over = await client.get("/odata/Property", params={"$top": "5001"})
        assert over.status_code == 400
        assert "at most 5000" in over.json()["error"]["message"]
        expand = {"$top": "1001", "$expand": "Media"}
        refused = await client.get("/odata/Property", params=expand)
        assert refused.status_code == 400
        assert "at most 1000 with $expand" in refused.json()["error"]["message"]
        fine = await client.get("/odata/Property", params={**expand, "$top": "1000"})
        assert fine.status_code == 200


async def test_expand_is_refused_where_the_dialect_has_no_such_navigation(
    clock: FakeClock,
) -> None:
    response = await get(
        make("bridge", clock, records=3), "/odata/Property", **{"$expand": "Media"}
    )
    assert response.status_code == 400
    assert "not supported" in response.json()["error"]["message"]
    grid = await get(make("mlsgrid", clock, records=3), "/odata/Property", **{"$expand": "Rooms"})
    assert grid.status_code == 400
    assert "cannot be expanded" in grid.json()["error"]["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_key_only_reads(clock: FakeClock, dialect: str) -> None:
    sim = make(dialect, clock, records=250)
    keys: list[str] = []
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        top = str(sim.page_size_max)
        params = {"$select": "ListingKey", "$top": top}
        body = (await client.get("/odata/Property", params=params)).json()
        while True:
            assert all(list(row) == ["ListingKey"] for row in body["value"])
            keys += [row["ListingKey"] for row in body["value"]]
            if "@odata.nextLink" not in body:
                break
            body = (await client.get(body["@odata.nextLink"])).json()
    assert sorted(keys) == sorted(sim.records)


@pytest.mark.parametrize(("dialect", "ttl"), [("bridge", 1800), ("trestle", 28800)])
async def test_token_lifetime_is_the_dialect_s(clock: FakeClock, dialect: str, ttl: int) -> None:
    sim = make(dialect, clock, records=3)
    async with client_for(sim) as client:
        answer = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"},
            auth=("demo-client", "demo-secret"),
        )  # fmt: skip
        assert answer.json()["expires_in"] == ttl
        client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        clock.advance(ttl - 1)
        assert (await client.get("/odata/Property")).status_code == 200
        clock.advance(1)
        assert (await client.get("/odata/Property")).status_code == 401


def test_constructor_arguments_override_the_dialect(clock: FakeClock) -> None:
    sim = ResoSimulator(records=3, clock=clock, dialect="bridge", page_size_max=50,
                        token_ttl=60, local_prefix="ZZ_")  # fmt: skip
    assert sim.page_size_max == 50
    assert all(name.startswith("ZZ_") for name in sim.fields if "_" in name)
    record = next(iter(sim.records.values()))
    assert {name for name in record if "_" in name} == {"ZZ_SchoolDistrict", "ZZ_Waterfront"}
    assert sim.rate_limit is not None
    assert sim.rate_limit.requests == 334
