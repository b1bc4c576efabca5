"""Per-system mapping registries: vendor records -> canonical changes, or quarantine with a
reason. Enumeration spellings, renamed fields and local fields are data (mapping files), not
code."""

from cadastre.mapping.lookups import EnumField, enum_fields, fold
from cadastre.mapping.mapper import RecordMapper, Rejection
from cadastre.mapping.registry import MappingRegistry
from cadastre.mapping.spec import MappingSpec

__all__ = [
    "EnumField",
    "MappingRegistry",
    "MappingSpec",
    "RecordMapper",
    "Rejection",
    "enum_fields",
    "fold",
]
