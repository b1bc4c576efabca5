"""A ``Change`` is what every source hands to the sync engine; ``ApplyResult`` is what it gets.

Field names in a change are wire names (``ListPrice``), the same names the ownership registry uses.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Operation(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class Origin(BaseModel):
    """Where a change came from. Recorded on every field it writes (provenance) and every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = Field(min_length=1, description="owning-system name, e.g. 'mls', 'core', 'crm'")
    connection: str | None = Field(default=None, description="the connection it arrived through")
    external_id: str | None = Field(default=None, description="the record's id in that system")
    source_version: str | None = Field(
        default=None, description="vendor version, SyncToken or ETag"
    )
    source_time: datetime | None = Field(
        default=None, description="when the source changed it (e.g. ModificationTimestamp)"
    )
    causation_id: str | None = Field(
        default=None, description="id of the event or request that caused this change"
    )

    @field_validator("source_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("source_time must carry a timezone")
        return value


class Change(BaseModel):
    """A request to change one canonical record, with its origin and an idempotency key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1)
    entity: str = Field(min_length=1, description="canonical entity name, e.g. 'Listing'")
    canonical_id: str | None = Field(
        default=None, description="Cadastre's id; unset means resolve by origin external id"
    )
    operation: Operation = Operation.UPSERT
    fields: dict[str, Any] = Field(default_factory=dict, description="wire name -> new value")
    origin: Origin
    idempotency_key: str = Field(default="", description="unset means derived from the content")
    confidence: float = Field(
        default=1.0, ge=0.0, le=1.0, description="the record's data confidence as mapped"
    )
    field_confidence: dict[str, float] = Field(
        default_factory=dict,
        description="wire name -> confidence of that field's value, where it differs from "
        "``confidence`` (an enumeration matched by fallback, a coerced value)",
    )

    @model_validator(mode="after")
    def _check(self) -> Change:
        if self.canonical_id is None and self.origin.external_id is None:
            raise ValueError("a change needs canonical_id or origin.external_id to find its record")
        if self.operation is Operation.UPSERT and not self.fields:
            raise ValueError("an upsert change must carry at least one field")
        if not self.idempotency_key:
            # Derived keys make re-delivery of the same vendor change idempotent without the
            # source having to invent keys: same origin, version and content -> same key.
            object.__setattr__(self, "idempotency_key", self.content_key())
        return self

    def content_key(self) -> str:
        try:
            body = self._content_bytes()
        except TypeError as exc:  # orjson: e.g. an integer beyond 64 bits
            raise ValueError(f"fields cannot be serialised for an idempotency key: {exc}") from None
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _content_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "entity": self.entity,
                "id": self.canonical_id,
                "op": self.operation.value,
                "fields": self.fields,
                "origin": self.origin.model_dump(mode="json", exclude={"causation_id"}),
            },
            option=orjson.OPT_SORT_KEYS,
            default=str,
        )


class RefusalReason(StrEnum):
    NOT_OWNER = "not_owner"  # origin is neither the owner nor an allowed writer
    NO_OWNER_DECLARED = "no_owner_declared"  # the registry has no rule for the field
    UNKNOWN_FIELD = "unknown_field"  # not a field of the contract
    STALE = "stale"  # older than what the store already holds from that field's writer
    CONFLICT = "conflict"  # shared field, lost under the declared conflict policy


class FieldRefusal(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    reason: RefusalReason
    detail: str


class ApplyResult(BaseModel):
    """What ``apply(change)`` did, field by field."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    entity: str
    canonical_id: str
    idempotency_key: str
    applied: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    refused: list[FieldRefusal] = Field(default_factory=list)
    version: int = 0
    created: bool = False
    deleted: bool = False
    duplicate: bool = False  # the idempotency key was seen before; this is the stored result
    echo: bool = False  # the vendor reporting back our own write-back: dropped (sync.echo)
    event_id: str | None = None

    @property
    def wrote(self) -> bool:
        return bool(self.applied) or self.deleted
