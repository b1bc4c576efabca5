"""Reading an event as another major of its type: converters between adjacent majors of one family,
and ``read_as``, which walks them.

A family is a type without its major (``cadastre.listing.updated``). A converter turns the ``data``
of one major into the ``data`` of the next one up (an *upcaster*: an older stored event read by a
newer consumer) or down (a newer event read by an older consumer). ``read_as`` chains them one
step at a time, so adding v3 means adding v2 <-> v3 and nothing else. Everything but ``type`` and
``data`` is kept: the id above all, so consumers still de-duplicate a converted event.

The entity change events have two majors. v1 (what the hub emits):
``{entity, fields, removed, origin, version, idempotency_key, causation_id}`` where ``fields``
holds the values set and the removed fields as null. v2: ``{entity, changed, removed, origin,
version, idempotency_key, confidence: {record, fields}}``: only values set in ``changed``, the
causation id only inside ``origin``, and the data confidence the change was scored with (null when
the event was converted from v1, which does not carry it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from cadastre.contract.events import CATALOGUE, ENTITIES, EventEnvelope, entity_event_type, family
from cadastre.errors import UpcastUnavailable

Data = dict[str, Any]
Converter = Callable[[Mapping[str, Any]], Data]

# (family, from major, to major) -> converter; to = from +- 1
_CONVERTERS: dict[tuple[str, int, int], Converter] = {}


def major(event_type: str) -> int:
    return int(event_type.rsplit(".v", 1)[1])


def register(event_family: str, source: int, target: int, converter: Converter) -> None:
    """Convert ``data`` of ``<family>.v<source>`` to ``<family>.v<target>`` (adjacent majors)."""
    if abs(source - target) != 1:
        raise ValueError(f"converters join adjacent majors, not v{source} and v{target}")
    for m in (source, target):
        if f"{event_family}.v{m}" not in CATALOGUE:
            raise ValueError(f"{event_family}.v{m} is not in the catalogue")
    _CONVERTERS[(event_family, source, target)] = converter


def read_as(event: EventEnvelope, wanted_type: str) -> EventEnvelope:
    """``event`` as ``wanted_type`` (the same event, converted); ``UpcastUnavailable`` when the
    types are of different families or a step of the way has no converter."""
    if event.type == wanted_type:
        return event
    have, want = family(event.type), family(wanted_type)
    if have != want:
        raise UpcastUnavailable(
            f"cannot read a {event.type} event as {wanted_type}: they are different events"
        )
    if wanted_type not in CATALOGUE:
        raise UpcastUnavailable(f"cannot read {event.type} as {wanted_type}: unknown type")
    data: Data = dict(event.data)
    step = 1 if major(wanted_type) > major(event.type) else -1
    for m in range(major(event.type), major(wanted_type), step):
        converter = _CONVERTERS.get((have, m, m + step))
        if converter is None:
            raise UpcastUnavailable(
                f"no converter from {have}.v{m} to {have}.v{m + step}, so {event.type} cannot be "
                f"read as {wanted_type}"
            )
        data = converter(data)
    return event.model_copy(update={"type": wanted_type, "data": data})


def pick(event: EventEnvelope, wanted: Mapping[str, str]) -> EventEnvelope:
    """``event`` as the type ``wanted`` names for its family (family -> type), or unchanged when
    its family is not named there."""
    target = wanted.get(family(event.type))
    return event if target is None else read_as(event, target)


def by_family(types: Collection[str]) -> dict[str, str]:
    """Family -> the one wanted type of it; two majors of one family is a mistake."""
    chosen: dict[str, str] = {}
    for name in types:
        if name not in CATALOGUE:
            raise UpcastUnavailable(f"unknown event type {name!r}")
        if chosen.setdefault(family(name), name) != name:
            raise ValueError(f"{chosen[family(name)]} and {name} are two majors of one family")
    return chosen


# ------------------------------------------------------------------ entity change events, v1 <-> v2


def change_v1_to_v2(data: Mapping[str, Any]) -> Data:
    removed = list(data.get("removed") or [])
    gone = set(removed)
    origin = dict(data.get("origin") or {})
    if origin.get("causation_id") is None and data.get("causation_id") is not None:
        origin["causation_id"] = data["causation_id"]
    return {
        "entity": data.get("entity"),
        "changed": {k: v for k, v in (data.get("fields") or {}).items() if k not in gone},
        "removed": removed,
        "origin": origin,
        "version": data.get("version"),
        "idempotency_key": data.get("idempotency_key"),
        "confidence": {"record": None, "fields": {}},  # v1 does not carry it
    }


def change_v2_to_v1(data: Mapping[str, Any]) -> Data:
    removed = list(data.get("removed") or [])
    origin = dict(data.get("origin") or {})
    return {
        "entity": data.get("entity"),
        "fields": {**dict.fromkeys(removed), **(data.get("changed") or {})},
        "removed": removed,
        "origin": origin,
        "version": data.get("version"),
        "idempotency_key": data.get("idempotency_key"),
        "causation_id": origin.get("causation_id"),
    }


for _entity in ENTITIES:
    for _verb in ("created", "updated", "deleted"):
        _family = family(entity_event_type(_entity, _verb))
        register(_family, 1, 2, change_v1_to_v2)
        register(_family, 2, 1, change_v2_to_v1)
