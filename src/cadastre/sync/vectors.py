"""Version vectors of shared fields: was an incoming edit made on top of the value we hold
(*causal*), or without having seen a newer value another system wrote (*concurrent*)?

A field that several systems may write (a rule with ``writers``) keeps, per record, a counter
``v`` (bumped on every applied value) and, per writer, the ``v`` it is known to hold
(``seen``): set when its change is applied, or found equal to ours. A writer is its connection
(``@<system>`` for a change that came through none, such as the platform's own).

- causal: ``seen[writer] == v``, or the writer never held the field -> the declared policy;
- concurrent: otherwise. Ordered by source time when both times exist and differ by more than the
  skew (``CADASTRE_CONFLICT_SKEW_SECONDS``, 2 s): the later wins, recorded. Otherwise the change
  does not apply to the field and goes to the review queue. Under ``owner_wins`` the owner's
  edit wins even when concurrent (recorded), and a writer never beats the owner's value.

Pure functions; ``plan.py`` calls them, ``engine.py`` stores the vectors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadastre.contract.changes import FieldRefusal, RefusalReason
from cadastre.ownership import Access, ConflictPolicy
from cadastre.ports import FieldVector
from cadastre.sync.echo import json_digest

if TYPE_CHECKING:
    from cadastre.ownership import Decision
    from cadastre.sync.origin import Stamp

DEFAULT_SKEW_SECONDS = 2.0


def writer_of(stamp: Stamp) -> str:
    """The key a writer has in ``seen``: its connection, else ``@<system>``."""
    return stamp.connection or f"@{stamp.system}"


def is_causal(vector: FieldVector | None, writer: str) -> bool:
    if vector is None or vector.v == 0:
        return True
    held = vector.seen.get(writer)
    return held is None or held == vector.v


def value_digest(value: Any) -> str:
    """A short digest of a field's JSON value, for ``FieldVector.held``."""
    return json_digest(value)[:16]


def repeats(vector: FieldVector | None, writer: str, digest: str) -> bool:
    """Whether ``writer`` sends again the value it last held: no edit of its own, only a writer
    that has not yet been given the newer value (a poll's re-read, a late duplicate)."""
    return vector is not None and vector.held.get(writer) == digest


def after_apply(vector: FieldVector | None, writer: str, digest: str | None = None) -> FieldVector:
    """The vector once ``writer``'s value is applied: ``v`` bumped, and the writer holds it."""
    v = (vector.v if vector is not None else 0) + 1
    seen = dict(vector.seen) if vector is not None else {}
    seen[writer] = v
    return FieldVector(v, seen, _held(vector, writer, digest))


def after_hold(
    vector: FieldVector | None, writer: str, digest: str | None = None
) -> FieldVector | None:
    """The vector once ``writer`` is found to hold our value; None when nothing changes."""
    if vector is None:
        return FieldVector(0, {writer: 0}, _held(None, writer, digest))
    held = _held(vector, writer, digest)
    if vector.seen.get(writer) == vector.v and held == vector.held:
        return None
    return FieldVector(vector.v, {**vector.seen, writer: vector.v}, held)


def after_refusal(vector: FieldVector | None, writer: str, digest: str) -> FieldVector | None:
    """The vector once ``writer``'s concurrent value lost or was held for review: ``v`` and
    ``seen`` stay, the writer holds its own value (so re-reads of it are not new edits)."""
    base = vector if vector is not None else FieldVector()
    held = _held(base, writer, digest)
    return None if held == base.held else FieldVector(base.v, base.seen, held)


def _held(vector: FieldVector | None, writer: str, digest: str | None) -> dict[str, str]:
    held = dict(vector.held) if vector is not None else {}
    if digest is not None:
        held[writer] = digest
    return held


def conflict_id(tenant: str, idempotency_key: str, field: str) -> str:
    """A queued conflict's id, derived from the change that was held back (a change is applied
    at most once, so the id is new; a retried transaction makes the same one)."""
    digest = hashlib.sha256(f"{tenant}\0{idempotency_key}\0{field}".encode()).hexdigest()
    return "cf_" + digest[:32]


@dataclass(frozen=True)
class Concurrent:
    """What to do with a concurrent edit of a shared field."""

    apply: bool  # True: the incoming value wins; False: the stored value stays
    queue: bool = False  # neither could be ordered: the review queue decides
    how: str = ""  # "owner_wins" | "newest_wins" | "review" - for the audit entry
    refusal: FieldRefusal | None = None


def judge_concurrent(
    decision: Decision, incoming: Stamp, current: Stamp, *, skew: float, queue_id: str
) -> Concurrent:
    field, rule = decision.field, decision.rule
    if decision.conflict is ConflictPolicy.OWNER_WINS:
        if decision.access is Access.OWNER:
            return Concurrent(apply=True, how="owner_wins")
        if current.system == decision.owner:
            return Concurrent(
                apply=False, how="owner_wins",
                refusal=FieldRefusal(
                    field=field, reason=RefusalReason.CONFLICT,
                    detail=f"owner_wins: concurrent with the owner {current.system}'s value",
                ),
            )  # fmt: skip
    order = _order(incoming, current, skew)
    if order == 1:
        return Concurrent(apply=True, how="newest_wins")
    if order == -1:
        return Concurrent(
            apply=False, how="newest_wins",
            refusal=FieldRefusal(
                field=field, reason=RefusalReason.CONFLICT,
                detail=f"newest_wins: concurrent with {current.system}'s later value "
                f"({_when(current)})",
            ),
        )  # fmt: skip
    if incoming.source_time is None:
        why = "the change carries no source_time"
    elif current.source_time is None:
        why = "the stored value carries no source_time"
    else:
        why = f"source times within {skew:g} s"
    label = rule.label() if rule is not None else "no rule"
    return Concurrent(
        apply=False, queue=True, how="review",
        refusal=FieldRefusal(
            field=field, reason=RefusalReason.CONFLICT,
            detail=f"concurrent with {current.system}'s value ({why}; {label}): held for review "
            f"as conflict {queue_id}",
        ),
    )  # fmt: skip


def _order(incoming: Stamp, current: Stamp, skew: float) -> int | None:
    if incoming.source_time is None or current.source_time is None:
        return None
    gap = (incoming.source_time - current.source_time).total_seconds()
    if abs(gap) <= skew:
        return None
    return 1 if gap > 0 else -1


def _when(stamp: Stamp) -> str:
    return stamp.source_time.isoformat() if stamp.source_time is not None else "time unknown"


def stamp_json(stamp: Stamp) -> dict[str, Any]:
    return {
        "system": stamp.system,
        "connection": stamp.connection,
        "source_time": stamp.source_time.isoformat() if stamp.source_time else None,
        "source_version": stamp.source_version,
    }
