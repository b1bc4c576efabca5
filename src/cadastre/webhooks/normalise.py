"""``WebhookNormaliser``: stored webhooks into canonical records, after the vendor has its 2xx.

A background worker (``Hub.running``). It is nudged by the receiver when a webhook is stored
in this process and looks for due entries of every tenant every ``poll`` seconds otherwise. For
one connection at a time (a lock per tenant and connection, taken without waiting: another
worker holding it is draining that connection already) it:

1. takes the due entries, oldest first (received order);
2. asks the connection's connector to read each one (``ReceivesWebhooks.webhook_records``): a
   connector error puts that entry back with a backoff (``RETRY_AFTER``), and after the last
   try marks it failed with the reason, never holding up the entries after it;
3. hands the records to ``SyncRunner`` as pages, in order, exactly as a polled page goes
   (mapping, quarantine for rejects, the engine's ownership and staleness rules, one
   transaction per page). A page takes consecutive entries until a record key would repeat, so
   two versions of one record are never in one page. The pages' cursor is the inbox position,
   kept under the stream ``webhooks-in`` (the connection's polling cursor is not touched);
4. marks the entries processed. What cannot be read (the connector raised ``ValueError``, or
   handed back records with a ``problem``) becomes a quarantine entry, code
   ``malformed_webhook``, in the transaction that settles its entry: nothing is dropped.

A crash between a page's commit and the settling applies those entries again on restart; the
engine's idempotency ledger makes that a no-op. Entries of a paused connection wait. Settled
entries are pruned after ``keep_days`` (failed ones after ``keep_failed_days``), refusal counts
after ``keep_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace

from cadastre.errors import CadastreError, LockTimeout, Transient
from cadastre.mapping import RecordMapper
from cadastre.observe import get_logger, traced, working_for
from cadastre.ports import (
    ConnectionStatus,
    InboxEntry,
    InboxSettlement,
    InboxStatus,
)
from cadastre.webhooks.reading import (
    InboxPages,
    Pages,
    Read,
    main_stream,
    malformed_body,
    malformed_record,
    pages_of,
    read_entry,
    storable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from types import TracebackType

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, LockBackend, SourceConnector, Store
    from cadastre.sync import SyncRunner
    from cadastre.webhooks.inbox import WebhookReceiver

_log = get_logger("cadastre.webhooks.normaliser")
_tracer = trace.get_tracer("cadastre.webhooks")
MALFORMED = "malformed_webhook"
# Seconds before each retry of an entry the connector failed on; the last failure marks it failed.
RETRY_AFTER = (10.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 3 * 3600.0)
MAX_ERROR = 2000  # characters of an entry's error kept


class OpenedSource(Protocol):
    """What the normaliser needs of ``Hub.open_source``'s answer."""

    @property
    def connector(self) -> SourceConnector: ...

    @property
    def mappers(self) -> Mapping[str, RecordMapper]: ...


class NormaliserHost(Protocol):
    """What the normaliser is built from (the hub)."""

    @property
    def runner(self) -> SyncRunner: ...

    @property
    def locks(self) -> LockBackend: ...

    async def open_source(self, tenant: str, name: str) -> OpenedSource: ...


if TYPE_CHECKING:
    OpenSource = Callable[[str, str], Awaitable[OpenedSource]]


