"""The version-vector rules of shared fields (``sync/vectors.py``): causal against concurrent,
the skew that makes source times unorderable, and owner_wins under concurrency."""

from __future__ import annotations

from datetime import timedelta

from cadastre.contract import RefusalReason
from cadastre.ownership import parse_registry
from cadastre.ports import FieldVector
from cadastre.sync.origin import Stamp
from cadastre.sync.vectors import (
    after_apply,
    after_hold,
    conflict_id,
    is_causal,
    judge_concurrent,
    writer_of,
)
from cadastre.testing import EPOCH

REGISTRY = parse_registry(
    """
version: 1
systems: {crm: {}, pms: {}, core: {}}
rules:
  - {match: Resident.*, owner: pms}
  - {match: Resident.Email, owner: pms, writers: [crm], conflict: owner_wins}
  - {match: Resident.MobilePhone, owner: pms, writers: [crm], conflict: newest_wins}
""",
    source="test",
)


def stamp(system: str, seconds: float | None) -> Stamp:
    at = None if seconds is None else EPOCH + timedelta(seconds=seconds)
    return Stamp(system, f"{system}-1", at, None)


def test_a_writer_that_holds_the_latest_value_or_never_held_the_field_is_causal() -> None:
    vector = FieldVector(3, {"pms-1": 3, "crm-1": 2})
    assert is_causal(vector, "pms-1")
    assert not is_causal(vector, "crm-1")  # edited without having seen version 3
    assert is_causal(vector, "crm-2")  # never held it
    assert is_causal(None, "crm-1")
    assert is_causal(FieldVector(), "crm-1")


def test_applying_bumps_the_counter_and_holding_moves_the_writer_up() -> None:
    vector = after_apply(None, "pms-1")
    assert vector == FieldVector(1, {"pms-1": 1})
    vector = after_apply(vector, "crm-1")
    assert vector == FieldVector(2, {"pms-1": 1, "crm-1": 2})
    held = after_hold(vector, "pms-1")
    assert held == FieldVector(2, {"pms-1": 2, "crm-1": 2})
    assert after_hold(held, "pms-1") is None  # nothing moves
    assert writer_of(Stamp("core", None, None, None)) == "@core"


def test_concurrent_edits_further_apart_than_the_skew_go_to_the_later() -> None:
    decision = REGISTRY.decide("Resident", "MobilePhone", "crm")
    later = judge_concurrent(decision, stamp("crm", 10), stamp("pms", 5), skew=2, queue_id="q")
    assert later.apply
    assert later.how == "newest_wins"
    assert not later.queue
    earlier = judge_concurrent(decision, stamp("crm", 5), stamp("pms", 10), skew=2, queue_id="q")
    assert not earlier.apply
    assert not earlier.queue
    assert earlier.refusal is not None
    assert earlier.refusal.reason is RefusalReason.CONFLICT


def test_concurrent_edits_within_the_skew_or_without_times_go_to_review() -> None:
    decision = REGISTRY.decide("Resident", "MobilePhone", "crm")
    for incoming, current in [(6.5, 5), (5, 6.9), (None, 5), (5, None)]:
        outcome = judge_concurrent(
            decision, stamp("crm", incoming), stamp("pms", current), skew=2, queue_id="cf_1"
        )
        assert outcome.queue, (incoming, current)
        assert not outcome.apply
        assert outcome.refusal is not None
        assert "cf_1" in outcome.refusal.detail
    wider = judge_concurrent(decision, stamp("crm", 6.5), stamp("pms", 5), skew=1, queue_id="q")
    assert wider.apply  # 1.5 s apart is orderable with a 1 s skew


def test_owner_wins_the_owner_concurrent_edit_wins_and_a_writer_never_beats_the_owner() -> None:
    owner = REGISTRY.decide("Resident", "Email", "pms")
    won = judge_concurrent(owner, stamp("pms", 0), stamp("crm", 100), skew=2, queue_id="q")
    assert won.apply
    assert won.how == "owner_wins"
    writer = REGISTRY.decide("Resident", "Email", "crm")
    lost = judge_concurrent(writer, stamp("crm", 100), stamp("pms", 0), skew=2, queue_id="q")
    assert not lost.apply
    assert not lost.queue
    assert lost.how == "owner_wins"
    # between two writers (the owner not involved) owner_wins falls back to source time
    other = judge_concurrent(writer, stamp("crm", 100), stamp("core", 0), skew=2, queue_id="q")
    assert other.apply
    assert other.how == "newest_wins"


def test_conflict_ids_are_derived_per_tenant_change_and_field() -> None:
    a = conflict_id("acme", "k1", "Email")
    assert a == conflict_id("acme", "k1", "Email")
    assert a.startswith("cf_")
    assert len(a) == 35
    assert len({a, conflict_id("globex", "k1", "Email"), conflict_id("acme", "k1", "Phone")}) == 3
