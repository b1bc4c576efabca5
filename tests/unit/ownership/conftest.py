from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from cadastre.ownership import FieldCatalogue, OwnershipRegistry, parse_registry

# A small contract, so these tests do not move when the real models grow.
CATALOGUE = FieldCatalogue(
    fields={
        "Listing": frozenset(
            {"ListingKey", "ListPrice", "ListAgentKey", "ListOfficeKey", "City", "ClosePrice"}
        ),
        "Property": frozenset({"PropertyKey", "City", "YearBuilt"}),
        "Resident": frozenset({"ResidentKey", "Email", "Phone", "FirstName"}),
    },
    key_fields={"Listing": "ListingKey", "Property": "PropertyKey", "Resident": "ResidentKey"},
)

SYSTEMS = {"mls": {"description": "MLS"}, "core": {}, "crm": {}, "pms": {}}


def registry_text(*rules: dict[str, Any], systems: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {"version": 1, "systems": systems or SYSTEMS, "rules": list(rules)}, sort_keys=False
    )


def build(*rules: dict[str, Any], systems: dict[str, Any] | None = None) -> OwnershipRegistry:
    return parse_registry(registry_text(*rules, systems=systems), catalogue=CATALOGUE)


@pytest.fixture
def catalogue() -> FieldCatalogue:
    return CATALOGUE


@pytest.fixture(name="build")
def build_fixture() -> Callable[..., OwnershipRegistry]:
    return build


@pytest.fixture(name="registry_text")
def registry_text_fixture() -> Callable[..., str]:
    return registry_text
