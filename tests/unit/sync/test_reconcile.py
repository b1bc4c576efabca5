"""Key reconciliation over the FakeStore: keys gone upstream become tombstones with events; a key
list that is empty or shrinks too much at once deletes nothing and raises an alert."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from cadastre.contract import Operation
from cadastre.sync import SyncEngine
from cadastre.sync.reconcile import KeyReconciler, ReconcileGuard, ReconcileReport
from cadastre.testing import FakeClock, FakeStore

from .conftest import TENANT, Reader, make_change

KEYS = [f"L{n:03d}" for n in range(1, 41)]  # 40 listings held through connection mls-1


async def listed(*pages: Sequence[str]) -> AsyncIterator[Sequence[str]]:
    for page in pages:
        yield page


@pytest.fixture
async def held(engine: SyncEngine, clock: FakeClock) -> list[str]:
    changes = [make_change("mls", {"ListPrice": 100 + i}, ext=key, t=i)
               for i, key in enumerate(KEYS)]  # fmt: skip
    await engine.apply_batch(changes)
    clock.advance(3600)
    return KEYS


async def reconcile(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, *pages: Sequence[str],
    guard: ReconcileGuard | None = None, force: bool = False, page: int = 7,
) -> ReconcileReport:  # fmt: skip
    # page=7: the store's refs are read in several keyset pages
    reconciler = KeyReconciler(engine, store, clock, guard=guard, page=page)
    return await reconciler.run(
        tenant=TENANT, connection="mls-1", system="mls", stream="Property", entity="Listing",
        keys=listed(*pages), force=force,
    )  # fmt: skip


async def test_keys_gone_upstream_become_tombstones_with_deleted_events(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, read: Reader, held: list[str]
) -> None:
    gone = {"L003", "L017", "L039"}
    upstream = [k for k in held if k not in gone] + ["L999"]  # a new one: replication's job
    report = await reconcile(engine, store, clock, upstream[:20], upstream[20:])
    assert (report.upstream, report.held, report.missing, report.deleted) == (38, 40, 3, 3)
    assert set(report.deleted_keys) == gone
    assert report.refused is None
    for key in held:
        record = await read.record("Listing", await read.resolve("mls", key))
        assert record.deleted == (key in gone), key
    deleted = [e for e in await read.events() if e.type == "cadastre.listing.deleted.v1"]
    assert len(deleted) == 3
    assert {e.data["origin"]["external_id"] for e in deleted} == gone

    again = await reconcile(engine, store, clock, upstream)  # tombstones are not deleted twice
    assert (again.held, again.missing, again.deleted) == (37, 0, 0)
    assert len([e for e in await read.events() if e.type.endswith("deleted.v1")]) == 3


@pytest.mark.parametrize(
    ("upstream", "why"),
    [([], "listed no keys"), (KEYS[:20], "20 of 40 held records (50%) are gone at once")],
)
async def test_a_key_list_that_looks_like_a_vendor_glitch_deletes_nothing_and_alerts(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, read: Reader, held: list[str],
    upstream: list[str], why: str,
) -> None:  # fmt: skip
    report = await reconcile(engine, store, clock, upstream)
    assert report.refused is not None
    assert why in report.refused
    assert report.deleted == 0
    for key in held:
        assert not (await read.record("Listing", await read.resolve("mls", key))).deleted
    events = await read.events()
    assert not [e for e in events if e.type.endswith("deleted.v1")]
    (alert,) = [e for e in events if e.type == "cadastre.alert.raised.v1"]
    assert alert.data["alert"] == "reconciliation_refused"
    assert alert.data["connection"] == "mls-1"
    assert "--force" in alert.data["action"]


async def test_force_deletes_past_the_guard(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, held: list[str]
) -> None:
    report = await reconcile(engine, store, clock, held[:20], force=True)
    assert (report.refused, report.deleted) == (None, 20)


async def test_a_small_loss_under_the_floor_is_trusted(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, held: list[str]
) -> None:
    guard = ReconcileGuard(max_share=0.01, floor=5)  # 5 of 40 is 12%, but within the floor
    report = await reconcile(engine, store, clock, held[5:], guard=guard)
    assert (report.refused, report.deleted) == (None, 5)


async def test_refs_of_other_connections_are_left_alone(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, read: Reader, held: list[str]
) -> None:
    base = make_change("mls", {"ListPrice": 5}, ext="L777", t=1)
    other = base.model_copy(
        update={"origin": base.origin.model_copy(update={"connection": "mls-2"})}
    )
    (applied,) = await engine.apply_batch([other])
    assert applied.result is not None
    assert applied.result.created
    report = await reconcile(engine, store, clock, held[1:])
    assert report.deleted_keys == ["L001"]
    assert report.held == 40  # mls-2's listing is not mls-1's to reconcile
    assert not (await read.record("Listing", applied.result.canonical_id)).deleted


async def test_a_record_deleted_upstream_and_replicated_before_is_not_counted_held(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, held: list[str]
) -> None:
    await engine.apply_batch([make_change("mls", ext="L002", t=100, op=Operation.DELETE)])
    report = await reconcile(engine, store, clock, [k for k in held if k != "L002"])
    assert (report.held, report.missing, report.deleted) == (39, 0, 0)


async def test_a_record_stored_while_the_keys_were_listed_is_left_for_the_next_run(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, read: Reader, held: list[str]
) -> None:
    async def meanwhile() -> AsyncIterator[Sequence[str]]:
        yield held[:20]
        # A sync stores a listing created upstream after its key page was listed.
        clock.advance(1)
        await engine.apply_batch([make_change("mls", {"ListPrice": 1}, ext="L000", t=10_000)])
        yield held[20:]

    reconciler = KeyReconciler(engine, store, clock, page=7)
    report = await reconciler.run(
        tenant=TENANT, connection="mls-1", system="mls", stream="Property", entity="Listing",
        keys=meanwhile(),
    )  # fmt: skip
    assert (report.held, report.missing, report.deleted) == (41, 0, 0)
    assert not (await read.record("Listing", await read.resolve("mls", "L000"))).deleted


async def test_a_small_feed_never_loses_more_than_half_in_one_run(
    engine: SyncEngine, store: FakeStore, clock: FakeClock, read: Reader
) -> None:
    # 11 held, 1 listed: 10 missing is within the floor of 10, but it is 91% of the feed.
    await engine.apply_batch([make_change("mls", {"ListPrice": i}, ext=key, t=i)
                              for i, key in enumerate(KEYS[:11])])  # fmt: skip
    clock.advance(3600)
    report = await reconcile(engine, store, clock, KEYS[:1])
    assert report.refused == (
        "10 of 11 held records (91%) are gone at once, more than half of what is held"
    )
    assert (report.held, report.missing, report.deleted) == (11, 10, 0)
    assert not [e for e in await read.events() if e.type.endswith("deleted.v1")]
    forced = await reconcile(engine, store, clock, KEYS[:1], force=True)
    assert forced.deleted == 10


@pytest.mark.parametrize(
    ("held", "missing", "refused"),
    [
        (11, 10, True),  # within the floor, over half
        (11, 6, True),  # 6 > 5.5
        (11, 5, False),  # 5 < 5.5, within the floor
        (10, 5, False),  # exactly half is trusted
        (10, 6, True),
        (2, 1, False),
        (2, 2, True),  # and the list is not empty: still over half
        (1, 1, True),
        (100, 10, False),  # the floor: 10 is not more than 10
        (100, 11, True),  # more than the floor and than 10%
        (200, 20, False),  # 10% exactly
        (200, 21, True),
        (0, 0, False),
        (40, 0, False),
    ],
)
def test_the_guards_arithmetic_at_its_boundaries(held: int, missing: int, refused: bool) -> None:
    upstream = max(held - missing, 1) if held else 0
    assert (ReconcileGuard().refuses(held, upstream, missing) is not None) == refused


def test_a_share_above_half_still_never_deletes_more_than_half() -> None:
    guard = ReconcileGuard(max_share=0.9, floor=0)
    assert guard.refuses(100, 50, 50) is None
    refused = guard.refuses(100, 49, 51)
    assert refused is not None
    assert "more than half" in refused
