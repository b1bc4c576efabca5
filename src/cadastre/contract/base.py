"""The base of every canonical model: PascalCase wire names (the RESO convention, used for every
entity so the wire has one convention), snake_case Python attributes, a schema version per model and
a ``local_fields`` bag for vendor-prefixed fields the contract does not carry."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


def wire_name(attribute: str) -> str:
    return to_pascal(attribute)


class CanonicalModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=True,
        validate_assignment=True,
        use_enum_values=False,
    )

    # The entity name used in changes, events, the ownership registry and the store ("Listing").
    entity_name: ClassVar[str]
    # Semantic version of this model's wire schema; ``cadastre schema diff`` says when to bump it.
    schema_version: ClassVar[str] = "1.0.0"
    # The wire name of the field that identifies a record at its owning system (e.g. ListingKey).
    key_field: ClassVar[str | None] = None

    local_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Vendor-prefixed local fields (e.g. 'ABOR_Subdivision'), kept as received.",
    )

    @classmethod
    def wire_fields(cls) -> dict[str, str]:
        """Wire name -> Python attribute, for every field of the model."""
        return {(info.alias or name): name for name, info in cls.model_fields.items()}
