"""Quarantine replay: exactly the selected entries, re-mapped with the current mapping, applied
through the engine; the rest untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cadastre.errors import NotFound
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.ownership import load_registry
from cadastre.sync import QuarantineReplay, ReplaySummary, SyncEngine
from cadastre.testing import FakeClock

from .conftest import TENANT, CountingStore
from .test_tolerance import PagesConnector, held, item, stored, sync

FIXED = (
    "mapping: fixed\nversion: 2\nextends: mls/reso\nenums: {StandardStatus: {Sold-ish: Closed}}\n"
)


@pytest.fixture
def fixed(mappings: MappingRegistry, tmp_path: Path) -> RecordMapper:
    (tmp_path / "fixed.yaml").write_text(FIXED)
    return mappings.load("fixed")


async def replay(parts, mapper: RecordMapper, **kw: Any) -> ReplaySummary:
    store, _, engine = parts
    seen: list[int] = []
    summary = await QuarantineReplay(engine, store, batch=2).run(
        tenant=TENANT, connection="mls1", system="mls", mappers={"Property": mapper},
        progress=lambda s: seen.append(s.replayed), **kw,
    )  # fmt: skip
    assert seen == sorted(seen)
    assert not seen or seen[-1] == summary.replayed
    return summary


async def test_a_fixed_mapping_resolves_exactly_the_affected_entries(parts, mapper, fixed) -> None:
    page = [item(1, 1, StandardStatus="Sold-ish"), item(2, 2, ListPrice="N/A"), item(3, 3),
            item(4, 4, StandardStatus="Sold-ish")]  # fmt: skip
    await sync(parts, PagesConnector([page]), {"Property": mapper})
    store = parts[0]
    before = {q.external_id: q for q in await held(store)}
    assert {k: q.code for k, q in before.items()} == {
        "L0001": "unknown_enum_value", "L0002": "invalid_value", "L0004": "unknown_enum_value",
    }  # fmt: skip

    summary = await replay(parts, fixed, code="unknown_enum_value")
    assert (summary.total, summary.replayed, summary.resolved) == (2, 2, 2)
    assert summary.failing == {}
    assert (await stored(store, "L0001")).data["StandardStatus"] == "Closed"
    assert (await stored(store, "L0004")).data["StandardStatus"] == "Closed"
    (left,) = await held(store)
    assert left == before["L0002"]  # untouched: same reason, no attempt counted
    assert left.attempts == 0

    again = await replay(parts, fixed, code="unknown_enum_value")
    assert (again.total, again.replayed) == (0, 0)


async def test_an_entry_that_fails_again_keeps_its_payload_and_takes_the_new_reason(
    parts, mapper, fixed
) -> None:
    page = [item(1, 1, StandardStatus="Sold-ish", ListPrice="N/A"), item(2, 2)]
    await sync(parts, PagesConnector([page]), {"Property": mapper})
    (entry,) = await held(parts[0])
    assert entry.code == "unknown_enum_value"
    summary = await replay(parts, fixed)  # the enum maps now; the price still does not
    assert (summary.resolved, summary.failing) == (0, {"invalid_value": 1})
    (after,) = await held(parts[0])
    assert after.id == entry.id
    assert (after.code, after.attempts) == ("invalid_value", 1)
    assert "ListPrice" in after.reason
    assert after.payload == entry.payload
    assert await stored(parts[0], "L0001") is None


async def test_a_replayed_record_older_than_a_later_sync_does_not_regress(
    parts, mapper, fixed
) -> None:
    first = PagesConnector([[item(1, 1, StandardStatus="Sold-ish", ListPrice=1)]])
    await sync(parts, first, {"Property": mapper})
    # the vendor moved on meanwhile (served after the stored cursor, page 1)
    later = PagesConnector([[], [item(1, 9, StandardStatus="Pending", ListPrice=9)]])
    assert (await sync(parts, later, {"Property": mapper})).tally.created == 1
    summary = await replay(parts, fixed)
    assert (summary.resolved, summary.superseded) == (1, 1)
    record = await stored(parts[0], "L0001")
    assert (record.data["StandardStatus"], record.data["ListPrice"]) == ("Pending", "9")
    assert await held(parts[0]) == []


async def test_a_copy_that_lost_a_tie_in_its_page_stays_superseded(parts, mapper) -> None:
    page = [item(3, 6, ListPrice=5), item(3, 6, ListPrice=6)]  # a tie: the later copy wins
    await sync(parts, PagesConnector([page]), {"Property": mapper})
    (entry,) = await held(parts[0])
    assert entry.code == "duplicate_in_page"
    summary = await replay(parts, mapper)
    assert (summary.resolved, summary.superseded) == (1, 1)
    assert (await stored(parts[0], "L0003")).data["ListPrice"] == "6"  # not the losing copy
    assert await held(parts[0]) == []


async def test_only_the_ids_asked_for_are_replayed(parts, mapper, fixed) -> None:
    page = [item(1, 1, StandardStatus="Sold-ish"), item(2, 2, StandardStatus="Sold-ish")]
    await sync(parts, PagesConnector([page]), {"Property": mapper})
    one, two = await held(parts[0])
    with pytest.raises(NotFound, match="nope"):
        await replay(parts, fixed, ids=[one.id, "nope"])
    assert len(await held(parts[0])) == 2  # a bad id changes nothing
    summary = await replay(parts, fixed, ids=[one.id])
    assert summary.resolved == 1
    assert [q.id for q in await held(parts[0])] == [two.id]
    assert await stored(parts[0], one.external_id) is not None
    assert await stored(parts[0], two.external_id) is None
    again = await replay(parts, fixed, ids=[one.id])
    assert (again.replayed, again.skipped) == (0, [one.id])


async def test_a_malformed_page_replays_by_parsing_its_body_again(parts, mapper) -> None:
    # NaN is not JSON to the connector's strict reader; the replay's lenient one reads it, and
    # its records go their own ways (one is stored, one is set aside under its own code).
    lenient = (
        '\ufeff{"value": [{"ListingKey": "L0007", "ModificationTimestamp": '
        '"2026-01-01T00:00:00+00:00", "StandardStatus": "Active", "ListPrice": 7, '
        '"LivingArea": NaN}, {"ListingKey": "L0008", "ModificationTimestamp": '
        '"2026-01-01T00:00:00+00:00", "StandardStatus": "Sold-ish"}, 3]}'
    )
    broken = '{"value": [{"ListingKey": "L0009"'
    await sync(parts, PagesConnector([lenient]), {"Property": mapper})
    await sync(parts, PagesConnector([[item(1, 1)], broken]), {"Property": mapper})
    pages = await held(parts[0])
    assert [q.code for q in pages] == ["malformed_page", "malformed_page"]
    summary = await replay(parts, mapper)
    assert (summary.replayed, summary.resolved, summary.failing) == (2, 1, {"malformed_page": 1})
    assert summary.requarantined == 2
    assert await stored(parts[0], "L0007") is not None
    left = {(q.code, q.external_id) for q in await held(parts[0])}
    assert left == {("malformed_page", None), ("unknown_enum_value", "L0008"), ("unreadable", None)}
    (still,) = [q for q in await held(parts[0]) if q.code == "malformed_page"]
    assert still.payload["body"] == broken
    assert still.attempts == 1
    assert "still unreadable" in still.reason


async def test_entries_of_a_stream_without_a_mapping_fail_with_a_reason(parts, mapper) -> None:
    await sync(parts, PagesConnector([[item(1, 1, StandardStatus="Sold-ish")]]),
               {"Property": mapper})  # fmt: skip
    store, _, engine = parts
    summary = await QuarantineReplay(engine, store).run(
        tenant=TENANT, connection="mls1", system="mls", mappers={}
    )
    assert summary.failing == {"unknown_enum_value": 1}  # still what is wrong with the data
    (entry,) = await held(store)
    assert (entry.code, entry.attempts) == ("unknown_enum_value", 1)
    assert entry.reason == "no mapping for stream Property (Listing)"


def test_a_batch_must_hold_something(parts) -> None:
    store, _, engine = parts
    with pytest.raises(ValueError, match="batch"):
        QuarantineReplay(engine, store, batch=0)


class Watched(QuarantineReplay):
    """Records the size of every batch replayed, and the entries read before it."""

    def __init__(self, engine: SyncEngine, store: CountingStore, *, batch: int) -> None:
        super().__init__(engine, store, batch=batch)
        self.counting = store
        self.batches: list[tuple[int, int]] = []  # (entries read by id so far, batch size)

    async def _replay(self, tenant, system, mappers, rebuild, entries, summary) -> None:
        self.batches.append((self.counting.gets, len(entries)))
        await super()._replay(tenant, system, mappers, rebuild, entries, summary)


@pytest.fixture
def counted() -> tuple[CountingStore, FakeClock, SyncEngine]:
    clock = FakeClock(autojump=True)
    store = CountingStore(clock)
    return store, clock, SyncEngine(store, load_registry(None), clock)


async def test_many_entries_are_replayed_in_bounded_batches_each_once(counted, mapper, fixed):
    # 13 entries, replayed 3 at a time: 9 the fixed mapping mends, 4 that fail again and stay
    # open among them (the keyset must step past them, neither looping nor skipping).
    page = [
        item(n, n, StandardStatus="Sold-ish", **({"ListPrice": "N/A"} if n % 3 == 0 else {}))
        for n in range(1, 14)
    ]
    await sync(counted, PagesConnector([page]), {"Property": mapper})
    store, _, engine = counted
    before = {q.id: q for q in await held(store)}
    assert len(before) == 13
    store.calls.clear()

    replay = Watched(engine, store, batch=3)
    summary = await replay.run(tenant=TENANT, connection="mls1", system="mls",
                               mappers={"Property": fixed})  # fmt: skip
    assert (summary.total, summary.replayed, summary.resolved) == (13, 13, 9)
    assert summary.failing == {"invalid_value": 4}
    assert [size for _, size in replay.batches] == [3, 3, 3, 3, 1]
    assert store.calls
    assert all(limit is not None and limit <= 3 for limit, _ in store.calls)
    assert all(n <= 3 for _, n in store.calls)
    left = await held(store)
    failing = {"L0003", "L0006", "L0009", "L0012"}
    assert {q.id for q in left} == {i for i, q in before.items() if q.external_id in failing}
    assert all(q.attempts == 1 for q in left)  # each tried exactly once
    for n in (1, 2, 4, 5, 7, 8, 10, 11, 13):
        assert (await stored(store, f"L{n:04d}")).data["StandardStatus"] == "Closed"

    again = await Watched(engine, store, batch=3).run(
        tenant=TENANT, connection="mls1", system="mls", mappers={"Property": fixed}
    )
    assert (again.total, again.replayed, again.failing) == (4, 4, {"invalid_value": 4})
    assert all(q.attempts == 2 for q in await held(store))


async def test_ids_asked_for_are_read_a_batch_at_a_time(counted, mapper, fixed) -> None:
    page = [item(n, n, StandardStatus="Sold-ish") for n in range(1, 8)]
    await sync(counted, PagesConnector([page]), {"Property": mapper})
    store, _, engine = counted
    ids = [q.id for q in await held(store)]
    store.gets = 0
    replay = Watched(engine, store, batch=3)
    summary = await replay.run(tenant=TENANT, connection="mls1", system="mls",
                               mappers={"Property": fixed}, ids=ids)  # fmt: skip
    assert (summary.replayed, summary.resolved) == (7, 7)
    # every id checked first (7 reads, nothing held), then each batch read as it is replayed
    assert replay.batches == [(7 + 3, 3), (7 + 6, 3), (7 + 7, 1)]
    assert await held(store) == []
