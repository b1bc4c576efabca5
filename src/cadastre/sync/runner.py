"""``SyncRunner``: one connection's streams pulled into the store, page by page.

For each page the connector yields: map every raw record (a record that cannot be mapped is set
aside in quarantine with its raw payload and a reason), then apply the changes, the quarantine
entries and the page's cursor in one transaction. The cursor therefore never runs ahead of what is
stored, and a crash at any point resumes from the last committed page. A change the contract
rejects (a price of "N/A") is quarantined inside that same transaction.

The next page is fetched while the current one is applied (read-ahead of one page), so vendor
latency and store time overlap. A transient vendor failure (5xx, timeout, garbage page) restarts
the read from the last committed cursor after a backoff on the hub's clock; the run gives up only
after ``max_failures`` consecutive failures, with nothing lost.

A watchdog guards every run: with no page committed for ``stall_seconds``, or past
``max_seconds`` in all, it cancels the run (a hung vendor call included, wherever it waits), counts
it ``timed_out`` and raises ``SyncTimedOut``, so the worker is free for the next job. What was
committed stays committed; the next run resumes from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadastre.contract import Change
from cadastre.errors import ContractError, SyncTimedOut, Transient
from cadastre.ports import RawPage
from cadastre.sync.engine import CursorAdvance, QuarantineDraft

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from cadastre.mapping import RecordMapper
    from cadastre.observe import Metrics
    from cadastre.ports import Clock, SourceConnector, Store
    from cadastre.sync.engine import BatchItem, SyncEngine


@dataclass
class SyncTally:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    refused: int = 0
    quarantined: int = 0
    pages: int = 0
    retries: int = 0
    expected: int | None = None  # what the vendor said the read holds, when it said
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        """Records accounted for in the store (written, unchanged, already applied, refused)."""
        return self.created + self.updated + self.unchanged + self.duplicates + self.refused


@dataclass(frozen=True)
class SyncReport:
    tenant: str
    connection: str
    full: bool
    tally: SyncTally
    cursors: Mapping[str, Mapping[str, Any]]
    started: datetime
    seconds: float
    unknown_fields: Mapping[str, int]


class SyncRunner:
    def __init__(
        self,
        engine: SyncEngine,
        store: Store,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        max_failures: int = 5,
        backoff: float = 1.0,
        backoff_cap: float = 60.0,
        stall_seconds: float | None = 900.0,
        max_seconds: float | None = 6 * 3600.0,
    ) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._max_failures = max_failures
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._stall_seconds = stall_seconds
        self._max_seconds = max_seconds

    async def run(
        self,
        *,
        tenant: str,
        connection: str,
        connector: SourceConnector,
        mappers: Mapping[str, RecordMapper],
        full: bool = False,
        progress: Callable[[SyncTally], None] | None = None,
    ) -> SyncReport:
        """Pull every stream of ``connector`` that has a mapper. ``full`` starts from nothing
        instead of the stored cursor (records already held come back unchanged)."""
        watchdog = _Watchdog(self._clock, self._stall_seconds, self._max_seconds)
        body = asyncio.ensure_future(self._run(
            tenant=tenant, connection=connection, connector=connector, mappers=mappers,
            full=full, progress=progress, beat=watchdog.beat,
        ))  # fmt: skip
        outcome = "failed"
        try:
            report = await watchdog.guard(body, f"sync of connection {connection!r}")
            outcome = "ok"
            return report
        except SyncTimedOut:
            outcome = "timed_out"
            raise
        finally:
            if self._metrics is not None:
                runs = self._metrics.counter("cadastre_sync_runs_total")
                runs.labels(connection=connection, outcome=outcome).inc()

    async def _run(
        self,
        *,
        tenant: str,
        connection: str,
        connector: SourceConnector,
        mappers: Mapping[str, RecordMapper],
        full: bool,
        progress: Callable[[SyncTally], None] | None,
        beat: Callable[[], None],
    ) -> SyncReport:
        started, start = self._clock.now(), self._clock.monotonic()
        tally = SyncTally()
        for each in mappers.values():
            each.unknown.clear()  # this run's report, not the mapper's lifetime
        cursors: dict[str, Mapping[str, Any]] = {}
        for stream in connector.streams():
            mapper = mappers.get(stream)
            if mapper is None:
                continue
            cursors[stream] = await self._stream(
                tenant, connection, connector, stream, mapper, full, tally, progress, beat
            )
        unknown: Counter[str] = Counter()
        for each in mappers.values():
            unknown.update(each.unknown)
        return SyncReport(
            tenant=tenant, connection=connection, full=full, tally=tally, cursors=cursors,
            started=started, seconds=self._clock.monotonic() - start, unknown_fields=unknown,
        )  # fmt: skip

    async def _stream(
        self,
        tenant: str,
        connection: str,
        connector: SourceConnector,
        stream: str,
        mapper: RecordMapper,
        full: bool,
        tally: SyncTally,
        progress: Callable[[SyncTally], None] | None,
        beat: Callable[[], None],
    ) -> Mapping[str, Any]:
        cursor: Mapping[str, Any] | None = None
        if not full:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                stored = await uow.cursors.get(connection, stream)
            cursor = stored.value if stored is not None else None
        failures = 0
        while True:
            try:
                prepared = self._prepare(
                    connector.read(stream, cursor), tenant, connection, connector.system, mapper
                )
                async for page in _read_ahead(prepared):
                    await self._commit(tenant, connection, page, tally)
                    beat()
                    cursor = page.raw.cursor
                    failures = 0
                    if progress is not None:
                        progress(tally)
                return cursor or {}
            except Exception as exc:
                if not isinstance(exc, Transient):
                    raise
                failures += 1
                if failures >= self._max_failures:
                    raise
                tally.retries += 1
                # Restart from the last committed page: nothing after it was stored.
                await self._clock.sleep(min(self._backoff_cap, self._backoff * 2 ** (failures - 1)))

    async def _prepare(
        self,
        pages: AsyncIterator[RawPage],
        tenant: str,
        connection: str,
        system: str,
        mapper: RecordMapper,
    ) -> AsyncIterator[_Page]:
        """Map each page, and have the engine validate it ahead. Run by the read-ahead, this
        happens while the previous page is being written (the database works in its own thread),
        so the CPU work of one page overlaps the database work of the other."""
        async for raw_page in pages:
            page = _Page(raw_page)
            for raw in raw_page.records:
                mapped = mapper.map(raw, tenant=tenant, connection=connection, system=system)
                if isinstance(mapped, Change):
                    page.changes.append(mapped)
                    page.payloads[mapped.idempotency_key] = raw.data
                else:
                    page.reasons[mapped.code] += 1
                    page.drafts.append(QuarantineDraft(
                        connection, mapper.entity, raw.external_id, mapped.reason, dict(raw.data)
                    ))  # fmt: skip
            self._engine.prepare(page.changes)
            yield page

    async def _commit(self, tenant: str, connection: str, page: _Page, tally: SyncTally) -> None:
        def on_reject(change: Change, error: ContractError) -> QuarantineDraft:
            tally.reasons["invalid_value"] += 1
            return QuarantineDraft(
                connection, change.entity, change.origin.external_id, str(error),
                dict(page.payloads.get(change.idempotency_key, change.fields)),
            )  # fmt: skip

        raw = page.raw
        advance = CursorAdvance(tenant, connection, raw.stream, raw.cursor)
        items = await self._engine.apply_batch(
            page.changes, cursor=advance, quarantine=page.drafts, on_reject=on_reject
        )
        tally.pages += 1
        tally.fetched += len(raw.records)
        if raw.expected is not None and tally.expected is None:
            tally.expected = raw.expected
        tally.quarantined += len(page.drafts)
        tally.reasons.update(page.reasons)
        for item in items:
            _count(item, tally)
        self._observe(connection, raw, len(page.changes), tally)

    def _observe(self, connection: str, page: RawPage, mapped: int, tally: SyncTally) -> None:
        if self._metrics is None:
            return
        synced = self._metrics.counter("cadastre_records_synced_total")
        synced.labels(connection=connection, stream=page.stream).inc(mapped)
        newest = max((r.source_time for r in page.records if r.source_time), default=None)
        if newest is not None:
            lag = (self._clock.now() - newest).total_seconds()
            gauge = self._metrics.gauge("cadastre_sync_lag_seconds")
            gauge.labels(connection=connection, stream=page.stream).set(max(0.0, lag))


class _Watchdog:
    """Stops a run that stalls or overruns; times are on the hub's clock."""

    def __init__(self, clock: Clock, stall: float | None, limit: float | None) -> None:
        self._clock = clock
        self._stall = stall
        self._limit = limit
        self._started = self._last = clock.monotonic()

    def beat(self) -> None:
        self._last = self._clock.monotonic()

    def _overdue(self) -> tuple[float, str] | None:
        """(seconds until the next check, or 0 with why the run must stop)."""
        now = self._clock.monotonic()
        checks: list[tuple[float, str]] = []
        if self._stall is not None:
            stalled = f"no page committed for {self._stall:g} s"
            checks.append((self._last + self._stall - now, stalled))
        if self._limit is not None:
            checks.append((self._started + self._limit - now, f"running past {self._limit:g} s"))
        if not checks:
            return None
        return min(checks)

    async def guard(self, body: asyncio.Future[SyncReport], what: str) -> SyncReport:
        try:
            while True:
                due = self._overdue()
                if due is None:
                    return await body
                left, why = due
                if left <= 0:
                    break
                sleeper = asyncio.ensure_future(self._clock.sleep(left))
                try:
                    racing: list[asyncio.Future[Any]] = [body, sleeper]
                    await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                if body.done():
                    return body.result()
        finally:
            if not body.done():
                body.cancel()
                # The hung call is cancelled where it waits; whatever it raises now is moot.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await body
        raise SyncTimedOut(f"{what} stopped by its watchdog: {why}")


@dataclass
class _Page:
    """A vendor page, mapped: the changes to apply and the records to set aside."""

    raw: RawPage
    changes: list[Change] = field(default_factory=list)
    drafts: list[QuarantineDraft] = field(default_factory=list)
    payloads: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)


def _count(item: BatchItem, tally: SyncTally) -> None:
    result = item.result
    if result is None:
        tally.quarantined += 1  # rejected by the contract: on_reject set it aside
    elif result.duplicate:
        tally.duplicates += 1
    elif result.created:
        tally.created += 1
    elif result.wrote:
        tally.updated += 1
    elif result.refused:
        tally.refused += 1
    else:
        tally.unchanged += 1


async def _read_ahead(pages: AsyncIterator[_Page]) -> AsyncIterator[_Page]:
    """Yield ``pages`` while fetching (and mapping) the next one in the background."""
    upcoming: asyncio.Task[_Page] = asyncio.ensure_future(anext(pages))
    try:
        while True:
            try:
                page = await upcoming
            except StopAsyncIteration:
                return
            upcoming = asyncio.ensure_future(anext(pages))
            yield page
    finally:
        if not upcoming.done():
            upcoming.cancel()
        # The abandoned fetch's own outcome no longer matters: the caller is leaving.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upcoming
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
