"""A HubSpot webhook request (a JSON array of up to 100 events) read into raw records.

HubSpot's events are thin (an id, what happened, at most one property's new value), so:

- ``*.creation``, ``*.propertyChange``, ``*.restore`` and the survivor of a ``contact.merge``:
  the objects are read back, all of one type in one ``batch/read`` (100 ids a call), and handed on
  as a poll reads them. An id that answers as another object was merged into it: a merge record
  and the survivor. An id that no longer answers was archived since (its deletion event follows).
- ``*.deletion``: a ``RawRecord(deleted=True)`` at the event's ``occurredAt``.
- ``contact.merge``: a ``RawRecord(merged_into=<survivor>)`` for each id in
  ``mergedObjectIds`` (the survivor is ``newObjectId``, else ``primaryObjectId``), and for
  ``primaryObjectId`` when HubSpot made a new record (``newObjectId`` another id).

Who made the change travels with each record, in ``data["@changeSource"]`` and
``data["@sourceId"]`` (``INTEGRATION`` and our app's id for our own API writes, ``CRM_UI`` and the
user for edits in HubSpot): the latest event's, when one request holds several for one object.
Mapping passes ``@`` names over; the write-back's echo suppression may read them.

A body that is not a JSON array raises ``ValueError`` (quarantined whole as
``malformed_webhook``); an event that cannot be read is a record with a ``problem``
(quarantined), never dropped. Events of other object types (companies, tickets) and of streams
the connection does not read are passed over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from cadastre.connectors.crm.hubspot.streams import (
    CHANGE_SOURCE,
    KEY,
    MERGED_IDS,
    SOURCE_ID,
    Stream,
    flat,
    iso_millis,
)
from cadastre.mapping.records import parse_time, raw_record
from cadastre.ports import RawRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

TYPES = {"contact": "contacts", "deal": "deals"}
FETCHED = frozenset({"creation", "propertyChange", "restore", "merge"})
KNOWN = FETCHED | {"deletion", "associationChange", "privacyDeletion"}
MAX_EVENTS = 1000  # HubSpot sends at most 100; far more is not HubSpot


async def read_events(
    body: bytes,
    *,
    streams: Mapping[str, Stream],
    fetch: Callable[[Stream, Sequence[str]], Awaitable[list[Any]]],
) -> list[RawRecord]:
    events = orjson.loads(body)  # orjson.JSONDecodeError is a ValueError: quarantined whole
    if not isinstance(events, list):
        raise ValueError("a HubSpot webhook body is a JSON array of events")
    if len(events) > MAX_EVENTS:
        raise ValueError(f"{len(events)} events in one request: HubSpot sends at most 100")
    records: list[RawRecord] = []
    wanted: dict[str, dict[str, dict[str, Any]]] = {}  # stream -> object id -> latest event
    for event in events:
        read = _event(event, streams)
        if isinstance(read, RawRecord):
            records.append(read)
            continue
        if read is None:
            continue
        kind, what, object_id = read
        if what == "deletion":
            records.append(_deletion(kind, object_id, event))
            continue
        if what == "merge":
            records.extend(_merges(kind, object_id, event))
            object_id = _survivor(object_id, event)
        if what in FETCHED:
            latest = wanted.setdefault(kind.name, {})
            held = latest.get(object_id)
            if held is None or _occurred(event) >= _occurred(held):
                latest[object_id] = event
    for name, latest in wanted.items():
        kind = streams[name]
        found = await fetch(kind, list(latest))
        records.extend(_fetched(kind, latest, found))
    return records


def _event(event: Any, streams: Mapping[str, Stream]) -> tuple[Stream, str, str] | RawRecord | None:
    """(stream, what happened, object id), a record with a problem, or None (not ours)."""
    if not isinstance(event, dict):
        return _problem("contacts", None, {"value": event}, "a webhook event that is not an object")
    kind_name, _, what = str(event.get("subscriptionType", "")).partition(".")
    stream = TYPES.get(kind_name)
    if stream is None:
        if not kind_name or not what:
            return _problem("contacts", None, event, "a webhook event without a subscriptionType")
        return None  # another object type: not this connector's
    if stream not in streams or what == "associationChange":
        return None
    object_id = str(event.get("objectId", "")).strip()
    if isinstance(event.get("objectId"), bool) or not object_id.isdigit():
        return _problem(stream, None, event, "a webhook event without a numeric objectId")
    if what not in KNOWN:
        return _problem(stream, object_id, event, f"unknown subscriptionType {kind_name}.{what}")
    if _occurred(event) < 0:
        return _problem(stream, object_id, event, "a webhook event without a numeric occurredAt")
    if what == "privacyDeletion":  # a GDPR delete: gone for good
        what = "deletion"
    return streams[stream], what, object_id


def _problem(stream: str, object_id: str | None, data: Mapping[str, Any], why: str) -> RawRecord:
    return RawRecord(stream, object_id, dict(data), None, problem=why)


def _occurred(event: Mapping[str, Any]) -> int:
    when = event.get("occurredAt")
    if isinstance(when, bool) or not isinstance(when, int | float):
        return -1
    return int(when)


def _source(event: Mapping[str, Any]) -> dict[str, Any]:
    return {CHANGE_SOURCE: event.get("changeSource"), SOURCE_ID: event.get("sourceId")}


def _deletion(kind: Stream, object_id: str, event: Mapping[str, Any]) -> RawRecord:
    stamp = iso_millis(_occurred(event))
    return RawRecord(
        stream=kind.name, external_id=object_id,
        data={KEY: object_id, kind.modified: stamp, **_source(event)},
        source_time=parse_time(stamp), source_version=stamp, deleted=True,
    )  # fmt: skip


def _survivor(object_id: str, event: Mapping[str, Any]) -> str:
    for name in ("newObjectId", "primaryObjectId"):
        value = event.get(name)
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
            return str(value)
    return object_id


def _merges(kind: Stream, object_id: str, event: Mapping[str, Any]) -> list[RawRecord]:
    survivor = _survivor(object_id, event)
    merged = event.get("mergedObjectIds")
    if not isinstance(merged, list):
        return [RawRecord(kind.name, object_id, dict(event), None,
                          problem="a merge event without mergedObjectIds")]  # fmt: skip
    stamp = iso_millis(_occurred(event))
    out = []
    # Since HubSpot's "updated merge functionality for contacts and companies" a merge makes a
    # new record (``newObjectId``) and retires the primary's id too: merged away like the rest.
    primary = event.get("primaryObjectId")
    retired = [primary, *merged] if primary is not None else merged
    for gone in dict.fromkeys(str(v).strip() for v in retired):
        if gone.isdigit() and gone != survivor:
            data = {KEY: gone, kind.modified: stamp, **_source(event)}
            out.append(RawRecord(kind.name, gone, data, parse_time(stamp), stamp,
                                 merged_into=survivor))  # fmt: skip
    return out


def _fetched(kind: Stream, latest: Mapping[str, Mapping[str, Any]],
             found: list[Any]) -> list[RawRecord]:  # fmt: skip
    by_id: dict[str, dict[str, Any]] = {}
    for item in found:
        data = flat(kind, item)
        if isinstance(data, dict) and data.get(KEY) is not None:
            by_id[str(data[KEY])] = data
    out: list[RawRecord] = []
    given: set[str] = set()
    for object_id, event in latest.items():
        data = by_id.get(object_id)
        survivor = object_id
        if data is None:  # merged away: the survivor lists it
            for other_id, other in by_id.items():
                merged = str(other.get(MERGED_IDS) or "").split(";")
                if object_id in merged:
                    data, survivor = other, other_id
                    version = other.get(kind.modified)
                    stamp = version if isinstance(version, str) else None
                    gone = {KEY: object_id, kind.modified: stamp, **_source(event)}
                    out.append(RawRecord(kind.name, object_id, gone, parse_time(stamp), stamp,
                                         merged_into=other_id))  # fmt: skip
                    break
        if data is None or survivor in given:
            continue  # archived since it changed: its deletion event says so
        given.add(survivor)
        out.append(raw_record(kind.name, {**data, **_source(event)}, KEY, kind.modified))
    return out
