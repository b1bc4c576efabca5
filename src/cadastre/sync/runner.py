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

Bad vendor data never stops a run and is never dropped; each kind becomes a quarantine entry with
its raw payload, its stream and a code (the codes are listed in ``docs/sync.md``): a record the
mapping cannot read (``missing_key``, ``unknown_enum_value``...), a value the contract refuses
(``invalid_value``), a second copy of one key within a page (``duplicate_in_page``: the newest
copy by source time is applied, ties going to the later one in the page; an identical copy is a
plain duplicate, which the idempotency ledger reports), a record older than the version already
stored (``timestamp_backwards``, found by the engine from the provenance it loads anyway), and a
page that cannot be read at all (``malformed_page``: the connector hands it over with the body
after its retries; the body is set aside, the stream's read ends for this run, and its cursor stays
where it was, so the next run reads that page again).

An incremental read starts at its cursor, so a bad record at the cursor is read, and set aside,
by every run until the vendor fixes it. The store keeps one open entry per version of a record
(``QuarantineRepository.add`` counts a sighting on the entry that holds the same payload), and
the run's figures count what the run did: ``quarantined``, the ``records_quarantined``
observation and ``cadastre_records_quarantined_total`` count records set aside by this run,
sightings of entries already open included - as ``records_synced`` counts a record read again -
so every record read is counted once per run. How many entries are open is the
``quarantine_open`` gauge (``uow.quarantine.open_counts``), which does not grow with re-reads.

A record the vendor says it merged into another (``RawRecord.merged_into``, a CRM contact merge)
is not mapped: identity resolution handles it in the page's transaction (``identity.merging``:
cross-references and links re-pointed, the merged record tombstoned), counted in ``merged``.

A watchdog guards every run: with no page committed for ``stall_seconds``, or past
``max_seconds`` in all, it cancels the run (a hung vendor call included, wherever it waits), counts
it ``timed_out`` and raises ``SyncTimedOut``, so the worker is free for the next job. What was
committed stays committed; the next run resumes from there.

The module is past 400 lines because a page's life is one piece: read ahead, mapped, its copies
of one key settled, committed with its quarantine and cursor, or set aside whole when unreadable,
under the watchdog. Split, each part would only make sense beside the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace

from cadastre.contract import Change, Operation
from cadastre.errors import SyncTimedOut, Transient
from cadastre.mapping import RecordMapper
from cadastre.observe import Freshness, traced, working_for
from cadastre.ports import RawPage, RawRecord, SourceConnector
from cadastre.sync.engine import BACKWARDS, CursorAdvance, PreparedBatch, QuarantineDraft
from cadastre.sync.identity import Merge, merge_of, merging

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

    from cadastre.observe import Metrics, Observations
    from cadastre.ports import Clock, Store
    from cadastre.sync.engine import BatchItem, SyncEngine

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("cadastre.sync")


