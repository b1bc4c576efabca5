"""``RetsConnector`` against the RETS simulator over real HTTP on loopback, through the gateway
with HTTP Digest: login and session, re-login after expiry, windows under a row cap with Offset
ignored (every record exactly once), no records found, photos, metadata, keys, logout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadastre.connectors.mls.rets import CONNECTOR, RetsConnector, RetsSettings
from cadastre.errors import VendorAuthRefused
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.mapping import MappingRegistry
from cadastre.ports import RawPage
from cadastre.simulators import serve
from cadastre.simulators.rets import RetsSimulator
from cadastre.testing import FakeClock

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8",)


class DigestLogin:
    """The part of the vault's ``Password`` authenticator these tests need: a Digest flow."""

    def __init__(self, user: str, password: str) -> None:
        self.auth = httpx.DigestAuth(user, password)
        self.invalidated = 0

    async def flow(self) -> httpx.Auth:
        return self.auth

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        self.invalidated += 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW, autojump=True)


@pytest.fixture
async def running(
    clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RetsSimulator, str]]:
    extra = getattr(request, "param", {})  # simulator options, by indirect parametrization
    sim = RetsSimulator(records=300, seed=9, clock=clock, **extra)
    async with serve(sim.app) as server:
        yield sim, server.url


Make = Callable[..., RetsConnector]


@pytest.fixture
async def make(
    running: tuple[RetsSimulator, str], clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Make]:
    """Connectors to the running simulator, closed (logged out) after the test."""
    made: list[RetsConnector] = []
    url = running[1]
    mapper = MappingRegistry(tmp_path, {"mls/rets": CONNECTOR.family_mapping}).load("mls/rets")

    def connector(password: str = "demo-password", **config: Any) -> RetsConnector:  # noqa: S107
        gateway = Gateway(
            f"{url}/rets/login", VendorPolicy(vendor="rets", max_attempts=2), clock=clock,
            authenticator=DigestLogin("demo-user", password), allow_hosts=LOOPBACK,
        )  # fmt: skip
        settings = RetsSettings(login_url=f"{url}/rets/login", **config)
        made.append(RetsConnector(settings, gateway=gateway, mapper=mapper, clock=clock))
        return made[-1]

    yield connector
    for each in made:
        await each.aclose()


async def read_all(c: RetsConnector, cursor: dict[str, Any] | None = None) -> list[RawPage]:
    return [page async for page in c.read("Property", cursor)]


def keys_of(pages: list[RawPage]) -> list[str]:
    return [r.external_id for p in pages for r in p.records if r.external_id is not None]


