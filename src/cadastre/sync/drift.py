"""Schema drift: what changed in a vendor's schema between two syncs of a connection's stream.

A snapshot holds the fields the vendor declares (``$metadata``, RETS metadata: name -> type) and
the fields and enumeration values seen in the data. After each sync the new snapshot is compared
with the stored one; fields added, removed or retyped and enumeration values never seen before
become one ``cadastre.schema.drifted.v1`` event listing them all, and the snapshot is replaced.
The first sync only takes the snapshot.

What is seen accumulates across syncs: an incremental sync of five records does not see every
field or value, and absence from a handful of records says nothing. So "removed" and "retyped"
come from declarations only; "added" is a field newly declared or newly seen; a "new value" is a
value of a field whose values were seen before (a field's first values are its baseline). When
the vendor does not answer for its metadata, the previous declarations stand.

The values kept are capped (``VALUES_CAP`` per field): a field that passes the cap (free text in a
lookup field) is recorded as open-ended instead, reported once as such (``open_ended``), and its
values are no longer kept nor reported, so the snapshot does not grow without bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadastre.contract import Origin
from cadastre.contract.events import EventEnvelope
from cadastre.ports import SchemaSnapshot
from cadastre.sync.origin import event_source

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, Store, StreamSchema, UnitOfWork

DRIFT_EVENT = "cadastre.schema.drifted.v1"
VALUES_CAP = 1000  # values kept per field; past it the field is open-ended
# What an open-ended field's values are stored as (no vendor value starts with a control character).
OPEN_ENDED = "\x1fopen-ended"


@dataclass(frozen=True)
class SchemaDrift:
    added: dict[str, str] = field(default_factory=dict)  # field -> type ("" when only seen)
    removed: dict[str, str] = field(default_factory=dict)  # field -> its last declared type
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)  # field -> (was, is)
    new_values: dict[str, list[str]] = field(default_factory=dict)  # field -> values, sorted
    open_ended: list[str] = field(default_factory=list)  # fields newly past the values cap

    def __bool__(self) -> bool:
        return bool(
            self.added or self.removed or self.retyped or self.new_values or self.open_ended
        )

    def as_data(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "retyped": {k: {"was": was, "is": is_} for k, (was, is_) in self.retyped.items()},
            "new_values": self.new_values,
            "open_ended": self.open_ended,
        }


def take_snapshot(
    connection: str,
    stream: str,
    *,
    declared: StreamSchema | None,
    seen_fields: Iterable[str],
    seen_values: Mapping[str, Iterable[str]],
    previous: SchemaSnapshot | None,
    now: datetime,
    cap: int = VALUES_CAP,
) -> SchemaSnapshot:
    """This sync's snapshot: declarations as the vendor states them now (the previous ones when
    it did not say), and everything seen so far (at most ``cap`` values a field; a field past it
    is kept as open-ended)."""
    fields = (
        dict(declared.fields)
        if declared is not None
        else dict(previous.declared if previous else {})
    )
    seen = set(previous.seen_fields) if previous else set()
    seen.update(seen_fields)
    values: dict[str, set[str]] = {
        k: set(v) for k, v in (previous.seen_values if previous else {}).items()
    }
    for name, found in seen_values.items():
        kept = values.setdefault(name, set())
        if OPEN_ENDED in kept:
            continue
        for value in found:
            kept.add(str(value))
            if len(kept) > cap:
                values[name] = {OPEN_ENDED}
                break
    return SchemaSnapshot(
        connection=connection, stream=stream, declared=fields, seen_fields=sorted(seen),
        seen_values={k: sorted(v) for k, v in sorted(values.items())}, taken_at=now,
    )  # fmt: skip


def diff(previous: SchemaSnapshot, current: SchemaSnapshot) -> SchemaDrift:
    was, now = previous.declared, current.declared
    known = set(was) | set(previous.seen_fields)
    # Nothing declared before (the vendor's metadata had not answered yet): its first
    # declarations are a baseline, not a list of added fields.
    candidates = set(current.seen_fields) | (set(now) if was else set())
    added = {name: now.get(name, "") for name in sorted(candidates - known)}
    removed = {name: was[name] for name in sorted(set(was) - set(now))}
    retyped = {name: (was[name], now[name]) for name in sorted(set(was) & set(now))
               if was[name] != now[name]}  # fmt: skip
    new_values: dict[str, list[str]] = {}
    open_ended: list[str] = []
    for name, values in current.seen_values.items():
        before = previous.seen_values.get(name)
        if _open_ended(values):
            if not _open_ended(before):
                open_ended.append(name)  # said once; its values are not listed again
            continue
        if not before:
            continue  # the field's first values are its baseline
        fresh = sorted(set(values) - set(before))
        if fresh:
            new_values[name] = fresh
    return SchemaDrift(added, removed, retyped, new_values, sorted(open_ended))


def _open_ended(values: Iterable[str] | None) -> bool:
    return values is not None and OPEN_ENDED in values


async def record_drift(
    uow: UnitOfWork,
    *,
    tenant: str,
    system: str,
    connection: str,
    stream: str,
    declared: StreamSchema | None,
    seen_fields: Iterable[str],
    seen_values: Mapping[str, Iterable[str]],
    now: datetime,
    cap: int = VALUES_CAP,
) -> SchemaDrift | None:
    """Take this sync's snapshot, compare it with the stored one, write the drift event when
    anything changed, and store the new snapshot; the caller commits. None on the first one."""
    previous = await uow.schemas.get(connection, stream)
    current = take_snapshot(
        connection, stream, declared=declared, seen_fields=seen_fields,
        seen_values=seen_values, previous=previous, now=now, cap=cap,
    )  # fmt: skip
    await uow.schemas.put(current)
    if previous is None:
        return None
    drift = diff(previous, current)
    if drift:
        origin = Origin(system=system, connection=connection)
        await uow.outbox.add(
            EventEnvelope(
                source=event_source(origin),
                type=DRIFT_EVENT,
                subject=connection,
                time=now,
                tenant=tenant,
                data={"connection": connection, "stream": stream, **drift.as_data()},
            )
        )
    return drift


async def check_drift(
    store: Store,
    clock: Clock,
    *,
    tenant: str,
    connection: str,
    system: str,
    source: object,
    mappers: Mapping[str, RecordMapper],
) -> dict[str, SchemaDrift]:
    """After a sync: each mapped stream's snapshot from what ``source`` declares (when it can
    describe its schema) and what its mapper saw; the drift found, by stream."""
    describe = getattr(source, "describe", None)
    found: dict[str, SchemaDrift] = {}
    for stream, mapper in mappers.items():
        declared: StreamSchema | None = await describe(stream) if callable(describe) else None
        # Values the mapping knows and values it does not: a new spelling is drift either way.
        values: dict[str, set[str]] = {}
        for counters in (
            getattr(mapper, "seen_values", {}),
            getattr(mapper, "unmapped_values", {}),
        ):
            for name, counted in counters.items():
                values.setdefault(name, set()).update(counted)
        async with store.unit_of_work(tenant) as uow:
            drift = await record_drift(
                uow, tenant=tenant, system=system, connection=connection, stream=stream,
                declared=declared, seen_fields=getattr(mapper, "seen_fields", ()),
                seen_values=values, now=clock.now(),
            )  # fmt: skip
            await uow.commit()
        if drift:
            found[stream] = drift
            log.warning("schema drift on %s %s: %s", connection, stream, drift.as_data())
    return found
