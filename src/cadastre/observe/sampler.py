"""``ObservationSampler``: the worker that stores what ``Observations`` gathered and samples the
backlogs, every ``CADASTRE_OBSERVE_FLUSH_SECONDS`` on the hub's clock.

Each round, for every tenant, it reads the gauges from the store - a handful of counting queries
in one read-only unit of work - and records them (per connection: ``sync_lag_seconds``,
``quarantine_open``, ``token_expiry_seconds``, ``credential_needs_reauth``, ``writeback_pending``;
tenant-wide: ``outbox_backlog``, ``delivery_backlog``, ``webhooks_in_backlog``), sets the
Prometheus gauges of the same facts, then drains the accumulator into ``uow.observations``
(one transaction per tenant) and, once an hour, forgets minutes older than
``CADASTRE_OBSERVE_KEEP_DAYS``.

Every worker samples: the store's rows merge (gauges last-wins), so several workers are
harmless, and a single one stopping does not stop the gauges. A flush the store refuses puts
the drained minutes back, so a store outage delays observations rather than losing them (up to
``MAX_PENDING`` minutes of them; past that the oldest go, counted in a warning: a hub that cannot
reach its store must not also run out of memory).

Sync lag is "how far behind the vendor our copy may be": now minus the newer of the newest
source time applied and the start of the last successful run (everything changed before a
successful run began has been read). The runner knows it (``freshness``); a worker reports it
only for connections it synced itself, and not once the store shows another worker synced the
connection since (its figure would be stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, Self

from cadastre.errors import CadastreError
from cadastre.observe.signals import check_rollup, minute_of
from cadastre.ports import CredentialStatus, InboxStatus

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from cadastre.observe.metrics import Metrics
    from cadastre.observe.signals import Observations
    from cadastre.ports import Clock, MinuteRollup, Store, StoredCredential

log = logging.getLogger(__name__)

MAX_PENDING = 50_000  # (tenant, connection, minute) rollups held while the store is away
PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Freshness:
    """How current one connection's copy is, as the worker that synced it knows."""

    basis: datetime  # the copy holds everything the vendor changed before this
    synced_at: datetime  # when this worker last committed for the connection


class KnowsFreshness(Protocol):
    def freshness(self, tenant: str) -> Mapping[str, Freshness]: ...


