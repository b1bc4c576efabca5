"""Tolerant ingestion: every kind of bad vendor data becomes a quarantine entry with a code, the
raw payload and the stream, never a crash and never a lost record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from cadastre.mapping import RecordMapper
from cadastre.ownership import load_registry
from cadastre.ports import RawPage, RawRecord
from cadastre.sync import SyncEngine, SyncReport, SyncRunner
from cadastre.testing import EPOCH, FakeClock, FakeStore

from .conftest import TENANT, CountingStore

Item = dict[str, Any]


def item(n: int, minute: float, **over: Any) -> Item:
    stamp = (EPOCH + timedelta(minutes=minute)).isoformat()
    return {"ListingKey": f"L{n:04d}", "ModificationTimestamp": stamp, "StandardStatus": "Active",
            "ListPrice": 100_000 + n, "City": "Austin", **over}  # fmt: skip


def raw(stream: str, data: Any, key: str = "ListingKey", time: str = "ModificationTimestamp"):
    if not isinstance(data, dict):
        return RawRecord(stream, None, {"value": data}, None, problem="not a record")
    from datetime import datetime

    stamp = data.get(time)
    return RawRecord(stream, data.get(key), data,
                     datetime.fromisoformat(stamp) if isinstance(stamp, str) else None,
                     stamp if isinstance(stamp, str) else None)  # fmt: skip


class PagesConnector:
    """Serves prepared pages in order; a page given as a string is served as unreadable (that
    body), as many times as ``broken_reads`` allows, and read normally (``fixed``) after."""

    system = "mls"

    def __init__(self, pages: list[list[Any] | str], *, fixed: dict[int, list[Any]] | None = None,
                 broken_reads: int = 1_000) -> None:  # fmt: skip
        self.pages = pages
        self.fixed = fixed or {}
        self.broken_reads = broken_reads
        self.reads: list[Mapping[str, Any] | None] = []

    def streams(self) -> Sequence[str]:
        return ["Property"]

    async def aclose(self) -> None:
        return None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        self.reads.append(cursor)
        start = int(cursor["page"]) if cursor else 0
        for index in range(start, len(self.pages)):
            page = self.pages[index]
            if isinstance(page, str):
                if self.broken_reads > 0:
                    self.broken_reads -= 1
                    yield RawPage(stream, [], dict(cursor or {}), problem="not JSON", raw=page)
                    return
                page = self.fixed[index]
            records = [raw(stream, d) for d in page]
            yield RawPage(stream, records, {"page": index + 1})


async def sync(parts, connector, mappers: Mapping[str, RecordMapper]) -> SyncReport:
    store, clock, engine = parts
    runner = SyncRunner(engine, store, clock)
    return await runner.run(tenant=TENANT, connection="mls1", connector=connector,
                            mappers=mappers)  # fmt: skip


async def held(store: FakeStore) -> list[Any]:
    async with store.unit_of_work(TENANT) as uow:
        return await uow.quarantine.open_items("mls1")


async def stored(store: FakeStore, key: str) -> Any:
    async with store.unit_of_work(TENANT) as uow:
        canonical = await uow.xref.resolve("mls", "mls1", "Listing", key)
        return canonical and await uow.records.get("Listing", canonical)


def balanced(report: SyncReport) -> bool:
    tally = report.tally
    return tally.fetched == tally.stored + tally.quarantined


async def test_copies_of_one_key_in_a_page_keep_the_newest(parts, mapper) -> None:
    page = [
        item(1, 5, ListPrice=1),
        item(1, 9, ListPrice=2),
        item(1, 7, ListPrice=3),  # 9 wins
        item(2, 4, ListPrice=4),
        item(2, 4, ListPrice=4),  # identical copies: a duplicate
        item(3, 6, ListPrice=5),
        item(3, 6, ListPrice=6),  # a tie: the later copy wins
        item(4, 1),
    ]
    report = await sync(parts, PagesConnector([page]), {"Property": mapper})
    store = parts[0]
    assert (await stored(store, "L0001")).data["ListPrice"] == "2"
    assert (await stored(store, "L0002")).data["ListPrice"] == "4"
    assert (await stored(store, "L0003")).data["ListPrice"] == "6"
    entries = await held(store)
    assert sorted((q.external_id, q.payload["ListPrice"]) for q in entries) == [
        ("L0001", 1), ("L0001", 3), ("L0003", 5),
    ]  # fmt: skip
    assert {(q.code, q.stream) for q in entries} == {("duplicate_in_page", "Property")}
    assert all("more than once in one page" in q.reason for q in entries)
    tally = report.tally
    assert (tally.created, tally.duplicates, tally.quarantined) == (4, 1, 3)
    assert tally.reasons == {"duplicate_in_page": 3}
    assert balanced(report)


async def test_an_older_copy_after_identical_newer_ones_drops_alone(parts, mapper) -> None:
    page = [item(1, 3, ListPrice=1), item(1, 3, ListPrice=1), item(1, 8, ListPrice=2)]
    report = await sync(parts, PagesConnector([page]), {"Property": mapper})
    entries = await held(parts[0])
    # both copies of the older one, set aside as one entry (the same payload) seen twice
    assert [(q.payload["ListPrice"], q.sightings) for q in entries] == [(1, 2)]
    assert (await stored(parts[0], "L0001")).data["ListPrice"] == "2"
    assert report.tally.quarantined == 2
    assert balanced(report)


async def test_a_timestamp_going_backwards_is_quarantined_not_applied(parts, mapper) -> None:
    pages: list[list[Any] | str] = [
        [item(1, 10, ListPrice=10), item(2, 10)],
        [item(1, 4, ListPrice=4), item(2, 10), item(3, 11)],  # L1 older; L2 the same again
    ]
    report = await sync(parts, PagesConnector(pages), {"Property": mapper})
    store = parts[0]
    assert (await stored(store, "L0001")).data["ListPrice"] == "10"  # not regressed
    (entry,) = await held(store)
    assert (entry.code, entry.external_id, entry.stream) == ("timestamp_backwards", "L0001",
                                                              "Property")  # fmt: skip
    assert entry.payload["ListPrice"] == 4  # the raw payload as sent
    assert "older than the stored version" in entry.reason
    tally = report.tally
    assert (tally.created, tally.duplicates, tally.quarantined) == (3, 1, 1)
    assert tally.reasons == {"timestamp_backwards": 1}
    assert balanced(report)
    async with store.unit_of_work(TENANT) as uow:  # nothing of it recorded as a refusal
        refusals = [e async for e in uow.audit.entries() if e.action == "write.refused"]
    assert refusals == []


async def test_an_equal_timestamp_with_new_content_is_an_update(parts, mapper) -> None:
    pages: list[list[Any] | str] = [[item(1, 10, ListPrice=10)], [item(1, 10, ListPrice=11)]]
    report = await sync(parts, PagesConnector(pages), {"Property": mapper})
    assert (await stored(parts[0], "L0001")).data["ListPrice"] == "11"
    assert report.tally.updated == 1
    assert await held(parts[0]) == []


async def test_a_malformed_page_is_set_aside_and_ends_the_stream_for_the_run(parts, mapper):
    body = '{"value": [{"ListingKey": "L0003", '  # cut off
    later = [item(3, 3), item(4, 4)]
    connector = PagesConnector([[item(1, 1), item(2, 2)], body, [item(5, 5)]], fixed={1: later})
    store = parts[0]
    report = await sync(parts, connector, {"Property": mapper})
    assert report.tally.created == 2
    assert report.tally.unreadable_pages == 1
    assert report.tally.reasons == {"malformed_page": 1}
    assert report.unread == {"Property": "not JSON"}
    assert report.cursors["Property"] == {"page": 1}  # unchanged past the bad page
    (entry,) = await held(store)
    assert (entry.code, entry.stream, entry.external_id) == ("malformed_page", "Property", None)
    assert entry.payload["body"] == body
    assert "not JSON" in entry.reason
    async with store.unit_of_work(TENANT) as uow:
        cursor = await uow.cursors.get("mls1", "Property")
    assert cursor is not None
    assert cursor.value == {"page": 1}

    again = await sync(parts, connector, {"Property": mapper})  # still broken upstream
    assert connector.reads[-1] == {"page": 1}
    assert again.tally.unreadable_pages == 1
    assert len(await held(store)) == 1  # the same body is not set aside twice

    connector.broken_reads = 0  # the vendor mends it
    fixed = await sync(parts, connector, {"Property": mapper})
    assert fixed.tally.created == 3
    assert fixed.unread == {}
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") == 5


async def test_records_of_another_stream_in_a_page_take_their_own_mapping(
    parts, mapper, mappings, tmp_path: Path
) -> None:
    (tmp_path / "other.yaml").write_text(
        "mapping: other\nversion: 1\nextends: mls/reso\nstream: Other\nkey: OtherKey\n"
        "fields: {OtherKey: null}\n"
    )
    other = mappings.load("other")
    page = [item(1, 1)]
    connector = PagesConnector([page])

    async def read(stream, cursor):
        records = [raw(stream, page[0]),
                   raw("Other", {**item(2, 2), "OtherKey": "O2"}, key="OtherKey"),
                   raw("Other", {**item(3, 3), "OtherKey": "O3", "StandardStatus": "Nope"},
                       key="OtherKey")]  # fmt: skip
        yield RawPage(stream, records, {"page": 1})

    connector.read = read  # type: ignore[method-assign]
    report = await sync(parts, connector, {"Property": mapper, "Other": other})
    assert report.tally.created == 2
    async with parts[0].unit_of_work(TENANT) as uow:
        assert await uow.xref.resolve("mls", "mls1", "Listing", "O2") is not None
    (entry,) = await held(parts[0])
    assert (entry.external_id, entry.stream, entry.code) == ("O3", "Other", "unknown_enum_value")


async def test_a_deletion_rule_deletes_through_the_batch(parts, mappings, tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(
        "mapping: grid\nversion: 1\nextends: mls/reso\nlocal_prefixes: [NWM_]\n"
        "deletion: {field: MlgCanView, equals: false}\n"
    )
    grid = mappings.load("grid")
    pages: list[list[Any] | str] = [
        [item(1, 1, MlgCanView=True), item(2, 2, MlgCanView=True)],
        [item(1, 5, MlgCanView=False)],
    ]
    report = await sync(parts, PagesConnector(pages), {"Property": grid})
    assert report.tally.created == 2
    assert report.tally.deleted == 1
    assert balanced(report)
    gone = await stored(parts[0], "L0001")
    assert gone.deleted
    assert not (await stored(parts[0], "L0002")).deleted


async def test_a_page_retried_after_a_concurrent_update_counts_its_reasons_once(
    parts, mapper, monkeypatch
) -> None:
    from cadastre.errors import ConcurrentUpdate
    from cadastre.testing.fakes import FakeUnitOfWork

    real = FakeUnitOfWork.commit
    failures = [ConcurrentUpdate("another writer committed first")]

    async def commit(self: FakeUnitOfWork) -> None:
        if failures:
            raise failures.pop()
        await real(self)

    monkeypatch.setattr(FakeUnitOfWork, "commit", commit)
    page = [item(1, 1, ListPrice="N/A"), item(2, 2, StandardStatus="Sold-ish"), item(3, 3)]
    report = await sync(parts, PagesConnector([page]), {"Property": mapper})
    assert failures == []  # the page's transaction was tried twice
    assert report.tally.reasons == {"invalid_value": 1, "unknown_enum_value": 1}
    assert len(await held(parts[0])) == 2
    assert balanced(report)


async def test_a_malformed_page_is_matched_to_open_entries_a_few_at_a_time(mapper) -> None:
    clock = FakeClock(autojump=True)
    store = CountingStore(clock)
    parts = (store, clock, SyncEngine(store, load_registry(None), clock))
    async with store.unit_of_work(TENANT) as uow:
        for n in range(40):  # many broken pages held, each body its own
            await uow.quarantine.add(
                connection="mls1", entity="Listing", external_id=None, reason="unreadable page",
                payload={"body": f"<html>{n}</html>"}, stream="Property", code="malformed_page",
            )  # fmt: skip
        await uow.commit()
    store.calls.clear()
    report = await sync(parts, PagesConnector(["<html>39</html>"]), {"Property": mapper})
    calls = list(store.calls)
    assert calls
    assert all(limit is not None and limit <= 16 for limit, _ in calls)
    assert report.tally.unreadable_pages == 1
    assert len(await held(store)) == 40  # the newest held entry has that body: no second one
    await sync(parts, PagesConnector(["<html>new</html>"]), {"Property": mapper})
    assert len(await held(store)) == 41
