"""validate_fields: what the sync engine calls on a change's fields before writing."""

from __future__ import annotations

import pytest

from cadastre.contract import entity_model, field_names, validate_fields
from cadastre.errors import ContractError


def test_valid_fields_come_back_json_compatible() -> None:
    out = validate_fields(
        "Listing",
        {
            "ListPrice": "350000.00",
            "City": "  Austin ",
            "StandardStatus": "ActiveUnderContract",
            "Appliances": ["Dishwasher"],
            "ModificationTimestamp": "2024-05-01T12:00:00+00:00",
            "BedroomsTotal": 3.0,
            "LotSizeAcres": "0.2500",
            "LocalFields": {"ABOR_Subdivision": "Mueller"},
        },
    )
    assert out == {
        "ListPrice": "350000",
        "City": "Austin",
        "StandardStatus": "ActiveUnderContract",
        "Appliances": ["Dishwasher"],
        "ModificationTimestamp": "2024-05-01T12:00:00Z",
        "BedroomsTotal": 3,
        "LotSizeAcres": "0.25",
        "LocalFields": {"ABOR_Subdivision": "Mueller"},
    }


def test_equal_amounts_in_different_precision_validate_equal() -> None:
    a = validate_fields("Payment", {"Amount": "1250.5"})
    b = validate_fields("Payment", {"Amount": 1250.50})
    assert a == b == {"Amount": "1250.5"}


def test_none_clears_an_optional_field_but_not_the_key() -> None:
    assert validate_fields("Lease", {"EndDate": None}) == {"EndDate": None}
    with pytest.raises(ContractError, match="LeaseId"):
        validate_fields("Lease", {"LeaseId": None})


def test_every_problem_is_reported_with_its_field() -> None:
    with pytest.raises(ContractError) as caught:
        validate_fields(
            "Listing",
            {
                "ListPrice": "cheap",
                "City": "x" * 60,
                "Appliances": ["Dishwasher", "Hovercraft"],
                "ABOR_Subdivision": "Mueller",
                "ModificationTimestamp": "2024-05-01T12:00:00",
            },
        )
    message = str(caught.value)
    assert message.startswith("invalid Listing fields: ")
    assert "ListPrice: Input should be a valid decimal (got 'cheap')" in message
    assert "City: String should have at most 50 characters" in message
    assert "Appliances[1]: not one of the values of its enumeration (got 'Hovercraft')" in message
    assert "ABOR_Subdivision: not a field of Listing" in message
    assert "ModificationTimestamp: Input should have timezone info" in message
    assert "BuiltInGasOven" not in message  # the lookup's values are not all listed


def test_platform_constraints_apply_per_field() -> None:
    with pytest.raises(ContractError, match=r"Currency: String should match pattern"):
        validate_fields("Payment", {"Currency": "usd"})
    with pytest.raises(ContractError, match="Amount: Input should be greater than or equal to 0"):
        validate_fields("LedgerEntry", {"Amount": "-5"})


def test_unknown_entity_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="unknown entity 'Listings'"):
        entity_model("Listings")
    with pytest.raises(ContractError, match="unknown entity"):
        validate_fields("Listings", {"ListPrice": 1})


def test_field_names_are_wire_names_including_local_fields() -> None:
    names = field_names("Listing")
    assert {"ListingKey", "ListPrice", "ListAOR", "PropertyId", "LocalFields"} <= names
    assert "list_price" not in names
    assert field_names("Unit") >= {"UnitId", "PropertyId", "MarketRent", "LocalFields"}
