"""Per-system mapping registries: vendor records -> canonical changes, or quarantine with a
reason. Enumeration spellings, renamed fields, local fields, transforms, defaults, deletion
rules, refresh cadence and payload rules are data (mapping files), not code; so is how each
mapped record's data confidence is scored."""

from cadastre.mapping.lookups import EnumField, enum_fields, fold
from cadastre.mapping.mapper import RecordMapper, Rejection
from cadastre.mapping.payloads import withheld_fields
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
    "withheld_fields",
]