class WebhookNormaliser:
    def __init__(
        self, store: Store, clock: Clock, *, runner: SyncRunner, locks: LockBackend,
        open_source: OpenSource,
        receiver: WebhookReceiver | None = None, metrics: Metrics | None = None,
        poll: float = 2.0, batch: int = 100, keep_days: float = 7.0,
        keep_failed_days: float = 30.0, prune_every: float = 3600.0, reopen_every: float = 30.0,
        yield_ratio: float = 2.0,
    ) -> None:  # fmt: skip
        self._store = store
        self._clock = clock
        self._runner = runner
        self._locks = locks
        self._open_source = open_source
        self._receiver = receiver
        self._metrics = metrics
        self._poll = poll
        self._batch = batch
        self._keep = timedelta(days=keep_days)
        self._keep_failed = timedelta(days=keep_failed_days)
        self._prune_every = prune_every
        self._nudged: dict[tuple[str, str], None] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], None] | None = None
        # id(source) -> (the source, its mappers): the source is held with them, so its id
        # cannot pass to a source opened later (CPython reuses a freed object's address)
        self._mappers: dict[int, tuple[OpenedSource, dict[str, RecordMapper]]] = {}
        self._pruned_at: float | None = None
        # (tenant, connection) -> (connection version, opened at, source): the hub re-reads the
        # mapping files at every open (tens of milliseconds), too dear per batch
        self._sources: dict[tuple[str, str], tuple[int, float, OpenedSource]] = {}
        self._reopen_every = reopen_every
        self._yield_ratio = yield_ratio
        self._arrivals = 0  # webhooks stored in this process (nudges) since the start

    # ------------------------------------------------------------------ the worker

    async def __aenter__(self) -> WebhookNormaliser:
        self._wake = asyncio.Event()
        if self._receiver is not None:
            self._stop_listening = self._receiver.on_stored(self.nudge)
        self._task = asyncio.create_task(self._run(), name="webhook-normaliser")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        if self._stop_listening is not None:
            self._stop_listening()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def nudge(self, tenant: str, connection: str) -> None:
        """A webhook of ``connection`` was just stored: drain it without waiting for the poll."""
        self._nudged[(tenant, connection)] = None
        self._arrivals += 1
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101 - set by __aenter__
        next_scan = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            targets, self._nudged = self._nudged, {}
            try:
                if loop.time() >= next_scan:
                    next_scan = loop.time() + self._poll
                    targets.update(dict.fromkeys(await self.due()))
                for tenant, connection in targets:
                    await self.drain(tenant, connection)
                await self._prune_if_due()
            except Exception:  # noqa: BLE001 - the worker must outlive any one failure
                _log.exception("webhook normaliser round failed; trying again in %g s", self._poll)
                # not at once: arriving webhooks would turn a persistent fault into a busy loop
                await asyncio.sleep(self._poll)
                self._nudged.update(targets)  # what this round had to do is still to do
            if not self._nudged:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_scan - loop.time()))

    async def run_once(self) -> int:
        """Drain every connection with due entries once; how many entries were settled."""
        return sum([await self.drain(t, c) for t, c in await self.due()])

    async def due(self) -> list[tuple[str, str]]:
        """(tenant, connection) of every connection with due entries."""
        now = self._clock.now()
        found = []
        for tenant in await self._store.list_tenants():
            async with self._store.unit_of_work(tenant.id, read_only=True) as uow:
                names = await uow.webhooks_in.due_connections(now=now)
            found += [(tenant.id, name) for name in names]
        return found

    async def drain(self, tenant: str, connection: str, *, rounds: int = 10) -> int:
        """Normalise the connection's due entries (at most ``rounds`` batches, so one busy
        connection does not starve the others); how many were settled.

        Mapping and the engine's decisions are CPU work on the event loop the API answers on.
        During a burst (full batches while webhooks keep arriving) each batch is followed by a
        pause ``yield_ratio`` times as long as it took, so the burst is acknowledged at full
        speed and normalised behind it (the entries are durable; only their records lag)."""
        try:
            async with self._locks.hold(f"webhooks-in:{tenant}:{connection}", wait=0.0,
                                        lease=600.0):  # fmt: skip
                settled = 0
                for _ in range(rounds):
                    async with self._store.unit_of_work(tenant, read_only=True) as uow:
                        entries = await uow.webhooks_in.due(
                            connection, now=self._clock.now(), limit=self._batch
                        )
                    if not entries:
                        break
                    began, arrivals = asyncio.get_running_loop().time(), self._arrivals
                    with working_for(tenant, connection), traced(_tracer, "webhooks.normalise", {
                        "cadastre.tenant": tenant, "cadastre.connection": connection,
                        "cadastre.entries": len(entries),
                    }):  # fmt: skip
                        done = await self._normalise(tenant, connection, entries)
                    if done is None:  # paused: its entries wait, and so does the rest
                        break
                    settled += done
                    if len(entries) < self._batch:
                        break
                    # A full batch: a burst is on. Give the API the loop while more arrive; a
                    # trickle (a batch not full) is normalised at once, for its latency.
                    if self._arrivals != arrivals:
                        took = asyncio.get_running_loop().time() - began
                        await asyncio.sleep(took * self._yield_ratio)
                return settled
        except LockTimeout:
            return 0  # another worker is draining it

    # ------------------------------------------------------------------ one batch

    async def _normalise(
        self, tenant: str, connection: str, entries: list[InboxEntry]
    ) -> int | None:
        """Settle ``entries``: how many left pending status (0 or more), None when paused."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.connections.get(connection)
        if found is None:
            return await self._settle(tenant, connection, [
                self._failed(e, "the connection no longer exists") for e in entries
            ], [])  # fmt: skip
        if found.status is not ConnectionStatus.ACTIVE:
            return None  # its webhooks wait for it to be resumed
        try:
            source = await self._source(tenant, connection, found.version)
        except CadastreError as exc:
            return await self._settle(tenant, connection,
                                      [self._retry(e, str(exc)) for e in entries], [])  # fmt: skip
        reader = getattr(source.connector, "webhook_records", None)
        if not callable(reader):
            why = f"connector {found.connector} cannot read webhooks"
            return await self._settle(tenant, connection,
                                      [self._retry(e, why) for e in entries], [])  # fmt: skip
        reads = [await read_entry(reader, entry) for entry in entries]
        mappers = self._fresh(source)
        stream = main_stream(source.connector, mappers)
        applied, errors = await self._apply(tenant, connection, source.connector, stream,
                                            mappers, reads)  # fmt: skip
        settlements: list[InboxSettlement] = []
        drafts: list[dict[str, Any]] = []
        entity = mappers[stream].entity
        for read in reads:
            entry = read.entry
            if read.error is not None:
                settlements.append(self._retry(entry, read.error))
            elif read.malformed is not None:
                settlements.append(self._settled(entry, InboxStatus.QUARANTINED, read.malformed))
                drafts.append(malformed_body(entry, stream, entity, read.malformed))
            elif entry.position in applied:
                # quarantined: nothing of it could be read; processed: its records were applied,
                # or it held none (a ping), its unreadable ones set aside beside them
                only_problems = read.unreadable and not read.records
                status = InboxStatus.QUARANTINED if only_problems else InboxStatus.PROCESSED
                problems = "; ".join(sorted({r.problem or "" for r in read.unreadable}))
                settlements.append(self._settled(entry, status, problems))
                drafts += [malformed_record(entry, r, entity) for r in read.unreadable]
            else:
                settlements.append(self._retry(entry, errors.get(entry.position, "not applied")))
        return await self._settle(tenant, connection, settlements, drafts)

    async def _apply(
        self, tenant: str, connection: str, connector: SourceConnector, stream: str,
        mappers: Mapping[str, RecordMapper], reads: list[Read],
    ) -> tuple[set[int], dict[int, str]]:  # fmt: skip
        """Run the readable entries through the sync runner; the positions of the entries whose
        pages committed, and why each of the rest did not.

        A page fails whole, so one entry the store refuses (PostgreSQL takes no NUL character in
        text) would fail the entries beside it at every retry, and they would end failed with
        it. So when a run fails for a reason that does not pass, the entries it did not apply
        are applied again one at a time: the others go through, the bad one is retried alone."""
        readable = [r for r in reads if r.malformed is None and r.error is None]
        applied, failure = await self._run_pages(tenant, connection, connector, stream, mappers,
                                                 pages_of(readable))  # fmt: skip
        rest = [r for r in readable if r.entry.position not in applied]
        if failure is None or not rest:
            return applied, {}
        if isinstance(failure, Transient) or len(rest) == 1:
            # the store or the vendor is away (the runner has retried already), or the one
            # entry left is the one that failed: they wait for their retry
            return applied, dict.fromkeys((r.entry.position for r in rest), _why(failure))
        errors: dict[int, str] = {}
        for i, read in enumerate(rest):
            done, failed = await self._run_pages(tenant, connection, connector, stream, mappers,
                                                 pages_of([read]))  # fmt: skip
            applied |= done
            if failed is None:
                continue
            errors[read.entry.position] = _why(failed)
            if isinstance(failed, Transient):  # the store went away meanwhile: the rest wait
                errors.update(dict.fromkeys((r.entry.position for r in rest[i + 1 :]),
                                            _why(failed)))  # fmt: skip
                break
        return applied, errors

    async def _run_pages(
        self, tenant: str, connection: str, connector: SourceConnector, stream: str,
        mappers: Mapping[str, RecordMapper], pages: Pages,
    ) -> tuple[set[int], Exception | None]:  # fmt: skip
        """One run of the runner over ``pages``: the positions of the entries whose pages
        committed, and what stopped it, if anything did."""
        if not pages:
            return set(), None
        committed = 0

        def progress(_: object) -> None:
            nonlocal committed
            committed += 1  # called once per page committed, in order

        error: Exception | None = None
        try:
            await self._runner.run(
                tenant=tenant, connection=connection, mappers=mappers, progress=progress,
                connector=InboxPages(connector, stream, pages),
                superseded="skip",  # vendors do not promise order: a late copy is no fault
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the entries not applied are tried again later
            _log.warning("webhooks of connection %r (tenant %r) not applied: %s",
                         connection, tenant, exc)  # fmt: skip
            error = exc
        return {e.position for entries, _ in pages[:committed] for e in entries}, error

    async def _settle(
        self, tenant: str, connection: str, settlements: list[InboxSettlement],
        drafts: list[dict[str, Any]],
    ) -> int:  # fmt: skip
        async with self._store.unit_of_work(tenant) as uow:
            for draft in drafts:
                await uow.quarantine.add(connection=connection, code=MALFORMED, **draft)
            await uow.webhooks_in.settle(settlements)
            await uow.commit()
        if self._metrics is not None:
            counter = self._metrics.counter("cadastre_webhooks_normalised_total")
            for s in settlements:
                outcome = "retry" if s.status is InboxStatus.PENDING else s.status.value
                counter.labels(connection=connection, outcome=outcome).inc()
        return sum(s.status is not InboxStatus.PENDING for s in settlements)

    async def _source(self, tenant: str, connection: str, version: int) -> OpenedSource:
        """The connection's connector and mappers, opened again when the connection changed
        or ``reopen_every`` seconds went by (so an edited mapping file takes effect)."""
        now = self._clock.monotonic()
        held = self._sources.get((tenant, connection))
        if held is not None and held[0] == version and now - held[1] < self._reopen_every:
            return held[2]
        source = await self._open_source(tenant, connection)
        self._sources[(tenant, connection)] = (version, now, source)
        return source

    def _settled(self, entry: InboxEntry, status: InboxStatus, error: str) -> InboxSettlement:
        return InboxSettlement(entry.position, status, entry.attempts, _error(error))

    def _failed(self, entry: InboxEntry, why: str) -> InboxSettlement:
        return InboxSettlement(entry.position, InboxStatus.FAILED, entry.attempts + 1, _error(why))

    def _retry(self, entry: InboxEntry, why: str) -> InboxSettlement:
        attempts = entry.attempts + 1
        if attempts > len(RETRY_AFTER):
            return InboxSettlement(entry.position, InboxStatus.FAILED, attempts, _error(why))
        wait = timedelta(seconds=RETRY_AFTER[attempts - 1])
        return InboxSettlement(
            entry.position, InboxStatus.PENDING, attempts, _error(why), self._clock.now() + wait
        )

    def _fresh(self, source: OpenedSource) -> dict[str, RecordMapper]:
        """Mappers of our own: a run resets its mappers' observations, and the source's are
        shared with the connection's polling syncs (schema drift reads them)."""
        held = self._mappers.get(id(source))
        if held is not None and held[0] is source:
            return held[1]
        if len(self._mappers) > 256:
            self._mappers.clear()
        mappers = {s: RecordMapper(m.spec) for s, m in source.mappers.items()}
        self._mappers[id(source)] = (source, mappers)
        return mappers

    async def _prune_if_due(self) -> None:
        now = self._clock.monotonic()
        if self._pruned_at is None or now - self._pruned_at >= self._prune_every:
            self._pruned_at = now
            await self.prune()

    async def prune(self) -> int:
        """Forget settled entries and refusal counts past their keeping; how many entries."""
        moment, gone = self._clock.now(), 0
        for tenant in await self._store.list_tenants():
            async with self._store.unit_of_work(tenant.id) as uow:
                gone += await uow.webhooks_in.prune(
                    settled_before=moment - self._keep, failed_before=moment - self._keep_failed
                )
                await uow.webhooks_in.prune_refusals(before=moment - self._keep)
                await uow.commit()
        return gone


def _why(failure: Exception) -> str:
    return f"{type(failure).__name__}: {failure}"


def _error(why: str) -> str:
    """An entry's ``error`` as stored: text PostgreSQL can keep (``storable``), and short (a
    connector's error may carry a vendor's whole answer)."""
    text: str = storable(why)
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "\u2026"
