"""Echo suppression: a vendor reporting back what write-back just wrote to it is not news.

Each acknowledged write records an echo (connection, entity, external id, the vendor's version
after the write, a hash of the written values). A change arriving from that connection for that
external id is an echo, dropped before planning, when it carries the same version; or, when the
vendor gives no versions, when it carries exactly the written fields with the same values. A later
version (a peer automation rewriting the field) is not an echo and passes. Echo records older than
``keep`` are ignored (and pruned by the write-back worker).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.contract.changes import Change, Operation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from cadastre.ports import UnitOfWork, WriteEcho

DELETED = "@deleted"  # the fields of a delete's echo
# The idempotency key prefix of a write-back's own receipt change: never an echo (an earlier
# write of the same values, or a content-derived version, must not drop the receipt of this one).
RECEIPT_KEY_PREFIX = "writeback:"


def values_hash(values: Mapping[str, Any]) -> str:
    body = orjson.dumps(dict(values), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


def echo_fields(change: Change) -> tuple[str, ...]:
    return (DELETED,) if change.operation is Operation.DELETE else tuple(sorted(change.fields))


def matches(change: Change, echo: WriteEcho) -> bool:
    version = change.origin.source_version
    if version is not None and echo.source_version is not None:
        return version == echo.source_version
    if echo_fields(change) != tuple(sorted(echo.fields)):
        return False
    if change.operation is Operation.DELETE:
        return True
    return values_hash(change.fields) == echo.values_hash


async def find_echoes(uow: UnitOfWork, changes: Sequence[Change], *, since: datetime) -> set[int]:
    """The positions in ``changes`` of the echoes of acknowledged writes (recorded since
    ``since``). One read per (connection, entity) of the batch that has vendor changes."""
    wanted: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for change in changes:
        if (change.idempotency_key or "").startswith(RECEIPT_KEY_PREFIX):
            continue
        if change.origin.connection and change.origin.external_id is not None:
            wanted[(change.origin.connection, change.entity)].add(change.origin.external_id)
    if not wanted:
        return set()
    held: defaultdict[tuple[str, str, str], list[WriteEcho]] = defaultdict(list)
    for (connection, entity), ids in wanted.items():
        for echo in await uow.writes.echoes(connection, entity, sorted(ids)):
            if echo.recorded_at >= since:
                held[(connection, entity, echo.external_id)].append(echo)
    if not held:
        return set()
    dropped: set[int] = set()
    for i, change in enumerate(changes):
        if (change.idempotency_key or "").startswith(RECEIPT_KEY_PREFIX):
            continue
        origin = change.origin
        key = (origin.connection or "", change.entity, origin.external_id or "")
        if any(matches(change, echo) for echo in held.get(key, ())):
            dropped.add(i)
    return dropped
