"""Resolving a conflict of the review queue: a person's decision, applied through the engine.

``resolve_conflict`` applies the chosen value as a change of origin ``core`` with causation = the
conflict id (so write-back sends it to the systems that hold the record), in one transaction
with the conflict marked resolved and a ``conflict.resolved`` audit entry naming who chose what.
The value is written (and its event sent) even when it equals the stored one: a ``keep_current``
still has to reach the system whose edit lost. One decision settles the field: the record's other
open conflicts on it are resolved with the chosen value (``resolved_by`` names the conflict that
superseded them, a ``conflict.superseded`` audit entry each). Ownership is not asked: a person
decided between values the registry let two systems write.

``carry_resolution`` takes a decision across an identity link (``identity_consumer.py``): the
resolved value, set on the conflict's record, is written to the record linked to it the same way
- origin ``core``, ownership not asked, the field's vector moved on and held by the writers that
hold the decision - so the linked record's systems get it too. Only a resolved conflict of the
linked record (the change's causation) opens this path; any other ``core`` change goes through
the engine's ownership check as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from cadastre.contract.changes import ApplyResult, Change, Origin
from cadastre.errors import AlreadyExists, ContractError, NotFound
from cadastre.ports import AuditDraft, Conflict, ConflictResolution, ConflictState, FieldVector
from cadastre.sync.origin import Stamp
from cadastre.sync.plan import Plan, Target
from cadastre.sync.vectors import writer_of
from cadastre.sync.writes import build_writes, flush

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.ports import Clock, Store
    from cadastre.sync.plan import Validator

RESOLVER_SYSTEM = "core"


@dataclass(frozen=True)
class Resolved:
    conflict: Conflict
    result: ApplyResult


async def resolve_conflict(
    store: Store, clock: Clock, validate: Validator, *, tenant: str, conflict_id: str,
    resolution: ConflictResolution, value: Any = None, actor: str,
) -> Resolved:  # fmt: skip
    async with store.unit_of_work(tenant) as uow:
        conflict = await uow.conflicts.get(conflict_id)
        if conflict is None:
            raise NotFound(f"conflict {conflict_id!r} does not exist in tenant {tenant!r}")
        if conflict.state is not ConflictState.OPEN:
            raise AlreadyExists(
                f"conflict {conflict_id!r} was resolved already ({conflict.resolution}, by "
                f"{conflict.resolved_by})"
            )
        entity, record_id, name = conflict.entity, conflict.record_id, conflict.field
        found = await uow.records.get_many(entity, [record_id], for_update=True)
        current = found.get(record_id)
        if current is None or current.deleted:
            raise ContractError(
                f"{entity} {record_id} was deleted since conflict {conflict_id} was queued; "
                "there is nothing to resolve"
            )
        if resolution is ConflictResolution.KEEP_CURRENT:
            chosen = current.data.get(name)
        elif resolution is ConflictResolution.TAKE_INCOMING:
            chosen = conflict.incoming.get("value")
        else:
            chosen = to_jsonable_python(dict(validate(entity, {name: value})))[name]
        now = clock.now()
        change = Change(
            tenant=tenant, entity=entity, canonical_id=record_id, fields={name: chosen},
            origin=Origin(system=RESOLVER_SYSTEM, source_time=now, causation_id=conflict_id),
            idempotency_key=f"conflict:{conflict_id}",
        )  # fmt: skip
        provenance = await uow.provenance.for_record(entity, record_id)
        stamps = {
            f: Stamp(p.system, p.connection, p.source_time, p.source_version)
            for f, p in provenance.items()
        }
        vectors = (await uow.conflicts.versions(entity, [record_id])).get(record_id, {})
        stamp = Stamp(RESOLVER_SYSTEM, None, now, None)
        plan = Plan(
            values={name: chosen}, stamps={name: stamp},
            versions={name: _vector(vectors.get(name), conflict, resolution, stamp)},
        )  # fmt: skip
        target = Target(change, record_id, current, stamps, vectors, frozenset({name}))
        writes = build_writes(target, plan, now=now, link=False)
        writes.audit.append(
            AuditDraft(
                actor=actor,
                action="conflict.resolved",
                entity=entity,
                entity_id=record_id,
                detail={
                    "conflict": conflict_id,
                    "field": name,
                    "resolution": resolution.value,
                    "by": actor,
                    "rule": conflict.rule,
                    "how": "review",
                    "event_id": writes.result.event_id,
                },
            )
        )
        # The other open conflicts of the field were held against the values this decision
        # replaces: settled by it (one decision per field), each recorded, so that resolving one
        # of them later cannot undo this one.
        others = [
            c for c in await uow.conflicts.find(
                entity=entity, state=ConflictState.OPEN, record_id=record_id, limit=10_000
            )
            if c.field == name and c.id != conflict_id
        ]  # fmt: skip
        for other in others:
            writes.audit.append(
                AuditDraft(
                    actor=actor,
                    action="conflict.superseded",
                    entity=entity,
                    entity_id=record_id,
                    detail={
                        "conflict": other.id,
                        "field": name,
                        "by_conflict": conflict_id,
                        "value": chosen,
                        "event_id": writes.result.event_id,
                    },
                )
            )
        await flush(uow, [writes])
        done = await uow.conflicts.resolve(
            conflict_id, resolution=resolution, value=chosen, by=actor, at=now
        )
        for other in others:
            await uow.conflicts.resolve(
                other.id, resolution=ConflictResolution.VALUE, value=chosen,
                by=f"{actor} (superseded by {conflict_id})", at=now,
            )  # fmt: skip
        await uow.commit()
    return Resolved(done, writes.result)


def _vector(
    vector: FieldVector | None, conflict: Conflict, resolution: ConflictResolution, stamp: Stamp
) -> FieldVector:
    """The resolved value is a new version. Who holds it: the platform; for keep_current, the
    writers that held the stored value; for take_incoming, the connection whose edit it was."""
    old = vector.v if vector is not None else 0
    v = old + 1
    seen: dict[str, int] = {writer_of(stamp): v}
    held: Mapping[str, int] = vector.seen if vector is not None else {}
    if resolution is ConflictResolution.KEEP_CURRENT:
        seen.update({w: v for w, n in held.items() if n == old})
    elif resolution is ConflictResolution.TAKE_INCOMING:
        incoming = conflict.incoming.get("stamp", {})
        writer = incoming.get("connection") or f"@{incoming.get('system')}"
        seen[writer] = v
    kept = vector.held if vector is not None else {}
    return FieldVector(v, {**{w: n for w, n in held.items() if w not in seen}, **seen}, kept)


async def carry_resolution(
    store: Store,
    clock: Clock,
    *,
    tenant: str,
    conflict_id: str,
    source: tuple[str, str],
    entity: str,
    record_id: str,
    values: Mapping[str, Any],
    origin: Origin,
    key: str,
) -> ApplyResult | None:
    """Write the values a resolution of ``conflict_id`` set on ``source`` (entity, id) to the
    record linked to it, as the resolution did; None (nothing written) when ``conflict_id`` is no
    resolved conflict of ``source``, or the record is gone."""
    async with store.unit_of_work(tenant) as uow:
        conflict = await uow.conflicts.get(conflict_id)
        if (
            conflict is None
            or conflict.state is ConflictState.OPEN
            or (conflict.entity, conflict.record_id) != source
            or conflict.field not in values
        ):
            return None
        found = await uow.records.get_many(entity, [record_id], for_update=True)
        current = found.get(record_id)
        if current is None or current.deleted:
            return None
        provenance = await uow.provenance.for_record(entity, record_id)
        stamps = {
            f: Stamp(p.system, p.connection, p.source_time, p.source_version)
            for f, p in provenance.items()
        }
        vectors = (await uow.conflicts.versions(entity, [record_id])).get(record_id, {})
        source_vectors = (await uow.conflicts.versions(source[0], [source[1]])).get(source[1], {})
        now = clock.now()
        stamp = Stamp(origin.system, origin.connection, origin.source_time or now,
                      origin.source_version)  # fmt: skip
        change = Change(tenant=tenant, entity=entity, canonical_id=record_id, fields=dict(values),
                        origin=origin, idempotency_key=key)  # fmt: skip
        plan = Plan(
            values=dict(values), stamps=dict.fromkeys(values, stamp),
            versions={
                name: _carried(vectors.get(name), source_vectors.get(name), stamp)
                for name in values
            },
        )  # fmt: skip
        target = Target(change, record_id, current, stamps, vectors, frozenset(values))
        writes = build_writes(target, plan, now=now, link=False)
        writes.audit.append(
            AuditDraft(
                actor=RESOLVER_SYSTEM,
                action="conflict.carried",
                entity=entity,
                entity_id=record_id,
                detail={
                    "conflict": conflict_id,
                    "from": {"entity": source[0], "id": source[1]},
                    "fields": sorted(values),
                    "event_id": writes.result.event_id,
                },
            )
        )
        await flush(uow, [writes])
        await uow.commit()
    return writes.result


def _carried(mine: FieldVector | None, decided: FieldVector | None, stamp: Stamp) -> FieldVector:
    """The linked record's vector moves on: held by the platform and by the writers that hold
    the decision on the conflict's record (the connection whose edit was taken, say)."""
    v = (mine.v if mine is not None else 0) + 1
    holders = {writer_of(stamp)}
    if decided is not None:
        holders |= {w for w, n in decided.seen.items() if n == decided.v}
    seen = {**(mine.seen if mine is not None else {}), **dict.fromkeys(holders, v)}
    return FieldVector(v, seen, mine.held if mine is not None else {})
