"""Promise 14: out-of-order and duplicate changes never regress state.

Hypothesis draws a history of upserts and deletes by the owning system across a few records,
each with a distinct source time; applying it shuffled, with duplicates, must end in the same
store as applying it in source order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadastre.contract import Change, Operation
from cadastre.errors import OwnershipViolation
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock, FakeStore

RECORDS = ("L1", "L2", "L3")
FIELDS = ("City", "ListPrice", "PublicRemarks")

step = st.tuples(
    st.sampled_from(RECORDS),
    st.one_of(  # None is a delete
        st.none(),
        st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 4), min_size=1),
    ),
)


def history(steps: list[tuple[str, dict[str, int] | None]], change) -> list[Change]:
    out = []
    for minute, (ext, fields) in enumerate(steps, start=1):
        if fields is None:
            out.append(change("mls", {}, ext=ext, t=minute, op=Operation.DELETE))
        else:
            values: dict[str, Any] = {
                name: (value if name == "ListPrice" else f"{name}-{value}")
                for name, value in fields.items()
            }
            out.append(change("mls", values, ext=ext, t=minute, version=str(minute)))
    return out


async def final_state(registry, changes: list[Change]) -> dict[str, Any]:
    clock = FakeClock()
    store = FakeStore(clock)
    engine = SyncEngine(store, registry, clock)
    for item in changes:
        try:
            await engine.apply(item)
        except OwnershipViolation:  # pragma: no cover - only the owner writes here
            raise
    state = {}
    async with store.unit_of_work("acme") as uow:
        for ext in RECORDS:
            canonical = await uow.xref.resolve("mls", "mls-1", "Listing", ext)
            record = canonical and await uow.records.get("Listing", canonical)
            state[ext] = None if not record else (record.deleted, dict(record.data))
    return state


def test_shuffled_and_duplicated_history_equals_in_order(registry, change, full_trials) -> None:
    @settings(
        max_examples=400 if full_trials else 40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(steps=st.lists(step, min_size=1, max_size=14), data=st.data())
    def check(steps, data) -> None:
        ordered = history(steps, change)
        repeats = data.draw(st.lists(st.sampled_from(ordered), max_size=6), label="duplicates")
        shuffled = data.draw(st.permutations(ordered + repeats), label="delivery order")
        expected = asyncio.run(final_state(registry, ordered))
        assert asyncio.run(final_state(registry, shuffled)) == expected

    check()


def test_a_known_reordering(registry, change) -> None:
    # upsert at 1, delete at 2, upsert at 3 - delivered 3, 2, 1
    ordered = [
        change("mls", {"City": "A", "ListPrice": 1}, t=1),
        change("mls", {}, t=2, op=Operation.DELETE),
        change("mls", {"ListPrice": 3}, t=3),
    ]
    expected = asyncio.run(final_state(registry, ordered))
    assert expected["L1"] == (False, {"ListPrice": "3"})
    assert asyncio.run(final_state(registry, ordered[::-1])) == expected
