"""``ResoConnector`` against scripted OData answers (httpx.MockTransport through the gateway)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cadastre.connectors.mls.reso import CONNECTOR, ResoConnector, ResoSettings
from cadastre.errors import VendorProtocolError, VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.mapping import MappingRegistry
from cadastre.ports import RawPage
from cadastre.testing import FakeClock

BASE = "https://mls.example/odata"
METADATA = b"""<?xml version="1.0"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0"><edmx:DataServices>
<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="X"><EntityType Name="Property">
<Property Name="ListingKey" Type="Edm.String"/><Property Name="ModificationTimestamp"
Type="Edm.DateTimeOffset"/><Property Name="ListPrice" Type="Edm.Decimal"/>
<Property Name="ACT_Pool" Type="Edm.Boolean"/><Property Name="Mystery" Type="Edm.String"/>
</EntityType></Schema></edmx:DataServices></edmx:Edmx>"""

Answer = Callable[[httpx.Request], httpx.Response]


def record(n: int, stamp: str = "2026-11-01T09:00:00.000Z") -> dict[str, Any]:
    return {"ListingKey": f"K{n:03d}", "ModificationTimestamp": stamp, "ListPrice": 100 + n}


def connector(
    answer: Answer, tmp_path: Path, metadata: httpx.Response | None = None, **config: Any
) -> tuple[ResoConnector, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/$metadata"):
            return metadata or httpx.Response(200, content=METADATA)
        return answer(request)

    (tmp_path / "m.yaml").write_text(
        "mapping: m\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
    )
    mapper = MappingRegistry(tmp_path, {"mls/reso": CONNECTOR.family_mapping}).load("m")
    clock = FakeClock(autojump=True)
    gateway = Gateway(BASE, VendorPolicy(vendor="reso", max_attempts=1), clock=clock,
                      transport=httpx.MockTransport(handler))  # fmt: skip
    settings = ResoSettings(base_url=BASE, **config)
    return ResoConnector(settings, gateway=gateway, mapper=mapper, clock=clock), seen


def page(
    items: list[Any], next_link: str | None = None, count: int | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"value": items}
    if next_link:
        body["@odata.nextLink"] = next_link
    if count is not None:
        body["@odata.count"] = count
    return httpx.Response(200, content=orjson.dumps(body))


async def pages(c: ResoConnector, cursor: dict[str, Any] | None = None) -> list[RawPage]:
    return [p async for p in c.read("Property", cursor)]


async def test_a_full_read_orders_by_the_pair_and_selects_what_the_mapping_uses(
    tmp_path: Path,
) -> None:
    answers = iter([page([record(1), record(2)], f"{BASE}/Property?$skiptoken=abc", count=3),
                    page([record(3)])])  # fmt: skip
    c, seen = connector(lambda r: next(answers), tmp_path, page_size=2)
    got = await pages(c)
    first = seen[1].url.params
    assert first["$orderby"] == "ModificationTimestamp,ListingKey"
    assert first["$top"] == "2"
    assert first["$count"] == "true"
    assert "$filter" not in first
    assert first["$select"].split(",") == [
        "ACT_Pool",
        "ListPrice",
        "ListingKey",
        "ModificationTimestamp",
    ]
    assert seen[2].url.params["$skiptoken"] == "abc"  # the nextLink, followed as given
    assert [r.external_id for p in got for r in p.records] == ["K001", "K002", "K003"]
    assert got[0].expected == 3
    assert got[-1].cursor == {
        "ModificationTimestamp": "2026-11-01T09:00:00.000000Z",
        "ListingKey": "K003",
    }


async def test_an_incremental_read_starts_an_overlap_before_its_cursor_and_never_moves_it_back(
    tmp_path: Path,
) -> None:
    old = record(1, "2026-11-01T08:58:00.000Z")  # inside the overlap, before the cursor
    c, seen = connector(lambda r: page([old]), tmp_path, overlap_seconds=300)
    cursor = {"ModificationTimestamp": "2026-11-01T09:00:00.000000Z", "ListingKey": "K900"}
    got = await pages(c, cursor)
    assert seen[1].url.params["$filter"] == "ModificationTimestamp ge 2026-11-01T08:55:00.000000Z"
    assert got[0].cursor == cursor  # the overlap page does not move the cursor back


async def test_keyset_paging_builds_the_next_query_from_the_last_record(tmp_path: Path) -> None:
    answers = iter([page([record(1), record(2)], f"{BASE}/Property?$skip=2"), page([])])
    c, seen = connector(lambda r: next(answers), tmp_path, paging="keyset", overlap_seconds=0)
    await pages(c)
    assert seen[2].url.params["$filter"] == (
        "ModificationTimestamp gt 2026-11-01T09:00:00.000000Z or "
        "(ModificationTimestamp eq 2026-11-01T09:00:00.000000Z and ListingKey gt 'K002')"
    )
    assert "$skip" not in seen[2].url.params


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"value": {"a": 1}}', b'{"odata": "no value"}', b"null",
     b"<html><body>502 Bad Gateway</body></html>", b'{"value": [{"ListingKey": "K1"'],
)  # fmt: skip
async def test_a_page_that_cannot_be_read_is_asked_again_then_handed_on_unreadable(
    tmp_path: Path, body: bytes
) -> None:
    answers = iter([page([record(1)], f"{BASE}/Property?$skiptoken=p2")])
    c, seen = connector(lambda r: next(answers, httpx.Response(200, content=body)), tmp_path,
                        page_attempts=3)  # fmt: skip
    got = await pages(c)
    assert [len(p.records) for p in got] == [1, 0]  # the read ends at the unreadable page
    bad = got[1]
    assert bad.problem is not None
    assert "not JSON" in bad.problem or "not an OData collection" in bad.problem
    assert bad.raw == body.decode()  # kept for the quarantine
    assert bad.cursor == got[0].cursor  # the cursor stays where the last good page left it
    assert [r.url.params.get("$skiptoken") for r in seen[2:]] == ["p2"] * 3  # asked 3 times


async def test_an_unreadable_page_keeps_at_most_256_kib_of_its_body(tmp_path: Path) -> None:
    body = b"<html>" + b"x" * 400_000
    c, _ = connector(lambda r: httpx.Response(200, content=body), tmp_path, page_attempts=1)
    (bad,) = await pages(c, {"ModificationTimestamp": "2026-11-01T09:00:00Z", "ListingKey": "K9"})
    assert bad.raw is not None
    assert len(bad.raw) == 256 * 1024
    assert bad.cursor == {
        "ModificationTimestamp": "2026-11-01T09:00:00.000000Z",
        "ListingKey": "K9",
    }


async def test_a_vendor_error_still_raises(tmp_path: Path) -> None:
    c, _ = connector(lambda r: httpx.Response(503, content=b"down"), tmp_path)
    with pytest.raises(VendorUnavailable):
        await pages(c)


async def test_a_next_link_to_another_host_is_refused(tmp_path: Path) -> None:
    c, seen = connector(
        lambda r: page([record(1)], "https://evil.example/odata/Property?x=1"), tmp_path
    )
    with pytest.raises(VendorProtocolError, match="leaves the service"):
        await pages(c)
    assert all(r.url.host == "mls.example" for r in seen)


async def test_items_that_are_not_records_are_passed_on_with_a_problem(tmp_path: Path) -> None:
    items = [record(1), ["a", "list"], {"ModificationTimestamp": "yesterday", "ListingKey": 7},
             {"ListingKey": "  ", "ModificationTimestamp": "2026-11-01T09:00:00Z"}]  # fmt: skip
    c, _ = connector(lambda r: page(items), tmp_path)
    (got,) = await pages(c)
    assert len(got.records) == 4  # nothing dropped
    assert got.records[1].problem == "not a record: a JSON list"
    assert got.records[2].external_id == "7"
    assert got.records[2].source_time is None
    assert got.records[3].external_id is None


@pytest.mark.parametrize(
    "metadata",
    [
        httpx.Response(404),
        httpx.Response(200, content=b"<not xml"),
        httpx.Response(200, content=METADATA.replace(b'Name="Property"', b'Name="Member"')),
    ],
)
async def test_without_usable_metadata_nothing_is_selected(
    tmp_path: Path, metadata: httpx.Response
) -> None:
    c, seen = connector(lambda r: page([record(1)]), tmp_path, metadata=metadata)
    (got,) = await pages(c)
    assert "$select" not in seen[-1].url.params
    assert got.records[0].external_id == "K001"


@pytest.mark.parametrize("link", ["Property?$skiptoken=abc", "/odata/Property?$skiptoken=abc",
                                  "?$skiptoken=abc"])  # fmt: skip
async def test_a_relative_next_link_is_resolved_against_the_request(
    tmp_path: Path, link: str
) -> None:
    answers = iter([page([record(1)], link), page([record(2)])])
    c, seen = connector(lambda r: next(answers), tmp_path)
    got = await pages(c)
    assert [r.external_id for p in got for r in p.records] == ["K001", "K002"]
    assert str(seen[2].url).startswith(f"{BASE}/Property?")
    assert seen[2].url.params["$skiptoken"] == "abc"


async def test_a_relative_next_link_to_another_host_is_still_refused(tmp_path: Path) -> None:
    c, seen = connector(lambda r: page([record(1)], "//evil.example/odata/Property"), tmp_path)
    with pytest.raises(VendorProtocolError, match="leaves the service"):
        await pages(c)
    assert all(r.url.host == "mls.example" for r in seen)


@pytest.mark.parametrize("paging", ["next_link", "keyset"])
async def test_an_empty_page_that_links_on_is_followed(tmp_path: Path, paging: str) -> None:
    # A vendor that filters after paging: the page is empty, but the read is not over.
    answers = iter([page([], f"{BASE}/Property?$skiptoken=1"),
                    page([], f"{BASE}/Property?$skiptoken=2"), page([record(1)])])  # fmt: skip
    c, _ = connector(lambda r: next(answers), tmp_path, paging=paging)
    got = await pages(c)
    assert [r.external_id for p in got for r in p.records] == ["K001"]
    assert all(p.problem is None for p in got)
    assert got[-1].cursor["ListingKey"] == "K001"


async def test_empty_pages_that_link_on_forever_end_the_read_as_unreadable(
    tmp_path: Path,
) -> None:
    # Served at the same place every read, they would stall the stream silently.
    c, seen = connector(lambda r: page([], f"{BASE}/Property?$skiptoken=same"), tmp_path,
                        empty_pages=4)  # fmt: skip
    cursor = {"ModificationTimestamp": "2026-11-01T09:00:00.000000Z", "ListingKey": "K9"}
    got = await pages(c, cursor)
    assert len(seen) == 1 + 4  # $metadata, then four empty pages
    assert [p.problem for p in got[:-1]] == [None] * 4  # each empty page, then the problem
    bad = got[-1]
    assert bad.problem is not None
    assert "4 empty pages in a row" in bad.problem
    assert bad.records == []
    assert bad.cursor == cursor
