"""The $filter language: each operator, precedence, literals, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from cadastre.simulators.reso.odata_filter import (
    And,
    Compare,
    Field,
    Literal,
    Not,
    Or,
    QueryError,
    compile_filter,
    parse_datetime,
    parse_filter,
)
from cadastre.simulators.reso.schema import property_fields

FIELDS = property_fields("ACT_")


def field_of(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(name)


def matches(text: str, row: dict[str, Any]) -> bool:
    return compile_filter(parse_filter(text, FIELDS), field_of)(row)


ROW = {
    "ListPrice": 500000,
    "City": "Austin",
    "StandardStatus": "Active Under Contract",
    "ACT_Waterfront": True,
    "UnitNumber": None,
    "Latitude": 30.25,
    "ModificationTimestamp": datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
    "CloseDate": date(2026, 2, 1),
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ListPrice eq 500000", True),
        ("ListPrice eq 500000.0", True),
        ("ListPrice ne 500000", False),
        ("ListPrice gt 499999", True),
        ("ListPrice gt 500000", False),
        ("ListPrice ge 500000", True),
        ("ListPrice lt 500000", False),
        ("ListPrice le 500000", True),
        ("Latitude gt 3.0e1", True),
        ("Latitude lt -1", False),
        ("500000 eq ListPrice", True),
        ("400000 lt ListPrice", True),
        ("City eq 'Austin'", True),
        ("City lt 'Buda'", True),
        ("StandardStatus eq 'Active Under Contract'", True),
        ("ACT_Waterfront eq true", True),
        ("ACT_Waterfront", True),
        ("not ACT_Waterfront", False),
        ("ACT_Waterfront eq false", False),
        ("UnitNumber eq null", True),
        ("UnitNumber ne null", False),
        ("City eq null", False),
        ("City ne null", True),
        ("UnitNumber gt 'A'", False),  # ordering against null is false
        ("UnitNumber ne 'A'", True),  # ... but null ne a value is true
        ("CloseDate eq 2026-02-01", True),
        ("CloseDate lt 2026-01-31", False),
    ],
)
def test_each_operator_and_literal(text: str, expected: bool) -> None:
    assert matches(text, ROW) is expected


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("2026-03-01T12:00:00.123Z", True),
        ("2026-03-01T14:00:00.123+02:00", True),  # the same instant, another offset
        ("2026-03-01T07:00:00.123-05:00", True),
        ("2026-03-01T12:00:00.1230009Z", True),  # digits past microseconds are dropped
        ("2026-03-01T12:00:00Z", False),
        ("2026-03-01T12:00Z", False),  # seconds are optional
    ],
)
def test_datetimes_compare_as_instants(literal: str, expected: bool) -> None:
    assert matches(f"ModificationTimestamp eq {literal}", ROW) is expected


def test_datetime_ordering_across_offsets() -> None:
    assert matches("ModificationTimestamp gt 2026-03-01T13:59:00+02:00", ROW)
    assert not matches("ModificationTimestamp gt 2026-03-01T14:01:00+02:00", ROW)
    assert parse_datetime("2026-03-01T00:30:00+01:00") == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)


def test_string_quotes_are_escaped_by_doubling() -> None:
    assert matches("City eq 'O''Hare'", {"City": "O'Hare"})
    assert parse_filter("City eq 'a''''b'", FIELDS) == Compare("eq", Field("City"), Literal("a''b"))


def test_and_binds_tighter_than_or() -> None:
    expr = parse_filter("City eq 'A' or City eq 'B' and ListPrice gt 1", FIELDS)
    assert isinstance(expr, Or)
    assert isinstance(expr.items[1], And)
    # (A) or (B and price>1): a row in A with price 0 matches
    assert matches("City eq 'A' or City eq 'B' and ListPrice gt 1", {"City": "A", "ListPrice": 0})
    assert not matches(
        "(City eq 'A' or City eq 'B') and ListPrice gt 1", {"City": "A", "ListPrice": 0}
    )


def test_not_binds_tighter_than_and_and_applies_to_a_comparison() -> None:
    expr = parse_filter("not City eq 'A' and ListPrice gt 1", FIELDS)
    assert isinstance(expr, And)
    assert isinstance(expr.items[0], Not)
    assert matches("not City eq 'A' and ListPrice gt 1", {"City": "B", "ListPrice": 2})
    assert not matches("not (City eq 'B' and ListPrice gt 1)", {"City": "B", "ListPrice": 2})
    assert matches("not not City eq 'B'", {"City": "B"})


def test_nested_parentheses() -> None:
    text = "((City eq 'A') or ((City eq 'B') and (not (ListPrice lt 5))))"
    assert matches(text, {"City": "B", "ListPrice": 5})
    assert not matches(text, {"City": "B", "ListPrice": 4})
    assert matches(text, {"City": "A", "ListPrice": 0})


def test_wrong_runtime_types_match_nothing() -> None:
    # A served value of the wrong type (bad data) is not comparable, so not matched.
    assert not matches("ListPrice gt 5", {"ListPrice": "N/A"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Foo eq 1", "unknown field 'Foo'"),
        ("City eq 'Austin", "unterminated string"),
        ("City eq", "ends too early"),
        ("City 'Austin'", "expected a comparison operator"),
        ("City eq 'A' City", "unexpected 'City'"),
        ("City eq 'A' and", "ends too early"),
        ("(City eq 'A'", "ends too early"),
        ("City eq 'A')", r"unexpected '\)'"),
        ("ListPrice eq 'cheap'", "cannot compare ListPrice"),
        ("City eq 5", "cannot compare City"),
        ("ModificationTimestamp gt '2026-01-01T00:00:00Z'", "cannot compare"),
        ("ModificationTimestamp gt 2026-01-01", "cannot compare"),
        ("CloseDate gt 2026-01-01T00:00:00Z", "cannot compare"),
        ("ListPrice eq 1 eq 2", "unexpected 'eq'"),
        ("City eq and", "unexpected 'and'"),
        ("ListPrice eq 1 && City eq 'A'", "unexpected '&'"),
        ("ModificationTimestamp gt 2026-13-01T00:00:00Z", "not a DateTimeOffset"),
        ("ModificationTimestamp gt 2026-01-01T00:00:00+25:00", "not a DateTimeOffset"),
        ("CloseDate eq 2026-02-30", "not a Date"),
        ("City Eq 'A'", "expected a comparison operator"),  # keywords are lower case
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_filter(text, FIELDS)
