"""``SyncRunner`` on fakes: pages in, records + quarantine + cursor out, nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.errors import VendorRejected, VendorUnavailable
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.ports import RawPage, RawRecord
from cadastre.sync import SyncEngine, SyncRunner, SyncTally
from cadastre.testing import EPOCH, FakeClock, FakeStore

from .conftest import TENANT

FAMILY = Path(__file__).resolve().parents[3] / "src/cadastre/connectors/mls/reso/mapping.yaml"


def listing(n: int, **over: Any) -> dict[str, Any]:
    stamp = (EPOCH + timedelta(minutes=n)).isoformat()
    return {"ListingKey": f"L{n:04d}", "ModificationTimestamp": stamp, "StandardStatus": "Active",
            "ListPrice": 100_000 + n, "City": "Austin", **over}  # fmt: skip


class ListConnector:
    """A source over a list of vendor items, in pages, that fails where it is told to."""

    system = "mls"

    def __init__(self, items: list[dict[str, Any]], page: int = 3, fail_at: Sequence[int] = ()):
        self.items = items
        self.page = page
        self.fail_at = list(fail_at)  # page numbers (from 0) that fail once, transiently
        self.reads: list[Mapping[str, Any] | None] = []
        self.pages_served = 0

    def streams(self) -> Sequence[str]:
        return ["Property"]

    async def aclose(self) -> None:
        return None

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        self.reads.append(cursor)
        start = int(cursor["n"]) if cursor else 0
        for first in range(start, len(self.items), self.page):
            if self.pages_served in self.fail_at:
                self.fail_at.remove(self.pages_served)
                raise VendorUnavailable("503 from the vendor")
            self.pages_served += 1
            chunk = self.items[first : first + self.page]
            records = [
                RawRecord(
                    stream, item.get("ListingKey"), item, EPOCH + timedelta(minutes=first + i)
                )
                for i, item in enumerate(chunk)
            ]
            yield RawPage(stream, records, {"n": first + len(chunk)}, expected=len(self.items))


@pytest.fixture
def mapper(tmp_path: Path) -> RecordMapper:
    return MappingRegistry(tmp_path, {"mls/reso": FAMILY}).load("mls/reso")


@pytest.fixture
def parts(engine_parts: tuple[FakeStore, FakeClock, SyncEngine]):
    return engine_parts


@pytest.fixture
def engine_parts() -> tuple[FakeStore, FakeClock, SyncEngine]:
    from cadastre.ownership import load_registry

    clock = FakeClock(autojump=True)
    store = FakeStore(clock)
    return store, clock, SyncEngine(store, load_registry(None), clock)


async def run(parts, connector, mapper, **kw) -> tuple[Any, list[SyncTally]]:
    store, clock, engine = parts
    seen: list[SyncTally] = []
    runner = SyncRunner(engine, store, clock, backoff=2.0)
    report = await runner.run(tenant=TENANT, connection="mls1", connector=connector,
                              mappers={"Property": mapper}, progress=seen.append, **kw)  # fmt: skip
    return report, seen


async def test_every_record_is_stored_or_quarantined_and_the_cursor_follows(parts, mapper) -> None:
    items = [listing(n) for n in range(10)]
    items[2] = listing(2, StandardStatus="Sold-ish")  # unknown enumeration value
    items[4] = listing(4, ListPrice="N/A")  # the contract refuses it
    del items[6]["ListingKey"]  # no key
    connector = ListConnector(items)
    report, seen = await run(parts, connector, mapper)
    tally = report.tally
    assert tally.fetched == 10
    assert tally.created == 7
    assert tally.quarantined == 3
    assert tally.stored + tally.quarantined == tally.fetched
    assert tally.reasons == {"unknown_enum_value": 1, "invalid_value": 1, "missing_key": 1}
    assert tally.expected == 10
    assert len(seen) == 4  # one progress call per page
    store: FakeStore = parts[0]
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") == 7
        held = await uow.quarantine.open_items("mls1")
        cursor = await uow.cursors.get("mls1", "Property")
    assert {q.external_id for q in held} == {"L0002", "L0004", None}
    by_key = {q.external_id: q for q in held}
    assert by_key["L0002"].payload["StandardStatus"] == "Sold-ish"  # the raw payload, as sent
    assert "ListPrice" in by_key["L0004"].reason
    assert by_key["L0004"].payload["ListPrice"] == "N/A"
    assert cursor is not None
    assert cursor.value == {"n": 10}


async def test_a_transient_failure_resumes_from_the_last_committed_page(parts, mapper) -> None:
    connector = ListConnector([listing(n) for n in range(9)], fail_at=[2])
    store, clock, _ = parts
    before = clock.monotonic()
    report, _ = await run(parts, connector, mapper)
    assert connector.reads == [None, {"n": 6}]  # read again from after the second page
    assert report.tally.retries == 1
    assert report.tally.created == 9
    assert clock.monotonic() - before >= 2.0  # backed off on the hub's clock
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") == 9


async def test_an_incremental_run_starts_from_the_stored_cursor(parts, mapper) -> None:
    connector = ListConnector([listing(n) for n in range(6)])
    await run(parts, connector, mapper)
    connector.items += [listing(n) for n in range(6, 8)]
    report, _ = await run(parts, connector, mapper)
    assert connector.reads[-1] == {"n": 6}
    assert report.tally.created == 2
    report, _ = await run(parts, connector, mapper, full=True)
    assert connector.reads[-1:] == [None]
    assert report.tally.duplicates == 8  # same versions: the idempotency ledger answers


async def test_too_many_failures_stop_the_run_with_nothing_lost(parts, mapper) -> None:
    class Down(ListConnector):
        # serves its first page, then the vendor is down for good
        async def read(self, stream, cursor):
            self.reads.append(cursor)
            if cursor is None:
                first = self.items[:3]
                yield RawPage(stream, [RawRecord(stream, i["ListingKey"], i, EPOCH) for i in first],
                              {"n": 3})  # fmt: skip
            raise VendorUnavailable("503 from the vendor")

    connector = Down([listing(n) for n in range(9)])
    store, clock, engine = parts
    runner = SyncRunner(engine, store, clock, max_failures=3)
    with pytest.raises(VendorUnavailable):
        await runner.run(tenant=TENANT, connection="mls1", connector=connector,
                         mappers={"Property": mapper})  # fmt: skip
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") == 3  # the first page, committed
        cursor = await uow.cursors.get("mls1", "Property")
    assert cursor is not None
    assert cursor.value == {"n": 3}
    assert connector.reads == [None, {"n": 3}, {"n": 3}]


async def test_a_terminal_vendor_error_is_not_retried(parts, mapper) -> None:
    class Refusing(ListConnector):
        async def read(self, stream, cursor):
            self.reads.append(cursor)
            for _ in ():  # an async generator that fails before its first page
                yield
            raise VendorRejected("403 forbidden", status=403)

    connector = Refusing([])
    with pytest.raises(VendorRejected):
        await run(parts, connector, mapper)
    assert len(connector.reads) == 1
