"""Query options over HTTP (in process): select, top, skip, orderby, count, errors, one entity,
metadata; and the index fast path agreeing with a brute-force evaluation."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadastre.simulators import ResoSimulator
from cadastre.simulators.reso.odata_filter import compile_filter, parse_filter
from cadastre.simulators.reso.query import getter, parse_query, run
from cadastre.simulators.reso.records import format_timestamp

from .conftest import bearer, client_for


async def get_json(client: httpx.AsyncClient, **params: str) -> Any:
    response = await client.get("/odata/Property", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_default_page_has_100_rows_context_and_a_next_link(client: httpx.AsyncClient) -> None:
    response = await client.get("/odata/Property")
    assert response.headers["OData-Version"] == "4.0"
    body = response.json()
    assert body["@odata.context"] == "http://mls.test/odata/$metadata#Property"
    assert len(body["value"]) == 100
    assert body["@odata.nextLink"].startswith("http://mls.test/odata/Property?")
    assert "@odata.count" not in body


async def test_top_is_the_page_size_and_is_capped(clock) -> None:
    sim = ResoSimulator(records=60, clock=clock, rate_limit=None, page_size_max=25)
    async with client_for(sim) as client:
        client.headers.update(await bearer(client))
        assert len((await get_json(client, **{"$top": "10"}))["value"]) == 10
        assert len((await get_json(client, **{"$top": "1000"}))["value"]) == 25
        body = await get_json(client, **{"$top": "0"})
        assert body["value"] == []
        assert "@odata.nextLink" not in body


async def test_select_returns_only_those_fields(client: httpx.AsyncClient) -> None:
    body = await get_json(client, **{"$select": "ListPrice, ListingKey,ACT_Waterfront"})
    assert body["@odata.context"].endswith("#Property(ListPrice,ListingKey,ACT_Waterfront)")
    assert all(set(row) == {"ListPrice", "ListingKey", "ACT_Waterfront"} for row in body["value"])
    assert "$select=ListPrice" in body["@odata.nextLink"]


async def test_skip_is_an_offset_in_the_order(client: httpx.AsyncClient) -> None:
    everything = (await get_json(client, **{"$top": "120"}))["value"]
    skipped = (await get_json(client, **{"$top": "5", "$skip": "7"}))["value"]
    assert [r["ListingKey"] for r in skipped] == [r["ListingKey"] for r in everything[7:12]]


async def test_default_order_is_modification_timestamp_then_key(client: httpx.AsyncClient) -> None:
    rows = (await get_json(client, **{"$top": "120"}))["value"]
    positions = [(r["ModificationTimestamp"], r["ListingKey"]) for r in rows]
    assert positions == sorted(positions)
    assert len(rows) == 120


async def test_orderby_desc_with_nulls_last_and_key_tie_break(client: httpx.AsyncClient) -> None:
    rows = (await get_json(client, **{"$top": "120", "$orderby": "ClosePrice desc"}))["value"]
    prices = [r["ClosePrice"] for r in rows]
    present = [p for p in prices if p is not None]
    assert present == sorted(present, reverse=True)
    assert prices == present + [None] * (len(prices) - len(present))  # nulls last descending
    nulls = [r["ListingKey"] for r in rows if r["ClosePrice"] is None]
    assert nulls == sorted(nulls)
    ascending = (await get_json(client, **{"$top": "120", "$orderby": "ClosePrice asc"}))["value"]
    assert ascending[0]["ClosePrice"] is None  # nulls first ascending


async def test_orderby_several_fields(client: httpx.AsyncClient) -> None:
    rows = (await get_json(client, **{"$top": "120", "$orderby": "City,ListPrice desc"}))["value"]
    keys = [(r["City"], -r["ListPrice"], r["ListingKey"]) for r in rows]
    assert keys == sorted(keys)


async def test_paging_a_custom_order_through_next_links(client: httpx.AsyncClient) -> None:
    params = {"$top": "7", "$orderby": "City desc,ListPrice", "$filter": "ListPrice gt 200000"}
    body = await get_json(client, **params)
    seen = [r["ListingKey"] for r in body["value"]]
    while "@odata.nextLink" in body:
        body = (await client.get(body["@odata.nextLink"])).json()
        seen += [r["ListingKey"] for r in body["value"]]
    one_page = await get_json(client, **{**params, "$top": "1000"})
    assert seen == [r["ListingKey"] for r in one_page["value"]]


async def test_count_counts_every_match_not_the_page(client: httpx.AsyncClient) -> None:
    body = await get_json(client, **{"$count": "true", "$top": "3"})
    assert body["@odata.count"] == 120
    body = await get_json(client, **{"$count": "true", "$filter": "City eq 'Austin'"})
    assert body["@odata.count"] == sum(1 for r in body["value"] if r["City"] == "Austin")
    assert "$count" not in body.get("@odata.nextLink", "")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"$filter": "Nope eq 1"}, "unknown field 'Nope'"),
        ({"$filter": "City eq"}, "ends too early"),
        ({"$select": "ListPrice,Nope"}, "unknown field 'Nope'"),
        ({"$orderby": "Nope"}, "unknown field 'Nope'"),
        ({"$orderby": "ListPrice sideways"}, "cannot read"),
        ({"$top": "-1"}, "non-negative"),
        ({"$top": "ten"}, "non-negative"),
        ({"$skip": "1.5"}, "non-negative"),
        ({"$count": "yes"}, "true or false"),
        ({"$expand": "Media"}, "not supported"),
        ({"$skiptoken": "not-a-token"}, "not one this server issued"),
    ],
)
async def test_bad_options_are_400_with_an_odata_error(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/odata/Property", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert message in error["message"]


async def test_an_option_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/odata/Property?$top=1&$top=2")
    assert response.status_code == 400
    assert "twice" in response.json()["error"]["message"]


async def test_a_skiptoken_of_another_order_is_refused(client: httpx.AsyncClient) -> None:
    link = (await get_json(client, **{"$top": "5"}))["@odata.nextLink"]
    token = httpx.URL(link).params["$skiptoken"]
    response = await client.get(
        "/odata/Property", params={"$skiptoken": token, "$orderby": "ListPrice"}
    )
    assert response.status_code == 400
    assert "different $orderby" in response.json()["error"]["message"]


async def test_custom_query_options_are_ignored(client: httpx.AsyncClient) -> None:
    assert len((await get_json(client, **{"$top": "2", "tenant": "x"}))["value"]) == 2


async def test_one_entity_by_key(client: httpx.AsyncClient, sim: ResoSimulator) -> None:
    response = await client.get("/odata/Property('ACT00000005')")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("#Property/$entity")
    assert body["ListingKey"] == "ACT00000005"
    assert body["ListPrice"] == sim.records["ACT00000005"]["ListPrice"]
    also = await client.get("/odata/Property(ListingKey='ACT00000005')")
    assert also.json()["ListingKey"] == "ACT00000005"
    missing = await client.get("/odata/Property('ACT99999999')")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NotFound"
    unquoted = await client.get("/odata/Property(ACT00000005)")
    assert unquoted.status_code == 400


async def test_metadata_describes_every_field_without_a_token(sim: ResoSimulator) -> None:
    async with client_for(sim) as anonymous:
        response = await anonymous.get("/odata/$metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)  # noqa: S314 - our own document
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    entity = root.find(".//edm:EntityType[@Name='Property']", ns)
    assert entity is not None
    properties = {p.get("Name"): p.get("Type") for p in entity.findall("edm:Property", ns)}
    assert properties == {name: spec.edm for name, spec in sim.fields.items()}
    assert properties["ModificationTimestamp"] == "Edm.DateTimeOffset"
    assert properties["ListPrice"] == "Edm.Decimal"
    assert properties["ACT_Waterfront"] == "Edm.Boolean"
    assert properties["CloseDate"] == "Edm.Date"
    assert properties["BedroomsTotal"] == "Edm.Int32"
    key = entity.find("edm:Key/edm:PropertyRef", ns)
    assert key is not None
    assert key.get("Name") == "ListingKey"


async def test_service_document(sim: ResoSimulator) -> None:
    async with client_for(sim) as anonymous:
        body = (await anonymous.get("/odata/")).json()
    assert body["value"] == [{"name": "Property", "kind": "EntitySet", "url": "Property"}]


# ------------------------------------------------------------------ fast path == brute force

BIG = ResoSimulator(records=400, seed=3, rate_limit=None)
_ROWS = list(BIG._index.rows.values())
INSTANTS = sorted({row.modified for row in _ROWS})
KEYS = sorted(BIG._index.rows)


def _instant(data: st.DataObject) -> str:
    chosen = data.draw(st.sampled_from(INSTANTS))
    nudges = [timedelta(0), timedelta(0), timedelta(milliseconds=1), timedelta(milliseconds=-1),
              timedelta(hours=5)]  # fmt: skip
    nudge = data.draw(st.sampled_from(nudges))
    offset = data.draw(st.sampled_from(["Z", "+02:00", "-05:30"]))
    when = chosen + nudge
    if offset == "Z":
        return format_timestamp(when)
    sign = 1 if offset[0] == "+" else -1
    shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * sign
    return (when + shift).replace(tzinfo=None).isoformat(timespec="milliseconds") + offset


def _atom(data: st.DataObject) -> str:
    op = data.draw(st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]))
    kind = data.draw(st.sampled_from(["ts", "ts", "key", "price", "null"]))
    if kind == "ts":
        return f"ModificationTimestamp {op} {_instant(data)}"
    if kind == "key":
        return f"ListingKey {op} '{data.draw(st.sampled_from(KEYS))}'"
    if kind == "price":
        return f"ListPrice {op} {data.draw(st.integers(100_000, 1_500_000))}"
    return f"ModificationTimestamp {op} null"


def _expr(data: st.DataObject, depth: int = 0) -> str:
    shape = data.draw(st.sampled_from(["atom", "and", "or", "not"] if depth < 3 else ["atom"]))
    if shape == "atom":
        return _atom(data)
    if shape == "not":
        return f"not ({_expr(data, depth + 1)})"
    items = [_expr(data, depth + 1) for _ in range(data.draw(st.integers(2, 3)))]
    return "(" + f" {shape} ".join(items) + ")"


def _brute(text: str) -> list[str]:
    predicate = compile_filter(parse_filter(text, BIG.fields), lambda n: getter(n, BIG.fields))
    return [row.key for row in sorted(_ROWS, key=lambda r: r.position) if predicate(row)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_index_ranges_agree_with_evaluating_every_row(data: st.DataObject) -> None:
    text = _expr(data)
    query = parse_query([("$filter", text), ("$top", "1000"), ("$count", "true")], BIG.fields, 1000)
    page = run(BIG._index, query, BIG.fields)
    expected = _brute(text)
    assert [row.key for row in page.rows] == expected, text
    assert page.count == len(expected)


def test_the_replication_query_is_answered_from_the_index_alone() -> None:
    rng = random.Random(5)
    for _ in range(50):
        row = rng.choice(_ROWS)
        stamp = format_timestamp(row.modified)
        text = (
            f"ModificationTimestamp gt {stamp} or "
            f"(ModificationTimestamp eq {stamp} and ListingKey gt '{row.key}')"
        )
        ranges, exact = BIG._index.candidate_ranges(parse_filter(text, BIG.fields))
        assert exact  # no row needs its filter evaluated
        assert sum(high - low for low, high in ranges) == len(_brute(text))
