"""Syncs running at once on one engine keep their own pre-validated pages: each page's fields are
validated once (ahead, while the previous page is written), whatever the other runs do."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from cadastre.contract import validate_fields
from cadastre.ownership import load_registry
from cadastre.ports import RawPage
from cadastre.sync import SyncEngine, SyncReport, SyncRunner
from cadastre.testing import FakeClock, FakeStore

from .conftest import TENANT
from .test_tolerance import PagesConnector, item

PAGES, PER_PAGE = 5, 4


class Yielding(PagesConnector):
    """Gives the other runs a turn before each page, so their pages interleave."""

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        async for page in super().read(stream, cursor):
            for _ in range(3):
                await asyncio.sleep(0)
            yield page


def pages(first: int) -> list[list[Any] | str]:
    return [
        [item(first + p * PER_PAGE + i, p * PER_PAGE + i) for i in range(PER_PAGE)]
        for p in range(PAGES)
    ]


async def sync_all(mapper, *, together: bool) -> tuple[Counter[str], list[SyncReport], Any]:
    clock = FakeClock(autojump=True)
    store = FakeStore(clock)
    seen: Counter[str] = Counter()

    def counting(entity: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        seen[repr(sorted(fields.items()))] += 1
        return validate_fields(entity, fields)

    engine = SyncEngine(store, load_registry(None), clock, validate=counting)

    async def one(name: str, first: int) -> SyncReport:
        runner = SyncRunner(engine, store, clock)
        return await runner.run(tenant=TENANT, connection=name, connector=Yielding(pages(first)),
                                mappers={"Property": mapper})  # fmt: skip

    runs = [("mls1", 1), ("mls2", 101), ("mls3", 201)]
    if together:
        reports = list(await asyncio.gather(*(one(n, f) for n, f in runs)))
    else:
        reports = [await one(n, f) for n, f in runs]
    async with store.unit_of_work(TENANT, read_only=True) as uow:
        stored = {}
        for name, first in runs:
            for n in range(first, first + PAGES * PER_PAGE):
                key = f"L{n:04d}"
                canonical = await uow.xref.resolve("mls", name, "Listing", key)
                record = await uow.records.get("Listing", canonical) if canonical else None
                stored[(name, key)] = None if record is None else dict(record.data)
    return seen, reports, stored


async def test_concurrent_runs_validate_each_page_once(mapper) -> None:
    seen, reports, stored = await sync_all(mapper, together=True)
    records = 3 * PAGES * PER_PAGE
    assert len(seen) == records  # every record's fields are distinct (its price)
    assert sum(seen.values()) == records, {k: n for k, n in seen.items() if n > 1}
    assert [r.tally.created for r in reports] == [PAGES * PER_PAGE] * 3

    # the same results as the runs one after the other
    alone, sequential, stored_alone = await sync_all(mapper, together=False)
    assert sum(alone.values()) == records
    assert [r.tally for r in reports] == [r.tally for r in sequential]
    assert [r.cursors for r in reports] == [r.cursors for r in sequential]
    assert stored == stored_alone
    assert all(data is not None for data in stored.values())
