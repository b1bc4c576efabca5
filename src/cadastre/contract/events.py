"""The versioned event catalogue and the CloudEvents 1.0 envelope every event travels in.

Type names are ``cadastre.<subject>.<past-tense verb>.v<major>``. The major version changes
only with a breaking change to ``data``; a consumer of one major reads another through the
converters of ``cadastre.contract.upcast``. The catalogue is data, so docs and tests enumerate it.

On the bus an event travels as CloudEvents structured-mode JSON (``to_json`` / ``from_json``)
under the subject ``cadastre.<tenant>.<subject>.<verb>`` (``bus_subject``): the major is not in
the subject, so a consumer of a family sees every version of it and converts what it reads.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC_VERSION = "1.0"
TYPE_PATTERN = re.compile(r"^cadastre\.[a-z_]+(\.[a-z_]+)*\.v[0-9]+$")


@dataclass(frozen=True)
class EventType:
    name: str  # e.g. "cadastre.listing.updated.v1"
    description: str

    @property
    def major(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])


class EventEnvelope(BaseModel):
    """A CloudEvents 1.0 structured-mode event (attribute names as the spec spells them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = SPEC_VERSION
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str = Field(description="'/<system>/<connection>' that caused it, or '/cadastre'")
    type: str
    subject: str | None = Field(default=None, description="the canonical id")
    time: datetime
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    tenant: str = Field(description="extension attribute: the tenant the event belongs to")
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CATALOGUE:
            raise ValueError(f"unknown event type {value!r}; add it to the catalogue first")
        return value


def _entity_events(entity: str) -> list[EventType]:
    slug = _slug(entity)
    v2 = (
        " Version 2 data: `changed` (values set), `removed` (fields cleared), `origin` (with its "
        "causation_id), `confidence` ({record, fields}); the hub emits v1, upcasters convert."
    )
    return [
        EventType(f"cadastre.{slug}.created.v1", f"A {entity} record was created."),
        EventType(f"cadastre.{slug}.updated.v1", f"Fields of a {entity} record changed."),
        EventType(f"cadastre.{slug}.deleted.v1", f"A {entity} record was deleted (tombstoned)."),
        EventType(f"cadastre.{slug}.created.v2", f"A {entity} record was created.{v2}"),
        EventType(f"cadastre.{slug}.updated.v2", f"Fields of a {entity} record changed.{v2}"),
        EventType(f"cadastre.{slug}.deleted.v2", f"A {entity} record was deleted.{v2}"),
    ]


def _slug(entity: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", entity).lower()


ENTITIES = (
    "Listing", "Property", "Member", "Office", "Media", "OpenHouse", "Contact",
    "Unit", "Lease", "Resident", "LedgerAccount", "LedgerEntry", "Payment", "Deal",
)  # fmt: skip

_OTHER = [
    EventType("cadastre.write.refused.v1", "A change tried to write fields it may not."),
    EventType("cadastre.record.quarantined.v1", "A vendor record could not be mapped; kept aside."),
    EventType("cadastre.connection.changed.v1", "A connection was added or edited."),
    EventType(
        "cadastre.alert.raised.v1",
        "Something needs a person: what happened, where, and what to do (data.action).",
    ),
    EventType(
        "cadastre.alert.resolved.v1",
        "An alert ended: its condition stayed clear for its rule's clear_for, or a person "
        "resolved it (data.alert_id names the alert, data.resolved_by who or what).",
    ),
    EventType("cadastre.credential.rotated.v1", "A credential's key was rotated with its vendor."),
    EventType(
        "cadastre.schema.drifted.v1",
        "A connection's vendor schema changed between syncs: fields added, removed or retyped, "
        "new enumeration values (data lists them all).",
    ),
    EventType(
        "cadastre.sync.mass_update.v1",
        "An incremental sync found most of the vendor's records changed at once (a timestamp "
        "bump) and replicated them at a throttled pace.",
    ),
]

CATALOGUE: dict[str, EventType] = {
    e.name: e for e in [*(x for ent in ENTITIES for x in _entity_events(ent)), *_OTHER]
}


def entity_event_type(entity: str, verb: str, major: int = 1) -> str:
    """``entity_event_type("OpenHouse", "updated") == "cadastre.open_house.updated.v1"``."""
    name = f"cadastre.{_slug(entity)}.{verb}.v{major}"
    if name not in CATALOGUE:
        raise KeyError(name)
    return name


def family(event_type: str) -> str:
    """An event type without its major: ``cadastre.listing.updated.v2`` -> ``cadastre.listing.
    updated``. Two types of one family differ only in their major."""
    return event_type.rsplit(".v", 1)[0]


def bus_subject(event: EventEnvelope) -> str:
    """``cadastre.<tenant>.<subject>.<verb>``: ``cadastre.acme.listing.updated`` for a
    ``cadastre.listing.updated.v1`` of tenant acme. Tenant ids are lower-case letters, digits and
    dashes, type names lower-case words, so every token is a safe NATS subject token."""
    return f"cadastre.{event.tenant}.{family(event.type).removeprefix('cadastre.')}"


def structured(event: EventEnvelope) -> dict[str, Any]:
    """The event as a CloudEvents structured-mode JSON object. Optional attributes without a
    value are left out: the spec has no null attribute (SDKs refuse ``"subject": null``)."""
    body = event.model_dump(mode="json", exclude={"data"}, exclude_none=True)
    body["data"] = event.data
    return body


def to_json(event: EventEnvelope) -> bytes:
    """The event as CloudEvents structured-mode JSON bytes (``application/cloudevents+json``)."""
    return orjson.dumps(structured(event))


def from_json(body: bytes | str) -> EventEnvelope:
    """An event from CloudEvents structured-mode JSON; ``pydantic.ValidationError`` when it is
    not one of ours (an unknown type included), ``ValueError`` when it is not JSON."""
    return EventEnvelope.model_validate(orjson.loads(body))


CLOUDEVENTS_JSON = "application/cloudevents+json"
