"""``ResoConnector``'s keys-only listing, schema description, Media, overlap from the mapping and
mass-update pacing, against scripted OData answers (httpx.MockTransport through the gateway)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from cadastre.connectors.mls.reso import CONNECTOR, ResoConnector, ResoSettings
from cadastre.errors import VendorError, VendorProtocolError
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.mapping import MappingRegistry
from cadastre.ports import RawPage
from cadastre.simulators.reso.media import query_media
from cadastre.testing import FakeClock

BASE = "https://mls.example/odata"
METADATA = b"""<?xml version="1.0"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0"><edmx:DataServices>
<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="org.reso.metadata.enums">
<EnumType Name="StandardStatus"><Member Name="Active"/><Member Name="Closed"/></EnumType>
</Schema>
<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="org.reso.metadata">
<EntityType Name="Property"><Property Name="ListingKey" Type="Edm.String"/>
<Property Name="ModificationTimestamp" Type="Edm.DateTimeOffset"/>
<Property Name="PhotosChangeTimestamp" Type="Edm.DateTimeOffset"/>
<Property Name="ListPrice" Type="Edm.Decimal"/>
<Property Name="StandardStatus" Type="org.reso.metadata.enums.StandardStatus"/>
</EntityType>
<EntityType Name="Media"><Property Name="MediaKey" Type="Edm.String"/></EntityType>
</Schema></edmx:DataServices></edmx:Edmx>"""
T0 = "2026-11-01T09:00:00.000Z"
CURSOR = {"ModificationTimestamp": "2026-11-01T09:00:00.000000Z", "ListingKey": "K000"}


def listing(n: int, stamp: str = "2026-11-01T10:00:00.000Z", photos: str = T0) -> dict[str, Any]:
    return {"ListingKey": f"K{n:03d}", "ModificationTimestamp": stamp, "ListPrice": 100 + n,
            "PhotosChangeTimestamp": photos}  # fmt: skip


def photo(listing_key: str, i: int) -> dict[str, Any]:
    return {"MediaKey": f"{listing_key}-{i}", "ResourceRecordKey": listing_key,
            "MediaModificationTimestamp": T0, "MediaURL": f"https://x.example/{i}"}  # fmt: skip


def body(items: list[Any], next_link: str | None = None, count: int | None = None) -> bytes:
    out: dict[str, Any] = {"value": items}
    if next_link:
        out["@odata.nextLink"] = next_link
    if count is not None:
        out["@odata.count"] = count
    return orjson.dumps(out)


class Script:
    """Answers by resource, recording every request and the fake clock's time it was sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.seen: list[tuple[float, httpx.Request]] = []
        self.property: list[bytes] = []
        self.media: list[bytes] = []
        self.total: int | None = None
        self.total_status = 200  # what the `$top=0` total is answered with
        self.media_server: Callable[[httpx.Request], httpx.Response] | None = None
        self.metadata = METADATA

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((self.clock.monotonic(), request))
        path = request.url.path
        if path.endswith("/$metadata"):
            return httpx.Response(200, content=self.metadata)
        if path.endswith("/Media"):
            if self.media_server is not None:
                return self.media_server(request)
            return httpx.Response(200, content=self.media.pop(0))
        if request.url.params.get("$top") == "0":
            if self.total_status != 200:
                return httpx.Response(self.total_status, content=b'{"error": "$top=0"}')
            return httpx.Response(200, content=body([], count=self.total))
        page = self.property.pop(0)
        return httpx.Response(503) if page == b"503" else httpx.Response(200, content=page)

    def requests(self, resource: str) -> list[httpx.Request]:
        return [r for _, r in self.seen if r.url.path.endswith(f"/{resource}")]


