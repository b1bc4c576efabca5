"""Reading an event as another major: converters between adjacent majors, chained both ways, the
event's identity kept, and a clear error when no way exists."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadastre.bus import pinned
from cadastre.contract import upcast
from cadastre.contract.events import CATALOGUE, EventEnvelope
from cadastre.contract.upcast import by_family, read_as, register
from cadastre.errors import UpcastUnavailable
from cadastre.ports import BusMessage
from cadastre.testing import EPOCH
from cadastre.testing.bus_suite import change_event

values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", min_size=1, max_size=6)


def test_a_v2_event_read_as_v1() -> None:
    newer = change_event("acme", "L1", 4, major=2)
    older = read_as(newer, "cadastre.listing.updated.v1")
    assert (older.id, older.source, older.subject, older.time, older.tenant) == (
        newer.id,
        newer.source,
        newer.subject,
        newer.time,
        newer.tenant,
    )
    assert older.type == "cadastre.listing.updated.v1"
    assert older.data == {
        "entity": "Listing",
        "fields": {"City": None, "ListPrice": 4},
        "removed": ["City"],
        "origin": newer.data["origin"],
        "version": 4,
        "idempotency_key": "L1-4",
        "causation_id": "req-L1",
    }
    assert newer.data["changed"] == {"ListPrice": 4}  # the event read is not changed


def test_a_v1_event_read_as_v2() -> None:
    older = change_event("acme", "L1", 4)
    newer = read_as(older, "cadastre.listing.updated.v2")
    assert newer.type == "cadastre.listing.updated.v2"
    assert newer.data == {
        "entity": "Listing",
        "changed": {"ListPrice": 4},
        "removed": ["City"],
        "origin": older.data["origin"],
        "version": 4,
        "idempotency_key": "L1-4",
        "confidence": {"record": None, "fields": {}},
    }
    assert read_as(older, older.type) is older


def test_a_causation_id_only_at_the_top_of_v1_moves_into_origin() -> None:
    older = change_event("acme", "L1", 1)
    origin = {**older.data["origin"], "causation_id": None}
    older = older.model_copy(update={"data": {**older.data, "origin": origin}})
    assert read_as(older, "cadastre.listing.updated.v2").data["origin"]["causation_id"] == "req-L1"


@given(
    changed=st.dictionaries(names, values, max_size=5),
    removed=st.lists(names.map(lambda n: f"x{n}"), max_size=3, unique=True),
    cause=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
)
def test_v2_to_v1_and_back_keeps_everything_v1_can_hold(
    changed: dict[str, Any], removed: list[str], cause: str | None
) -> None:
    origin = {
        "system": "mls",
        "connection": "c",
        "external_id": "X",
        "source_version": None,
        "source_time": None,
        "causation_id": cause,
    }
    data = {
        "entity": "Listing",
        "changed": changed,
        "removed": removed,
        "origin": origin,
        "version": 2,
        "idempotency_key": "k",
        "confidence": {"record": None, "fields": {}},
    }
    newer = change_event("acme", "L1", 2, major=2, data=data)
    older = read_as(newer, "cadastre.listing.updated.v1")
    assert set(older.data["fields"]) == set(changed) | set(removed)
    back = read_as(older, "cadastre.listing.updated.v2")
    assert back == newer  # null confidence is all v1 could carry, and the test used it
    assert read_as(back, "cadastre.listing.updated.v1") == older


def test_no_way_between_two_types_is_a_clear_error() -> None:
    event = change_event("acme", "L1", 1)
    with pytest.raises(UpcastUnavailable, match="different events"):
        read_as(event, "cadastre.member.updated.v1")
    with pytest.raises(UpcastUnavailable, match="unknown type"):
        read_as(event, "cadastre.listing.updated.v3")
    alert = EventEnvelope(
        source="/cadastre", type="cadastre.alert.raised.v1", time=EPOCH, tenant="acme"
    )
    with pytest.raises(UpcastUnavailable, match="unknown type"):
        read_as(alert, "cadastre.alert.raised.v2")


def test_a_missing_step_of_the_chain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # a v3 of one family with a converter from v2 only: v1 -> v3 walks v1 -> v2 -> v3
    monkeypatch.setattr(upcast, "_CONVERTERS", dict(upcast._CONVERTERS))  # undone after the test
    monkeypatch.setitem(
        CATALOGUE, "cadastre.listing.updated.v3", CATALOGUE["cadastre.listing.updated.v2"]
    )
    register("cadastre.listing.updated", 2, 3, lambda data: {**data, "v3": True})
    event = change_event("acme", "L1", 1)
    assert read_as(event, "cadastre.listing.updated.v3").data["v3"] is True
    with pytest.raises(
        UpcastUnavailable,
        match=r"no converter from cadastre\.listing\.updated\.v3 "
        r"to cadastre\.listing\.updated\.v2",
    ):
        read_as(read_as(event, "cadastre.listing.updated.v3"), "cadastre.listing.updated.v1")


def test_converters_join_adjacent_majors_of_catalogued_types() -> None:
    with pytest.raises(ValueError, match="adjacent"):
        register("cadastre.listing.updated", 1, 3, dict)
    with pytest.raises(ValueError, match="not in the catalogue"):
        register("cadastre.alert.raised", 1, 2, dict)


def test_a_pin_names_one_major_per_family() -> None:
    assert by_family(["cadastre.listing.updated.v2", "cadastre.member.created.v1"]) == {
        "cadastre.listing.updated": "cadastre.listing.updated.v2",
        "cadastre.member.created": "cadastre.member.created.v1",
    }
    with pytest.raises(ValueError, match="two majors of one family"):
        by_family(["cadastre.listing.updated.v1", "cadastre.listing.updated.v2"])
    with pytest.raises(UpcastUnavailable, match="unknown event type"):
        pinned(lambda messages: None, ["cadastre.listing.upserted.v1"])  # type: ignore[arg-type,return-value]


async def test_pinned_converts_on_the_way_in() -> None:
    got: list[BusMessage] = []

    async def handler(messages: Any) -> None:
        got.extend(messages)

    newer = change_event("acme", "L1", 1, major=2)
    message = BusMessage(newer, "cadastre.acme.listing.updated", 2)
    await pinned(handler, {"cadastre.listing.updated.v1"})([message])
    assert (got[0].event.type, got[0].event.id, got[0].subject, got[0].delivery) == (
        "cadastre.listing.updated.v1",
        newer.id,
        "cadastre.acme.listing.updated",
        2,
    )
