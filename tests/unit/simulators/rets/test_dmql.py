"""The RETS simulator's DMQL2: what each operator selects, and the syntax it refuses."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from cadastre.simulators.rets.dmql import DmqlError, UnknownField, parse
from cadastre.simulators.rets.records import FIELDS, field_map, generate

FIELDS_BY_NAME = field_map(FIELDS)
RECORDS = [
    {"ListingID": "L1", "ListPrice": "150000", "Status": "A", "City": "Austin",
     "ModificationTimestamp": "2026-11-01T08:00:00", "ListDate": "2026-10-01"},
    {"ListingID": "L2", "ListPrice": "250000", "Status": "U", "City": "Round Rock",
     "ModificationTimestamp": "2026-11-01T09:00:00", "ListDate": "2026-10-15"},
    {"ListingID": "L3", "ListPrice": "", "Status": "S", "City": "Waco",
     "ModificationTimestamp": "2026-11-02T00:00:00", "ListDate": ""},
]  # fmt: skip


def matching(query: str) -> list[str]:
    predicate = parse(query, FIELDS_BY_NAME)
    return [r["ListingID"] for r in RECORDS if predicate(r)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("(ListPrice=100000-200000)", ["L1"]),
        ("(ListPrice=200000+)", ["L2"]),
        ("(ListPrice=200000-)", ["L1"]),
        ("(ListPrice=150000)", ["L1"]),
        ("(ListPrice=150000,250000)", ["L1", "L2"]),
        ("(Status=|A,U)", ["L1", "L2"]),
        ("(Status=~A,U)", ["L3"]),
        ("(Status=+A)", ["L1"]),
        ("(City=Rou*)", ["L2"]),
        ("(City=*ac*)", ["L3"]),
        ("(City=austin)", ["L1"]),
        ("(ModificationTimestamp=2026-11-01T09:00:00+)", ["L2", "L3"]),
        ("(ModificationTimestamp=2026-11-01T08:00:00-2026-11-01T09:00:00)", ["L1", "L2"]),
        ("(ModificationTimestamp=2026-11-01T08:59:59-)", ["L1"]),
        ("(ListDate=2026-10-10+)", ["L2"]),
        ("(Status=|A,U),(ListPrice=200000+)", ["L2"]),
        ("(Status=|A) AND (City=Austin)", ["L1"]),
        ("(Status=|S)|(ListPrice=150000)", ["L1", "L3"]),
        ("(Status=|S) OR (ListPrice=150000)", ["L1", "L3"]),
        ("~(Status=|A)", ["L2", "L3"]),
        ("NOT (Status=|A)", ["L2", "L3"]),
        ("((Status=|A)|(Status=|U)),(City=Round*)", ["L2"]),
    ],
)
def test_operators_select_the_right_records(query: str, expected: list[str]) -> None:
    assert matching(query) == expected


@pytest.mark.parametrize(
    "query",
    ["ListPrice=1", "(ListPrice=)", "(ListPrice=abc)", "(ListPrice=1", "(Status=|)",
     "(ModificationTimestamp=tomorrow+)", "(City=*Aus)", "(ListPrice=1) junk", "((ListPrice=1)"],
)  # fmt: skip
def test_bad_syntax_is_refused(query: str) -> None:
    with pytest.raises(DmqlError):
        parse(query, FIELDS_BY_NAME)


def test_an_unknown_field_is_its_own_error() -> None:
    with pytest.raises(UnknownField, match="Nope"):
        parse("(Nope=1)", FIELDS_BY_NAME)


def test_the_same_seed_gives_the_same_records() -> None:
    zone = ZoneInfo("America/Chicago")
    assert generate(50, 3, zone) == generate(50, 3, zone)
    assert generate(50, 3, zone) != generate(50, 4, zone)