def build(tmp_path: Path, mapping: str = "", **config: Any) -> tuple[ResoConnector, Script]:
    (tmp_path / "m.yaml").write_text(f"mapping: m\nversion: 1\nextends: mls/reso\n{mapping}")
    families = {"mls/reso": CONNECTOR.family_mapping, **CONNECTOR.family_mappings}
    mapper = MappingRegistry(tmp_path, families).load("m")
    clock = FakeClock(autojump=True)
    script = Script(clock)
    gateway = Gateway(BASE, VendorPolicy(vendor="reso", max_attempts=1), clock=clock,
                      transport=httpx.MockTransport(script))  # fmt: skip
    settings = ResoSettings(base_url=BASE, **config)
    return ResoConnector(settings, gateway=gateway, mapper=mapper, clock=clock), script


async def read(c: ResoConnector, cursor: dict[str, Any] | None = None) -> list[RawPage]:
    return [p async for p in c.read("Property", cursor)]


async def test_keys_are_listed_by_key_alone_in_keyset_pages(tmp_path: Path) -> None:
    c, script = build(tmp_path, keys_page_size=2)
    script.property = [body([{"ListingKey": "A1"}, {"ListingKey": "B2"}]),
                       body([{"ListingKey": "C3"}])]  # fmt: skip
    pages = [list(p) async for p in c.keys("Property")]
    assert pages == [["A1", "B2"], ["C3"]]
    first, second = script.requests("Property")
    assert first.url.params["$select"] == "ListingKey"
    assert first.url.params["$orderby"] == "ListingKey"
    assert first.url.params["$top"] == "2"
    assert "$filter" not in first.url.params
    assert second.url.params["$filter"] == "ListingKey gt 'B2'"


async def test_an_unreadable_key_page_raises_rather_than_listing_half_the_keys(
    tmp_path: Path,
) -> None:
    c, script = build(tmp_path, keys_page_size=1, page_attempts=2)
    script.property = [body([{"ListingKey": "A1"}]), b"<html>oops</html>", b"<html>oops</html>"]
    with pytest.raises(VendorProtocolError, match="not JSON"):
        _ = [p async for p in c.keys("Property")]


async def test_describe_reads_field_types_and_declared_lookups(tmp_path: Path) -> None:
    c, _ = build(tmp_path)
    schema = await c.describe("Property")
    assert schema is not None
    assert schema.fields["ListPrice"] == "Edm.Decimal"
    assert schema.fields["StandardStatus"] == "org.reso.metadata.enums.StandardStatus"
    assert schema.lookups == {"StandardStatus": frozenset({"Active", "Closed"})}
    media = await c.describe("Media")
    assert media is not None
    assert list(media.fields) == ["MediaKey"]
    assert await c.describe("OpenHouse") is None  # not declared: nothing known, not "no fields"


async def test_expanded_media_become_media_records_of_the_same_page(tmp_path: Path) -> None:
    c, script = build(tmp_path, media="expand", expand_page_size=500)
    first = {**listing(1), "Media": [photo("K001", 1), photo("K001", 2)]}
    script.property = [body([first, {**listing(2), "Media": []}])]
    (page,) = await read(c)
    request = script.requests("Property")[0]
    assert request.url.params["$expand"] == "Media"
    assert request.url.params["$top"] == "500"
    assert [(r.stream, r.external_id) for r in page.records] == [
        ("Property", "K001"), ("Property", "K002"), ("Media", "K001-1"), ("Media", "K001-2"),
    ]  # fmt: skip
    assert "Media" not in page.records[0].data  # the listing is mapped without them
    assert page.records[2].source_time is not None


async def test_the_media_resource_is_asked_only_for_listings_whose_photos_moved(
    tmp_path: Path,
) -> None:
    c, script = build(tmp_path, media="resource", overlap_seconds=0)
    moved = listing(1, photos="2026-11-01T10:00:00.000Z")
    still = listing(2, photos="2026-10-01T10:00:00.000Z")  # before the cursor: not asked
    script.property = [body([moved, still]), body([])]
    script.media = [
        body([photo("K001", 1)], f"{BASE}/Media?$skiptoken=x"),
        body([photo("K001", 2)]),
    ]
    pages = await read(c, CURSOR)
    (media_request, next_media) = script.requests("Media")
    assert media_request.url.params["$filter"] == "(ResourceRecordKey eq 'K001')"
    assert next_media.url.params["$skiptoken"] == "x"
    assert [r.external_id for r in pages[0].records if r.stream == "Media"] == ["K001-1", "K001-2"]


