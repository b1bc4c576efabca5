"""How a vendor item becomes a ``RawRecord``: its key and modification time read from the fields
the mapping names. One place, because a connector reading a page and a quarantine replay reading
a stored payload must read an item the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cadastre.ports import RawRecord


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time with its zone; anything else (no zone, not text, absurd length)
    is None, so the record is quarantined as missing its timestamp."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def raw_record(stream: str, item: Any, key_field: str, time_field: str) -> RawRecord:
    """``item`` as a raw record of ``stream``: an integer key as text, a time only with its
    zone; an item that is not an object is kept whole with a ``problem`` (quarantined)."""
    if not isinstance(item, dict):
        return RawRecord(stream, None, {"value": item}, None,
                         problem=f"not a record: a JSON {type(item).__name__}")  # fmt: skip
    key = item.get(key_field)
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    stamp = item.get(time_field)
    return RawRecord(
        stream=stream,
        external_id=key if isinstance(key, str) and key.strip() else None,
        data=item,
        source_time=parse_time(stamp),
        source_version=stamp if isinstance(stamp, str) else None,
    )