@dataclass
class SyncTally:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    duplicates: int = 0
    refused: int = 0
    superseded: int = 0  # older than the version held, skipped (pushed records, out of order)
    merged: int = 0  # vendor merges (RawRecord.merged_into) handed to identity resolution
    # merges whose changes did not all go through (the merged record not wholly tombstoned, a
    # ContactKey refused): logged one by one; counted apart from ``merged``
    merges_incomplete: int = 0
    # records set aside by this run, also one whose open entry already held that version (a
    # sighting: no new entry); a malformed page counts in unreadable_pages
    quarantined: int = 0
    pages: int = 0
    unreadable_pages: int = 0
    retries: int = 0
    expected: int | None = None  # what the vendor said the read holds, when it said
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        """Records accounted for in the store (written, deleted, unchanged, already applied,
        refused): with ``quarantined``, every record fetched."""
        return (self.created + self.updated + self.deleted + self.unchanged + self.duplicates
                + self.refused + self.superseded + self.merged)  # fmt: skip


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
    # stream -> why its read stopped early at a page that could not be read (malformed_page)
    unread: Mapping[str, str] = field(default_factory=dict)


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
        observations: Observations | None = None,
    ) -> None:
        self._engine = engine
        self._observations = observations
        # (tenant, connection) -> how current its copy is, for the sampler's sync lag
        self._fresh: dict[tuple[str, str], Freshness] = {}
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
        superseded: Literal["quarantine", "skip"] = "quarantine",
    ) -> SyncReport:
        """Pull every stream of ``connector`` that has a mapper. ``full`` starts from nothing
        instead of the stored cursor (records already held come back unchanged).

        ``superseded``: what becomes of a record older than the version held. A polled page
        should never carry one (a vendor's clock going backwards: ``quarantine`` it for a
        person); pushed records arrive out of order as a matter of course (``skip`` it, counted
        in ``SyncTally.superseded``: the newer version is already held)."""
        # The run's task and the read-ahead's inherit both from here (asyncio copies the context
        # into each task): every log line and vendor call of the run is under its span.
        with working_for(tenant, connection), traced(_tracer, "sync.run", {
            "cadastre.tenant": tenant, "cadastre.connection": connection, "cadastre.full": full,
        }) as span:  # fmt: skip
            watchdog = _Watchdog(self._clock, self._stall_seconds, self._max_seconds)
            body = asyncio.ensure_future(self._run(
                tenant=tenant, connection=connection, connector=connector, mappers=mappers,
                full=full, progress=progress, beat=watchdog.beat, superseded=superseded,
            ))  # fmt: skip
            outcome, began = "failed", self._clock.now()
            try:
                report = await watchdog.guard(body, f"sync of connection {connection!r}")
                outcome = "ok"
                _tallied(span, report.tally)
                # Everything the vendor changed before the run began has now been read.
                self._freshen(tenant, connection, began)
                return report
            except SyncTimedOut:
                outcome = "timed_out"
                raise
            finally:
                span.set_attribute("cadastre.outcome", outcome)
                if self._metrics is not None:
                    runs = self._metrics.counter("cadastre_sync_runs_total")
                    runs.labels(connection=connection, outcome=outcome).inc()
                if self._observations is not None:
                    ended = "sync_ok" if outcome == "ok" else "sync_failed"
                    self._observations.count(tenant, connection, ended)

    def freshness(self, tenant: str) -> dict[str, Freshness]:
        """Connection -> how current its copy is, for the connections this runner synced (the
        sampler's ``sync_lag_seconds``)."""
        return {c: f for (t, c), f in self._fresh.items() if t == tenant}

    def _freshen(self, tenant: str, connection: str, basis: datetime | None) -> None:
        held = self._fresh.get((tenant, connection))
        if basis is None or (held is not None and held.basis >= basis):
            basis = held.basis if held is not None else None
        if basis is not None:
            self._fresh[(tenant, connection)] = Freshness(basis, self._clock.now())

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
        superseded: Literal["quarantine", "skip"],
    ) -> SyncReport:
        started, start = self._clock.now(), self._clock.monotonic()
        tally = SyncTally()
        for each in mappers.values():
            each.reset_observations()  # this run's figures, not the mapper's lifetime
        cursors: dict[str, Mapping[str, Any]] = {}
        unread: dict[str, str] = {}
        for stream in connector.streams():
            if stream not in mappers:
                continue
            read = _Read(tenant, connection, connector, stream, mappers, full, unread,
                         skip_superseded=superseded == "skip")  # fmt: skip
            cursors[stream] = await self._stream(read, tally, progress, beat)
        unknown: Counter[str] = Counter()
        for each in mappers.values():
            unknown.update(each.unknown)
        return SyncReport(
            tenant=tenant, connection=connection, full=full, tally=tally, cursors=cursors,
            started=started, seconds=self._clock.monotonic() - start, unknown_fields=unknown,
            unread=unread,
        )  # fmt: skip

    async def _stream(
        self,
        read: _Read,
        tally: SyncTally,
        progress: Callable[[SyncTally], None] | None,
        beat: Callable[[], None],
    ) -> Mapping[str, Any]:
        tenant, connection, stream = read.tenant, read.connection, read.stream
        cursor: Mapping[str, Any] | None = None
        if not read.full:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                stored = await uow.cursors.get(connection, stream)
            cursor = stored.value if stored is not None else None
        failures = 0
        while True:
            try:
                prepared = self._prepare(read.connector.read(stream, cursor), read)
                async with contextlib.aclosing(_read_ahead(prepared)) as pages:
                    async for page in pages:
                        if page.raw.problem is not None:
                            # Nothing after an unreadable page can be committed without
                            # skipping it: stop this stream here, cursor unchanged, and say so.
                            await self._set_aside_page(read, page.raw, tally)
                            beat()
                            if progress is not None:
                                progress(tally)
                            return cursor or {}
                        with traced(_tracer, "sync.page", {"cadastre.stream": page.raw.stream,
                                    "cadastre.records": len(page.raw.records)}):  # fmt: skip
                            await self._commit(tenant, connection, page, tally,
                                               skip_superseded=read.skip_superseded)  # fmt: skip
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

    async def _prepare(self, pages: AsyncIterator[RawPage], read: _Read) -> AsyncIterator[_Page]:
        """Map each page, and have the engine validate it ahead. Run by the read-ahead, this
        happens while the previous page is being written (the database works in its own thread),
        so the CPU work of one page overlaps the database work of the other."""
        tenant, connection, system = read.tenant, read.connection, read.connector.system
        mappers = read.mappers
        async for raw_page in pages:
            page = _Page(raw_page)
            # A page may carry records of other streams (RESO Media beside Property).
            fallback = mappers.get(raw_page.stream) or mappers[read.stream]
            now = self._clock.now()  # the page's arrival, for the records' freshness
            for raw in raw_page.records:
                mapper = mappers.get(raw.stream) or fallback
                if raw.merged_into is not None:  # identity resolution's, not mapping's
                    merge = merge_of(raw, tenant=tenant, connection=connection, system=system,
                                     entity=mapper.entity)  # fmt: skip
                    if merge is not None:
                        page.merges.append(merge)
                        continue
                mapped = mapper.map(
                    raw, tenant=tenant, connection=connection, system=system, now=now
                )
                if isinstance(mapped, Change):
                    page.changes.append(mapped)
                    page.payloads[mapped.idempotency_key] = raw
                else:
                    page.reasons[mapped.code] += 1
                    page.drafts.append(QuarantineDraft(
                        connection, mapper.entity, raw.external_id, mapped.reason, dict(raw.data),
                        stream=raw.stream, code=mapped.code,
                    ))  # fmt: skip
            if page.changes:
                _one_copy_per_key(page, connection)
            page.prepared = self._engine.prepare(page.changes)  # this run's, handed to apply_batch
            yield page

    async def _set_aside_page(self, read: _Read, raw: RawPage, tally: SyncTally) -> None:
        """Quarantine an unreadable page as one entry holding its body. A page that stays
        broken upstream is met again by every run: while an open entry holds the same body, no
        second one is added."""
        mapper = read.mappers[read.stream]
        body = raw.raw or ""
        payload = {"body": body, "problem": raw.problem, "cursor": dict(raw.cursor)}
        tally.unreadable_pages += 1
        tally.reasons[MALFORMED_PAGE] += 1
        read.unread[read.stream] = raw.problem or "unreadable page"
        async with self._store.unit_of_work(read.tenant) as uow:
            after: str | None = None  # read a few at a time: each holds a body of up to 256 KiB
            while held := await uow.quarantine.open_items(
                read.connection, code=MALFORMED_PAGE, after=after, limit=_HELD_PAGES
            ):
                if any(q.stream == raw.stream and q.payload.get("body") == body for q in held):
                    return
                after = held[-1].id
            await uow.quarantine.add(
                connection=read.connection, entity=mapper.entity, external_id=None,
                reason=f"unreadable page of {raw.stream}: {raw.problem}", payload=payload,
                stream=raw.stream, code=MALFORMED_PAGE,
            )  # fmt: skip
            await uow.commit()
        if self._metrics is not None:  # a new entry (a page met again was returned above)
            set_aside = self._metrics.counter("cadastre_records_quarantined_total")
            set_aside.labels(connection=read.connection, reason=MALFORMED_PAGE).inc()

    async def _commit(
        self, tenant: str, connection: str, page: _Page, tally: SyncTally, *,
        skip_superseded: bool = False,
    ) -> None:  # fmt: skip
        def on_reject(item: BatchItem) -> QuarantineDraft | None:
            # Called again when the engine retries the page's transaction: count in _count.
            change, code = item.change, item.code or "invalid_value"
            if skip_superseded and code == BACKWARDS:
                return None
            raw = page.payloads.get(change.idempotency_key)
            return QuarantineDraft(
                connection, change.entity, change.origin.external_id, str(item.error),
                dict(raw.data) if raw is not None else dict(change.fields),
                stream=raw.stream if raw is not None else page.raw.stream, code=code,
            )  # fmt: skip

        raw = page.raw
        advance = CursorAdvance(tenant, connection, raw.stream, raw.cursor)
        merges = merging(page.merges, self._clock) if page.merges else None
        items = await self._engine.apply_batch(
            page.changes, cursor=advance, quarantine=page.drafts, on_reject=on_reject,
            refuse_backwards=True, prepared=page.prepared, before=merges,
        )  # fmt: skip
        tally.merged += len(page.merges)
        for item in items[len(page.changes) :]:  # the merges' own changes are counted as merges
            if (why := _merge_fell_short(item)) is not None:
                tally.merges_incomplete += 1
                log.warning("merge on %s: %s %s %s", connection, item.change.entity,
                            item.change.canonical_id, why)  # fmt: skip
        items = items[: len(page.changes)]
        tally.pages += 1
        tally.fetched += len(raw.records)
        if raw.expected is not None and tally.expected is None:
            tally.expected = raw.expected
        quarantined, reasons = tally.quarantined, tally.reasons.copy()
        tally.quarantined += len(page.drafts)
        tally.reasons.update(page.reasons)
        for item in items:
            _count(item, tally, skip_superseded=skip_superseded)
        self._observe(
            tenant, connection, raw, len(page.changes), tally.quarantined - quarantined,
            tally.reasons - reasons,
        )  # fmt: skip

    def _observe(
        self, tenant: str, connection: str, page: RawPage, mapped: int, quarantined: int,
        reasons: Counter[str],
    ) -> None:  # fmt: skip
        newest = max((r.source_time for r in page.records if r.source_time), default=None)
        self._freshen(tenant, connection, newest)
        if self._observations is not None:
            # every record of the page is accounted for: stored (in any way), or set aside
            stored = len(page.records) - quarantined
            self._observations.count(tenant, connection, "records_synced", stored)
            self._observations.count(tenant, connection, "records_quarantined", quarantined)
        if self._metrics is None:
            return
        synced = self._metrics.counter("cadastre_records_synced_total")
        synced.labels(connection=connection, stream=page.stream).inc(mapped)
        set_aside = self._metrics.counter("cadastre_records_quarantined_total")
        for reason, n in reasons.items():
            set_aside.labels(connection=connection, reason=reason).inc(n)
        if newest is not None:
            lag = (self._clock.now() - newest).total_seconds()
            gauge = self._metrics.gauge("cadastre_sync_lag_seconds")
            gauge.labels(connection=connection, stream=page.stream).set(max(0.0, lag))


