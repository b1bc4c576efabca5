"""The audit log's hash chain, in one place for every adapter (and ``FakeStore``).

Each tenant has its own chain. Entry ``seq`` (1, 2, 3 ... without gaps) stores ``prev_hash`` (the
``hash`` of entry ``seq - 1``; 64 zeros for entry 1) and

    hash = sha256_hex( prev_hash as ASCII + canonical_json({
        "tenant", "seq", "at" (UTC ISO 8601 with microseconds), "actor", "action",
        "entity", "entity_id", "detail" }) )

so changing, removing or reordering any entry breaks the entry itself or the link after it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cadastre.ports import AuditEntry, AuditReport
from cadastre.store.canonical import canonical_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Mapping

GENESIS_HASH = "0" * 64


def audit_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def audit_entry_hash(
    *,
    prev_hash: str,
    tenant: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    entity: str | None,
    entity_id: str | None,
    detail: Mapping[str, Any],
) -> str:
    body = canonical_json(
        {
            "tenant": tenant,
            "seq": seq,
            "at": audit_time(at),
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "detail": detail,
        }
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def seal(
    *,
    tenant: str,
    seq: int,
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    entity: str | None,
    entity_id: str | None,
    detail: Mapping[str, Any],
) -> AuditEntry:
    """Build the next entry of a chain, hash included."""
    fields: dict[str, Any] = {
        "tenant": tenant, "seq": seq, "at": at, "actor": actor, "action": action,
        "entity": entity, "entity_id": entity_id, "detail": detail,
    }  # fmt: skip
    return AuditEntry(
        **fields, prev_hash=prev_hash, hash=audit_entry_hash(prev_hash=prev_hash, **fields)
    )


async def verify_chain(tenant: str, entries: AsyncIterable[AuditEntry]) -> AuditReport:
    """Walk a tenant's entries in ``seq`` order; report the first one that does not verify."""
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    async for entry in entries:
        problem = _check(entry, tenant, expected_seq, prev_hash)
        if problem is not None:
            return AuditReport(tenant, count, ok=False, first_bad_seq=expected_seq, problem=problem)
        count += 1
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    return AuditReport(tenant, count, ok=True)


def _check(entry: AuditEntry, tenant: str, seq: int, prev_hash: str) -> str | None:
    if entry.seq != seq:
        return f"gap: expected entry {seq}, found entry {entry.seq}"
    if entry.prev_hash != prev_hash:
        return f"broken link: entry {seq} does not point at the hash of entry {seq - 1}"
    recomputed = audit_entry_hash(
        prev_hash=entry.prev_hash, tenant=tenant, seq=entry.seq, at=entry.at, actor=entry.actor,
        action=entry.action, entity=entry.entity, entity_id=entry.entity_id, detail=entry.detail,
    )  # fmt: skip
    if recomputed != entry.hash:
        return f"hash mismatch: entry {seq} was changed after it was written"
    return None
