"""Accounting entries are never mutated, only reversed.

A change to a stored ``LedgerEntry`` that alters a money field (amount, account, entry type,
posted date, currency) already held is not applied in place. In the change's transaction:

- the original gets ``ReversedByEntryId`` (its money fields stay as posted);
- a **reversal** is created: the original's posting on the opposite side (``EntryType``
  flipped, same amount), ``ReversesEntryId`` = the original;
- for an update, a **replacement** is created with the new values, ``ReplacesEntryId`` = the
  original; the vendor's external id is re-pointed to it, so the next change of that vendor line
  finds the entry that stands now.

A DELETE of a ledger entry is a reversal without a replacement (the original stays, reversed).
An entry reversed already is not reversed twice: a later money change only adds a replacement.
Each record written has its own ``change.applied`` audit entry and event; the reversal also gets
a ``ledger.reversed`` entry naming all three.

Pure: ``engine.py`` turns the parts into writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cadastre.contract.changes import Operation
from cadastre.sync.origin import DELETED_FIELD, stamp_of
from cadastre.sync.plan import Plan, Target

if TYPE_CHECKING:
    from collections.abc import Callable

LEDGER_ENTITY = "LedgerEntry"
MONEY_FIELDS = frozenset({"Amount", "LedgerAccountId", "EntryType", "PostedDate", "Currency"})
LINK_FIELDS = ("ReversesEntryId", "ReversedByEntryId", "ReplacesEntryId")
# what a reversal copies from the entry it cancels (EntryType is flipped)
_CARRIED = ("LedgerAccountId", "LeaseId", "PaymentId", "PostedDate", "Amount", "Currency")
_OPPOSITE = {"Debit": "Credit", "Credit": "Debit"}


@dataclass(frozen=True)
class Part:
    """One record a ledger change writes."""

    target: Target
    plan: Plan
    main: bool  # its result is the change's (into the idempotency ledger)
    repoint: bool = False  # the change's external id now names this record


def needs_reversal(target: Target, plan: Plan) -> bool:
    current = target.current
    if target.change.entity != LEDGER_ENTITY or current is None or current.deleted:
        return False
    if target.change.operation is Operation.DELETE:
        return plan.delete or bool(plan.removed)
    return any(f in MONEY_FIELDS and f in current.data for f in plan.values)


def reverse(target: Target, plan: Plan, new_id: Callable[[], str]) -> list[Part]:
    """The parts that replace ``plan`` for a ledger entry ``needs_reversal`` found altered."""
    change, original = target.change, target.current
    assert original is not None  # noqa: S101 - needs_reversal checked it
    incoming = stamp_of(change.origin)
    deleting = change.operation is Operation.DELETE
    parts: list[Part] = []
    if not original.data.get("ReversedByEntryId"):
        reversal_id = new_id()
        stamp = incoming.after(target.stamps.get("ReversedByEntryId"))
        marked = Plan(
            values={"ReversedByEntryId": reversal_id}, stamps={"ReversedByEntryId": stamp}
        )
        if deleting and DELETED_FIELD in plan.stamps:
            marked.stamps[DELETED_FIELD] = plan.stamps[DELETED_FIELD]
        marked.refused = list(plan.refused) if deleting else []
        data = {k: original.data[k] for k in _CARRIED if k in original.data}
        side = original.data.get("EntryType")
        if side in _OPPOSITE:
            data["EntryType"] = _OPPOSITE[side]
        data["LedgerEntryId"] = reversal_id
        data["ReversesEntryId"] = target.canonical_id
        data["Memo"] = f"Reversal of {original.data.get('LedgerEntryId', target.canonical_id)}"
        made = change.model_copy(update={"canonical_id": reversal_id, "fields": data})
        parts.append(
            Part(Target(made, reversal_id, None, {}),
                 Plan(values=data, stamps=dict.fromkeys(data, incoming), create=True), main=False)
        )  # fmt: skip
        parts.append(Part(target, marked, main=deleting))
    elif deleting:
        # reversed already: only the newer delete time is remembered
        kept = Plan(stamps={k: v for k, v in plan.stamps.items() if k == DELETED_FIELD})
        return [Part(target, kept, main=True)]
    if deleting:
        return parts
    replacement_id = new_id()
    base = {k: v for k, v in original.data.items() if k not in LINK_FIELDS}
    data = {**base, **plan.values, "ReplacesEntryId": target.canonical_id}
    made = change.model_copy(update={"canonical_id": replacement_id})
    replacement = Plan(
        values=data, stamps=dict.fromkeys(data, incoming), create=True, refused=list(plan.refused)
    )
    parts.append(Part(Target(made, replacement_id, None, {}), replacement, True, repoint=True))
    return parts
