"""``IdentityConsumer``: the bus consumer ``identity``. For every applied Contact or Resident
change it (1) carries the person fields the change set over to the records linked to it, and
(2) runs the matcher on the record.

**Linked fields.** A linked contact's FirstName, LastName, Email, MobilePhone and HomePhone reach
its resident (and the other way round) as a change with the *same* origin as the one that set
them - system, connection, source version and time - and ``causation_id`` the event's id, applied
through ``SyncEngine.apply``: ownership and the conflict rules decide as for any change (the
fields are shared both ways, ``newest_wins``). The origin carries no external id: the derived
change names its record by canonical id, so it never links the source's id to the other entity.

**Resolutions.** A change of origin ``core`` caused by a resolved conflict of the source record
(the review queue's decision) crosses the link as a resolution: ``SyncEngine.carry_resolution``,
no ownership check, as ``resolve_conflict`` wrote it. Any other change goes through ``apply``.

**No loop.** Only fields whose value differs from the linked record's are sent; the change a
propagation causes comes back as an event whose values the source already holds, so nothing is
sent again (and the engine itself reports an equal value unchanged, without an event).

**At least once.** A batch's effects come first, the consumer's marks (``uow.consumed``) after;
a crash between them has the batch delivered again, which is harmless: matching finds its links
made, a derived change repeats its idempotency key (the event's id and the target record: a
content-derived key would take a later, equal propagation for a repeat and drop it),
``ContactKey`` is written only when it differs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Self

from cadastre.contract.changes import ApplyResult, Change, Origin, RefusalReason
from cadastre.errors import ContractError, OwnershipViolation
from cadastre.ports import LinkState
from cadastre.sync.identity import CONTACT, PERSON_FIELDS, RESIDENT, derived_key
from cadastre.sync.review import RESOLVER_SYSTEM

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from cadastre.contract.events import EventEnvelope
    from cadastre.observe import Metrics
    from cadastre.ports import BusMessage, BusSubscription, EventBus, Store
    from cadastre.sync.engine import SyncEngine
    from cadastre.sync.identity_service import IdentityService

log = logging.getLogger(__name__)

CONSUMER = "identity"
SUBJECTS = ("cadastre.*.contact.*", "cadastre.*.resident.*")
_MATCHED_ON = frozenset({*PERSON_FIELDS})


class IdentityConsumer:
    def __init__(
        self, bus: EventBus, store: Store, engine: SyncEngine, service: IdentityService, *,
        metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        self._bus = bus
        self._store = store
        self._engine = engine
        self._service = service
        self._metrics = metrics
        self._subscription: BusSubscription | None = None

    async def __aenter__(self) -> Self:
        self._subscription = await self._bus.subscribe(CONSUMER, self.handle, subjects=SUBJECTS)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def handle(self, messages: Sequence[BusMessage]) -> None:
        by_tenant: dict[str, list[EventEnvelope]] = defaultdict(list)
        for message in messages:
            by_tenant[message.event.tenant].append(message.event)
        for tenant, events in by_tenant.items():
            ids = [e.id for e in events]
            async with self._store.unit_of_work(tenant) as uow:
                fresh = set(await uow.consumed.first_seen(CONSUMER, ids))
                await uow.rollback()  # a look only: the marks are written after the effects
            done = [e for e in events if e.id in fresh]
            for event in done:
                await self.on_event(event)
            if done:
                async with self._store.unit_of_work(tenant) as uow:
                    await uow.consumed.first_seen(CONSUMER, [e.id for e in done])
                    await uow.commit()

    async def on_event(self, event: EventEnvelope) -> None:
        data = event.data
        entity = data.get("entity")
        if entity not in (CONTACT, RESIDENT) or event.subject is None:
            return
        verb = event.type.rsplit(".", 2)[-2]
        if verb == "deleted":
            await self._service.forget(event.tenant, entity, event.subject, cause=event.id)
            return
        fields: dict[str, Any] = dict(data.get("fields") or {})
        person = {name: fields[name] for name in PERSON_FIELDS if name in fields}
        if person:
            await self._propagate(event, entity, event.subject, person)
        if verb == "created" or _MATCHED_ON & fields.keys():
            await self._service.match(event.tenant, entity, event.subject, cause=event.id)

    async def _propagate(
        self, event: EventEnvelope, entity: str, id: str, values: dict[str, Any]
    ) -> None:
        source = Origin.model_validate(event.data.get("origin") or {"system": "core"})
        origin = Origin(
            system=source.system, connection=source.connection,
            source_version=source.source_version, source_time=source.source_time,
            causation_id=event.id,
        )  # fmt: skip
        async with self._store.unit_of_work(event.tenant, read_only=True) as uow:
            links = [
                x for x in await uow.identities.for_record(entity, id)
                if x.state is LinkState.LINKED
            ]  # fmt: skip
            partners = []
            for link in links:
                on_left = (link.left_entity, link.left_id) == (entity, id)
                side = (link.right_entity, link.right_id) if on_left else (
                    link.left_entity, link.left_id)  # fmt: skip
                record = await uow.records.get(*side)
                if record is not None and not record.deleted:
                    partners.append(record)
        for partner in partners:
            differs = {k: v for k, v in values.items() if partner.data.get(k) != v}
            if not differs:
                self._observe("equal")
                continue
            change = Change(
                tenant=event.tenant, entity=partner.entity, canonical_id=partner.id,
                fields=differs, origin=origin,
                idempotency_key=derived_key("linked", event.id, partner.entity, partner.id),
            )  # fmt: skip
            try:
                result = await self._carried(change, source, entity, id) or (
                    await self._engine.apply(change))  # fmt: skip
            except (OwnershipViolation, ContractError) as exc:
                # The registry or the contract refuses it (a value too long for the other side):
                # recorded by the engine, nothing to retry.
                log.warning("linked fields of %s %s not carried to %s %s: %s", entity, id,
                            partner.entity, partner.id, exc)  # fmt: skip
                self._observe("refused")
                continue
            self._observe("applied" if result.applied else "refused" if result.refused else "equal")
            lost = [
                r.field for r in result.refused
                if r.reason is RefusalReason.CONFLICT and "held for review" not in r.detail
            ]  # fmt: skip
            if lost:
                await self._answer(event, entity, id, partner.entity, partner.id, lost)

    async def _carried(
        self, change: Change, source: Origin, entity: str, id: str
    ) -> ApplyResult | None:
        """A review-queue resolution (origin ``core``, causation the conflict) is a person's
        decision: it crosses the link as one (``SyncEngine.carry_resolution``, ownership not
        asked), else the linked CRM or PMS would keep the losing value. None: not a resolution
        of this record's conflict, applied as any change."""
        if source.system != RESOLVER_SYSTEM or source.causation_id is None:
            return None
        return await self._engine.carry_resolution(
            change, conflict_id=source.causation_id, source=(entity, id)
        )

    async def _answer(
        self, event: EventEnvelope, entity: str, id: str, other: str, other_id: str,
        names: list[str],
    ) -> None:  # fmt: skip
        """The linked record kept a newer value of ``names`` (the policy refused ours): carry its
        values back, under their own stamps, so the two records (and the vendors behind them)
        agree. Without it a whole-object vendor read that re-dated an unchanged value leaves the
        pair apart for good: neither side's record changes, so no event ever carries it."""
        async with self._store.unit_of_work(event.tenant, read_only=True) as uow:
            record = await uow.records.get(other, other_id)
            stamps = await uow.provenance.for_record(other, other_id)
        if record is None or record.deleted:
            return
        by_stamp: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(dict)
        for name in names:
            stamp = stamps.get(name)
            if stamp is None:
                continue
            held = (stamp.system, stamp.connection, stamp.source_time, stamp.source_version)
            by_stamp[held][name] = record.data.get(name)
        for (system, connection, source_time, source_version), values in by_stamp.items():
            origin = Origin(system=system, connection=connection, source_time=source_time,
                            source_version=source_version, causation_id=event.id)  # fmt: skip
            key = derived_key("linked-back", event.id, entity, id, system, connection,
                              source_time, source_version)  # fmt: skip
            change = Change(tenant=event.tenant, entity=entity, canonical_id=id, fields=values,
                            origin=origin, idempotency_key=key)  # fmt: skip
            try:
                await self._engine.apply(change)
            except (OwnershipViolation, ContractError) as exc:
                log.warning("linked fields of %s %s not carried back to %s %s: %s", other,
                            other_id, entity, id, exc)  # fmt: skip

    def _observe(self, outcome: str) -> None:
        if self._metrics is not None:
            counter = self._metrics.counter("cadastre_identity_propagations_total")
            counter.labels(outcome=outcome).inc()
