"""The system-of-record registry: which system owns each entity field, who else may write it, and
how their conflicts resolve. See ``docs/ownership.md`` for the file format."""

from cadastre.ownership.catalogue import FieldCatalogue
from cadastre.ownership.loader import default_registry_text, load_registry, parse_registry
from cadastre.ownership.patterns import Pattern, parse_pattern
from cadastre.ownership.registry import Access, Decision, OwnershipRegistry, Rule
from cadastre.ownership.spec import (
    ConflictPolicy,
    PlatformAccess,
    RegistryFile,
    RuleSpec,
    SystemSpec,
)

__all__ = [
    "Access",
    "ConflictPolicy",
    "Decision",
    "FieldCatalogue",
    "OwnershipRegistry",
    "Pattern",
    "PlatformAccess",
    "RegistryFile",
    "Rule",
    "RuleSpec",
    "SystemSpec",
    "default_registry_text",
    "load_registry",
    "parse_pattern",
    "parse_registry",
]
