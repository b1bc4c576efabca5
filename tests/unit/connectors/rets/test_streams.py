"""DMQL2 query building, time-window halving and the (timestamp, keys) cursor."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadastre.connectors.mls.rets.streams import (
    SECOND,
    Position,
    any_of,
    condition,
    parse_local,
    repeated,
    rets_time,
    split,
    window_query,
)
from cadastre.simulators.rets.dmql import DmqlError, parse
from cadastre.simulators.rets.records import FIELDS, field_map

T = datetime(2026, 11, 1, 9, 30, 0)  # noqa: DTZ001 - RETS local time


def test_window_queries_are_inclusive_dmql_ranges() -> None:
    assert window_query("ModificationTimestamp", T, None) == (
        "(ModificationTimestamp=2026-11-01T09:30:00+)"
    )
    assert window_query("ModificationTimestamp", T, T + timedelta(hours=1)) == (
        "(ModificationTimestamp=2026-11-01T09:30:00-2026-11-01T10:30:00.999)"
    )
    assert window_query("ModificationTimestamp", T, T, fractions=False) == (
        "(ModificationTimestamp=2026-11-01T09:30:00-2026-11-01T09:30:00)"
    )
    assert any_of("Status", ["A", "U"], lookup=True) == "(Status=|A,U)"
    assert any_of("ListingID", ["L1", "L2"]) == "(ListingID=L1,L2)"
    with pytest.raises(ValueError, match="not a RETS field"):
        condition("List Price) | (X", "1")
    with pytest.raises(ValueError, match="at least one"):
        any_of("Status", [])


def test_built_queries_parse_on_the_simulator_side() -> None:
    fields = field_map(FIELDS)
    record = {"ModificationTimestamp": "2026-11-01T10:00:00", "Status": "U"}
    assert parse(window_query("ModificationTimestamp", T, T + timedelta(hours=1)), fields)(record)
    assert not parse(window_query("ModificationTimestamp", T, T + SECOND), fields)(record)
    assert parse(any_of("Status", ["A", "U"], lookup=True), fields)(record)
    # A window ending at a second holds what a server stamped later in that second.
    late = {"ModificationTimestamp": "2026-11-01T09:30:00.750"}
    assert parse(window_query("ModificationTimestamp", T, T), fields)(late)
    assert not parse(window_query("ModificationTimestamp", T, T, fractions=False), fields)(late)
    assert not parse(window_query("ModificationTimestamp", T + SECOND, None), fields)(late)
    with pytest.raises(DmqlError):
        parse("(ModificationTimestamp=yesterday+)", fields)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)),  # noqa: DTZ001
    st.integers(min_value=0, max_value=10**8),
)
def test_halves_are_disjoint_and_cover_the_window_to_the_second(start: datetime, span: int) -> None:
    low = start.replace(microsecond=0)
    high = low + timedelta(seconds=span)
    halves = split(low, high)
    if span == 0:
        assert halves == ((low, high),)
        return
    (a, b), (c, d) = halves
    assert (a, d) == (low, high)
    assert c == b + SECOND
    assert a <= b < c <= d


def test_parse_local_reads_rets_datetimes_and_refuses_the_rest() -> None:
    assert parse_local("2026-11-01T09:30:00") == T
    assert parse_local("2026-11-01 09:30:00.250") == T
    assert parse_local("2026-11-01 09:30:00.250", fraction=True) == T.replace(microsecond=250_000)
    assert parse_local("2026-11-01T09:30:00-06:00") == T
    assert parse_local("yesterday") is None
    assert parse_local(None) is None
    assert rets_time(T) == "2026-11-01T09:30:00"


def test_the_cursor_keeps_the_keys_at_its_second_and_never_moves_back() -> None:
    start = Position(T, frozenset({"A"}))
    assert Position.of(start.cursor()) == start
    assert Position.of({"ModificationTimestamp": "nonsense"}) is None
    assert Position.of(None) is None
    same_second = start.advanced([(T, "B"), (T - SECOND, "C")])
    assert same_second == Position(T, frozenset({"A", "B"}))
    later = same_second.advanced([(T + SECOND, "D"), (T, "E")])
    assert later == Position(T + SECOND, frozenset({"D"}))
    assert later.advanced([(T, "F")]) == later
    assert later.seen(T + SECOND, "D")
    assert not later.seen(T + SECOND, "E")


def test_a_second_paged_with_offset_keeps_a_count_not_its_keys() -> None:
    keyed = Position(T, frozenset({"A", "B"}))
    paged = keyed.paged(T, 2500, 60_000)
    assert paged == Position(T, frozenset(), 2500, 60_000)
    assert paged.cursor() == {"ModificationTimestamp": rets_time(T), "keys": [],
                              "offset": 2500, "count": 60_000}  # fmt: skip
    assert Position.of(paged.cursor()) == paged
    assert paged.advanced([(T, "Z")]) == paged  # the offset, not keys, says how far in T
    assert paged.advanced([(T + SECOND, "Z")]) == Position(T + SECOND, frozenset({"Z"}))
    assert paged.paged(T - SECOND, 10, 10) == paged  # never backwards
    damaged = {**paged.cursor(), "offset": "2500"}
    assert Position.of(damaged) == Position(T, frozenset())  # read the whole second again


def test_the_repeated_hour_as_daylight_time_ends_is_an_hour_back() -> None:
    chicago, utc = ZoneInfo("America/Chicago"), ZoneInfo("UTC")

    def local(text: str) -> datetime:  # RETS wall-clock time, naive
        found = parse_local(text)
        assert found is not None
        return found

    assert repeated(local("2026-11-01T01:30:00"), chicago) == timedelta(hours=1)
    assert repeated(local("2026-11-01T02:00:00"), chicago) == timedelta(0)
    assert repeated(local("2026-11-01T00:59:59"), chicago) == timedelta(0)
    assert repeated(local("2026-03-08T02:30:00"), chicago) == timedelta(0)  # the skipped hour
    assert repeated(local("2026-11-01T01:30:00"), utc) == timedelta(0)
