"""Intuit webhook notifications as raw records (``ReceivesWebhooks``).

Both formats are read: the CloudEvents array Intuit moved apps to from November 2025
(``[{"type": "qbo.payment.updated.v1", "intuitentityid", "intuitaccountid", "time", ...}]``)
and the legacy ``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [{"name",
"id", "operation", "lastUpdated"}]}}]}``. Both are thin: a created or updated object is read by
id (once per notification, however often it is named), an object already gone by then is left
to its own deletion event; a deletion becomes ``RawRecord(deleted=True)`` (a JournalEntry: one
per line this connector has read). An Account (a name list) is never deleted in QuickBooks, only
made inactive: its Delete and Merge events are read by id like an update (a legacy Merge names
the survivor ``id`` and the merged ``deletedId``: both are read). Events of another company,
and of entities that are not canonical here (Customer), are skipped. A body that is neither
format raises ``ValueError`` and is quarantined as ``malformed_webhook``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from cadastre.connectors.accounting.quickbooks.streams import ENTITY_STREAM, NAME_LISTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.connectors.accounting.quickbooks.connector import QuickBooksConnector
    from cadastre.ports import RawRecord

_ENTITIES = {name.lower(): name for name in ("Account", "Payment", "JournalEntry", "Customer")}


def events(body: bytes, realm: str) -> list[tuple[str, str, str, str | None]]:
    """(entity, id, operation: created | updated | deleted | ..., time) of each event for
    ``realm``, in order."""
    payload = orjson.loads(body)
    found: list[tuple[str, str, str, str | None]] = []
    if isinstance(payload, list):  # CloudEvents
        for event in payload:
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise ValueError("a CloudEvent without a type")
            parts = event["type"].split(".")
            if len(parts) < 3 or parts[0] != "qbo":
                raise ValueError(f"not a QuickBooks event type: {event['type'][:80]!r}")
            if str(event.get("intuitaccountid")) != realm:
                continue
            found.append((parts[1], str(event.get("intuitentityid")), parts[2],
                          event.get("time")))  # fmt: skip
        return found
    notes = payload.get("eventNotifications") if isinstance(payload, dict) else None
    if not isinstance(notes, list):
        raise ValueError("neither a CloudEvents array nor eventNotifications")
    for note in notes:
        if not isinstance(note, dict) or str(note.get("realmId")) != realm:
            continue
        change = note.get("dataChangeEvent")
        for entity in (change or {}).get("entities", []) if isinstance(change, dict) else []:
            if not isinstance(entity, dict):
                raise ValueError("a dataChangeEvent entity that is not an object")
            operation = str(entity.get("operation", "")).lower()
            operation = {"create": "created", "update": "updated", "delete": "deleted",
                         "merge": "merged", "void": "voided"}.get(operation, operation)  # fmt: skip
            name, when = str(entity.get("name", "")).lower(), entity.get("lastUpdated")
            if operation == "merged" and entity.get("deletedId"):
                # ``id`` is the survivor, ``deletedId`` the record merged into it: read both.
                found.append((name, str(entity.get("id")), "updated", when))
                found.append((name, str(entity["deletedId"]), "merged", when))
                continue
            object_id = entity.get("deletedId") or entity.get("id")
            found.append((name, str(object_id), operation, when))
    return found


async def read_notification(
    connector: QuickBooksConnector, body: bytes, *, realm: str
) -> Sequence[RawRecord]:
    records: list[RawRecord] = []
    fetched: set[tuple[str, str]] = set()
    for name, object_id, operation, when in events(body, realm):
        entity = _ENTITIES.get(name)
        stream = ENTITY_STREAM.get(entity) if entity is not None else None
        if entity is None or stream is None or stream not in connector.streams():
            continue
        if operation in ("deleted", "merged") and entity in NAME_LISTS:
            operation = "updated"  # a name list is only made inactive: read it, never tombstone
        if operation == "deleted":
            stub: dict[str, Any] = {"Id": object_id, "status": "Deleted",
                                    "MetaData": {"LastUpdatedTime": when}}  # fmt: skip
            records.extend(connector._page(stream, [stub]))
            continue
        if (entity, object_id) in fetched:
            continue
        fetched.add((entity, object_id))
        found = await connector.fetch(entity, object_id)
        if found is not None:
            records.extend(connector._page(stream, [found]))
    return records
