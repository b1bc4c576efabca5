"""``InboxWriter``: verified webhooks into the inbox with group commit.

A webhook's 2xx must follow the commit of its row. One transaction per request would cap the
endpoint at the database's commit rate (SQLite: one ``BEGIN IMMEDIATE`` writer at a time), so the
requests that arrive while a transaction is being written wait for the next one, which stores
them all: each request still gets its answer only after the commit that holds its row, and a
failed commit fails every request in it (503: the vendor sends it again). There is no waiting on
purpose: a lone request is written at once, and batches form only when requests queue.

The refusal counts (``RefusalLog``) ride along, at most once every ``refusal_every`` seconds,
and ``cadastre_webhooks_received_total`` is counted once per transaction rather than once per
request (a prometheus-client counter costs more per call than the rest of a request's
bookkeeping).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadastre.ports import ReceivedWebhook, StoresWebhooksAtOnce

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.observe import Metrics
    from cadastre.ports import RefusalTally, Store
    from cadastre.webhooks.refusals import RefusalLog


@dataclass
class _Job:
    tenant: str
    item: ReceivedWebhook
    done: asyncio.Future[bool] = field(repr=False)


class InboxWriter:
    def __init__(
        self, store: Store, refusals: RefusalLog, *, metrics: Metrics | None = None,
        max_batch: int = 500, refusal_every: float = 1.0,
    ) -> None:  # fmt: skip
        self._store = store
        self._refusals = refusals
        self._metrics = metrics
        self._max_batch = max_batch
        self._refusal_every = refusal_every
        self._queue: list[_Job] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._refusals_due = 0.0  # loop time the next refusal write may happen
        self.commits = 0  # transactions that stored webhooks (the bench and tests read it)

    async def write(self, tenant: str, item: ReceivedWebhook) -> bool:
        """Store ``item`` durably; True when stored now, False when its message id was held
        already. Returns once the transaction holding it has committed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(tenant, item, done))
        self.kick()
        # A request cancelled while it waits cancels only its future: its row stays in the
        # batch (the vendor had no 2xx and sends it again, which finds it held).
        return await done

    def kick(self) -> None:
        """Make sure queued webhooks and refusal counts get written."""
        if self._wake is not None:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Write everything queued so far, refusal counts included (tests, shutdown)."""
        self._refusals_due = 0.0
        if self._queue or len(self._refusals):
            self.kick()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def aclose(self) -> None:
        await self.flush()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while self._queue or len(self._refusals):
            if not self._queue:
                wait = self._refusals_due - loop.time()
                if wait > 0:  # only counts to write: not more often than refusal_every
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
            jobs = self._queue[: self._max_batch]
            del self._queue[: len(jobs)]
            tallies: dict[str, list[RefusalTally]] = {}
            if loop.time() >= self._refusals_due and len(self._refusals):
                tallies = self._refusals.take()
                self._refusals_due = loop.time() + self._refusal_every
            by_tenant: dict[str, list[_Job]] = {}
            for job in jobs:
                by_tenant.setdefault(job.tenant, []).append(job)
            for tenant in dict.fromkeys([*by_tenant, *tallies]):
                await self._write(tenant, by_tenant.get(tenant, []), tallies.get(tenant, []))

    async def _write(self, tenant: str, jobs: list[_Job], tallies: list[RefusalTally]) -> None:
        items = [j.item for j in jobs]
        try:
            if isinstance(self._store, StoresWebhooksAtOnce):
                stored = await self._store.store_webhooks(tenant, items, tallies)
            else:
                async with self._store.unit_of_work(tenant) as uow:
                    stored = await uow.webhooks_in.add_many(items)
                    await uow.webhooks_in.count_refusals(tallies)
                    await uow.commit()
        except BaseException as exc:
            # Every request of the batch learns its row is not durable (a 503 to the vendor);
            # the refusal counts of the batch are lost, which costs only a figure.
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if jobs:
            self.commits += 1
        for job, new in zip(jobs, stored, strict=True):
            if not job.done.done():
                job.done.set_result(new)
        if self._metrics is not None and jobs:
            self._count(self._metrics, jobs, stored)

    def _count(self, metrics: Metrics, jobs: list[_Job], stored: Sequence[bool]) -> None:
        """``cadastre_webhooks_received_total``: the transaction's webhooks by connection and
        outcome (stored, or duplicate: held already)."""
        tally: dict[tuple[str, str], int] = {}
        for job, new in zip(jobs, stored, strict=True):
            key = (job.item.connection, "stored" if new else "duplicate")
            tally[key] = tally.get(key, 0) + 1
        received = metrics.counter("cadastre_webhooks_received_total")
        for (connection, outcome), count in tally.items():
            received.labels(connection=connection, outcome=outcome).inc(count)
