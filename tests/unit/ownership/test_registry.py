from __future__ import annotations

import re

import pytest

from cadastre.errors import OwnershipRegistryError
from cadastre.ownership import Access, ConflictPolicy, parse_pattern


@pytest.mark.parametrize(
    ("more", "less"),
    [
        ("Listing.*", "*.*"),  # exact entity beats any entity
        ("Listing.*", "*.ListPrice"),  # ... even against an exact field
        ("Listing.ListPrice", "Listing.List*"),  # exact field beats a glob
        ("Listing.List*", "Listing.*"),  # more literal characters win
        ("Listing.ListP*", "Listing.List*"),
        ("Listing.List?rice", "Listing.List*"),
        ("*.ListPrice", "*.List*"),
    ],
)
def test_specificity_orders_patterns(more: str, less: str) -> None:
    assert parse_pattern(more).specificity > parse_pattern(less).specificity


@pytest.mark.parametrize(
    ("pattern", "entity", "field", "hit"),
    [
        ("*.*", "Listing", "ListPrice", True),
        ("Listing.List*", "Listing", "ListPrice", True),
        ("Listing.List*", "Listing", "ClosePrice", False),
        ("Listing.*Price", "Listing", "ClosePrice", True),
        ("Listing.List?rice", "Listing", "ListPrice", True),
        ("Listing.ListPrice", "Property", "ListPrice", False),
        ("*.City", "Property", "City", True),
        ("Listing.listprice", "Listing", "ListPrice", False),  # wire names are case-sensitive
    ],
)
def test_glob_matching(pattern: str, entity: str, field: str, hit: bool) -> None:
    assert parse_pattern(pattern).matches(entity, field) is hit


@pytest.mark.parametrize("bad", ["Listing", "List*.City", "Listing.[A-Z]*", "Listing.List Price"])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by problem
        parse_pattern(bad)


def test_most_specific_rule_wins(build) -> None:
    registry = build(
        {"match": "*.*", "owner": "core"},
        {"match": "Listing.*", "owner": "mls"},
        {"match": "Listing.List*", "owner": "crm"},
        {"match": "Listing.ListPrice", "owner": "pms"},
    )
    assert registry.owner_of("Listing", "ListPrice") == "pms"
    assert registry.owner_of("Listing", "ListAgentKey") == "crm"
    assert registry.owner_of("Listing", "City") == "mls"
    assert registry.owner_of("Property", "City") == "core"
    assert registry.rule_for("Listing", "ListPrice").index == 4


def test_decide_owner_writer_forbidden_undeclared(build) -> None:
    registry = build(
        {"match": "Resident.*", "owner": "pms"},
        {"match": "Resident.Email", "owner": "pms", "writers": ["crm"], "conflict": "owner_wins"},
    )
    assert registry.decide("Resident", "Email", "pms").access is Access.OWNER
    writer = registry.decide("Resident", "Email", "crm")
    assert writer.access is Access.WRITER
    assert writer.allowed
    assert writer.conflict is ConflictPolicy.OWNER_WINS
    assert writer.owner == "pms"
    forbidden = registry.decide("Resident", "Phone", "crm")
    assert forbidden.access is Access.FORBIDDEN
    assert not forbidden.allowed
    assert registry.decide("Listing", "ListPrice", "mls").access is Access.UNDECLARED
    assert registry.decide("Resident", "Nope", "pms").access is Access.UNDECLARED


def test_coverage_lists_fields_without_owner(build) -> None:
    registry = build({"match": "Listing.List*", "owner": "mls"})
    assert registry.coverage("Listing") == {"City", "ClosePrice"}
    assert registry.coverage("Property") == {"PropertyKey", "City", "YearBuilt"}


def test_record_owner_is_the_key_field_owner(build) -> None:
    registry = build(
        {"match": "Listing.*", "owner": "mls"},
        {"match": "Property.*", "owner": "core"},
        {"match": "Property.PropertyKey", "owner": "mls"},
    )
    assert registry.record_owner("Listing") == "mls"
    assert registry.record_owner("Property") == "mls"
    assert registry.record_owner("Resident") is None


