"""A RESO push notification read into raw records, the way a polled page is read.

RESO's push replication (RCP-28) sends EntityEvent records (RCP-27) in RESO Common Format: one
event object, or a batch ``{"value": [event, ...]}``, each naming ``ResourceName`` and
``ResourceRecordKey``. RCP-28 events carry only that, and the consumer reads the record; push
producers that send the data too put the whole record in ``Data`` and say what happened in
``EventTypes`` (RESO's 2023 extension of RCP-27; the RESO simulator sends both shapes). So:

- an event whose ``EventTypes`` holds ``Deleted`` is a deletion at its ``ModificationTimestamp``
  (the event's own time), whatever else it carries;
- an event with ``Data`` is that record, read by ``raw_record`` exactly as an item of a page (a
  record the MLS serves with bad data is quarantined the same way either road it comes);
- an event with neither is read by key through the gateway (``Property('KEY')``); a 404 means the
  record is gone: a deletion at the event's time, else now.

A deletion becomes a ``RawRecord`` with ``deleted=True`` that mapping turns into a DELETE, as key
reconciliation's are; an MLS Grid style withdrawal is a record with ``MlgCanView: false``, which
the mapping's deletion rule turns into one, as in replication. Events of other resources (Media,
Member ...) are not this connection's stream and are passed over; the reconciliation poll reads
Media. A body or an event that cannot be read is handed on with a ``problem`` (quarantined),
never dropped. Gateway failures (5xx, timeouts) raise: the webhook is read again later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from cadastre.connectors.mls.reso.streams import odata_string
from cadastre.errors import VendorRejected
from cadastre.mapping.records import parse_time, raw_record
from cadastre.ports import RawRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from datetime import datetime

    from cadastre.gateway import Gateway

log = logging.getLogger(__name__)

DELETED = frozenset({"deleted", "delete"})  # EventTypes is "open with enumerations"
RAW_LIMIT = 64 * 1024  # of an unreadable body, kept for the quarantine


async def read_notification(
    body: bytes,
    *,
    resource: str,
    key_field: str,
    time_field: str,
    fetch: Callable[[str], Awaitable[Any]],
    now: Callable[[], datetime],
) -> list[RawRecord]:
    """The raw records of one notification, in its events' order. ``fetch(key)`` reads a record
    by key (None when the MLS answers 404)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = body[:RAW_LIMIT].decode("utf-8", errors="replace")
        return [RawRecord(resource, None, {"value": raw}, None,
                          problem="the webhook body is not JSON")]  # fmt: skip
    if isinstance(parsed, dict) and isinstance(parsed.get("value"), list):
        events: list[Any] = parsed["value"]
    elif isinstance(parsed, dict) and "ResourceRecordKey" in parsed:
        events = [parsed]  # RESO Common Format's single-valued payload
    else:
        problem = "the webhook body is not a RESO EntityEvent payload"
        return [RawRecord(resource, None, {"value": parsed}, None, problem=problem)]
    records: list[RawRecord] = []
    for event in events:
        if not isinstance(event, dict):
            records.append(raw_record(resource, event, key_field, time_field))
            continue
        name = event.get("ResourceName")
        if name is not None and name != resource:
            log.debug("webhook event of %r passed over (this connection reads %r)", name, resource)
            continue
        record = await _event_record(event, resource, key_field, time_field, fetch, now)
        records.append(record)
    return records


async def _event_record(
    event: Mapping[str, Any],
    resource: str,
    key_field: str,
    time_field: str,
    fetch: Callable[[str], Awaitable[Any]],
    now: Callable[[], datetime],
) -> RawRecord:
    key = event.get("ResourceRecordKey")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    key = key if isinstance(key, str) and key.strip() else None
    stamp = event.get("ModificationTimestamp")
    kinds = event.get("EventTypes")
    if isinstance(kinds, list) and any(str(k).lower() in DELETED for k in kinds):
        return _deletion(resource, key, stamp, key_field, time_field)
    data = event.get("Data")
    if data is not None:
        return raw_record(resource, data, key_field, time_field)
    if key is None:
        return RawRecord(resource, None, dict(event), None,
                         problem="a webhook event without ResourceRecordKey")  # fmt: skip
    found = await fetch(key)
    if found is None:  # the MLS no longer serves it
        if parse_time(stamp) is None:
            stamp = now().isoformat()
        return _deletion(resource, key, stamp, key_field, time_field)
    return raw_record(resource, found, key_field, time_field)


def _deletion(
    resource: str, key: str | None, stamp: Any, key_field: str, time_field: str
) -> RawRecord:
    return RawRecord(
        stream=resource,
        external_id=key,
        data={key_field: key, time_field: stamp},
        source_time=parse_time(stamp),
        source_version=stamp if isinstance(stamp, str) else None,
        deleted=True,
    )


def entity_reader(
    gateway: Gateway, base_url: str, resource: str
) -> Callable[[str], Awaitable[Any]]:
    """``fetch`` for ``read_notification``: ``GET {base}/{resource}('KEY')`` through the gateway;
    None on 404 (or 410), the record (a JSON object) otherwise."""

    async def fetch(key: str) -> Any:
        literal = quote(odata_string(key), safe="'")
        try:
            found = await gateway.get_json(f"{base_url}/{resource}({literal})")
        except VendorRejected as exc:
            if exc.status in (404, 410):
                return None
            raise
        if isinstance(found, dict):
            # An entity answer carries its context beside the record's fields.
            return {k: v for k, v in found.items() if not k.startswith("@odata.")}
        return found

    return fetch