def _merge_fell_short(item: BatchItem) -> str | None:
    """Why one of a merge's changes (the tombstone, a ContactKey) did not go through, or None."""
    result = item.result
    if result is None:
        return f"was rejected: {item.error}"
    if result.refused:
        return "was refused: " + "; ".join(f"{r.field} ({r.detail})" for r in result.refused)
    if item.change.operation is Operation.DELETE and result.applied and not result.deleted:
        return f"was only partly deleted (fields {', '.join(result.applied)} remain)"
    return None


def _tallied(span: trace.Span, tally: SyncTally) -> None:
    """A finished run's figures on its span (counts only: no record, no key)."""
    span.set_attributes({
        "cadastre.fetched": tally.fetched, "cadastre.pages": tally.pages,
        "cadastre.created": tally.created, "cadastre.updated": tally.updated,
        "cadastre.quarantined": tally.quarantined, "cadastre.retries": tally.retries,
    })  # fmt: skip


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


MALFORMED_PAGE = "malformed_page"
_HELD_PAGES = 16  # open malformed_page entries read at once, looking for the same body
DUPLICATE_IN_PAGE = "duplicate_in_page"


@dataclass(frozen=True)
class _Read:
    """One stream's read in a run: what every page of it needs to be mapped and set aside."""

    tenant: str
    connection: str
    connector: SourceConnector
    stream: str
    mappers: Mapping[str, RecordMapper]
    full: bool
    unread: dict[str, str]  # the run's report of streams stopped at an unreadable page
    skip_superseded: bool = False  # records older than the version held: skipped, not set aside


