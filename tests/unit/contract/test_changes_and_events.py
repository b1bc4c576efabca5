from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cadastre.contract import CATALOGUE, Change, EventEnvelope, Operation, Origin, entity_event_type
from cadastre.contract.events import ENTITIES, TYPE_PATTERN

AT = datetime(2026, 11, 1, tzinfo=UTC)


def _change(**overrides: Any) -> Change:
    values: dict[str, Any] = {
        "tenant": "acme",
        "entity": "Listing",
        "fields": {"ListPrice": "350000"},
        "origin": Origin(system="mls", connection="austin", external_id="L1", source_time=AT),
    }
    return Change(**(values | overrides))


def test_the_derived_idempotency_key_follows_content_not_causation() -> None:
    a = _change()
    assert a.idempotency_key.startswith("sha256:")
    assert _change().idempotency_key == a.idempotency_key
    caused = _change(origin=a.origin.model_copy(update={"causation_id": "evt-9"}))
    assert caused.idempotency_key == a.idempotency_key
    assert _change(fields={"ListPrice": "350001"}).idempotency_key != a.idempotency_key
    assert _change(tenant="globex").idempotency_key == a.idempotency_key  # keys are per tenant
    assert _change(idempotency_key="req-1").idempotency_key == "req-1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"origin": Origin(system="mls")}, "canonical_id or origin.external_id"),
        ({"fields": {}}, "at least one field"),
        ({"tenant": ""}, "tenant"),
        ({"confidence": 1.5}, "confidence"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_changes_are_refused_with_a_clear_message(overrides, message) -> None:
    with pytest.raises(ValidationError, match=message):
        _change(**overrides)


def test_a_delete_needs_no_fields_and_source_time_needs_a_timezone() -> None:
    assert _change(operation=Operation.DELETE, fields={}).operation is Operation.DELETE
    with pytest.raises(ValidationError, match="timezone"):
        Origin(system="mls", source_time=datetime(2026, 1, 1))  # noqa: DTZ001


def test_catalogue_is_versioned_past_tense_and_covers_every_entity() -> None:
    for name, event_type in CATALOGUE.items():
        assert TYPE_PATTERN.match(name), name
        # entity change events have a v2 (read through upcasters); everything else is at v1
        assert event_type.major == 1 or name.replace(".v2", ".v1") in CATALOGUE, name
    for entity in ENTITIES:
        for verb in ("created", "updated", "deleted"):
            assert entity_event_type(entity, verb) in CATALOGUE
    assert entity_event_type("OpenHouse", "updated") == "cadastre.open_house.updated.v1"
    assert entity_event_type("LedgerEntry", "created") == "cadastre.ledger_entry.created.v1"
    with pytest.raises(KeyError):
        entity_event_type("Listing", "upserted")


def test_envelope_is_cloudevents_shaped_and_refuses_unknown_types() -> None:
    event = EventEnvelope(
        source="/mls/austin", type="cadastre.listing.updated.v1", subject="01J", time=AT,
        tenant="acme", data={"fields": {"ListPrice": "1"}},
    )  # fmt: skip
    wire = event.model_dump(mode="json")
    assert wire["specversion"] == "1.0"
    assert {"id", "source", "type", "subject", "time", "datacontenttype"} <= set(wire)
    assert EventEnvelope.model_validate(wire) == event
    with pytest.raises(ValidationError, match="unknown event type"):
        EventEnvelope(source="/x", type="cadastre.listing.upserted.v1", time=AT, tenant="a")
