"""Where a write came from and when: the ``Stamp`` stored as field provenance, how two stamps are
ordered, and the names an origin gives to events and new records."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cadastre.contract.changes import Origin
    from cadastre.ports import Clock, FieldProvenance

# The newest delete of a record is kept as provenance under this reserved name beside its fields'
# (wire names are PascalCase, so it cannot collide with one). It is what stops an older upsert,
# arriving late, from writing into or resurrecting a deleted record.
DELETED_FIELD = "@deleted"


@dataclass(frozen=True)
class Stamp:
    """When and by whom a value was written: the incoming change's, or a stored provenance's."""

    system: str
    connection: str | None
    source_time: datetime | None
    source_version: str | None

    @classmethod
    def of(cls, provenance: FieldProvenance) -> Stamp:
        return cls(
            provenance.system,
            provenance.connection,
            provenance.source_time,
            provenance.source_version,
        )

    def after(self, previous: Stamp | None) -> Stamp:
        """The stamp to store when this write replaces ``previous``. For the same system the
        stored time is a high-water mark: a write that carries no time keeps the known one, so a
        late, older event is still recognised as stale."""
        if previous is None or previous.system != self.system:
            return self
        return Stamp(
            self.system,
            self.connection,
            self.source_time or previous.source_time,
            self.source_version or previous.source_version,
        )


def compare(a: Stamp, b: Stamp, *, versions: bool) -> int | None:
    """-1, 0 or 1 as ``a`` is older, as old or newer than ``b``; None when they cannot be ordered.

    Times decide first. Versions break ties (or stand in for missing times) only when ``versions``
    is set - the same system - and both are integers: ETags and SyncTokens of different systems
    have no order."""
    if a.source_time and b.source_time and a.source_time != b.source_time:
        return -1 if a.source_time < b.source_time else 1
    if versions:
        av, bv = _integer(a.source_version), _integer(b.source_version)
        if av is not None and bv is not None:
            return (av > bv) - (av < bv)
    if a.source_time and b.source_time:
        return 0
    return None


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def stamp_of(origin: Origin) -> Stamp:
    return Stamp(origin.system, origin.connection, origin.source_time, origin.source_version)


def event_source(origin: Origin) -> str:
    """CloudEvents ``source``: ``/<system>/<connection>``, or ``/<system>`` without a connection."""
    return f"/{origin.system}/{origin.connection}" if origin.connection else f"/{origin.system}"


def new_record_id(clock: Clock) -> str:
    """32 hex characters: 48 bits of milliseconds, then 80 random bits, so ids sort by creation
    time like a ULID (useful for scans and for reading logs) without a dependency."""
    millis = int(clock.now().timestamp() * 1000)
    return f"{millis:012x}{secrets.token_hex(10)}"
