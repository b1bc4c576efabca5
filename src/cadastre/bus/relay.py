"""``OutboxRelay``: publishes what the outbox holds to the bus, at least once, in order.

For each tenant with pending events, under the lock ``outbox-relay:<tenant>`` (taken without
waiting: when another worker holds it, that worker is relaying the tenant), the relay reads
pending events in position order, a batch at a time, hands the batch to the bus and then marks it
published, which numbers the events for the change feed. A crash between the two leaves the
batch pending and it is published again (consumers de-duplicate by event id; JetStream drops a
repeat within its duplicate window). A bus or store error backs off on the hub's clock and the
same batch is tried again: nothing is dropped or reordered.

It runs as an async context manager worker (``Hub.running()``). A commit in this process that
wrote outbox events wakes it at once (``Store.watch_outbox``); other processes' commits are found
by polling every ``poll`` seconds. After relaying a tenant it also forgets, at most hourly, that
tenant's consumer de-duplication marks older than ``keep`` (marks only arrive with events, so a
tenant that has them has had outbox traffic).

Failpoints (kill -9 trials): ``outbox.relay.before_publish`` (a batch read, nothing sent) and
``outbox.relay.published`` (the bus took the batch, not yet marked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from cadastre import failpoints
from cadastre.errors import CadastreError, LockTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, EventBus, LockBackend, Store

_log = logging.getLogger("cadastre.relay")
PRUNE_EVERY = 3600.0  # seconds between prunes of one tenant's de-duplication marks
STOP_GRACE = 5.0  # seconds a stopping relay may finish the batch in hand
LEASE = 300.0  # how long a relay that died keeps a tenant's lock (Redis); kernel locks free at once


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        locks: LockBackend,
        clock: Clock,
        *,
        batch: int = 500,
        poll: float = 0.5,
        rounds_per_tenant: int = 10,
        keep: timedelta = timedelta(days=7),
        retry_first: float = 0.1,
        retry_most: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._locks = locks
        self._clock = clock
        self._batch = batch
        self._poll = poll
        self._rounds = rounds_per_tenant
        self._keep = keep
        self._retry = (retry_first, retry_most)
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._published = asyncio.Event()  # replaced after each set: wakes every waiter once
        self._pruned: dict[str, float] = {}  # tenant -> clock.monotonic() of its last prune
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._unwatch: Callable[[], None] | None = None
        self.relayed = 0  # events published since start (a count for tests and benchmarks)

    # -- worker ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._unwatch = self._store.watch_outbox(self.wake)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        task, self._task = self._task, None
        if task is None:
            return
        # Let the batch in hand finish (a cancelled store call leaves a connection to reset);
        # one that does not end soon (a consumer failing for ever) is cancelled: it is still
        # pending, so the next start publishes it again.
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self, tenant: str | None = None) -> None:
        """Relay now rather than at the next poll (a commit wrote outbox events)."""
        self._wake.set()

    async def wait_published(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (on the hub's clock) for the relay to publish something; True
        when it did. Long-polling readers of the change feed wait here."""
        published = self._published
        return await self._first(published.wait(), seconds)

    # -- relaying -------------------------------------------------------------------------

    async def drain(self) -> int:
        """One round over every tenant with pending events, until none is left that this relay
        may take; how many events it published. Errors propagate (the worker backs off)."""
        total = 0
        while True:
            moved = 0
            for tenant in await self._store.pending_outbox_tenants():
                if self._stopping:
                    return total + moved
                moved += await self.relay_tenant(tenant)
            total += moved
            if not moved:
                return total

    async def relay_tenant(self, tenant: str) -> int:
        """Publish up to ``rounds_per_tenant`` batches of ``tenant``'s pending events (0 when
        another worker holds the tenant)."""
        moved = 0
        try:
            async with self._locks.hold(f"outbox-relay:{tenant}", wait=0.0, lease=LEASE):
                for _ in range(self._rounds):
                    if self._stopping:
                        break
                    async with self._store.unit_of_work(tenant, read_only=True) as uow:
                        pending = await uow.outbox.pending(limit=self._batch)
                    if not pending:
                        break
                    failpoints.reach("outbox.relay.before_publish")
                    await self._bus.publish([m.event for m in pending])
                    failpoints.reach("outbox.relay.published")
                    async with self._store.unit_of_work(tenant) as uow:
                        await uow.outbox.mark_published([m.event.id for m in pending])
                        await uow.commit()
                    moved += len(pending)
                    self._announce(tenant, len(pending))
                    if len(pending) < self._batch:
                        break
                await self._maybe_prune(tenant)
        except LockTimeout:
            return moved
        return moved

    async def _run(self) -> None:
        first, most = self._retry
        delay = first
        while not self._stopping:
            self._wake.clear()
            try:
                await self.drain()
            except (CadastreError, OSError) as exc:
                _log.warning("outbox relay: %s: %s; trying again in %.3g s",
                             type(exc).__name__, exc, delay)  # fmt: skip
            except Exception:  # noqa: BLE001 - a bug: logged with its traceback; the relay goes on
                _log.exception("outbox relay failed; trying again in %.3g s", delay)
            else:
                delay = first
                await self._first(self._wake.wait(), self._poll)
                continue
            await self._clock.sleep(delay)
            delay = min(delay * 2, most)

    async def _first(self, waiting: Coroutine[Any, Any, Any], seconds: float) -> bool:
        """Await ``waiting`` or ``seconds`` on the clock, whichever ends first; whether
        ``waiting`` did."""
        event_task = asyncio.ensure_future(waiting)
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({event_task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (event_task, timer):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(event_task, timer, return_exceptions=True)
        return event_task.done() and not event_task.cancelled()

    def _announce(self, tenant: str, count: int) -> None:
        self.relayed += count
        published, self._published = self._published, asyncio.Event()
        published.set()
        if self._metrics is not None:
            self._metrics.counter("cadastre_events_published_total").labels(tenant).inc(count)

    async def _maybe_prune(self, tenant: str) -> None:
        now = self._clock.monotonic()
        last = self._pruned.get(tenant)
        if last is not None and now - last < PRUNE_EVERY:
            return
        self._pruned[tenant] = now
        async with self._store.unit_of_work(tenant) as uow:
            gone = await uow.consumed.prune(before=self._clock.now() - self._keep)
            await uow.commit()
        if gone:
            _log.info("forgot %d de-duplication marks of tenant %r", gone, tenant)