async def test_a_full_read_logs_in_once_and_converts_local_times(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    c = make()
    pages = await read_all(c)
    assert sorted(keys_of(pages)) == sorted(sim.records)
    assert c.logins == 1
    assert sim.logins.logins == 1
    record = next(r for p in pages for r in p.records if r.external_id == "L0000001")
    local = sim.records["L0000001"]["ModificationTimestamp"]
    assert record.source_version == local
    assert record.source_time is not None
    assert record.source_time.utcoffset() is not None
    assert sim.local_time(record.source_time) == local
    assert record.data["ModificationTimestamp"] == record.source_time.isoformat()
    assert record.data["Status"] in {"Active", "Active Under Contract", "Pending", "Closed",
                                     "Expired", "Withdrawn"}  # fmt: skip
    await c.aclose()
    assert sim.stats.logouts == 1
    assert sim.logins.open_sessions == 0


async def test_an_incremental_read_takes_only_what_changed_after_the_cursor(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    c = make()
    full = await read_all(c)
    cursor = dict(full[-1].cursor)
    assert (await read_all(c, cursor))[0].records == []  # nothing new: an empty page, same cursor
    clock.advance(60)
    changed = sim.touch(count=4, changes={"ListPrice": 123000})
    again = await read_all(c, cursor)
    assert sorted(keys_of(again)) == sorted(changed)
    assert again[-1].cursor["ModificationTimestamp"] == sim.local_time(clock.now())
    assert sorted(again[-1].cursor["keys"]) == sorted(changed)
    # A record written later in that same second is read next time; the four are not.
    late = sim.touch(keys=["L0000007"])
    assert keys_of(await read_all(c, dict(again[-1].cursor))) == late
    await c.aclose()


async def test_a_row_cap_with_offset_ignored_is_walked_by_splitting_windows(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    sim.max_rows, sim.ignore_offset = 40, True
    c = make(page_size=100)  # the server caps below what we ask
    sim.stats.reset()
    pages = await read_all(c)
    keys = keys_of(pages)
    assert len(keys) == len(set(keys)) == 300  # every record, exactly once
    assert set(keys) == set(sim.records)
    assert all(len(p.records) <= 40 for p in pages)
    searches = sim.stats.searches
    assert 300 / 40 < searches < 120, searches  # capped windows cost a request each; no more
    stamps = [p.cursor["ModificationTimestamp"] for p in pages]
    assert stamps == sorted(stamps)  # windows come earliest first, so the cursor only advances


async def test_more_records_in_one_second_than_the_cap_need_offset(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    same = [f"L{n:07d}" for n in range(1, 61)]
    sim.touch(keys=same)  # sixty records in one second
    sim.max_rows = 25
    c = make()
    keys = keys_of(await read_all(c))  # Offset honoured: the second is paged
    assert sorted(keys) == sorted(sim.records)
    assert len(keys) == 300
    sim.ignore_offset = True
    with pytest.raises(Exception, match="ignores Offset"):
        await read_all(make())


async def test_an_expired_session_logs_in_again_once_and_carries_on(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    sim.max_rows = 50
    c = make()
    pages: list[RawPage] = []
    async for page in c.read("Property", None):
        pages.append(page)
        if len(pages) == 2:
            sim.logins.expire_all()  # the server forgets us mid-read
    assert sorted(keys_of(pages)) == sorted(sim.records)
    assert c.logins == 2
    assert sim.logins.expired_replies == 1


async def test_a_session_refused_right_after_login_is_an_auth_error(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    sim.logins.session_idle = 0  # every session is gone before it is used
    c = make()
    with pytest.raises(VendorAuthRefused, match="20701"):
        await read_all(c)
    assert c.logins == 2


async def test_a_wrong_password_is_refused(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    _, _url = running
    with pytest.raises(VendorAuthRefused):
        await read_all(make(password="wrong"))


async def test_no_records_found_is_an_empty_page_not_an_error(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    _sim, _url = running
    c = make()
    cursor = {"ModificationTimestamp": "2030-01-01T00:00:00", "keys": []}
    pages = await read_all(c, cursor)
    assert [(p.records, dict(p.cursor), p.problem) for p in pages] == [([], cursor, None)]


async def test_a_malformed_row_is_passed_on_with_a_problem(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    sim.malformed.add("L0000005")
    records = [r for p in await read_all(make()) for r in p.records]
    assert len(records) == 300
    bad = [r for r in records if r.problem is not None]
    assert len(bad) == 1
    assert "L0000005" in bad[0].data["row"]


async def test_photos_metadata_and_keys(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    c = make()
    key = next(k for k, r in sim.records.items() if int(r["PhotoCount"]) >= 2)
    photos = await c.photos(key)
    assert [p.object_id for p in photos] == [str(i) for i in range(1, len(photos) + 1)]
    assert len(photos) == int(sim.records[key]["PhotoCount"])
    assert all(p.content_type == "image/jpeg" and p.content.startswith(b"\xff\xd8") for p in photos)
    one = next(k for k, r in sim.records.items() if r["PhotoCount"] == "1")
    assert [p.object_id for p in await c.photos(one)] == ["1"]
    none = next(k for k, r in sim.records.items() if r["PhotoCount"] == "0")
    assert await c.photos(none) == []

    schema = await c.describe("Property")
    assert schema is not None
    assert schema.fields["ModificationTimestamp"] == "DateTime"
    assert "Active Under Contract" in schema.lookups["Status"]

    sim.max_rows = 70
    sim.delete(["L0000010", "L0000011"])
    listed = [k async for batch in c.keys("Property") for k in batch]
    assert sorted(listed) == sorted(sim.records)
    assert len(listed) == 298


async def test_media_records_come_with_the_listings_whose_photos_changed(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    c = make(media=True, media_batch=7)
    pages = await read_all(c)
    media = [r for p in pages for r in p.records if r.stream == "Media"]
    expected = sum(int(r["PhotoCount"]) for r in sim.records.values())
    assert len(media) == expected == len({r.external_id for r in media})
    photo = next(r for r in media if r.external_id == media[0].external_id)
    listing, _, index = str(photo.external_id).rpartition("-")
    assert photo.data["ResourceRecordKey"] == listing
    assert photo.data["Order"] == int(index)
    assert photo.source_time is not None
    assert sim.local_time(photo.source_time) == sim.records[listing]["PhotoTimestamp"]
    async with httpx.AsyncClient() as plain:  # the URL is the photo itself
        image = await plain.get(photo.data["MediaURL"])
    assert image.content.startswith(b"\xff\xd8")
    assert f"{listing}:{index}".encode() in image.content

    clock.advance(60)
    with_photos = [k for k, r in sim.records.items() if int(r["PhotoCount"]) >= 1]
    now = sim.local_time(clock.now())
    sim.touch(keys=with_photos[:2], changes={"PhotoTimestamp": now})
    sim.touch(keys=[with_photos[2]])  # changed, but not its photos
    again = await read_all(c, dict(pages[-1].cursor))
    listings = {
        r.data["ResourceRecordKey"] for p in again for r in p.records if r.stream == "Media"
    }
    assert listings == set(with_photos[:2])


# 01:30 CDT on the night the US leaves daylight time: 01:00-02:00 happens twice in Chicago.
@pytest.mark.parametrize("clock", [FakeClock(datetime(2026, 11, 1, 6, 30, tzinfo=UTC))])
async def test_a_record_written_in_the_repeated_hour_after_the_cursor_is_read(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    sim.touch(keys=["L0000001"])  # 01:30 CDT, the first time round
    c = make()
    cursor = dict((await read_all(c))[-1].cursor)
    assert cursor == {"ModificationTimestamp": "2026-11-01T01:30:00", "keys": ["L0000001"]}
    clock.advance(45 * 60)  # 01:15 CST: later, but the server's wall clock reads earlier
    late = sim.touch(keys=["L0000002"])
    assert sim.records["L0000002"]["ModificationTimestamp"] == "2026-11-01T01:15:00"
    assert late[0] in keys_of(await read_all(c, cursor))


async def test_a_server_ignoring_offset_is_caught_even_when_every_row_is_malformed(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    """Unreadable rows carry no key to see repeat; their text repeats all the same."""
    sim, _url = running
    same = [f"L{n:07d}" for n in range(1, 61)]
    sim.touch(keys=same)
    sim.malformed.update(same)  # every row of that second has a column too many
    sim.max_rows, sim.ignore_offset = 25, True
    with pytest.raises(Exception, match="ignores Offset"):
        await asyncio.wait_for(read_all(make()), timeout=20)


async def read_until(
    c: RetsConnector, cursor: dict[str, Any] | None, stop: Callable[[RawPage], bool]
) -> list[RawPage]:
    """The pages of a read up to the first one ``stop`` likes: a run that ends there."""
    pages: list[RawPage] = []
    reading = c.read("Property", cursor)
    try:
        async for page in reading:
            pages.append(page)
            if stop(page):
                break
    finally:
        await reading.aclose()  # type: ignore[attr-defined]  # an async generator
    return pages


@pytest.mark.parametrize("kind", ["text/plain", None])
async def test_not_logged_in_is_seen_whatever_content_type_the_reply_has(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make, kind: str | None
) -> None:
    sim, _url = running
    sim.reply_content_type = kind
    sim.max_rows = 50
    c = make()
    pages: list[RawPage] = []
    async for page in c.read("Property", None):
        pages.append(page)
        if len(pages) == 2:
            sim.logins.expire_all()  # the server forgets us mid-read
    assert sorted(keys_of(pages)) == sorted(sim.records)
    assert (c.logins, sim.logins.expired_replies) == (2, 1)
    # GetObject's replies are read by their body too; photos stay photos.
    none = next(k for k, r in sim.records.items() if r["PhotoCount"] == "0")
    assert await c.photos(none) == []
    one = next(k for k, r in sim.records.items() if r["PhotoCount"] == "1")
    (photo,) = await c.photos(one)
    assert photo.content.startswith(b"\xff\xd8")


@pytest.mark.parametrize("running", [{"millis": True}], indirect=True)
async def test_records_stamped_with_milliseconds_are_all_read_once(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    clock.advance(0.1)
    same = [f"L{n:07d}" for n in range(1, 41)]
    for key in same:  # forty records inside one second, 20 ms apart
        sim.touch(keys=[key])
        clock.advance(0.02)
    stamp = sim.records["L0000040"]["ModificationTimestamp"]
    assert stamp.endswith(".880")
    sim.max_rows = 25  # windows split down to that second, which is paged with Offset
    pages = await read_all(make())
    keys = keys_of(pages)
    assert len(keys) == len(set(keys)) == 300
    record = next(r for p in pages for r in p.records if r.external_id == "L0000040")
    assert record.source_time is not None
    assert sim.local_time(record.source_time) == stamp  # the milliseconds are kept
    sim.ignore_offset, sim.max_rows = True, 39  # halving alone: every window bound is exact
    clock.advance(1)
    sim.touch(keys=same[:30])  # thirty in the next second, ten left: each fits one answer
    keys = keys_of(await read_all(make()))
    assert len(keys) == len(set(keys)) == 300


async def test_an_unreadable_photo_answer_does_not_hold_the_listings_back(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    with_photos = sorted(k for k, r in sim.records.items() if int(r["PhotoCount"]) >= 1)
    broken = with_photos[3]
    sim.broken_photos.add(broken)
    c = make(media=True, media_batch=7)
    pages = await read_all(c)
    assert [p.problem for p in pages if p.problem is not None] == []
    listings = [r for p in pages for r in p.records if r.stream == "Property"]
    assert sorted(str(r.external_id) for r in listings) == sorted(sim.records)
    media = [r for p in pages for r in p.records if r.stream == "Media"]
    (bad,) = [r for r in media if r.problem is not None]  # quarantined, with the answer
    assert broken in str(bad.problem)
    assert bad.data["ResourceRecordKey"] == broken
    assert "Content-ID" in bad.data["answer"]
    good = {r.data["ResourceRecordKey"] for r in media if r.problem is None}
    assert good == set(with_photos) - {broken}  # the others in its batch are asked again
    cursor = dict(pages[-1].cursor)
    assert cursor["ModificationTimestamp"] == max(
        r["ModificationTimestamp"] for r in sim.records.values()
    )
    assert (await read_all(c, cursor))[0].records == []  # the next run is not stuck there


async def test_a_mass_update_in_one_second_is_paged_and_resumed_from_its_offset(
    running: tuple[RetsSimulator, str], clock: FakeClock, make: Make
) -> None:
    sim, _url = running
    same = [f"L{n:07d}" for n in range(1, 61)]
    sim.touch(keys=same)  # sixty records in one second
    second = sim.records[same[0]]["ModificationTimestamp"]
    sim.max_rows = 25
    c = make()
    first = await read_until(c, None, lambda p: "offset" in p.cursor)  # a run ends mid-second
    cut = dict(first[-1].cursor)
    assert cut == {"ModificationTimestamp": second, "keys": [], "offset": 25, "count": 60}
    rest = await read_all(c, cut)
    keys = keys_of(first) + keys_of(rest)
    assert len(keys) == len(set(keys)) == 300  # each record once across the two runs
    for page in first + rest:  # one answer at a time in memory, and no key list in the cursor
        assert len(page.records) <= 25
        assert len(page.cursor["keys"]) <= 25
    done = dict(rest[-1].cursor)
    assert done == {"ModificationTimestamp": second, "keys": [], "offset": 60, "count": 60}
    assert (await read_all(c, done))[0].records == []  # nothing new: past the offset, nothing

    # A record read before the cut moves on meanwhile: the others' offsets shift down one, so
    # the count tells, and the second is read whole again (duplicates, never a gap).
    clock.advance(5)
    moved = sim.touch(keys=[same[0]])
    again = keys_of(await read_all(c, cut))
    assert set(same) <= set(again)
    assert moved[0] in again
