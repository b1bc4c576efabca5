"""Field-level judgement: may this write replace what the store holds?

Pure functions over a registry ``Decision``, the incoming write's ``Stamp`` and the field's stored
``FieldProvenance``. The order of checks is the contract documented in ``docs/ownership.md``:
ownership, then staleness against the same system, then (with values known) equality, then the
shared field's conflict policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from cadastre.contract.changes import FieldRefusal, RefusalReason
from cadastre.ownership import Access, ConflictPolicy
from cadastre.sync.origin import compare

if TYPE_CHECKING:
    from cadastre.ownership import Decision
    from cadastre.sync.origin import Stamp


class Verdict(StrEnum):
    APPLY = "apply"
    UNCHANGED = "unchanged"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    refusal: FieldRefusal | None = None
    # whether to store the incoming stamp as the field's provenance (always for APPLY; for
    # UNCHANGED when the system now holding the value, or its time, moves on)
    restamp: bool = False


def admit(
    decision: Decision, incoming: Stamp, current: Stamp | None, deleted: Stamp | None = None
) -> FieldRefusal | None:
    """The checks that need no values: ownership, then staleness against the record's newest
    delete (``deleted``) and against the field's stored value from the same system."""
    field, rule = decision.field, decision.rule
    if decision.access is Access.UNDECLARED or rule is None:
        return FieldRefusal(
            field=field,
            reason=RefusalReason.NO_OWNER_DECLARED,
            detail=f"no ownership rule covers {decision.entity}.{field}",
        )
    if decision.access is Access.FORBIDDEN:
        writers = f"; writers: {', '.join(sorted(rule.writers))}" if rule.writers else ""
        return FieldRefusal(
            field=field,
            reason=RefusalReason.NOT_OWNER,
            detail=f"{decision.entity}.{field} is owned by {rule.owner}{writers} ({rule.label()})",
        )
    if deleted is not None and not after_delete(incoming, deleted):
        return FieldRefusal(
            field=field,
            reason=RefusalReason.STALE,
            detail=f"not newer than the record's delete by {deleted.system} ({_when(deleted)})",
        )
    if (
        current is not None
        and current.system == incoming.system
        and compare(incoming, current, versions=True) == -1
    ):
        return FieldRefusal(
            field=field,
            reason=RefusalReason.STALE,
            detail=f"older than the stored value from {current.system} ({_when(current)})",
        )
    return None


def after_delete(stamp: Stamp, deleted: Stamp) -> bool:
    """Whether a write stamped ``stamp`` outlives a delete stamped ``deleted``. Ties and writes
    that cannot be ordered against the delete lose: a delete is not undone by doubt."""
    return compare(stamp, deleted, versions=stamp.system == deleted.system) == 1


def judge(
    decision: Decision, incoming: Stamp, current: Stamp | None, *, same_value: bool
) -> Judgement:
    """For a field ``admit`` let through: apply, unchanged, or refused under the conflict policy."""
    conflict = _conflict(decision, incoming, current)
    if same_value:
        moves = conflict is None and (current is None or incoming.after(current) != current)
        return Judgement(Verdict.UNCHANGED, restamp=moves)
    if conflict is not None:
        return Judgement(Verdict.REFUSE, refusal=conflict)
    return Judgement(Verdict.APPLY, restamp=True)


def _conflict(decision: Decision, incoming: Stamp, current: Stamp | None) -> FieldRefusal | None:
    if current is None or current.system == incoming.system or decision.conflict is None:
        return None
    field = decision.field
    if decision.conflict is ConflictPolicy.OWNER_WINS:
        if decision.access is Access.WRITER and current.system == decision.owner:
            return FieldRefusal(
                field=field,
                reason=RefusalReason.CONFLICT,
                detail=f"owner_wins: the value was set by the owner {current.system}",
            )
        return None
    # NEWEST_WINS binds the owner too: on a shared field the later source_time stands.
    order = compare(incoming, current, versions=False)
    if order == 1 or (order is None and current.source_time is None and incoming.source_time):
        return None
    why = "carries no source_time" if incoming.source_time is None else "is not newer"
    return FieldRefusal(
        field=field,
        reason=RefusalReason.CONFLICT,
        detail=f"newest_wins: {why} than {current.system}'s value ({_when(current)})",
    )


def _when(stamp: Stamp) -> str:
    if stamp.source_time is not None:
        return stamp.source_time.isoformat()
    return f"version {stamp.source_version}" if stamp.source_version else "time unknown"
