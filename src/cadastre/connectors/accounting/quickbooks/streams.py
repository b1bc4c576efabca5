"""QuickBooks objects as raw records, and where a stream's read stands.

QBO objects nest (``MetaData.LastUpdatedTime``, ``CurrencyRef.value``, a JournalEntry's
``Line`` array); the mapper reads flat records, so each object is flattened to dotted names
(lists left out). A JournalEntry becomes one record per line (stream ``JournalEntryLine``): the
line's fields under ``Line.``, the entry's beside them, and ``LineKey`` = ``<JE Id>:<Line Id>``,
the LedgerEntry's external id. The version of every record is the object's ``SyncToken``, its
time ``MetaData.LastUpdatedTime``.

Cursor per stream: ``{"changedSince": "<the CDC answer's time>"}`` between reads; during a full
read (the first one, or when the cursor is older than CDC's 30 days) ``{"full": true, "after":
"<last Id>", "started": "<server time when the read began>"}``, so a read that stops resumes at
its page and the next incremental read starts from the time the full read began.
"""

from __future__ import annotations

from typing import Any

from cadastre.mapping.records import parse_time
from cadastre.ports import RawRecord

# stream -> the QBO entity it is read from
STREAMS = {"Account": "Account", "Payment": "Payment", "JournalEntryLine": "JournalEntry"}
ENTITY_STREAM = {entity: stream for stream, entity in STREAMS.items()}
NAME_LISTS = frozenset({"Account", "Customer"})
TIME = "MetaData.LastUpdatedTime"
LINE_KEY = "LineKey"


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in obj.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{name}"] = value
    return flat


def line_key(entry_id: str, line_id: str) -> str:
    return f"{entry_id}:{line_id}"


def records(stream: str, obj: Any) -> list[RawRecord]:
    """The raw records of one object as QBO serves it (a JournalEntry: one per line)."""
    if not isinstance(obj, dict):
        return [RawRecord(stream, None, {"value": obj}, None,
                          problem=f"not a record: a JSON {type(obj).__name__}")]  # fmt: skip
    oid = obj.get("Id")
    oid = str(oid) if isinstance(oid, str | int) and not isinstance(oid, bool) else None
    meta = obj.get("MetaData") if isinstance(obj.get("MetaData"), dict) else {}
    when = parse_time(meta.get("LastUpdatedTime")) if isinstance(meta, dict) else None
    version = obj.get("SyncToken")
    version = str(version) if isinstance(version, str | int) else None
    if stream != "JournalEntryLine":
        return [RawRecord(stream, oid, flatten(obj), when, version)]
    lines = obj.get("Line")
    if not isinstance(lines, list) or oid is None:
        return [RawRecord(stream, None, flatten(obj), when, version,
                          problem="a JournalEntry without an Id or a Line list")]  # fmt: skip
    header = flatten({k: v for k, v in obj.items() if k != "Line"})
    found = []
    for line in lines:
        if not isinstance(line, dict) or line.get("Id") in (None, ""):
            found.append(RawRecord(stream, None, {**header, "Line": line}, when, version,
                                   problem="a JournalEntry line without an Id"))  # fmt: skip
            continue
        detail = line.get("JournalEntryLineDetail")
        flat_line = {k: v for k, v in line.items() if k != "JournalEntryLineDetail"}
        if isinstance(detail, dict):
            flat_line.update(detail)  # PostingType, AccountRef sit beside Amount in the record
        key = line_key(oid, str(line["Id"]))
        data = {**header, **flatten(flat_line, "Line."), LINE_KEY: key, "JournalEntryId": oid}
        found.append(RawRecord(stream, key, data, when, version))
    return found


def deleted(stream: str, object_id: str, when: Any) -> RawRecord:
    return RawRecord(stream, object_id, {"Id": object_id}, parse_time(when), deleted=True)
