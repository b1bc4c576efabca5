"""A Buildium webhook read into raw records.

Buildium's events are thin: ``{"EventName": "LeaseTenant.Updated", "EventDateTime", "AccountId",
"TenantId"}`` (``RentalUnit.*`` carry ``UnitId``, ``Lease.*`` and ``Lease.MoveOut.*``
``LeaseId``). So:

- a ``*.Deleted`` event is a deletion (``RawRecord(deleted=True)``) at its ``EventDateTime``;
- any other event of the three entities is read through the gateway (``GET /v1/.../{id}``) and
  becomes the record a poll would have read; a 404 means it is gone: a deletion. A tenant or
  unit (no modification time served) is dated by the event's ``EventDateTime``, not by the read
  (``_dated``): a Buildium edit followed by a CRM edit must not look the newer of the two only
  because its webhook was read after the CRM edit;
- events of other entities (bills, tasks, rentals ...) are passed over;
- a body that is not a JSON event object, or an event without its id, is handed on with a
  ``problem`` (quarantined as malformed), never dropped.

Gateway failures (5xx, timeouts) raise, so the webhook is read again later. Buildium neither orders
nor de-duplicates events: what a duplicate fetches is the same version, and a late event fetches
the object as it is now, never an old state.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.connectors.pms.buildium.streams import (
    KEY,
    LEASES,
    TENANTS,
    TIME_FIELD,
    UNITS,
)
from cadastre.mapping.records import parse_time
from cadastre.ports import RawRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    Fetch = Callable[[str, str], Awaitable[RawRecord | None]]  # (stream, id) -> None on 404

RAW_LIMIT = 64 * 1024
# EventName's entity -> (stream, the event's id field)
ENTITIES = {"LeaseTenant": (TENANTS, "TenantId"), "RentalUnit": (UNITS, "UnitId"),
            "Lease": (LEASES, "LeaseId")}  # fmt: skip


async def read_event(body: bytes, fetch: Fetch) -> Sequence[RawRecord]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = body[:RAW_LIMIT].decode("utf-8", errors="replace")
        return [RawRecord(TENANTS, None, {"value": raw}, None,
                          problem="the webhook body is not JSON")]  # fmt: skip
    name = event.get("EventName") if isinstance(event, dict) else None
    if not isinstance(name, str) or "." not in name:
        return [RawRecord(TENANTS, None, {"value": event}, None,
                          problem="the webhook body is not a Buildium event")]  # fmt: skip
    entity, _, operation = name.partition(".")
    if entity not in ENTITIES:
        return []
    stream, id_field = ENTITIES[entity]
    key = _key(event.get(id_field))
    if key is None:
        return [RawRecord(stream, None, dict(event), None,
                          problem=f"a {name} event without {id_field}")]  # fmt: skip
    when = event.get("EventDateTime")
    if operation == "Deleted":
        return [_deletion(stream, key, when)]
    found = await fetch(stream, key)
    if found is None:
        return [_deletion(stream, key, when)]
    return [_dated(found, parse_time(when))]


def _dated(found: RawRecord, happened: datetime | None) -> RawRecord:
    """A fetched tenant or unit dated by its event: Buildium serves them without a modification
    time, so a read can only say "no newer than now"; the event says when the change happened.
    Never later than the read (a vendor clock ahead of ours); a lease keeps its own time."""
    if (
        found.stream == LEASES or found.deleted or found.problem is not None
        or happened is None or found.source_time is None
    ):  # fmt: skip
        return found
    return replace(found, source_time=min(happened, found.source_time))


def _key(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _deletion(stream: str, key: str, when: Any) -> RawRecord:
    return RawRecord(
        stream=stream, external_id=key, data={KEY: key, TIME_FIELD[stream]: when},
        source_time=parse_time(when), source_version=when if isinstance(when, str) else None,
        deleted=True,
    )  # fmt: skip
