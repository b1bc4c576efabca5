"""The scheduler on a fake clock: cadences, no overlapping runs of one job, a failing job that does
not stop the others, a job held by another worker skipped, and connections that come and go."""

from __future__ import annotations

import asyncio

from cadastre.sync.scheduler import Job, SyncScheduler
from cadastre.testing import FakeClock
from cadastre.vault.locks import MemoryLockBackend

SYNC = Job("acme", "north", "sync", every=60)
RECONCILE = Job("acme", "north", "reconcile", every=300)
OTHER = Job("acme", "south", "sync", every=120)


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.starts: list[tuple[str, float]] = []
        self.fail: set[str] = set()
        self.block: dict[str, asyncio.Event] = {}

    async def __call__(self, job: Job) -> None:
        self.starts.append((job.key, self.clock.monotonic()))
        if job.key in self.block:
            await self.block[job.key].wait()
        if job.key in self.fail:
            raise RuntimeError("vendor down")


def times(recorder: Recorder, job: Job) -> list[float]:
    return [at for key, at in recorder.starts if key == job.key]


async def run_for(scheduler: SyncScheduler, clock: FakeClock, seconds: int, step: int) -> None:
    for _ in range(seconds // step):
        await scheduler.tick()
        await scheduler.idle()
        clock.advance(step)


async def test_each_job_runs_at_its_cadence_from_the_first_tick() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    jobs = [SYNC, RECONCILE, OTHER]

    async def listed() -> list[Job]:
        return jobs

    scheduler = SyncScheduler(clock, listed, recorder, MemoryLockBackend(), tick=15)
    start = clock.monotonic()
    await run_for(scheduler, clock, 600, 15)
    assert [t - start for t in times(recorder, SYNC)] == [0, 60, 120, 180, 240, 300, 360, 420,
                                                           480, 540]  # fmt: skip
    assert [t - start for t in times(recorder, RECONCILE)] == [0, 300]
    assert [t - start for t in times(recorder, OTHER)] == [0, 120, 240, 360, 480]


async def test_a_failing_job_is_retried_at_its_next_due_time_and_others_go_on() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    recorder.fail.add(SYNC.key)

    async def listed() -> list[Job]:
        return [SYNC, OTHER]

    scheduler = SyncScheduler(clock, listed, recorder, MemoryLockBackend(), tick=15)
    await run_for(scheduler, clock, 240, 15)
    assert len(times(recorder, SYNC)) == 4
    assert len(times(recorder, OTHER)) == 2
    assert scheduler.runs[SYNC.key] == 4


async def test_a_long_run_is_never_started_twice() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    recorder.block[SYNC.key] = asyncio.Event()

    async def listed() -> list[Job]:
        return [SYNC]

    scheduler = SyncScheduler(clock, listed, recorder, MemoryLockBackend(), tick=15)
    for _ in range(20):  # five minutes of ticks while the first run hangs
        await scheduler.tick()
        await asyncio.sleep(0)
        clock.advance(15)
    assert len(times(recorder, SYNC)) == 1
    recorder.block[SYNC.key].set()
    await scheduler.idle()
    assert await scheduler.tick() == [SYNC]  # overdue: starts at the next tick


async def test_a_job_another_worker_holds_is_skipped() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    locks = MemoryLockBackend()

    async def listed() -> list[Job]:
        return [SYNC, OTHER]

    scheduler = SyncScheduler(clock, listed, recorder, locks, tick=15)
    async with locks.hold(SYNC.key, wait=0, lease=60):  # the other worker's run
        await scheduler.tick()
        await scheduler.idle()
    assert times(recorder, SYNC) == []
    assert len(times(recorder, OTHER)) == 1
    clock.advance(60)
    await scheduler.tick()
    await scheduler.idle()
    assert len(times(recorder, SYNC)) == 1


async def test_connections_that_come_and_go_are_followed() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    jobs: list[Job] | None = [SYNC]

    async def listed() -> list[Job]:
        if jobs is None:
            raise RuntimeError("store unavailable")  # logged; the next tick tries again
        return list(jobs)

    scheduler = SyncScheduler(clock, listed, recorder, MemoryLockBackend(), tick=15)
    start = clock.monotonic()
    await run_for(scheduler, clock, 15, 15)  # SYNC at 0, next due at 60
    jobs = [SYNC, OTHER]
    await run_for(scheduler, clock, 15, 15)  # a new connection starts at once (15)
    jobs = [OTHER]  # SYNC paused at 30 ...
    await run_for(scheduler, clock, 15, 15)
    jobs = None  # ... the store fails at 45: nothing starts, nothing is forgotten
    await run_for(scheduler, clock, 15, 15)
    jobs = [SYNC, OTHER]  # ... and SYNC resumed at 60: starts at once, as new
    await run_for(scheduler, clock, 15, 15)
    assert [t - start for t in times(recorder, OTHER)] == [15]
    assert [t - start for t in times(recorder, SYNC)] == [0, 60]


async def test_without_a_lock_backend_a_job_that_finds_itself_locked_is_skipped() -> None:
    clock = FakeClock()
    recorder = Recorder(clock)
    locks = MemoryLockBackend()

    async def self_locking(job: Job) -> None:  # what Hub.sync and Hub.reconcile do
        async with locks.hold(job.key, wait=0, lease=60):
            await recorder(job)

    async def listed() -> list[Job]:
        return [SYNC, OTHER]

    scheduler = SyncScheduler(clock, listed, self_locking, None, tick=15)
    async with locks.hold(SYNC.key, wait=0, lease=60):  # another worker's run
        await scheduler.tick()
        await scheduler.idle()
    assert times(recorder, SYNC) == []
    assert len(times(recorder, OTHER)) == 1
    assert scheduler.runs[SYNC.key] == 1  # tried, skipped, due again at its next time
    clock.advance(60)
    await scheduler.tick()
    await scheduler.idle()
    assert len(times(recorder, SYNC)) == 1