def test_two_owners_with_equal_specificity_name_both_claimants(build) -> None:
    with pytest.raises(OwnershipRegistryError) as caught:
        build(
            {"match": "Listing.*", "owner": "mls"},
            {"match": "Listing.ListP*", "owner": "mls"},
            {"match": "Listing.*Price", "owner": "core"},
        )
    message = str(caught.value)
    # ListP* and *Price both have 5 literal characters and both match ListPrice
    assert "Listing.ListPrice" in message
    assert "rule 2 'Listing.ListP*'" in message
    assert "rule 3 'Listing.*Price'" in message
    assert "'mls'" in message
    assert "'core'" in message


def test_same_owner_with_different_writers_at_equal_specificity_is_ambiguous(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="different writers"):
        build(
            {"match": "Listing.ListP*", "owner": "mls"},
            {"match": "Listing.*Price", "owner": "mls", "writers": ["core"],
             "conflict": "owner_wins"},
        )  # fmt: skip


def test_repeated_match_is_refused_even_with_the_same_owner(build) -> None:
    with pytest.raises(OwnershipRegistryError, match=r"rule 2 'Listing\.\*'.*repeats.*rule 1"):
        build({"match": "Listing.*", "owner": "mls"}, {"match": "Listing.*", "owner": "mls"})


def test_repeated_match_with_two_owners_names_both_claimants(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="owners mls and crm both claim it"):
        build({"match": "Listing.ListPrice", "owner": "mls"},
              {"match": "Listing.ListPrice", "owner": "crm"})  # fmt: skip


def test_unknown_field_names_the_field_and_suggests(build) -> None:
    with pytest.raises(OwnershipRegistryError) as caught:
        build({"match": "Listing.ListPrize", "owner": "mls"})
    message = str(caught.value)
    assert "Listing has no field ListPrize" in message
    assert "did you mean ListPrice?" in message


def test_unknown_entity_is_named(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="unknown entity Listings"):
        build({"match": "Listings.*", "owner": "mls"})


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("Listing.Zz*", "'Zz*' matches no field of Listing"),
        ("*.Zz*", "'Zz*' matches no field of any entity"),
        ("*.Bedrooms", "no entity has a field Bedrooms"),
    ],
)
def test_patterns_matching_nothing_are_refused(build, match: str, expected: str) -> None:
    with pytest.raises(OwnershipRegistryError, match=re.escape(expected)):
        build({"match": match, "owner": "mls"})


def test_undeclared_system_is_refused(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="owner 'mlx' is not a declared system"):
        build({"match": "Listing.*", "owner": "mlx"})
    with pytest.raises(OwnershipRegistryError, match="writer 'hubspot' is not a declared system"):
        build({"match": "Listing.*", "owner": "mls", "writers": ["hubspot"],
               "conflict": "owner_wins"})  # fmt: skip


def test_writers_need_a_conflict_policy(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="writers need a conflict policy"):
        build({"match": "Resident.Email", "owner": "pms", "writers": ["crm"]})


def test_conflict_without_writers_is_refused(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="no effect without writers"):
        build({"match": "Resident.Email", "owner": "pms", "conflict": "newest_wins"})


def test_owner_may_not_also_be_a_writer(build) -> None:
    with pytest.raises(OwnershipRegistryError, match="owner 'pms' is also listed as a writer"):
        build({"match": "Resident.*", "owner": "pms", "writers": ["pms"],
               "conflict": "owner_wins"})  # fmt: skip


def test_every_problem_is_reported_at_once(build) -> None:
    with pytest.raises(OwnershipRegistryError) as caught:
        build({"match": "Listing.Nope", "owner": "mls"}, {"match": "Resident.*", "owner": "x"})
    message = str(caught.value)
    assert "rule 1" in message
    assert "rule 2" in message
