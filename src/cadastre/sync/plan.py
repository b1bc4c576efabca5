"""What one change would do to one record, decided without I/O: which fields apply, which are
unchanged, which are refused and why, and which provenance stamps move.

``engine.py`` loads the record and its provenance, asks for a ``Plan`` and writes it.

Deletes are ordered like field writes, so that applying a record's changes in any order, with
duplicates, ends in the state of applying them in source order (RELIABILITY.md promise 14): a
delete stamped T clears every field last written at or before T and is remembered as the record's
``@deleted`` stamp; a field write not newer than that stamp is stale; a record is deleted while no
field outlives its newest delete. A newer upsert from the record owner revives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from cadastre.contract.changes import Change, FieldRefusal, RefusalReason
from cadastre.ownership import Access
from cadastre.ports import FieldVector, StoredRecord
from cadastre.sync.conflicts import Verdict, admit, after_delete, judge
from cadastre.sync.echo import RECEIPT_KEY_PREFIX
from cadastre.sync.origin import DELETED_FIELD, Stamp, compare, stamp_of
from cadastre.sync.vectors import (
    DEFAULT_SKEW_SECONDS,
    after_apply,
    after_hold,
    after_refusal,
    conflict_id,
    is_causal,
    judge_concurrent,
    repeats,
    stamp_json,
    value_digest,
    writer_of,
)

if TYPE_CHECKING:
    from cadastre.ownership import Decision, OwnershipRegistry

# entity, {wire name: raw value} -> {wire name: valid value}; raises ContractError
Validator = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Target:
    change: Change
    canonical_id: str
    current: StoredRecord | None  # tombstones included
    stamps: Mapping[str, Stamp]  # stored provenance by field (and DELETED_FIELD)
    # version vectors (vectors.py) of the entity's shared fields, and which fields are shared;
    # empty for an entity whose fields have no writers besides their owner
    versions: Mapping[str, FieldVector] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()
    skew: float = DEFAULT_SKEW_SECONDS  # seconds within which concurrent source times tie


@dataclass(frozen=True)
class Queued:
    """A shared field's concurrent edit that source time could not order: the review queue's."""

    id: str
    field: str
    current: Any
    incoming: Any
    current_stamp: Stamp
    vector: FieldVector | None
    rule: str


@dataclass
class Plan:
    values: dict[str, Any] = field(default_factory=dict)  # applied: field -> new JSON value
    removed: list[str] = field(default_factory=list)  # fields a delete cleared
    unchanged: list[str] = field(default_factory=list)
    refused: list[FieldRefusal] = field(default_factory=list)
    stamps: dict[str, Stamp] = field(default_factory=dict)  # provenance to store
    create: bool = False  # the record is created, or a tombstone revived
    delete: bool = False
    versions: dict[str, FieldVector] = field(default_factory=dict)  # vectors that move
    queued: list[Queued] = field(default_factory=list)  # concurrent edits held for review
    resolutions: list[dict[str, Any]] = field(default_factory=list)  # automatic, for the audit

    @property
    def writes_record(self) -> bool:
        return bool(self.values or self.removed) or self.delete


def plan_upsert(registry: OwnershipRegistry, validate: Validator, target: Target) -> Plan:
    """The decisions of ``conflicts.admit`` and ``conflicts.judge`` for every field.

    A record carries tens of fields whose stored stamps are mostly the same few (every field a
    change wrote shares its stamp), so the checks that depend only on the stamps are made once
    per distinct stored stamp; a field whose case is not the plain one (refused, or last written
    by another system) goes through ``admit`` and ``judge`` themselves."""
    change, plan = target.change, Plan()
    entity, incoming = change.entity, stamp_of(change.origin)
    decisions = registry.decisions(entity, incoming.system)
    known: dict[str, Any] = change.fields
    if not decisions.keys() >= known.keys():
        known = {}
        for name, value in change.fields.items():
            if name in decisions:
                known[name] = value
            else:
                detail = f"{entity} has no field {name} in the contract"
                plan.refused.append(
                    FieldRefusal(field=name, reason=RefusalReason.UNKNOWN_FIELD, detail=detail)
                )
    creating = target.current is None or target.current.deleted
    if creating and known and (denied := _existence(registry, target, "create")) is not None:
        reason, detail = denied
        plan.refused += [FieldRefusal(field=n, reason=reason, detail=detail) for n in known]
        return plan

    stamps, deleted = target.stamps, target.stamps.get(DELETED_FIELD)
    if not stamps and registry.allowed_fields(entity, incoming.system) >= known.keys():
        # The common case of a first sync: a record nobody has written, every field allowed.
        # admit() and judge() would let each field through with this stamp; say it at once.
        values = to_jsonable_python(dict(validate(entity, known)))
        data = target.current.data if target.current is not None else {}
        plan.values = {n: values[n] for n in known if n not in data or data[n] != values[n]}
        if len(plan.values) < len(known):
            plan.unchanged = [n for n in known if n not in plan.values]
        plan.stamps = dict.fromkeys(known, incoming)
        plan.create = creating and bool(plan.values)
        if target.shared:
            _move_vectors(plan, target, incoming)
        return plan
    # stored stamp (by identity) -> None when a field holding it passes admit's staleness checks
    # plainly; the refusal otherwise is made per field by admit itself
    plain: dict[int, bool] = {}
    admitted: dict[str, tuple[Decision, Any]] = {}
    for name, value in known.items():
        decision = decisions[name]
        current = stamps.get(name)
        if deleted is None and decision.access in _ALLOWED:
            ok = plain.get(id(current))
            if ok is None:
                ok = plain[id(current)] = _fresh(incoming, current)
            if ok:
                admitted[name] = (decision, value)
                continue
        refusal = admit(decision, incoming, current, deleted)
        if refusal is None:
            admitted[name] = (decision, value)
        else:
            plan.refused.append(refusal)
    if not admitted:
        return plan

    # Only fields that may be written are validated: a refused field's value is not our business.
    raw = {name: value for name, (_, value) in admitted.items()}
    values = to_jsonable_python(dict(validate(entity, raw)))
    data = target.current.data if target.current is not None else {}
    moves: dict[int, Stamp | None] = {}  # stored stamp -> the stamp to store, None: keep it
    for name, (decision, _) in admitted.items():
        value, current = values[name], stamps.get(name)
        if current is None or current.system == incoming.system:
            # No other system's value to weigh: judge() has no conflict to find.
            key = id(current)
            if key not in moves:
                after = incoming.after(current)
                moves[key] = None if current is not None and after == current else after
            if name in data and data[name] == value:
                plan.unchanged.append(name)
                # A shared field keeps the time its value was set: a whole-object read that
                # re-dates an unchanged value (Buildium stamps a tenant with the read's time)
                # would otherwise make an older value look newer than another system's edit.
                if (restamp := moves[key]) is not None and name not in target.shared:
                    plan.stamps[name] = restamp
            else:
                plan.values[name] = value
                plan.stamps[name] = moves[key] or incoming.after(current)
            continue
        same = name in data and data[name] == value
        if (
            not same
            and name in target.shared
            and not is_causal(target.versions.get(name), writer_of(incoming))
        ):
            vector, writer = target.versions.get(name), writer_of(incoming)
            if change.idempotency_key.startswith(RECEIPT_KEY_PREFIX):
                # Our own write's receipt, landing after a newer value from another system
                # (planned before it): the vendor now holds the older value, and the newer one
                # is on its way there as a write of its own. Applying the receipt would revert
                # the field until that write's receipt lands.
                plan.refused.append(
                    FieldRefusal(
                        field=name, reason=RefusalReason.STALE,
                        detail=f"the receipt of an earlier write; version "
                        f"{vector.v if vector is not None else 0} is newer and goes to {writer}",
                    )
                )  # fmt: skip
                if (moved := after_refusal(vector, writer, value_digest(value))) is not None:
                    plan.versions[name] = moved
                continue
            if repeats(vector, writer, value_digest(value)):
                # Not an edit: the writer still holds the value it had before another system's
                # newer one (which write-back is taking to it). Its stamp may be newer than
                # that value's (a vendor stamping records with the read time), so letting it
                # through as a concurrent edit would undo the other system's change.
                plan.refused.append(
                    FieldRefusal(
                        field=name, reason=RefusalReason.STALE,
                        detail=f"{writer} repeats the value it held before version "
                        f"{vector.v if vector is not None else 0}; not an edit",
                    )
                )  # fmt: skip
                continue
            _concurrent(plan, target, decision, incoming, current, name, value, data)
            continue
        verdict = judge(decision, incoming, current, same_value=same)
        if verdict.refusal is not None and verdict.refusal.reason is RefusalReason.CONFLICT:
            plan.resolutions.append(_resolution(decision, "policy", current, incoming, False))
        if verdict.verdict is Verdict.APPLY:
            plan.values[name] = value
        elif verdict.verdict is Verdict.UNCHANGED:
            plan.unchanged.append(name)
        elif verdict.refusal is not None:
            plan.refused.append(verdict.refusal)
        if verdict.restamp:
            plan.stamps[name] = incoming.after(current)
    plan.create = creating and bool(plan.values)
    if target.shared:
        _move_vectors(plan, target, incoming)
    return plan


def _concurrent(
    plan: Plan, target: Target, decision: Decision, incoming: Stamp, current: Stamp,
    name: str, value: Any, data: Mapping[str, Any],
) -> None:  # fmt: skip
    """A concurrent edit of a shared field (``vectors.judge_concurrent``)."""
    change = target.change
    queue_id = conflict_id(change.tenant, change.idempotency_key, name)
    outcome = judge_concurrent(decision, incoming, current, skew=target.skew, queue_id=queue_id)
    if outcome.apply:
        plan.values[name] = value
        plan.stamps[name] = incoming.after(current)
        plan.resolutions.append(_resolution(decision, outcome.how, current, incoming, True))
        return
    if outcome.refusal is not None:
        plan.refused.append(outcome.refusal)
    writer = writer_of(incoming)
    if (moved := after_refusal(target.versions.get(name), writer, value_digest(value))) is not None:
        plan.versions[name] = moved
    if outcome.queue:
        rule = decision.rule.label() if decision.rule is not None else ""
        plan.queued.append(
            Queued(queue_id, name, data.get(name), value, current, target.versions.get(name), rule)
        )
    else:
        plan.resolutions.append(_resolution(decision, outcome.how, current, incoming, False))


def _resolution(
    decision: Decision, how: str, current: Stamp, incoming: Stamp, incoming_won: bool
) -> dict[str, Any]:
    """An automatic resolution of a shared field, as its ``conflict.resolved`` audit entry says
    it: which rule, how (``policy`` for a causal edit under the declared policy; ``owner_wins`` /
    ``newest_wins`` for a concurrent one), who won and who lost."""
    rule = decision.rule
    winner, loser = (incoming, current) if incoming_won else (current, incoming)
    return {
        "field": decision.field,
        "rule": rule.label() if rule is not None else None,
        "policy": decision.conflict.value if decision.conflict is not None else None,
        "how": how,
        "concurrent": how != "policy",
        "winner": stamp_json(winner),
        "loser": stamp_json(loser),
    }


def _move_vectors(plan: Plan, target: Target, incoming: Stamp) -> None:
    """Shared fields applied get ``v`` bumped; shared fields found equal are held by the writer."""
    writer = writer_of(incoming)
    data = target.current.data if target.current is not None else {}
    for name, value in plan.values.items():
        if name in target.shared:
            applied = value_digest(value)
            plan.versions[name] = after_apply(target.versions.get(name), writer, applied)
    for name in plan.unchanged:
        if name not in target.shared:
            continue
        held = value_digest(data[name]) if name in data else None
        if (moved := after_hold(target.versions.get(name), writer, held)) is not None:
            plan.versions[name] = moved


_ALLOWED = frozenset({Access.OWNER, Access.WRITER})


def _fresh(incoming: Stamp, current: Stamp | None) -> bool:
    """``admit``'s staleness check for an allowed field and a record with no delete on file."""
    return (
        current is None
        or current.system != incoming.system
        or compare(incoming, current, versions=True) != -1
    )