async def test_a_full_read_asks_media_for_every_listing_in_batches(tmp_path: Path) -> None:
    c, script = build(tmp_path, media="resource", media_batch=2)
    script.property = [body([listing(1), listing(2), listing(3)])]
    script.media = [body([photo("K001", 1)]), body([])]
    (page,) = await read(c)
    filters = [r.url.params["$filter"] for r in script.requests("Media")]
    assert filters == [
        "(ResourceRecordKey eq 'K001' or ResourceRecordKey eq 'K002')",
        "(ResourceRecordKey eq 'K003')",
    ]
    assert [r.stream for r in page.records] == ["Property"] * 3 + ["Media"]


async def test_an_unreadable_media_page_makes_the_whole_page_unreadable(tmp_path: Path) -> None:
    c, script = build(tmp_path, media="resource", page_attempts=1)
    script.property = [body([listing(1)])]
    script.media = [b"<html>502</html>"]
    (page,) = await read(c)
    assert page.records == []
    assert page.problem is not None
    assert page.raw == "<html>502</html>"


@pytest.mark.parametrize(("configured", "expected"), [(None, 20 * 60), (60, 60)])
async def test_the_overlap_comes_from_the_mapping_unless_the_connection_says(
    tmp_path: Path, configured: float | None, expected: float
) -> None:
    mapping = "refresh: {every_minutes: 15, overlap_minutes: 20}\n"
    config = {} if configured is None else {"overlap_seconds": configured}
    c, script = build(tmp_path, mapping, **config)
    script.property = [body([])]
    await read(c, CURSOR)
    start = 9 * 3600 - expected
    when = f"{start // 3600:02.0f}:{start % 3600 // 60:02.0f}:00"
    assert script.requests("Property")[0].url.params["$filter"] == (
        f"ModificationTimestamp ge 2026-11-01T{when}.000000Z"
    )


async def test_a_mass_update_is_detected_and_paced(tmp_path: Path) -> None:
    c, script = build(tmp_path, mass_update_records=4, mass_update_share=0.5,
                      mass_update_page_seconds=5.0, page_size=2)  # fmt: skip
    script.total = 8
    links = [f"{BASE}/Property?$skiptoken={i}" for i in range(3)]
    script.property = [body([listing(1), listing(2)], links[0], count=7),
                       body([listing(3), listing(4)], links[1]),
                       body([listing(5), listing(6)], links[2]), body([listing(7)])]  # fmt: skip
    pages = await read(c, CURSOR)
    assert sum(len(p.records) for p in pages) == 7
    update = c.mass_updates["Property"]
    assert (update.changed, update.total, update.page_seconds) == (7, 8, 5.0)
    times = [t for t, r in script.seen if r.url.path.endswith("/Property")]
    assert len(times) == 5  # four pages and the total's count, asked once the first page said 7
    paged = times[2:]  # the pages after the bump was noticed
    assert [b - a for a, b in itertools.pairwise(paged)] == [5.0, 5.0]


@pytest.mark.parametrize(("count", "total"), [(3, 6), (5, 100)])
async def test_an_ordinary_incremental_read_is_not_paced(
    tmp_path: Path, count: int, total: int
) -> None:
    c, script = build(tmp_path, mass_update_records=4, mass_update_page_seconds=5.0, page_size=2)
    script.total = total
    script.property = [body([listing(1)], f"{BASE}/Property?$skiptoken=1", count=count),
                       body([listing(2)])]  # fmt: skip
    await read(c, CURSOR)
    assert c.mass_updates == {}
    times = [t for t, r in script.seen if r.url.path.endswith("/Property")]
    assert times[-1] - times[0] < 5.0


