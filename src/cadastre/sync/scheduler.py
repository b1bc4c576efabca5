"""``SyncScheduler``: each connection's jobs (its incremental sync, its key reconciliation) run at
the cadence its MLS's mapping file declares, while ``cadastre serve`` runs.

Every ``tick`` seconds on the hub's clock the scheduler asks for the current jobs (connections are
added, paused and edited while it runs), starts the ones that are due, at most ``parallel`` at
once, and never two runs of one job at once. A job that fails is logged and tried again at its
next due time; it never stops the others. Across workers, a job runs under a named lock taken
without waiting: a worker that finds it held skips the job (another worker is running it) and
looks again at the next due time, so two workers never sync one connection at the same time.
The lock is the scheduler's when it is handed a ``LockBackend``; without one the jobs lock
themselves (``Hub.sync`` and ``Hub.reconcile`` do, raising ``LockTimeout``), so a run holds one
lock, not two (a PostgreSQL advisory lock holds a pooled connection for the whole run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cadastre.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from cadastre.ports import Clock, LockBackend

_log = logging.getLogger("cadastre.sync.scheduler")


@dataclass(frozen=True)
class Job:
    tenant: str
    connection: str
    kind: str  # "sync" | "reconcile"
    every: float  # seconds between the starts of two runs

    @property
    def key(self) -> str:
        return f"schedule:{self.kind}:{self.tenant}:{self.connection}"


class SyncScheduler:
    def __init__(
        self,
        clock: Clock,
        jobs: Callable[[], Awaitable[Sequence[Job]]],
        run: Callable[[Job], Awaitable[object]],
        locks: LockBackend | None,
        *,
        tick: float = 15.0,
        parallel: int = 4,
        lease: float = 6 * 3600.0,
    ) -> None:
        self._clock = clock
        self._jobs = jobs
        self._run = run
        self._locks = locks
        self._tick = tick
        self._slots = asyncio.Semaphore(parallel)
        self._lease = lease
        self._next: dict[str, float] = {}  # job key -> monotonic time it is next due
        self._running: dict[str, asyncio.Task[None]] = {}
        self.runs: dict[str, int] = {}  # job key -> runs completed (ok or failed), for reports

    async def run_forever(self) -> None:
        try:
            while True:
                await self.tick()
                await self._clock.sleep(self._tick)
        finally:
            for task in self._running.values():
                task.cancel()
            for task in list(self._running.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def tick(self) -> list[Job]:
        """Start every job that is due now; returns the jobs started."""
        try:
            jobs = await self._jobs()
        except Exception:  # noqa: BLE001 - a store hiccup: try again next tick, keep scheduling
            _log.exception("could not list the scheduled jobs")
            return []
        now = self._clock.monotonic()
        current = {job.key for job in jobs}
        for gone in [key for key in self._next if key not in current]:
            del self._next[gone]  # removed or paused: forget it, so it starts at once if back
        started = []
        for job in jobs:
            due = self._next.setdefault(job.key, now)
            if due > now or job.key in self._running:
                continue
            self._next[job.key] = now + job.every
            task = asyncio.create_task(self._one(job))
            self._running[job.key] = task
            task.add_done_callback(self._finished(job.key))
            started.append(job)
        return started

    def _finished(self, key: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._running.pop(key, None)

        return forget

    async def idle(self) -> None:
        """Wait until no job is running (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _one(self, job: Job) -> None:
        async with self._slots:
            try:
                if self._locks is None:
                    await self._run(job)
                else:
                    async with self._locks.hold(job.key, wait=0.0, lease=self._lease):
                        await self._run(job)
            except LockTimeout:
                _log.info("%s of %r (tenant %r) runs on another worker; skipped",
                          job.kind, job.connection, job.tenant)  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one job's failure is its own; it runs again
                _log.warning("scheduled %s of %r (tenant %r) failed: %s", job.kind,
                             job.connection, job.tenant, exc)  # fmt: skip
            finally:
                self.runs[job.key] = self.runs.get(job.key, 0) + 1
