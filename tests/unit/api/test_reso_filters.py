"""The ``$filter`` compiler on its own: values as stored, null semantics, type checks, and the
narrowing handed to the store (which must never drop a record the predicate keeps)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from cadastre.api.reso.edm import resources
from cadastre.api.reso.filters import FilterError, compile_filter, read_value
from cadastre.ports import FieldFilter
from tests.unit.api.conftest import World

PROPERTY = resources()["Property"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def matches(condition: str, row: dict[str, Any]) -> bool:
    return compile_filter(condition, PROPERTY, lambda: NOW).predicate(row)


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("BedroomsTotal", 3, 3),
        ("BedroomsTotal", "3", Decimal(3)),
        ("BedroomsTotal", True, None),  # a bool is not a number
        ("ListPrice", "350000.50", Decimal("350000.50")),
        ("ListPrice", 1.5, Decimal("1.5")),
        ("ListPrice", "NaN", None),
        ("ListPrice", "1_000", None),  # Python reads it; the store would not
        ("ListPrice", "Infinity", None),
        ("ListingContractDate", "2019-12-31", date(2019, 12, 31)),
        ("ListingContractDate", "2019-12-31T00:00:00Z", None),
        ("ModificationTimestamp", "2020-01-01T08:55:55Z", datetime(2020, 1, 1, 8, 55, 55,
                                                                   tzinfo=UTC)),
        ("ModificationTimestamp", "2020-01-01T08:55:55", None),  # no offset
        ("ModificationTimestamp", "2020-01-01 08:55:55Z", None),  # not the store's form
        ("City", 12, None),
        ("NewConstructionYN", "true", None),
        ("Appliances", None, []),
        ("Appliances", "Dryer", []),
        ("Appliances", ["Dryer"], ["Dryer"]),
    ],
)  # fmt: skip
def test_stored_values_read_as_their_type_or_null(name: str, raw: Any, value: Any) -> None:
    assert read_value(PROPERTY.properties[name], raw) == value


def test_null_semantics() -> None:
    empty: dict[str, Any] = {}
    assert matches("City eq null", empty)
    assert not matches("City ne null", empty)
    assert matches("City ne 'Austin'", empty)
    assert not matches("BedroomsTotal gt 1", empty)
    assert not matches("BedroomsTotal le 1", empty)
    assert matches("not (BedroomsTotal le 1)", empty)
    assert matches("Appliances/all(a: a eq 'Dryer')", empty)
    assert not matches("Appliances/any(a: a eq 'Dryer')", empty)
    assert not matches("contains(City, 'A')", empty)


def test_numbers_compare_exactly_across_int_and_decimal() -> None:
    row = {"ListPrice": "350000.0000000000000001", "BedroomsTotal": 3}
    assert matches("ListPrice gt 350000", row)
    assert not matches("ListPrice eq 350000", row)
    assert matches("BedroomsTotal eq 3.0", row)
    assert matches("BedroomsTotal in (1, 3)", row)


def test_instants_compare_as_instants_whatever_their_offset() -> None:
    row = {"ModificationTimestamp": "2019-12-31T23:55:55-09:00"}
    assert matches("ModificationTimestamp eq 2020-01-01T08:55:55Z", row)
    assert matches("ModificationTimestamp lt now()", row)
    assert matches("ModificationTimestamp gt 2020-01-01T08:55:54.999999+00:00", row)


@pytest.mark.parametrize(
    "condition",
    [
        "BedroomsTotal gt 'x'", "City gt 1", "ListingContractDate eq 2019-12-31T00:00:00Z",
        "Appliances/any(City: City eq 'x')",  # the variable hides a property
        "Appliances/any(a: a)", "BedroomsTotal add 1 gt 2", "org.reso.X eq 1", "City eq -'x'",
        "Unknown eq 1", "City in (1, 2)", "'a' eq 'a' and City", "now() eq now() or 1",
        "ModificationTimestamp gt 2020-13-01T00:00:00Z",
    ],
)  # fmt: skip
def test_a_bad_filter_is_refused_before_any_record(condition: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(condition, PROPERTY, lambda: NOW)


def test_narrowing_takes_the_top_level_and_of_plain_comparisons_relaxed() -> None:
    compiled = compile_filter(
        "BedroomsTotal gt 2 and (City eq 'A' or City eq 'B') and StandardStatus eq 'Active'"
        " and ModificationTimestamp lt 2020-01-01T00:00:00Z and ListPrice ne 5"
        " and ListingContractDate gt 2019-01-01 and ListPrice le 10",
        PROPERTY, lambda: NOW,
    )  # fmt: skip
    instant = datetime(2020, 1, 1, tzinfo=UTC)
    assert compiled.narrowing == [
        FieldFilter("BedroomsTotal", "ge", Decimal(2), kind="number"),
        FieldFilter("StandardStatus", "eq", "Active"),
        FieldFilter("ModificationTimestamp", "le", instant, kind="time"),
        FieldFilter("ListPrice", "le", Decimal(10), kind="number"),
    ]
    assert compile_filter("not (City eq 'A')", PROPERTY, lambda: NOW).narrowing == []
    assert compile_filter("City eq null", PROPERTY, lambda: NOW).narrowing == []


async def test_narrowing_on_sqlite_never_drops_a_record_the_filter_keeps(world: World) -> None:
    """SQLite compares numbers as doubles and instants to the millisecond: a strict comparison
    handed to it as such would drop these two records."""
    await world.listing("PRICE", ListPrice="350000.0000000000000001")
    await world.listing("TIME", ModificationTimestamp="2020-01-01T00:00:00.000500Z")
    for condition, key in (
        ("ListPrice gt 350000", "PRICE"),
        ("ModificationTimestamp gt 2020-01-01T00:00:00Z", "TIME"),
        ("ModificationTimestamp lt 2020-01-01T00:00:00.0009Z", "TIME"),
    ):
        response = await world.get(
            "/reso/odata/Property", **{"$filter": condition, "$select": "ListingKey"}
        )
        assert response.json()["value"] == [{"ListingKey": key}], condition


@pytest.mark.parametrize(
    "condition",
    [
        "not " * 900 + "City eq 'A'",
        "City eq 'A'" + " " * 4000,
        # each nested lambda multiplies the work by the collection's size: 8 levels over 8
        # appliances took 9 s of the event loop for one record
        "".join(f"Appliances/any(v{i}: " for i in range(3)) + "v0 eq 'x'" + ")" * 3,
    ],
)
def test_a_huge_or_deep_filter_is_refused_not_crashed(condition: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(condition, PROPERTY, lambda: NOW)


def test_two_nested_lambdas_are_fine() -> None:
    row = {"Appliances": ["Dryer", "Oven"], "Heating": ["Oven"]}
    assert matches("Appliances/any(a: Heating/any(h: h eq a))", row)
    assert not matches("Appliances/all(a: Heating/any(h: h eq a))", row)


def test_redundant_parentheses_are_fine() -> None:
    assert matches("(" * 900 + "City eq 'A'" + ")" * 900, {"City": "A"})
