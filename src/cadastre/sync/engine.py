"""``SyncEngine.apply``: one change, one transaction.

Inside one unit of work: the idempotency ledger, record id resolution, the field-by-field ``Plan``
(``plan.py``), then the writes - record, provenance, cross-reference, one outbox event per record
write, audit entries for what was applied and what was refused, and the ledger entry. A change
whose every field is forbidden by ownership raises ``OwnershipViolation`` after that commit, so
the refusal is on record either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadastre.contract.changes import ApplyResult, Change, Operation, RefusalReason
from cadastre.contract.events import EventEnvelope, entity_event_type
from cadastre.errors import AlreadyExists, ConcurrentUpdate, ContractError, OwnershipViolation
from cadastre.ports import ExternalRef, FieldProvenance
from cadastre.sync.origin import Stamp, event_source, new_record_id
from cadastre.sync.plan import Plan, Target, Validator, plan_delete, plan_upsert

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cadastre.observe import Metrics
    from cadastre.ownership import OwnershipRegistry
    from cadastre.ports import Clock, Store, UnitOfWork

REFUSED_EVENT = "cadastre.write.refused.v1"
_OWNERSHIP = frozenset({RefusalReason.NOT_OWNER, RefusalReason.NO_OWNER_DECLARED})


def _contract_validator(entity: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    # Imported on first use: the models are the heaviest part of the contract.
    from cadastre.contract import validate_fields

    return validate_fields(entity, fields)


class SyncEngine:
    def __init__(
        self,
        store: Store,
        registry: OwnershipRegistry,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        validate: Validator | None = None,
        new_id: Callable[[], str] | None = None,
        attempts: int = 3,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._attempts = attempts
        self._store = store
        self._registry = registry
        self._clock = clock
        self._metrics = metrics
        self._validate: Validator = validate or _contract_validator
        self._new_id = new_id or (lambda: new_record_id(clock))

    async def apply(self, change: Change) -> ApplyResult:
        """Apply what ``change.origin`` may write; refuse the rest, field by field.

        Raises ``ContractError`` (nothing written, nothing recorded: a fixed change may be sent
        again), ``OwnershipViolation`` when ownership forbids every field (the refusal is
        committed first), and ``ConcurrentUpdate`` (Transient) when other writers won the race
        ``attempts`` times in a row.
        """
        started = self._clock.monotonic()
        if not self._registry.fields(change.entity):
            raise ContractError(f"unknown entity {change.entity!r}")
        for attempt in range(1, self._attempts + 1):
            try:
                result = await self._attempt(change)
                break
            except ConcurrentUpdate:
                # Another writer committed first (same record, same external id or same
                # idempotency key). Nothing of ours was written; a fresh read decides again.
                if attempt == self._attempts:
                    raise
        self._observe(change, result, self._clock.monotonic() - started)
        if forbidden_by_ownership(result):
            raise OwnershipViolation(_violation_message(change, result), result=result)
        return result

    async def _attempt(self, change: Change) -> ApplyResult:
        async with self._store.unit_of_work(change.tenant) as uow:
            seen = await uow.applied.get(change.idempotency_key)
            if seen is not None:
                return seen.model_copy(update={"duplicate": True})
            result = await self._apply(uow, change)
            await uow.commit()
        return result

    async def _apply(self, uow: UnitOfWork, change: Change) -> ApplyResult:
        canonical_id, resolved = await self._resolve(uow, change)
        current = await uow.records.get(change.entity, canonical_id, for_update=True)
        stamps: dict[str, Stamp] = {}
        if current is not None:
            provenance = await uow.provenance.for_record(change.entity, canonical_id)
            stamps = {name: Stamp.of(p) for name, p in provenance.items()}
        target = Target(change, canonical_id, current, stamps)
        if change.operation is Operation.DELETE:
            plan = plan_delete(self._registry, target)
        else:
            plan = plan_upsert(self._registry, self._validate, target)
        result = await self._write(uow, target, plan, link=not resolved)
        await uow.applied.put(result)
        return result

    async def _resolve(self, uow: UnitOfWork, change: Change) -> tuple[str, bool]:
        """The canonical id, and whether it came from the cross-reference (already linked)."""
        origin = change.origin
        found = None
        if origin.external_id is not None:
            found = await uow.xref.resolve(
                origin.system, origin.connection or "", change.entity, origin.external_id
            )
        if change.canonical_id is not None:
            if found is not None and found != change.canonical_id:
                raise ContractError(
                    f"{origin.system} {change.entity} {origin.external_id!r} is linked to "
                    f"{found}, not to {change.canonical_id}"
                )
            return change.canonical_id, found is not None
        if found is not None:
            return found, True
        return self._new_id(), False

    async def _write(
        self, uow: UnitOfWork, target: Target, plan: Plan, *, link: bool
    ) -> ApplyResult:
        change, current, now = target.change, target.current, self._clock.now()
        entity, canonical_id, origin = change.entity, target.canonical_id, change.origin
        version = current.version if current is not None else 0
        event_id = None
        if plan.writes_record:
            base = dict(current.data) if current is not None and not plan.delete else {}
            for name in plan.removed:
                base.pop(name, None)
            stored = await uow.records.put(
                entity,
                canonical_id,
                {**base, **plan.values},
                expected_version=version,
                deleted=plan.delete,
            )
            version = stored.version
        if plan.stamps:
            await uow.provenance.record(
                [
                    FieldProvenance(
                        entity, canonical_id, name, s.system, s.connection, s.source_time,
                        s.source_version, change.confidence, now,
                    )
                    for name, s in plan.stamps.items()
                ]
            )  # fmt: skip
        exists = current is not None or plan.writes_record or bool(plan.stamps)
        if link and exists and origin.external_id is not None:
            ref = ExternalRef(
                origin.system, origin.connection or "", entity, origin.external_id, canonical_id
            )
            try:
                await uow.xref.link(ref)
            except AlreadyExists:
                # _resolve found no link, so another transaction linked this external id after
                # we looked: a race, not a conflict. The retry will resolve to its record.
                raise ConcurrentUpdate(
                    f"{origin.system} {entity} {origin.external_id!r} was linked concurrently"
                ) from None
        if plan.writes_record:
            event_id = await self._record_write(uow, target, plan, version)
        if plan.refused:
            await self._record_refusal(uow, target, plan)
        return ApplyResult(
            tenant=change.tenant,
            entity=entity,
            canonical_id=canonical_id,
            idempotency_key=change.idempotency_key,
            applied=[*plan.values, *plan.removed],
            unchanged=plan.unchanged,
            refused=plan.refused,
            version=version,
            created=plan.create and plan.writes_record,
            deleted=plan.delete,
            event_id=event_id,
        )

    async def _record_write(self, uow: UnitOfWork, target: Target, plan: Plan, version: int) -> str:
        change = target.change
        verb = "deleted" if plan.delete else "created" if plan.create else "updated"
        event = EventEnvelope(
            source=event_source(change.origin),
            type=entity_event_type(change.entity, verb),
            subject=target.canonical_id,
            time=self._clock.now(),
            tenant=change.tenant,
            data={
                "entity": change.entity,
                "fields": {**dict.fromkeys(plan.removed), **plan.values},
                "removed": plan.removed,
                "origin": change.origin.model_dump(mode="json"),
                "version": version,
                "idempotency_key": change.idempotency_key,
                "causation_id": change.origin.causation_id,
            },
        )
        await uow.outbox.add(event)
        await uow.audit.append(
            actor=change.origin.system,
            action="change.applied",
            entity=change.entity,
            entity_id=target.canonical_id,
            detail={
                "operation": verb,
                "applied": list(plan.values),
                "removed": plan.removed,
                "unchanged": plan.unchanged,
                "version": version,
                "connection": change.origin.connection,
                "idempotency_key": change.idempotency_key,
                "event_id": event.id,
            },
        )
        return event.id

    async def _record_refusal(self, uow: UnitOfWork, target: Target, plan: Plan) -> None:
        change = target.change
        detail = {
            "entity": change.entity,
            "system": change.origin.system,
            "connection": change.origin.connection,
            "external_id": change.origin.external_id,
            "idempotency_key": change.idempotency_key,
            "refused": [r.model_dump(mode="json") for r in plan.refused],
        }
        await uow.audit.append(
            actor=change.origin.system,
            action="write.refused",
            entity=change.entity,
            entity_id=target.canonical_id,
            detail=detail,
        )
        await uow.outbox.add(
            EventEnvelope(
                source=event_source(change.origin),
                type=REFUSED_EVENT,
                subject=target.canonical_id,
                time=self._clock.now(),
                tenant=change.tenant,
                data=detail,
            )
        )

    def _observe(self, change: Change, result: ApplyResult, seconds: float) -> None:
        if self._metrics is None:
            return
        labels = {"tenant": change.tenant, "entity": change.entity}
        self._metrics.counter("cadastre_changes_applied_total").labels(
            outcome=_outcome(result), **labels
        ).inc()
        if not result.duplicate:
            refused = self._metrics.counter("cadastre_fields_refused_total")
            for refusal in result.refused:
                refused.labels(reason=refusal.reason.value, **labels).inc()
        self._metrics.histogram("cadastre_apply_seconds").labels(entity=change.entity).observe(
            seconds
        )


def forbidden_by_ownership(result: ApplyResult) -> bool:
    """True when ownership let nothing of the change through: no field applied or unchanged,
    and every refusal is an ownership one (unknown fields aside). Stale or conflicting fields
    were allowed to their system, so such a change returns normally with its refusals."""
    if result.wrote or result.unchanged or not result.refused:
        return False
    reasons = {r.reason for r in result.refused}
    return bool(reasons & _OWNERSHIP) and reasons <= _OWNERSHIP | {RefusalReason.UNKNOWN_FIELD}


def _outcome(result: ApplyResult) -> str:
    if result.duplicate:
        return "duplicate"
    if result.deleted:
        return "deleted"
    if result.applied:
        return "applied"
    return "refused" if result.refused else "unchanged"


def _violation_message(change: Change, result: ApplyResult) -> str:
    reasons = "; ".join(f"{r.field}: {r.reason.value} ({r.detail})" for r in result.refused)
    return f"{change.origin.system} may not write {change.entity} {result.canonical_id}: {reasons}"
