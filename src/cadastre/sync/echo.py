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
from pydantic_core import to_jsonable_python

from cadastre.contract import validate_fields
from cadastre.contract.changes import Change, Operation
from cadastre.errors import ContractError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from cadastre.ports import UnitOfWork, WriteEcho

DELETED = "@deleted"  # the fields of a delete's echo
# The idempotency key prefix of a write-back's own receipt change: never an echo (an earlier
# write of the same values, or a content-derived version, must not drop the receipt of this one).
RECEIPT_KEY_PREFIX = "writeback:"


def json_digest(value: Any) -> str:
    """sha256 hex of a JSON value serialised with sorted keys (echoes, version vectors)."""
    body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


def values_hash(values: Mapping[str, Any]) -> str:
    return json_digest(dict(values))


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
        found = [echo for echo in held.get(key, ()) if matches(change, echo)]
        if found and not await _brings_news(uow, change, found):
            dropped.add(i)
    return dropped


_MOVES = frozenset({"ModificationTimestamp"})


async def _brings_news(uow: UnitOfWork, change: Change, echoes: Sequence[WriteEcho]) -> bool:
    """Whether a change matched to our write by its version carries a value of a field we did
    not write that differs from the record's. A vendor object read whole after our write
    (a poll, a webhook's fetch) has our write's version, but may hold a person's edit made
    before it that we never heard of (its webhook dropped): dropping the read as an echo would
    lose that edit for good. Such a change passes; our own fields in it are ``unchanged``."""
    if change.operation is Operation.DELETE:
        return False
    ours = {name for echo in echoes for name in echo.fields}
    # the vendor's modification time moves with our write itself: not news
    others = {n: v for n, v in change.fields.items() if n not in ours and n not in _MOVES}
    if not others:
        return False
    origin = change.origin
    record_id = change.canonical_id or await uow.xref.resolve(
        origin.system, origin.connection or "", change.entity, origin.external_id or ""
    )
    record = await uow.records.get(change.entity, record_id) if record_id else None
    if record is None or record.deleted:
        return True
    try:  # compared as the record holds them (a time "...00.000Z" is "...00Z" there)
        normal = to_jsonable_python(dict(validate_fields(change.entity, others)))
    except ContractError:
        return True
    return any(to_jsonable_python(record.data.get(n)) != v for n, v in normal.items())
