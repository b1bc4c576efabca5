"""What a decided ``Plan`` writes, as data (``WriteSet``), and how a batch of them is flushed.

Building the writes is pure, so the engine can decide a whole page of changes in memory and then
write it with a handful of bulk statements: one per table, not one per change and table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope, entity_event_type
from cadastre.ports import (
    AuditDraft,
    Conflict,
    ExternalRef,
    FieldVector,
    ProvenanceWrite,
    RecordWrite,
    StoredRecord,
)
from cadastre.sync.origin import Stamp, event_source, stamp_of
from cadastre.sync.vectors import stamp_json

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.ports import StampValues, UnitOfWork
    from cadastre.sync.plan import Plan, Target

REFUSED_EVENT = "cadastre.write.refused.v1"


@dataclass
class WriteSet:
    """Everything one change writes, in the order a flush writes it."""

    result: ApplyResult
    record: RecordWrite | None = None
    provenance: ProvenanceWrite | None = None
    stamps: Mapping[str, Stamp] = field(default_factory=dict)  # the same, as the planner sees it
    link: ExternalRef | None = None
    events: list[EventEnvelope] = field(default_factory=list)
    audit: list[AuditDraft] = field(default_factory=list)
    # the record's whole vector map once this write's moves are in (None: no vector moved)
    versions: Mapping[str, FieldVector] | None = None
    conflicts: list[Conflict] = field(default_factory=list)  # for the review queue
    # False for the extra records one change writes (a ledger entry's reversal): the change's
    # result goes into the idempotency ledger once, with its main write
    ledger: bool = True
    repoint: ExternalRef | None = None  # re-link the change's external id to this record


def build_writes(target: Target, plan: Plan, *, now: datetime, link: bool) -> WriteSet:
    change, current = target.change, target.current
    entity, canonical_id, origin = change.entity, target.canonical_id, change.origin
    version = current.version if current is not None else 0
    writes = WriteSet(
        result=ApplyResult(
            tenant=change.tenant,
            entity=entity,
            canonical_id=canonical_id,
            idempotency_key=change.idempotency_key,
            applied=[*plan.values, *plan.removed],
            unchanged=plan.unchanged,
            refused=plan.refused,
            version=version + 1 if plan.writes_record else version,
            created=plan.create and plan.writes_record,
            deleted=plan.delete,
        )
    )
    if plan.writes_record:
        base = dict(current.data) if current is not None and not plan.delete else {}
        for name in plan.removed:
            base.pop(name, None)
        writes.record = RecordWrite(
            entity, canonical_id, {**base, **plan.values}, expected_version=version,
            deleted=plan.delete, confidence=change.confidence,
        )  # fmt: skip
    if plan.stamps:
        writes.stamps = plan.stamps
        writes.provenance = _provenance(
            entity, canonical_id, plan.stamps, change.confidence, change.field_confidence, now
        )
    exists = current is not None or plan.writes_record or bool(plan.stamps)
    if link and exists and origin.external_id is not None:
        writes.link = ExternalRef(
            origin.system, origin.connection or "", entity, origin.external_id, canonical_id
        )
    if plan.writes_record:
        _record_write(writes, target, plan, now)
    if plan.refused:
        _record_refusal(writes, target, now)
    if plan.versions:
        writes.versions = {**target.versions, **plan.versions}
    if plan.queued or plan.resolutions:
        _record_conflicts(writes, target, plan, now)
    return writes


def _record_conflicts(writes: WriteSet, target: Target, plan: Plan, now: datetime) -> None:
    change = target.change
    incoming = stamp_of(change.origin)
    for item in plan.queued:
        conflict = Conflict(
            id=item.id, entity=change.entity, record_id=target.canonical_id, field=item.field,
            current={"value": item.current, "stamp": stamp_json(item.current_stamp)},
            incoming={"value": item.incoming, "stamp": stamp_json(incoming),
                      "idempotency_key": change.idempotency_key,
                      "external_id": change.origin.external_id},
            vector=item.vector.to_json() if item.vector is not None else {"v": 0, "seen": {}},
            rule=item.rule, created_at=now,
        )  # fmt: skip
        writes.conflicts.append(conflict)
        writes.audit.append(
            AuditDraft(
                actor="sync",
                action="conflict.queued",
                entity=change.entity,
                entity_id=target.canonical_id,
                detail={
                    "conflict": item.id,
                    "field": item.field,
                    "rule": item.rule,
                    "current": conflict.current["stamp"],
                    "incoming": conflict.incoming["stamp"],
                    "vector": conflict.vector,
                },
            )
        )
    for resolution in plan.resolutions:
        writes.audit.append(
            AuditDraft(
                actor="sync",
                action="conflict.resolved",
                entity=change.entity,
                entity_id=target.canonical_id,
                detail={**resolution, "idempotency_key": change.idempotency_key},
            )
        )


def _provenance(
    entity: str, record_id: str, stamps: Mapping[str, Stamp], confidence: float,
    field_confidence: Mapping[str, float], now: datetime,
) -> ProvenanceWrite:  # fmt: skip
    first = next(iter(stamps.values()))
    if not field_confidence and all(s is first for s in stamps.values()):
        # one stamp for every field: a whole change scored as one
        stamp = (first.system, first.connection, first.source_time, first.source_version,
                 confidence, now)  # fmt: skip
        return ProvenanceWrite(entity, record_id, (stamp,), dict.fromkeys(stamps, 0))
    # The planner hands out one Stamp object per distinct stamp, so identity (with the field's
    # own confidence, where mapping scored it apart) groups the fields.
    index: dict[tuple[int, float], int] = {}
    values: list[StampValues] = []
    fields: dict[str, int] = {}
    for name, s in stamps.items():
        score = field_confidence.get(name, confidence)
        i = index.get(key := (id(s), score))
        if i is None:
            i = index[key] = len(values)
            values.append((s.system, s.connection, s.source_time, s.source_version, score,
                           now))  # fmt: skip
        fields[name] = i
    return ProvenanceWrite(entity, record_id, tuple(values), fields)


def _record_write(writes: WriteSet, target: Target, plan: Plan, now: datetime) -> None:
    change, version = target.change, writes.result.version
    verb = "deleted" if plan.delete else "created" if plan.create else "updated"
    # model_construct: every value here is built by this module from checked parts (the type
    # comes from the catalogue), so validating the envelope again would only cost time.
    event = EventEnvelope.model_construct(
        id=str(uuid.uuid4()),
        source=event_source(change.origin),
        type=entity_event_type(change.entity, verb),
        subject=target.canonical_id,
        time=now,
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
    writes.events.append(event)
    writes.result = writes.result.model_copy(update={"event_id": event.id})
    writes.audit.append(
        AuditDraft(
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
    )


def _record_refusal(writes: WriteSet, target: Target, now: datetime) -> None:
    change = target.change
    detail: dict[str, Any] = {
        "entity": change.entity,
        "system": change.origin.system,
        "connection": change.origin.connection,
        "external_id": change.origin.external_id,
        "idempotency_key": change.idempotency_key,
        "refused": [r.model_dump(mode="json") for r in writes.result.refused],
    }
    writes.audit.append(
        AuditDraft(
            actor=change.origin.system,
            action="write.refused",
            entity=change.entity,
            entity_id=target.canonical_id,
            detail=detail,
        )
    )
    writes.events.append(
        EventEnvelope(
            source=event_source(change.origin),
            type=REFUSED_EVENT,
            subject=target.canonical_id,
            time=now,
            tenant=change.tenant,
            data=detail,
        )
    )


async def flush(uow: UnitOfWork, batch: list[WriteSet]) -> list[StoredRecord]:
    """Write a batch (at most one record write per record) with one bulk call per table."""
    if not batch:
        return []
    stored = await uow.records.put_many([w.record for w in batch if w.record is not None])
    provenance = [w.provenance for w in batch if w.provenance is not None]
    if provenance:
        await uow.provenance.record_many(provenance)
    # Links and ledger keys can collide with a concurrent batch's; inserting them in one global
    # order means two batches wait for each other in turn instead of deadlocking.
    links = sorted((w.link for w in batch if w.link is not None), key=_link_order)
    await uow.xref.link_many(links)
    for w in batch:
        if w.repoint is not None:
            await uow.identities.repoint_external(w.repoint)
    await uow.outbox.add_many([e for w in batch for e in w.events])
    await uow.audit.append_many([a for w in batch for a in w.audit])
    await uow.applied.put_many(
        sorted((w.result for w in batch if w.ledger), key=lambda r: r.idempotency_key)
    )
    versions: dict[str, dict[str, Mapping[str, FieldVector]]] = {}
    for w in batch:
        if w.versions is not None:
            versions.setdefault(w.result.entity, {})[w.result.canonical_id] = w.versions
    for entity, vectors in versions.items():
        await uow.conflicts.put_versions(entity, vectors)
    queued = [c for w in batch for c in w.conflicts]
    if queued:
        await uow.conflicts.add_many(queued)
    return stored


def _link_order(ref: ExternalRef) -> tuple[str, str, str, str]:
    return (ref.system, ref.connection, ref.entity, ref.external_id)
