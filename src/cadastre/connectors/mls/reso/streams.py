"""Replication of one RESO resource by the pair (ModificationTimestamp, ListingKey).

Ordering by the pair and filtering strictly after the last pair seen is what makes paging safe:
records sharing one timestamp across a page boundary are told apart by their key, so none is
skipped (a timestamp alone would skip or repeat them). An incremental read starts ``overlap``
before its cursor, because upstream a record can be committed after records with later
timestamps were already served; what the overlap reads again comes back with the same version,
and the sync engine reports it as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cadastre.mapping.records import parse_time

CURSOR_TIME = "ModificationTimestamp"
CURSOR_KEY = "ListingKey"
# RESO Media: its own key and timestamp, the key of the record it belongs to, and the listing field
# that moves when a listing's photos change (what an incremental read refreshes Media by).
MEDIA_KEY = "MediaKey"
MEDIA_TIME = "MediaModificationTimestamp"
MEDIA_PARENT = "ResourceRecordKey"
PHOTOS_TIME = "PhotosChangeTimestamp"


def odata_time(value: datetime) -> str:
    """An OData DateTimeOffset literal in UTC with microseconds: 2026-11-01T09:00:00.123000Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, order=True)
class Position:
    """Where a replication stands: the last (timestamp, key) committed."""

    time: datetime
    key: str

    @classmethod
    def of(cls, cursor: Any) -> Position | None:
        if not isinstance(cursor, dict):
            return None
        time = parse_time(cursor.get(CURSOR_TIME))
        key = cursor.get(CURSOR_KEY)
        if time is None or not isinstance(key, str):
            return None
        return cls(time, key)

    def cursor(self) -> dict[str, str]:
        return {CURSOR_TIME: odata_time(self.time), CURSOR_KEY: self.key}

    def after(self, time_field: str, key_field: str) -> str:
        """The $filter for every record strictly after this position."""
        t = odata_time(self.time)
        return (
            f"{time_field} gt {t} or "
            f"({time_field} eq {t} and {key_field} gt {odata_string(self.key)})"
        )


def first_filter(
    start: Position | None, overlap: timedelta, time_field: str, key_field: str
) -> str | None:
    """The $filter of a read's first request: everything (a full read), or from ``overlap``
    before the cursor (an incremental one)."""
    if start is None:
        return None
    if overlap > timedelta(0):
        return f"{time_field} ge {odata_time(start.time - overlap)}"
    return start.after(time_field, key_field)


def any_of(field: str, values: list[str]) -> str:
    """``(F eq 'a' or F eq 'b')``: what every OData server reads (``in`` is OData 4.01 only)."""
    return "(" + " or ".join(f"{field} eq {odata_string(v)}" for v in values) + ")"
