"""Key reconciliation: records the vendor no longer serves become tombstones.

Replication by modification timestamp never sees a record disappear: a deleted listing simply
stops coming back. So, now and then, the vendor's whole key list (keys only, cheap) is compared
with the keys the store holds for the connection (its external refs, keyset paged); a live record
whose key is no longer upstream gets a DELETE change, applied through the engine like any other
(tombstone, provenance, audit, and the ``cadastre.<entity>.deleted.v1`` event in the outbox).

A vendor glitch looks exactly like mass deletion: an empty key list, or one that lost a large
share of the records at once (more than ``max_share`` and more than ``floor`` of them, or more
than half of them whatever the floor). Then nothing is deleted; an alert
(``cadastre.alert.raised.v1``) asks a person to look, and the report says why. A key list cut
short by an error raises before anything is compared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from cadastre.contract import Change, Origin
from cadastre.contract.changes import Operation
from cadastre.contract.events import EventEnvelope
from cadastre.sync.origin import event_source

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from cadastre.ports import Clock, Store
    from cadastre.sync.engine import SyncEngine

log = logging.getLogger(__name__)

ALERT_EVENT = "cadastre.alert.raised.v1"


@dataclass(frozen=True)
class ReconcileGuard:
    """When a shrinking key list is trusted. More than ``max_share`` of the held records gone at
    once (and more than ``floor`` of them: a large feed losing a few listings is not a glitch),
    more than half of them whatever the floor (a small feed: 10 of 11 is within a floor of 10,
    but is no ordinary day), or an empty list while records are held, deletes nothing."""

    max_share: float = 0.1
    floor: int = 10

    def refuses(self, held: int, upstream: int, missing: int) -> str | None:
        if held and not upstream:
            return f"the vendor listed no keys while {held} records are held"
        if not missing:
            return None
        gone = f"{missing} of {held} held records ({missing / held:.0%}) are gone at once"
        if 2 * missing > held:  # in integers: exactly half is still deleted
            return f"{gone}, more than half of what is held"
        if missing > self.floor and missing > self.max_share * held:
            return f"{gone}, more than the {self.max_share:.0%} a reconciliation deletes"
        return None


@dataclass(frozen=True)
class ReconcileReport:
    tenant: str
    connection: str
    stream: str
    entity: str
    upstream: int  # keys the vendor listed
    held: int  # live records the store held for the connection
    missing: int  # held records whose key is no longer upstream
    deleted: int  # tombstones written (missing ones another writer had not already deleted)
    refused: str | None = None  # why nothing was deleted (the guard), or None
    deleted_keys: list[str] = field(default_factory=list)


class KeyReconciler:
    def __init__(
        self,
        engine: SyncEngine,
        store: Store,
        clock: Clock,
        *,
        guard: ReconcileGuard | None = None,
        page: int = 1000,
    ) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self._guard = guard or ReconcileGuard()
        self._page = page

    async def run(
        self,
        *,
        tenant: str,
        connection: str,
        system: str,
        stream: str,
        entity: str,
        keys: AsyncIterator[Sequence[str]],
        force: bool = False,
    ) -> ReconcileReport:
        """Compare and delete. ``force`` deletes past the guard (a person checked the feed)."""
        # A record written after the key list was started may be newer than the list: a sync
        # running meanwhile can store a listing created upstream after its key page was read.
        # Such records are left for the next run, and the deletes are stamped with this instant,
        # so a field written after it outlives them anyway.
        started = self._clock.now()
        upstream: set[str] = set()
        async for page in keys:
            upstream.update(page)
        held, missing = await self._held(tenant, connection, entity, upstream, started)
        report = ReconcileReport(
            tenant=tenant, connection=connection, stream=stream, entity=entity,
            upstream=len(upstream), held=held, missing=len(missing), deleted=0,
        )  # fmt: skip
        refused = None if force else self._guard.refuses(held, len(upstream), len(missing))
        if refused is not None:
            await self._alert(report, system, refused)
            log.warning("reconciliation of %s %s refused: %s", connection, stream, refused)
            return replace(report, refused=refused)
        deleted: list[str] = []
        now = started
        for i in range(0, len(missing), self._page):
            changes = [
                Change(
                    tenant=tenant,
                    entity=entity,
                    operation=Operation.DELETE,
                    origin=Origin(
                        system=system,
                        connection=connection,
                        external_id=key,
                        source_time=now,
                        source_version=f"reconcile:{now.isoformat()}",
                    ),
                )
                for key in missing[i : i + self._page]
            ]
            items = await self._engine.apply_batch(changes)
            deleted += [
                item.change.origin.external_id or ""
                for item in items
                if item.result is not None and item.result.deleted and not item.result.duplicate
            ]
        if deleted:
            log.info("reconciliation of %s %s: %d records gone upstream, tombstoned",
                     connection, stream, len(deleted))  # fmt: skip
        return replace(report, deleted=len(deleted), deleted_keys=deleted)

    async def _held(
        self, tenant: str, connection: str, entity: str, upstream: set[str], started: datetime
    ) -> tuple[int, list[str]]:
        """(live records held for the connection, the keys of those no longer upstream)."""
        held, missing = 0, []
        after: str | None = None
        while True:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                refs = await uow.xref.for_connection(
                    connection, entity, after=after, limit=self._page
                )
                records = await uow.records.get_many(entity, sorted({r.canonical_id for r in refs}))
            for ref in refs:
                record = records.get(ref.canonical_id)
                if record is None or record.deleted:
                    continue  # a tombstone already: not deleted twice
                held += 1
                if ref.external_id not in upstream and record.updated_at < started:
                    missing.append(ref.external_id)
            if len(refs) < self._page:
                return held, missing
            after = refs[-1].external_id

    async def _alert(self, report: ReconcileReport, system: str, why: str) -> None:
        origin = Origin(system=system, connection=report.connection)
        event = EventEnvelope(
            source=event_source(origin), type=ALERT_EVENT, subject=report.connection,
            time=self._clock.now(), tenant=report.tenant,
            data={
                "alert": "reconciliation_refused", "severity": "warning",
                "connection": report.connection, "stream": report.stream,
                "upstream": report.upstream, "held": report.held, "missing": report.missing,
                "summary": f"key reconciliation of {report.connection} deleted nothing: {why}",
                "action": "check the vendor's feed; when the deletions are real, run "
                f"`cadastre reconcile {report.connection} --force`",
            },
        )  # fmt: skip
        async with self._store.unit_of_work(report.tenant) as uow:
            await uow.outbox.add(event)
            await uow.commit()
