"""The canonical models: wire names in and out, snake_case attributes, enums, local fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from cadastre.contract import (
    ENTITY_MODELS,
    Lease,
    LeaseStatus,
    Listing,
    Property,
    ResoModel,
    StandardStatus,
    display_name,
)
from cadastre.contract.events import ENTITIES
from cadastre.contract.reso import Appliances, Country, StateOrProvince
from cadastre.contract.schema import json_schema

WIRE = {
    "ListingKey": "L-1",
    "StandardStatus": "ActiveUnderContract",
    "ListPrice": "350000.00",
    "BedroomsTotal": 3,
    "ListAOR": "Austin",
    "Appliances": ["Dishwasher", "Refrigerator"],
    "ModificationTimestamp": "2024-05-01T12:00:00Z",
    "PropertyId": "prop-1",
    "LocalFields": {"ABOR_Subdivision": "Mueller"},
}


def test_listing_reads_and_writes_wire_names_with_snake_attributes() -> None:
    listing = Listing.model_validate(WIRE)

    assert listing.listing_key == "L-1"
    assert listing.standard_status is StandardStatus.ACTIVE_UNDER_CONTRACT
    assert listing.list_price == Decimal("350000.00")
    assert listing.list_aor == "Austin"
    assert listing.appliances == [Appliances.DISHWASHER, Appliances.REFRIGERATOR]
    assert listing.modification_timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert listing.local_fields == {"ABOR_Subdivision": "Mueller"}

    out = listing.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert out == {**WIRE, "ModificationTimestamp": "2024-05-01T12:00:00Z"}
    assert Listing.model_validate(out) == listing


def test_models_are_built_by_attribute_name_too() -> None:
    listing = Listing(listing_key="L-1", state_or_province=StateOrProvince.TX, country=Country.US)
    assert listing.model_dump(by_alias=True, exclude_none=True)["StateOrProvince"] == "TX"


def test_vendor_fields_outside_the_contract_are_refused_unless_in_local_fields() -> None:
    with pytest.raises(ValidationError, match="ABOR_Subdivision"):
        Listing.model_validate({"ListingKey": "L-1", "ABOR_Subdivision": "Mueller"})


def test_enumerations_accept_only_data_dictionary_values() -> None:
    with pytest.raises(ValidationError, match="StandardStatus"):
        Listing.model_validate({"ListingKey": "L-1", "StandardStatus": "Active Under Contract"})


def test_timestamps_must_carry_a_timezone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Listing.model_validate({"ListingKey": "L-1", "ModificationTimestamp": "2024-05-01T12:00"})


def test_the_key_is_the_only_required_field() -> None:
    for model in ENTITY_MODELS.values():
        required = [f.alias for f in model.model_fields.values() if f.is_required()]
        assert required == [model.key_field], model.entity_name


def test_registry_covers_the_event_catalogue_entities_in_order() -> None:
    assert tuple(ENTITY_MODELS) == ENTITIES
    for name, model in ENTITY_MODELS.items():
        assert model.entity_name == name
        assert model.schema_version == "1.0.0"
        assert model.key_field in model.wire_fields()


def test_every_wire_name_is_pascal_case() -> None:
    pascal = re.compile(r"^[A-Z][A-Za-z0-9]*$")
    for model in ENTITY_MODELS.values():
        bad = [wire for wire in model.wire_fields() if not pascal.match(wire)]
        assert not bad, f"{model.entity_name}: {bad}"


def test_acronym_and_digit_names_keep_their_exact_dd_spelling() -> None:
    wire = Listing.wire_fields()
    assert wire["ListAOR"] == "list_aor"
    assert wire["MLSAreaMajor"] == "mls_area_major"
    assert wire["BathroomsTotalInteger"] == "bathrooms_total_integer"
    assert wire["NewConstructionYN"] == "new_construction_yn"
    assert wire["PostalCodePlus4"] == "postal_code_plus4"


def test_display_names_are_the_dd_standard_names() -> None:
    assert display_name(StandardStatus.ACTIVE_UNDER_CONTRACT) == "Active Under Contract"
    assert display_name(StandardStatus.ACTIVE) == "Active"
    assert display_name(Appliances.BUILT_IN_GAS_OVEN) == "Built-In Gas Oven"
    assert display_name(LeaseStatus.NOTICE_GIVEN) == "Notice Given"


def test_listing_and_lease_point_at_a_property() -> None:
    assert "PropertyId" in Listing.wire_fields()
    assert "PropertyId" in Lease.wire_fields()
    assert Listing.cadastre_fields == frozenset({"PropertyId"})


def test_platform_property_shares_listing_definitions_for_reso_named_fields() -> None:
    listing = json_schema(Listing)
    physical = json_schema(Property)
    shared = physical["properties"].keys() & listing["properties"].keys()
    shared -= {"LocalFields", "PropertyId"}  # the key of one, a reference in the other
    assert len(shared) > 15
    for name in shared:
        assert physical["properties"][name] == listing["properties"][name], name


def test_reso_models_name_their_resource() -> None:
    reso = {
        m.entity_name: m.reso_resource for m in ENTITY_MODELS.values() if issubclass(m, ResoModel)
    }
    assert reso == {
        "Listing": "Property",
        "Member": "Member",
        "Office": "Office",
        "Media": "Media",
        "OpenHouse": "OpenHouse",
        "Contact": "Contacts",
    }


def test_listing_carries_about_a_hundred_reso_fields() -> None:
    assert 100 <= len(Listing.model_fields) <= 160