async def test_a_mass_update_read_again_after_a_failure_stays_paced_and_reported(
    tmp_path: Path,
) -> None:
    # The runner reads again from the last committed page after a 5xx. What is left of the bump
    # (4 of 10) is under the share on its own, but it is the same bump: still paced, still
    # reported, with the count the bump began with.
    c, script = build(tmp_path, mass_update_records=4, mass_update_share=0.5,
                      mass_update_page_seconds=5.0, page_size=3)  # fmt: skip
    script.total = 10
    links = [f"{BASE}/Property?$skiptoken={i}" for i in range(3)]
    # the second page is a 503 (the script has no answer left for it)
    script.property = [body([listing(1), listing(2), listing(3)], links[0], count=7), b"503"]
    pages: list[RawPage] = []

    async def until_it_fails() -> None:
        async for page in c.read("Property", CURSOR):
            pages.append(page)  # noqa: PERF401 - the pages read before the failure are kept

    with pytest.raises(VendorError, match="503"):
        await until_it_fails()
    assert c.mass_updates["Property"].changed == 7
    resumed = dict(pages[-1].cursor)
    script.property = [body([listing(4), listing(5)], links[1], count=4),
                       body([listing(6), listing(7)], links[2]), body([])]  # fmt: skip
    script.seen.clear()
    again = [p async for p in c.read("Property", resumed)]
    assert sum(len(p.records) for p in again) == 4
    update = c.mass_updates["Property"]
    assert (update.changed, update.total) == (7, 10)
    times = [t for t, r in script.seen if r.url.path.endswith("/Property")]
    assert [b - a for a, b in itertools.pairwise(times)] == [5.0, 5.0]


async def test_photos_changed_on_the_cursors_own_timestamp_are_asked_for(tmp_path: Path) -> None:
    # The last sync stopped at (09:00, K000); K001 shares that timestamp, comes after it, and its
    # photos changed at that instant: it was never read, so neither were its photos.
    c, script = build(tmp_path, media="resource", overlap_seconds=0)
    script.property = [body([listing(1, stamp=T0, photos=T0)]), body([])]
    script.media = [body([photo("K001", 1)])]
    pages = await read(c, CURSOR)
    assert script.requests("Property")[0].url.params["$filter"] == (
        "ModificationTimestamp gt 2026-11-01T09:00:00.000000Z or "
        "(ModificationTimestamp eq 2026-11-01T09:00:00.000000Z and ListingKey gt 'K000')"
    )
    assert [r.external_id for p in pages for r in p.records if r.stream == "Media"] == ["K001-1"]


async def test_select_keeps_the_unknown_fields_a_mapping_keeps_local(tmp_path: Path) -> None:
    # `unknown_fields: local` keeps every field it does not map: $select must ask for them.
    c, script = build(tmp_path, "unknown_fields: local\nfields: {ListPrice: null}\n")
    extra = b'<Property Name="XyzLotView" Type="Edm.String"/>\n</EntityType>'
    script.metadata = METADATA.replace(b"</EntityType>", extra, 1)
    script.property = [body([])]
    await read(c)
    selected = script.requests("Property")[0].url.params["$select"].split(",")
    assert "XyzLotView" in selected
    assert "ListPrice" not in selected  # the file drops it


async def test_a_key_list_never_ends_early_on_a_page_without_keys(tmp_path: Path) -> None:
    # Half a key list would look like deletions. Media: a page whose items carry no key is
    # walked past (its next link is followed); an empty page that still links on is refused.
    c, script = build(tmp_path, media="resource")
    script.media = [body([{"MediaKey": None}], f"{BASE}/Media?$skiptoken=1"),
                    body([photo("K001", 1)])]  # fmt: skip
    assert [list(p) async for p in c.keys("Media")] == [["K001-1"]]
    script.media = [body([photo("K001", 1)], f"{BASE}/Media?$skiptoken=1"),
                    body([], f"{BASE}/Media?$skiptoken=2")]  # fmt: skip
    with pytest.raises(VendorProtocolError, match="empty page"):
        _ = [p async for p in c.keys("Media")]
    # The main resource is walked from the last key: a full page without one cannot be passed.
    c, script = build(tmp_path, keys_page_size=2)
    script.property = [body([{"ListingKey": "A1"}, {"ListingKey": "B2"}]),
                       body([{"ListingKey": None}, {"ListingKey": " "}])]  # fmt: skip
    with pytest.raises(VendorProtocolError, match="without a key"):
        _ = [p async for p in c.keys("Property")]


