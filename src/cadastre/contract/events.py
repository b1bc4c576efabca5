"""The versioned event catalogue and the CloudEvents 1.0 envelope every event travels in.

Type names are ``cadastre.<subject>.<past-tense verb>.v<major>``. The major version changes
only with a breaking change to ``data``; consumers of an older major read newer events through
an upcaster (the events issue adds them). The catalogue is data, so docs and tests enumerate it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    return [
        EventType(f"cadastre.{slug}.created.v1", f"A {entity} record was created."),
        EventType(f"cadastre.{slug}.updated.v1", f"Fields of a {entity} record changed."),
        EventType(f"cadastre.{slug}.deleted.v1", f"A {entity} record was deleted (tombstoned)."),
    ]


def _slug(entity: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", entity).lower()


ENTITIES = (
    "Listing", "Property", "Member", "Office", "Media", "OpenHouse", "Contact",
    "Unit", "Lease", "Resident", "LedgerAccount", "LedgerEntry", "Payment",
)  # fmt: skip

_OTHER = [
    EventType("cadastre.write.refused.v1", "A change tried to write fields it may not."),
    EventType("cadastre.record.quarantined.v1", "A vendor record could not be mapped; kept aside."),
    EventType("cadastre.connection.changed.v1", "A connection was added or edited."),
    EventType(
        "cadastre.alert.raised.v1",
        "Something needs a person: what happened, where, and what to do (data.action).",
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


def entity_event_type(entity: str, verb: str) -> str:
    """``entity_event_type("OpenHouse", "updated") == "cadastre.open_house.updated.v1"``."""
    name = f"cadastre.{_slug(entity)}.{verb}.v1"
    if name not in CATALOGUE:
        raise KeyError(name)
    return name
