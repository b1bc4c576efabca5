"""The sync watchdog: a run that hangs on its vendor, or overruns, is stopped, counted, and frees
its worker; what it committed stays committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from cadastre.errors import SyncTimedOut
from cadastre.observe import Metrics
from cadastre.ownership import load_registry
from cadastre.ports import RawPage, RawRecord
from cadastre.sync import SyncEngine, SyncRunner
from cadastre.testing import EPOCH, FakeClock, FakeStore

from .conftest import TENANT
from .test_runner import ListConnector, listing, mapper

__all__ = ["mapper"]


class Hanging(ListConnector):
    """Serves its first page, then waits on the vendor forever (until cancelled)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__(items)
        self.cancelled = asyncio.Event()

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        self.reads.append(cursor)
        first = [RawRecord(stream, i["ListingKey"], i, EPOCH) for i in self.items[:3]]
        yield RawPage(stream, first, {"n": 3})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        yield RawPage(stream, [], {"n": 3})  # pragma: no cover - never reached


class Slow(ListConnector):
    """Commits a page every 60 s, for ever: never stalled, but it never ends either."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__([])
        self.clock = clock

    def streams(self) -> Sequence[str]:
        return ["Property"]

    async def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        n = 0
        while True:
            await self.clock.sleep(60)
            item = listing(n)
            n += 1
            yield RawPage(stream, [RawRecord(stream, item["ListingKey"], item, EPOCH)], {"n": n})


def parts(clock: FakeClock, **kw: Any) -> tuple[FakeStore, SyncRunner, Metrics]:
    store = FakeStore(clock)
    metrics = Metrics()
    engine = SyncEngine(store, load_registry(None), clock)
    return store, SyncRunner(engine, store, clock, metrics=metrics, **kw), metrics


async def step_until_done(clock: FakeClock, task: asyncio.Task[Any], step: float) -> None:
    for _ in range(10_000):
        if task.done():
            return
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.advance(step)
    raise AssertionError("the run never ended")


async def test_a_hung_vendor_call_is_stopped_after_the_stall_window(mapper) -> None:
    clock = FakeClock()
    store, runner, metrics = parts(clock, stall_seconds=120, max_seconds=None)
    connector = Hanging([listing(n) for n in range(6)])
    task = asyncio.create_task(runner.run(tenant=TENANT, connection="mls1", connector=connector,
                                          mappers={"Property": mapper}))  # fmt: skip
    await step_until_done(clock, task, 5.0)
    with pytest.raises(SyncTimedOut, match="no page committed for 120 s"):
        task.result()
    assert 120 <= clock.monotonic() <= 170  # stepped 5 s at a time
    assert connector.cancelled.is_set()  # the hung call was cancelled where it waited
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") == 3  # the committed page stays
        cursor = await uow.cursors.get("mls1", "Property")
    assert cursor is not None
    assert cursor.value == {"n": 3}
    runs = metrics.registry.get_sample_value(
        "cadastre_sync_runs_total", {"connection": "mls1", "outcome": "timed_out"}
    )
    assert runs == 1


async def test_a_run_that_keeps_committing_is_stopped_at_its_deadline(mapper) -> None:
    clock = FakeClock()
    store, runner, _ = parts(clock, stall_seconds=120, max_seconds=600)
    task = asyncio.create_task(runner.run(tenant=TENANT, connection="mls1", connector=Slow(clock),
                                          mappers={"Property": mapper}))  # fmt: skip
    await step_until_done(clock, task, 5.0)
    with pytest.raises(SyncTimedOut, match="running past 600 s"):
        task.result()
    assert 600 <= clock.monotonic() <= 650  # stepped 5 s at a time
    async with store.unit_of_work(TENANT) as uow:
        assert await uow.records.count("Listing") >= 9  # one a minute, all kept


async def test_a_healthy_run_is_counted_ok_and_leaves_no_timer_behind(mapper) -> None:
    clock = FakeClock()
    _, runner, metrics = parts(clock, stall_seconds=120, max_seconds=600)
    connector = ListConnector([listing(n) for n in range(7)])
    report = await runner.run(tenant=TENANT, connection="mls1", connector=connector,
                              mappers={"Property": mapper})  # fmt: skip
    assert report.tally.created == 7
    await asyncio.sleep(0)
    assert clock.sleepers == 0  # the watchdog's sleep was cancelled with the run
    runs = metrics.registry.get_sample_value(
        "cadastre_sync_runs_total", {"connection": "mls1", "outcome": "ok"}
    )
    assert runs == 1