class OffsetMedia:
    """A Media resource ordered by (MediaModificationTimestamp, MediaKey) whose nextLink is
    offset-based (``$skip``), as on many servers; ``$filter`` is the simulator's own."""

    def __init__(self, items: list[dict[str, Any]], top: int) -> None:
        self.items = items
        self.top = top
        self.served = 0
        self.between: Callable[[], None] | None = None  # run after the first page is served

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.served == 1 and self.between is not None:
            self.between()
        self.served += 1
        options = dict(request.url.params)
        skip = int(options.pop("$skip", "0"))
        top = min(int(options.pop("$top", str(self.top))), self.top)
        ordered = sorted(self.items, key=lambda m: (m["MediaModificationTimestamp"],
                                                    m["MediaKey"]))  # fmt: skip
        matching = query_media(ordered, options, default_top=10**6, max_top=10**6).value
        link = None
        if len(matching) > skip + top:
            link = f"{BASE}/Media?" + urlencode({**options, "$top": top, "$skip": skip + top})
        return httpx.Response(200, content=body(matching[skip : skip + top], link))


async def test_media_keys_are_keyset_paged_so_a_photo_changed_meanwhile_is_never_skipped(
    tmp_path: Path,
) -> None:
    # Five photos, two a page. Once the first page is served, M-A changes (it moves to the end):
    # an offset-based nextLink ($skip=2) would now skip M-C, and reconciliation would tombstone it.
    c, script = build(tmp_path, keys_page_size=2)
    items = [{**photo("K001", 0), "MediaKey": f"M-{k}"} for k in "ABCDE"]
    server = OffsetMedia(items, top=2)

    def change() -> None:
        items[0]["MediaModificationTimestamp"] = "2026-11-01T11:00:00.000Z"

    server.between = change
    script.media_server = server
    listed = [key for page in [p async for p in c.keys("Media")] for key in page]
    assert set(listed) == {"M-A", "M-B", "M-C", "M-D", "M-E"}  # M-A seen twice at worst
    requests = script.requests("Media")
    assert all("$skip" not in r.url.params for r in requests)
    assert requests[0].url.params["$orderby"] == "MediaModificationTimestamp,MediaKey"
    assert requests[1].url.params["$filter"] == (
        "MediaModificationTimestamp gt 2026-11-01T09:00:00.000000Z or "
        "(MediaModificationTimestamp eq 2026-11-01T09:00:00.000000Z and MediaKey gt 'M-B')"
    )


async def test_a_refused_total_only_turns_mass_update_detection_off_for_the_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A vendor that answers `$top=0` with a 4xx: the read goes on, unpaced, and says so once.
    c, script = build(tmp_path, mass_update_records=2, page_size=2, mass_update_page_seconds=5.0)
    script.total_status = 400
    for _ in range(2):
        script.property = [body([listing(1), listing(2)], f"{BASE}/Property?$skiptoken=1",
                                count=3), body([listing(3)])]  # fmt: skip
        with caplog.at_level(logging.DEBUG, logger="cadastre.connectors.mls.reso.connector"):
            pages = await read(c, CURSOR)
        assert sum(len(p.records) for p in pages) == 3
        assert all(p.problem is None for p in pages)
        assert c.mass_updates == {}
    warned = [r for r in caplog.records if "was refused" in r.message]
    assert [r.levelno for r in warned] == [logging.WARNING, logging.DEBUG]  # logged once
    times = [t for t, r in script.seen if r.url.path.endswith("/Property")]
    assert times[-1] - times[0] < 5.0  # not paced
