"""``/reso/odata``: the Web API Core reference requests (the project's copy, see reso_cases) and
what they do not cover: paging, $skip, 404 by key, tenants, bad options, Lookup, min_confidence."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from cadastre.api.reso import MAX_PAGE
from cadastre.contract import Change, Origin
from tests.unit.api.conftest import B, World, assert_problem
from tests.unit.api.reso_cases import FILTERED, REQUESTS, SEED, check, url_of

URI = "http://api.test/reso/odata"


async def seed(world: World) -> dict[str, str]:
    ids = {key: await world.listing(key, **fields) for key, fields in SEED.items()}
    await world.listing("OTHER", tenant=B, BedroomsTotal=3, StandardStatus="Active")
    return ids


async def call(world: World, url: str, tenant: str = "acme") -> tuple[int, Any]:
    response = await world.client.get(url, headers=world.auth(tenant))
    if response.headers["content-type"].startswith("application/xml"):
        return response.status_code, response.text
    return response.status_code, response.json()


# One seeded hub answers every request (a hub per request would cost a minute of SQLite set-up);
# a failure names the request it came from.
async def test_web_api_core_requests(world: World) -> None:
    await seed(world)
    for request_id, template in REQUESTS.items():
        if request_id == "metadata-request":
            continue  # XML: test_metadata_is_csdl_xml, and the XSD in tests/reference
        status, body = await call(world, url_of(template, URI))
        try:
            check(request_id, status, body)
        except AssertionError as exc:
            raise AssertionError(f"{request_id}: {exc}") from exc


async def test_each_filter_finds_every_match_without_top(world: World) -> None:
    """The reference requests cap answers at $top=5; with room for all, the set is exact."""
    await seed(world)
    for request_id, expected in FILTERED.items():
        status, body = await call(world, url_of(REQUESTS[request_id], URI, TopCount="100"))
        assert status == 200, (request_id, body)
        assert {item["ListingKey"] for item in body["value"]} == expected, request_id


async def test_metadata_is_csdl_xml(world: World) -> None:
    status, body = await call(world, url_of(REQUESTS["metadata-request"], URI))
    assert status == 200
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<edmx:Edmx')
    assert '<EntitySet Name="Property" EntityType="org.reso.metadata.Property"' in body
    assert '<Property Name="StandardStatus" Type="Edm.String"><Annotation Term=' in body
    assert '<Property Name="Appliances" Type="Collection(Edm.String)" Nullable="false">' in body
    status, body = await call(world, f"{URI}/$metadata?$format=json")
    assert status == 400


async def test_fetch_by_key_serves_every_property_and_404s_an_unknown_key(world: World) -> None:
    await seed(world)
    status, body = await call(world, f"{URI}/Property('abc123')")
    assert status == 200
    assert body["ListingKey"] == "abc123"
    assert body["BedroomsTotal"] == 5
    assert body["ListPrice"] == 100000  # Edm.Decimal: a JSON number
    assert body["ListingContractDate"] == "2020-04-02"
    assert body["Appliances"] == ["Dishwasher", "Dryer"]
    assert body["Heating"] == []  # an absent collection is empty, never null
    assert body["City"] is None
    assert "id" not in body  # canonical ids stay behind the RESO key
    assert (await call(world, f"{URI}/Property(ListingKey='abc123')"))[1]["ListingKey"] == "abc123"
    status, body = await call(world, f"{URI}/Property('nope')")
    assert (status, body["error"]["code"]) == (404, "404")
    status, body = await call(world, f"{URI}/Property('OTHER')")  # globex's listing
    assert status == 404
    status, body = await call(world, f"{URI}/Property(abc123)")  # keys are quoted strings
    assert status == 400
    status, body = await call(world, f"{URI}/Property('abc123')?$top=1")
    assert status == 400


async def test_a_whole_number_past_64_bits_is_served_not_a_500(world: World) -> None:
    """The contract keeps LivingArea 99999999999999999999999 exactly; JSON writers stop at 64
    bits, so one such record broke every page it was on."""
    await world.listing("HUGE", LivingArea="99999999999999999999999")
    status, body = await call(world, f"{URI}/Property('HUGE')?$select=LivingArea")
    assert status == 200, body
    assert body["LivingArea"] == 1e23  # the nearest double, as for any decimal
    status, body = await call(world, f"{URI}/Property?$select=ListingKey,LivingArea")
    assert status == 200, body
    assert body["value"] == [{"ListingKey": "HUGE", "LivingArea": 1e23}]


async def test_orderby_repeating_a_property_sorts_by_its_first_mention(world: World) -> None:
    await seed(world)
    once = f"{URI}/Property?$select=ListingKey&$orderby=ListPrice desc,ListingKey"
    again = once + "," + ",".join(["ListPrice asc", "ListingKey desc"] * 20)
    assert (await call(world, again))[1]["value"] == (await call(world, once))[1]["value"]


async def test_a_deleted_listing_is_not_served(world: World) -> None:
    await seed(world)
    await world.delete("L2")
    _status, body = await call(world, f"{URI}/Property?$select=ListingKey&$count=true")
    assert body["@odata.count"] == len(SEED) - 1
    assert (await call(world, f"{URI}/Property('L2')"))[0] == 404


async def test_skip_pages_through_in_one_order(world: World) -> None:
    await seed(world)
    everything = (await call(world, f"{URI}/Property?$select=ListingKey"))[1]["value"]
    first = (await call(world, f"{URI}/Property?$select=ListingKey&$top=3"))[1]["value"]
    second = (await call(world, f"{URI}/Property?$select=ListingKey&$top=3&$skip=3"))[1]["value"]
    third = (await call(world, f"{URI}/Property?$select=ListingKey&$skip=6"))[1]["value"]
    assert first + second + third == everything
    assert len(everything) == len(SEED)


async def test_server_driven_paging_follows_next_links(world: World) -> None:
    for i in range(MAX_PAGE + 30):
        await world.hub.engine.apply(
            Change(
                tenant="acme", entity="Listing",
                fields={"ListingKey": f"K{i:04d}", "BedroomsTotal": i % 7},
                origin=Origin(system="mls", connection="austin-mls", external_id=f"K{i:04d}"),
            )
        )  # fmt: skip
    url = f"{URI}/Property?$select=ListingKey&$filter=BedroomsTotal ge 0&$orderby=ListingKey desc"
    url += "&$count=true"
    seen: list[str] = []
    pages = 0
    while url:
        status, body = await call(world, url)
        assert status == 200, body
        assert body["@odata.count"] == MAX_PAGE + 30
        seen += [item["ListingKey"] for item in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
        if url:
            query = parse_qs(urlsplit(url).query)
            assert query["$skip"] == [str(len(seen))]
            assert query["$filter"] == ["BedroomsTotal ge 0"]
    assert pages == 2
    assert seen == sorted((f"K{i:04d}" for i in range(MAX_PAGE + 30)), reverse=True)
    status, body = await call(world, f"{URI}/Property?$select=ListingKey&$top={MAX_PAGE + 5}")
    assert len(body["value"]) == MAX_PAGE
    assert parse_qs(urlsplit(body["@odata.nextLink"]).query)["$top"] == ["5"]
    status, body = await call(world, body["@odata.nextLink"])
    assert len(body["value"]) == 5
    assert "@odata.nextLink" not in body


# nine properties to order by: one more than $orderby takes
ORDER_NINE = [
    "ListingKey", "ListingId", "OriginatingSystemName", "OriginatingSystemKey", "City",
    "ListPrice", "BedroomsTotal", "ModificationTimestamp", "ListingContractDate",
]  # fmt: skip
BAD_QUERIES = [
    ("$filter=BedroomsTotal gt 'three'", "$filter"),  # a number against a string
    ("$filter=ListingContractDate gt 2019-12-31T00:00:00Z", "$filter"),  # date vs instant
    ("$filter=ModificationTimestamp gt 2019-12-31T00:00:00", "$filter"),  # no offset
    ("$filter=BedroomsTotal", "$filter"),  # a value, not a condition
    ("$filter=Appliances eq 'Dryer'", "$filter"),  # a collection needs any/all
    ("$filter=City/any(c: c eq 'A')", "$filter"),  # any/all on a scalar
    ("$filter=substring(City, 1) eq 'A'", "$filter"),  # a function not offered
    ("$filter=BedroomsTotal gt", "$filter"),  # does not parse
    ("$filter=StandardStatus has 'Active'", "$filter"),  # Lookup-resource style: no has
    ("$select=ListingKey,Nope", "$select"),
    ("$orderby=Nope desc", "$orderby"),
    ("$orderby=ListPrice sideways", "$orderby"),
    ("$orderby=Appliances", "$orderby"),
    # each item is a sort of every match: thousands of them held the event loop
    ("$orderby=" + ",".join(ORDER_NINE), "$orderby"),
    ("$top=-1", "$top"),
    ("$top=ten", "$top"),
    ("$skip=1.5", "$skip"),
    ("$top=%C2%B2", "$top"),  # '²' is a digit to str.isdigit, not to int()
    ("$skip=%D9%A1", "$skip"),  # an Arabic-Indic one: int() reads it, OData does not
    ("$count=yes", "$count"),
    ("$expand=Media", "$expand"),
    ("$search=pool", "$search"),
    ("$format=xml", "$format"),
    ("$top=1&$top=2", "$top"),
    ("min_confidence=2", "min_confidence"),
    ("min_confidence=nan", "min_confidence"),
]


async def test_a_bad_query_is_a_400_naming_the_option(world: World) -> None:
    await seed(world)
    for query, target in BAD_QUERIES:
        status, body = await call(world, f"{URI}/Property?{query}")
        assert status == 400, (query, body)
        assert body["error"]["target"] == target, query
        assert body["error"]["message"], query


async def test_more_of_filter(world: World) -> None:
    await seed(world)

    async def keys(condition: str) -> set[str]:
        status, body = await call(world, f"{URI}/Property?$select=ListingKey&$filter={condition}")
        assert status == 200, body
        return {item["ListingKey"] for item in body["value"]}

    assert await keys("City eq null") == set(SEED)
    assert await keys("BedroomsTotal eq null") == {"L4"}
    assert await keys("StandardStatus in ('Active', 'Pending')") == {"L2", "L6", "L7"}
    either = "(BedroomsTotal ge 3 or ListPrice lt 1) and not (StandardStatus eq null)"
    assert await keys(either) == {"abc123", "L2", "L3", "L6"}
    assert await keys("startswith(ListingKey, 'L') and endswith(ListingKey, '3')") == {"L3"}
    assert await keys("contains(tolower(StandardStatus), 'contract')") == {"abc123", "L4"}
    assert await keys("Appliances/any()") == {"abc123", "L2", "L5", "L6", "L7"}
    assert await keys("Appliances/any(a: a eq 'Dryer') and Appliances/any(a: a eq 'Dishwasher')")\
        == {"abc123", "L6"}  # fmt: skip
    assert await keys("length(Appliances) ge 2") == {"abc123", "L6"}
    assert await keys("ListPrice gt 350000.4 and ListPrice lt 350000.6") == {"L6"}
    assert await keys("ListPrice ge -1 and BedroomsTotal lt -0") == set()
    assert await keys("OriginalEntryTimestamp eq 2020-04-02T02:02:02.020Z") == {"abc123"}


async def test_each_tenant_reads_its_own(world: World) -> None:
    await seed(world)
    _status, body = await call(world, f"{URI}/Property?$select=ListingKey", tenant=B)
    assert [item["ListingKey"] for item in body["value"]] == ["OTHER"]


async def test_every_route_needs_an_api_key(world: World) -> None:
    for path in ("/", "/$metadata", "/Property", "/Property('abc123')", "/Nothing"):
        assert_problem(await world.client.get(f"{URI}{path}"), 401)


async def test_other_resources_and_unknown_ones(world: World) -> None:
    await world.hub.engine.apply(
        Change(
            tenant="acme", entity="Member",
            fields={"MemberKey": "M1", "MemberFullName": "Ada Agent",
                    "MemberType": "MlsOnlySalesperson"},
            origin=Origin(system="mls", connection="austin-mls", external_id="M1"),
        )
    )  # fmt: skip
    status, body = await call(world, f"{URI}/Member?$filter=MemberType eq 'MlsOnlySalesperson'")
    assert status == 200, body
    assert [item["MemberKey"] for item in body["value"]] == ["M1"]
    assert body["value"][0]["MemberFullName"] == "Ada Agent"
    assert (await call(world, f"{URI}/Office"))[1]["value"] == []
    assert (await call(world, f"{URI}/Media?$count=true"))[1]["@odata.count"] == 0
    for missing in ("ResourceNotFound", "property", "Listing", "Property('a')/City"):
        status, body = await call(world, f"{URI}/{missing}")
        assert (status, body["error"]["code"]) == (404, "404"), missing


async def test_the_lookup_resource_lists_the_values_records_carry(world: World) -> None:
    url = f"{URI}/Lookup?$filter=LookupName eq 'StandardStatus'&$orderby=LookupValue&$count=true"
    status, body = await call(world, url)
    assert status == 200, body
    values = {item["LookupValue"]: item for item in body["value"]}
    assert body["@odata.count"] == len(values) == 11
    assert values["ActiveUnderContract"]["StandardLookupValue"] == "Active Under Contract"
    assert list(values) == sorted(values)
    key = values["Closed"]["LookupKey"]
    status, body = await call(world, f"{URI}/Lookup('{key}')")
    assert (status, body["LookupValue"]) == (200, "Closed")


async def test_min_confidence_keeps_scored_records_at_or_above_it(world: World) -> None:
    await seed(world)
    status, body = await call(world, f"{URI}/Property?$select=ListingKey&min_confidence=1")
    assert status == 200
    assert len(body["value"]) == len(SEED)  # engine-applied changes score 1.0


async def test_the_count_path_answers_the_number_alone(world: World) -> None:
    await seed(world)
    response = await world.client.get(f"{URI}/Property/$count", headers=world.auth())
    assert (response.status_code, response.text) == (200, str(len(SEED)))
    assert response.headers["content-type"].startswith("text/plain")
    filtered = await world.client.get(
        f"{URI}/Property/$count?$filter=BedroomsTotal gt 1&$top=1", headers=world.auth()
    )
    assert filtered.text == str(len(FILTERED["filter-int-gt"]))  # $top does not cap a count
