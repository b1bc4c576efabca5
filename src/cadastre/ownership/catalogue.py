"""What the registry is checked against: entity -> wire field names, and each entity's key field.

By default both come from the canonical contract; tests and tools may pass a smaller catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldCatalogue:
    fields: Mapping[str, frozenset[str]]
    # entity -> the wire name of its key field; the owner of that field owns record existence
    key_fields: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, value: FieldCatalogue | Mapping[str, frozenset[str]]) -> FieldCatalogue:
        return value if isinstance(value, FieldCatalogue) else cls(fields=dict(value))

    @classmethod
    def from_contract(cls) -> FieldCatalogue:
        # Imported here so the registry's own tests do not depend on the full model set.
        from cadastre.contract import ENTITY_MODELS, field_names

        return cls(
            fields={entity: frozenset(field_names(entity)) for entity in ENTITY_MODELS},
            key_fields={
                entity: model.key_field
                for entity, model in ENTITY_MODELS.items()
                if model.key_field is not None
            },
        )
