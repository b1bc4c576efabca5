"""``apply_batch``: a page of changes in one transaction must end exactly where applying the same
changes one by one ends, report bad changes without failing the page, and commit the caller's
cursor only together with the page."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadastre.contract import Change, Operation
from cadastre.errors import ContractError, OwnershipViolation
from cadastre.sync import BatchItem, CursorAdvance, SyncEngine
from cadastre.testing import FakeClock, FakeStore

from .conftest import TENANT, make_change

RECORDS = ("L1", "L2")
STATUSES = ("Active", "Pending", "Closed", "Sold-ish")  # the last breaks the contract
# (system, record, fields or None for a delete); crm may not write listings
step = st.tuples(
    st.sampled_from(["mls", "mls", "mls", "crm"]),
    st.sampled_from(RECORDS),
    st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["ListPrice", "City", "StandardStatus"]), st.integers(0, 3), min_size=1
        ),
    ),
)


def _value(name: str, value: int) -> Any:
    return {"ListPrice": value, "City": f"City-{value}"}.get(name, STATUSES[value])


def _changes(steps: list[tuple[str, str, dict[str, int] | None]]) -> list[Change]:
    out = []
    for minute, (system, ext, fields) in enumerate(steps, start=1):
        if fields is None:
            out.append(make_change(system, ext=ext, t=minute, op=Operation.DELETE))
            continue
        values: dict[str, Any] = {
            name: (value if name == "ListPrice" else f"City-{value}")
            for name, value in fields.items()
        }
        out.append(make_change(system, values, ext=ext, t=minute))
    return out


def _engine(registry) -> tuple[SyncEngine, FakeStore]:
    clock = FakeClock()
    store = FakeStore(clock)
    counter = itertools.count(1)
    return SyncEngine(store, registry, clock, new_id=lambda: f"id{next(counter):04d}"), store


def _summary(result, error) -> tuple[Any, ...]:
    shape = None
    if result is not None:
        shape = (result.canonical_id, sorted(result.applied), sorted(result.unchanged),
                 [(r.field, r.reason) for r in result.refused], result.version, result.created,
                 result.deleted, result.duplicate)  # fmt: skip
    return shape, type(error).__name__ if error else None


async def _one_by_one(registry, changes: list[Change]) -> tuple[list[Any], Any]:
    engine, store = _engine(registry)
    outcomes = []
    for change in changes:
        try:
            outcomes.append(_summary(await engine.apply(change), None))
        except (ContractError, OwnershipViolation) as exc:
            outcomes.append(_summary(getattr(exc, "result", None), exc))
    return outcomes, await _snapshot(store)


async def _in_pages(registry, changes: list[Change], sizes: list[int]) -> tuple[list[Any], Any]:
    engine, store = _engine(registry)
    outcomes, start = [], 0
    for size in itertools.cycle(sizes):
        page = changes[start : start + size]
        if not page:
            break
        outcomes += [_summary(i.result, i.error) for i in await engine.apply_batch(page)]
        start += size
    return outcomes, await _snapshot(store)


async def _snapshot(store: FakeStore) -> Any:
    async with store.unit_of_work(TENANT) as uow:
        records = [
            (r.id, r.version, r.deleted, dict(r.data))
            async for r in uow.records.scan("Listing", limit=100, include_deleted=True)
        ]
        events = [(m.event.type, m.event.subject) for m in await uow.outbox.pending(limit=1000)]
        audit = [(e.action, e.entity_id) async for e in uow.audit.entries()]
        assert (await uow.audit.verify()).ok
    return records, events, audit


def test_pages_end_exactly_where_one_by_one_ends(registry, full_trials) -> None:
    @settings(
        max_examples=300 if full_trials else 40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        steps=st.lists(step, min_size=1, max_size=16),
        repeats=st.lists(st.integers(0, 15), max_size=4),
        sizes=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    )
    def check(steps, repeats, sizes) -> None:
        changes = _changes(steps)
        changes += [changes[i % len(changes)] for i in repeats]  # re-deliveries
        expected = asyncio.run(_one_by_one(registry, changes))
        assert asyncio.run(_in_pages(registry, changes, sizes)) == expected

    check()


async def test_bad_changes_are_reported_and_the_rest_of_the_page_is_written(
    engine: SyncEngine, read, change
) -> None:
    page = [
        change("mls", {"ListPrice": 100, "City": "Austin"}, ext="L1", t=1),
        change("mls", {"StandardStatus": "Sold-ish"}, ext="L2", t=2),  # breaks the contract
        change("crm", {"ListPrice": 1}, ext="L1", t=3),  # not the owner
        change("mls", {"ListPrice": 120}, ext="L1", t=4),  # same record again in the page
    ]
    items = await engine.apply_batch(page)
    assert [type(i.error).__name__ if i.error else None for i in items] == [
        None, "ContractError", "OwnershipViolation", None,
    ]  # fmt: skip
    assert items[1].result is None
    assert "StandardStatus" in str(items[1].error)
    assert items[2].result is not None
    assert items[3].result is not None
    assert (items[0].result.version if items[0].result else 0, items[3].result.version) == (1, 2)
    record = await read.record("Listing", items[0].result.canonical_id if items[0].result else "")
    assert record.data["ListPrice"] == "120"
    assert await read.applied(page[1].idempotency_key) is None  # a fixed change can be re-sent
    assert await read.applied(page[2].idempotency_key) is not None  # the refusal is on record
    types = [e.type for e in await read.events()]
    assert types == [
        "cadastre.listing.created.v1",
        "cadastre.write.refused.v1",
        "cadastre.listing.updated.v1",
    ]


async def test_the_cursor_moves_with_its_page_and_only_with_it(registry, change) -> None:
    clock = FakeClock()
    store = FakeStore(clock)

    def explode_on_13(entity: str, fields: Any) -> Any:
        if fields.get("ListPrice") == 13:
            raise RuntimeError("worker died mid-page")
        from cadastre.contract import validate_fields

        return validate_fields(entity, fields)

    engine = SyncEngine(store, registry, clock, validate=explode_on_13)
    cursor = CursorAdvance(TENANT, "mls-1", "Property", {"ts": "2026-01-01T00:10:00Z", "key": "L9"})
    with pytest.raises(RuntimeError, match="mid-page"):
        await engine.apply_batch(
            [change("mls", {"ListPrice": 1}, ext="L1", t=1),
             change("mls", {"ListPrice": 13}, ext="L2", t=2)],
            cursor=cursor,
        )  # fmt: skip
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.cursors.get("mls-1", "Property") is None
        assert await uow.records.count() == 0
        assert await uow.outbox.pending() == []

    items = await engine.apply_batch(
        [change("mls", {"ListPrice": 1}, ext="L1", t=1)], cursor=cursor
    )
    assert isinstance(items[0], BatchItem)
    async with store.unit_of_work(TENANT) as uow:
        stored = await uow.cursors.get("mls-1", "Property")
        assert stored is not None
        assert dict(stored.value) == cursor.value
        assert await uow.records.count() == 1


async def test_a_batch_belongs_to_one_tenant(engine: SyncEngine, change) -> None:
    assert await engine.apply_batch([]) == []
    other = change("mls", {"ListPrice": 1}).model_copy(update={"tenant": "globex"})
    with pytest.raises(ValueError, match="one tenant"):
        await engine.apply_batch([change("mls", {"ListPrice": 1}), other])


async def test_an_empty_page_still_moves_its_cursor(engine: SyncEngine, store) -> None:
    cursor = CursorAdvance(TENANT, "mls-1", "Property", {"page": 2})
    assert await engine.apply_batch([], cursor=cursor) == []
    async with store.unit_of_work(TENANT) as uow:
        stored = await uow.cursors.get("mls-1", "Property")
    assert stored is not None
    assert dict(stored.value) == {"page": 2}


async def test_a_cursor_of_another_tenant_is_refused(engine: SyncEngine, change) -> None:
    cursor = CursorAdvance("globex", "mls-1", "Property", {"page": 2})
    with pytest.raises(ValueError, match="one tenant"):
        await engine.apply_batch([change("mls", {"ListPrice": 1})], cursor=cursor)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ListPrice": "1E+30"}, "too large a number"),
        ({"LocalFields": {"ABOR_Big": 2**64}}, "outside the 64-bit range"),
        ({"LocalFields": {"ABOR_Nan": float("nan")}}, "not a JSON number"),
    ],
)
async def test_an_unstorable_value_fails_its_change_not_the_page(
    engine: SyncEngine, change, store, fields, message
) -> None:
    cursor = CursorAdvance(TENANT, "mls-1", "Property", {"page": 1})
    page = [
        change("mls", {"ListPrice": 100}, ext="L1", t=1),
        change("mls", fields, ext="L2", t=2, key="explicit"),  # 2**64 cannot be content-keyed
        change("mls", {"ListPrice": 1}, entity="Nonsense", ext="N1", t=3),
    ]
    items = await engine.apply_batch(page, cursor=cursor)
    assert items[0].error is None
    assert isinstance(items[1].error, ContractError)
    assert message in str(items[1].error)
    assert isinstance(items[2].error, ContractError)
    assert "unknown entity" in str(items[2].error)
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count() == 1
        assert await uow.cursors.get("mls-1", "Property") is not None


def test_a_change_that_cannot_be_keyed_is_a_validation_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="idempotency key"):
        make_change("mls", {"LocalFields": {"x": 2**70}})