class ObservationSampler:
    def __init__(
        self,
        store: Store,
        observations: Observations,
        clock: Clock,
        metrics: Metrics | None = None,
        *,
        flush_seconds: float = 15.0,
        keep_days: float = 14.0,
        freshness: KnowsFreshness | None = None,
    ) -> None:
        if flush_seconds <= 0 or keep_days <= 0:
            raise ValueError("observations: flush_seconds and keep_days must be positive")
        self._store = store
        self._observations = observations
        self._clock = clock
        self._metrics = metrics
        self._every = flush_seconds
        self._keep = timedelta(days=keep_days)
        self._freshness = freshness
        self._pruned: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    # -- one round ---------------------------------------------------------------------

    async def sample(self, tenant: str) -> dict[str, dict[str, float]]:
        """Read ``tenant``'s gauges from the store, record them and set the Prometheus gauges;
        returns them (connection, "" for tenant-wide -> name -> value)."""
        now = self._clock.now()
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            connections = await uow.connections.all()
            credentials = {c.name: c for c in await uow.credentials.all()}
            quarantined = await uow.quarantine.open_counts()
            writeback = await uow.writes.pending_counts()
            inbox = await uow.webhooks_in.counts()
            outbox = await uow.outbox.count_pending()
            deliveries = await uow.deliveries.count_pending()
            last_seen = await uow.observations.last_seen() if self._freshness else {}
        fresh = self._freshness.freshness(tenant) if self._freshness else {}
        gauges: dict[str, dict[str, float]] = {
            "": {
                "outbox_backlog": float(outbox),
                "delivery_backlog": float(deliveries),
                "webhooks_in_backlog": float(
                    sum(n for (_, status), n in inbox.items() if status is InboxStatus.PENDING)
                ),
            }
        }
        for connection in connections:
            name = connection.name
            found = gauges[name] = {
                "quarantine_open": float(quarantined.get(name, 0)),
                "writeback_pending": float(writeback.get(name, 0)),
            }
            credential = credentials.get(connection.credential or "")
            if credential is not None:
                found.update(_credential_gauges(credential, now))
            known = fresh.get(name)
            elsewhere = last_seen.get(name)
            if known is not None and (elsewhere is None or elsewhere <= minute_of(known.synced_at)):
                found["sync_lag_seconds"] = max(0.0, (now - known.basis).total_seconds())
        for connection_name, values in gauges.items():
            for gauge, value in values.items():
                self._observations.gauge(tenant, connection_name, gauge, value)
        self._export(tenant, gauges)
        return gauges

    def _export(self, tenant: str, gauges: Mapping[str, Mapping[str, float]]) -> None:
        if self._metrics is None:
            return
        tenant_wide = gauges[""]
        outbox = self._metrics.gauge("cadastre_outbox_backlog")
        outbox.labels(tenant=tenant).set(tenant_wide["outbox_backlog"])
        deliveries = self._metrics.gauge("cadastre_delivery_backlog")
        deliveries.labels(tenant=tenant).set(tenant_wide["delivery_backlog"])
        expiry = self._metrics.gauge("cadastre_token_expiry_seconds")
        for connection, values in gauges.items():
            if "token_expiry_seconds" in values:
                expiry.labels(connection=connection).set(values["token_expiry_seconds"])

    async def flush(self) -> int:
        """Store every minute gathered so far, one transaction per tenant; how many rollups.
        A tenant whose flush fails keeps its minutes for the next round (and the error goes on
        up, after the other tenants were flushed)."""
        drained = self._observations.drain()
        stored = 0
        failed: BaseException | None = None
        for tenant, every in drained.items():
            rollups = _storable(tenant, every)
            try:
                async with self._store.unit_of_work(tenant) as uow:
                    await uow.observations.add(rollups)
                    await uow.commit()
                stored += len(rollups)
            except CadastreError as exc:
                self._observations.restore(tenant, rollups)
                failed = exc
        pending = self._observations.pending()
        if pending > MAX_PENDING:
            dropped = self._observations.drop_oldest(pending - MAX_PENDING)
            log.warning("observations: the store is away; %d oldest minutes dropped", dropped)
        if failed is not None:
            raise failed
        return stored

    async def prune(self) -> int:
        """Forget every tenant's minutes older than the retention; how many rows."""
        before = minute_of(self._clock.now() - self._keep)
        gone = 0
        for tenant in await self._store.list_tenants():
            async with self._store.unit_of_work(tenant.id) as uow:
                gone += await uow.observations.prune(before)
                await uow.commit()
        return gone

    async def round(self) -> None:
        """What the worker does every ``flush_seconds``: sample, flush, and hourly, prune."""
        for tenant in await self._store.list_tenants():
            await self.sample(tenant.id)
        await self.flush()
        now = self._clock.now()
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            gone = await self.prune()
            if gone:
                log.info("observations: %d minutes past retention forgotten", gone)

    # -- the worker --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._clock.sleep(self._every)
            try:
                await self.round()
            except CadastreError as exc:  # the store is away: the next round tries again
                log.warning("observations: round failed: %s", exc)
            except Exception:  # a bug must not stop the hub: logged, tried again next round
                log.exception("observations: round failed")

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="observation sampler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:  # what the last seconds gathered, so a stopping worker loses no minute
            await self.flush()
        except CadastreError as exc:
            log.warning("observations: final flush failed: %s", exc)


def _storable(tenant: str, rollups: list[MinuteRollup]) -> list[MinuteRollup]:
    """The rollups the store can hold. One it would refuse (``check_rollup``: a connection name
    longer than a stored one, such as the ``credential:<name>`` label of a long credential's
    token endpoint) is dropped with a warning: refused inside the flush, it would take every
    minute drained with it, of this tenant and of the tenants after it."""
    kept = []
    for rollup in rollups:
        try:
            check_rollup(rollup)
        except ValueError as exc:
            log.warning("observations of tenant %r: a minute cannot be stored, dropped: %s",
                        tenant, exc)  # fmt: skip
            continue
        kept.append(rollup)
    return kept


def _credential_gauges(credential: StoredCredential, now: datetime) -> dict[str, float]:
    found = {"credential_needs_reauth": float(credential.status is CredentialStatus.NEEDS_REAUTH)}
    if credential.expires_at is not None:
        found["token_expiry_seconds"] = (credential.expires_at - now).total_seconds()
    return found