@dataclass
class _Page:
    """A vendor page, mapped: the changes to apply and the records to set aside."""

    raw: RawPage
    changes: list[Change] = field(default_factory=list)
    drafts: list[QuarantineDraft] = field(default_factory=list)
    payloads: dict[str, RawRecord] = field(default_factory=dict)  # by idempotency key
    reasons: Counter[str] = field(default_factory=Counter)
    prepared: PreparedBatch | None = None  # its changes validated ahead, by the engine
    merges: list[Merge] = field(default_factory=list)  # applied in the page's transaction


def _one_copy_per_key(page: _Page, connection: str) -> None:
    """Keep one version of each record of the page: the newest by source time (a tie goes to
    the later copy, the vendor's last word). The other versions are quarantined; identical
    copies stay, for the idempotency ledger to report them as duplicates."""
    changes = page.changes
    keys = [(c.entity, c.origin.external_id) for c in changes]
    if len(set(keys)) == len(changes):  # the common case: one copy of each
        return
    kept: dict[tuple[str, str | None], list[int]] = {}  # key -> indexes of the kept version
    dropped: list[tuple[int, int]] = []  # (index, index of the version that won)
    for i, key in enumerate(keys):
        group = kept.get(key)
        if group is None:
            kept[key] = [i]
            continue
        incoming, holder = changes[i], changes[group[0]]
        if incoming.idempotency_key == holder.idempotency_key:
            group.append(i)
        elif _time(incoming) >= _time(holder):
            dropped += [(j, i) for j in group]
            kept[key] = [i]
        else:
            dropped.append((i, group[0]))
    for i, winner in dropped:
        change, newest = changes[i], changes[winner]
        raw = page.payloads[change.idempotency_key]
        page.reasons[DUPLICATE_IN_PAGE] += 1
        page.drafts.append(QuarantineDraft(
            connection, change.entity, change.origin.external_id,
            f"{change.entity} {change.origin.external_id!r} appears more than once in one page; "
            f"the copy dated {_shown(newest)} was applied, this one is dated {_shown(change)}",
            dict(raw.data), stream=raw.stream, code=DUPLICATE_IN_PAGE,
        ))  # fmt: skip
    gone = {i for i, _ in dropped}
    page.changes = [c for i, c in enumerate(changes) if i not in gone]


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _time(change: Change) -> datetime:
    return change.origin.source_time or _NO_TIME


def _shown(change: Change) -> str:
    time = change.origin.source_time
    return time.isoformat() if time is not None else "without a time"


def _count(item: BatchItem, tally: SyncTally, *, skip_superseded: bool = False) -> None:
    result = item.result
    if result is None and skip_superseded and item.code == BACKWARDS:
        tally.superseded += 1
    elif result is None:
        tally.quarantined += 1  # rejected (contract, or older than stored): on_reject set it aside
        tally.reasons[item.code or "invalid_value"] += 1
    elif result.duplicate:
        tally.duplicates += 1
    elif result.deleted:
        tally.deleted += 1
    elif result.created:
        tally.created += 1
    elif result.wrote:
        tally.updated += 1
    elif result.refused:
        tally.refused += 1
    else:
        tally.unchanged += 1


async def _read_ahead(pages: AsyncIterator[_Page]) -> AsyncGenerator[_Page, None]:
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