def plan_delete(registry: OwnershipRegistry, target: Target) -> Plan:
    plan, incoming = Plan(), stamp_of(target.change.origin)
    if (denied := _existence(registry, target, "delete")) is not None:
        reason, detail = denied
        plan.refused.append(FieldRefusal(field=DELETED_FIELD, reason=reason, detail=detail))
        return plan
    previous = target.stamps.get(DELETED_FIELD)
    if previous is not None and compare(incoming, previous, versions=True) != 1:
        return plan  # an equal or later delete is already on record
    plan.stamps[DELETED_FIELD] = incoming.after(previous)
    current = target.current
    if current is not None and current.deleted:
        return plan  # stays deleted; only the newer delete time is remembered
    data = current.data if current is not None else {}
    survivors = {
        name for name in data if (s := target.stamps.get(name)) and after_delete(s, incoming)
    }
    if survivors:
        # Fields written after this delete (their changes arrived first) outlive it.
        plan.removed = sorted(set(data) - survivors)
    else:
        # A delete for a record never seen still leaves a tombstone: an older upsert arriving
        # later must not create what its source has already deleted.
        plan.delete = True
    return plan


def _existence(
    registry: OwnershipRegistry, target: Target, verb: str
) -> tuple[RefusalReason, str] | None:
    """Whether the change's system may create (or revive) or delete records of the entity."""
    entity, system = target.change.entity, target.change.origin.system
    owner = registry.record_owner(entity)
    if owner is None:
        return (
            RefusalReason.NO_OWNER_DECLARED,
            f"no system may {verb} {entity} records: the registry gives its key field no owner",
        )
    if system != owner:
        return RefusalReason.NOT_OWNER, f"only {owner} may {verb} {entity} records"
    return None
