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
from cadastre.ports import StoredRecord
from cadastre.sync.conflicts import Verdict, admit, after_delete, judge
from cadastre.sync.origin import DELETED_FIELD, Stamp, compare, stamp_of

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


@dataclass
class Plan:
    values: dict[str, Any] = field(default_factory=dict)  # applied: field -> new JSON value
    removed: list[str] = field(default_factory=list)  # fields a delete cleared
    unchanged: list[str] = field(default_factory=list)
    refused: list[FieldRefusal] = field(default_factory=list)
    stamps: dict[str, Stamp] = field(default_factory=dict)  # provenance to store
    create: bool = False  # the record is created, or a tombstone revived
    delete: bool = False

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
                if (restamp := moves[key]) is not None:
                    plan.stamps[name] = restamp
            else:
                plan.values[name] = value
                plan.stamps[name] = moves[key] or incoming.after(current)
            continue
        verdict = judge(
            decision, incoming, current, same_value=name in data and data[name] == value
        )
        if verdict.verdict is Verdict.APPLY:
            plan.values[name] = value
        elif verdict.verdict is Verdict.UNCHANGED:
            plan.unchanged.append(name)
        elif verdict.refusal is not None:
            plan.refused.append(verdict.refusal)
        if verdict.restamp:
            plan.stamps[name] = incoming.after(current)
    plan.create = creating and bool(plan.values)
    return plan


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
