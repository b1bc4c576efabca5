"""Our envelope is CloudEvents 1.0 (the cloudevents SDK reads and writes it), bus subjects carry
tenant and entity, and the events the hub emits carry source, subject and origin as promised."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from cadastre.contract import Change, Origin
from cadastre.contract.events import (
    CATALOGUE,
    ENTITIES,
    EventEnvelope,
    bus_subject,
    entity_event_type,
    from_json,
    structured,
    to_json,
)
from cadastre.ownership import load_registry
from cadastre.sync import SyncEngine
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.testing.bus_suite import change_event

SDK = JSONFormat()


def test_our_json_read_by_the_sdk_has_the_same_attributes() -> None:
    event = change_event("acme", "01HXLISTING", 3)
    read = SDK.read(None, to_json(event))
    assert read.get_specversion() == "1.0"
    assert (read.get_id(), read.get_source(), read.get_type()) == (
        event.id,
        "/mls/austin",
        "cadastre.listing.updated.v1",
    )
    assert read.get_subject() == "01HXLISTING"
    assert read.get_time() == event.time
    assert read.get_datacontenttype() == "application/json"
    assert read.get_extension("tenant") == "acme"
    assert read.get_data() == event.data
    # and the SDK's own JSON of it reads back into the same envelope
    assert from_json(SDK.write(read)) == event


def test_an_event_without_a_subject_leaves_the_attribute_out() -> None:
    event = EventEnvelope(
        source="/cadastre",
        type="cadastre.alert.raised.v1",
        time=EPOCH,
        tenant="acme",
        data={"action": "look"},
    )
    assert "subject" not in structured(event)
    assert "dataschema" not in structured(event)
    assert SDK.read(None, to_json(event)).get_subject() is None
    assert from_json(to_json(event)) == event


def test_an_sdk_made_event_validates_into_our_envelope() -> None:
    made = CloudEvent(
        {
            "id": "evt-1",
            "source": "/crm/hubspot",
            "type": "cadastre.contact.created.v1",
            "subject": "01HXCONTACT",
            "time": EPOCH,
            "tenant": "acme",
            "datacontenttype": "application/json",
        },
        {"entity": "Contact", "fields": {"FirstName": "Ada"}},
    )
    event = from_json(SDK.write(made))
    assert event == EventEnvelope(
        id="evt-1",
        source="/crm/hubspot",
        type="cadastre.contact.created.v1",
        subject="01HXCONTACT",
        time=EPOCH,
        tenant="acme",
        data={"entity": "Contact", "fields": {"FirstName": "Ada"}},
    )


def test_an_sdk_event_of_an_unknown_type_or_without_a_tenant_is_refused() -> None:
    base = {"id": "e", "source": "/x", "time": EPOCH, "tenant": "acme"}
    unknown = CloudEvent({**base, "type": "com.example.thing.v1"}, {})
    with pytest.raises(ValidationError, match="unknown event type"):
        from_json(SDK.write(unknown))
    untenanted = CloudEvent(
        {"id": "e", "source": "/x", "time": EPOCH, "type": "cadastre.listing.updated.v1"}, {}
    )
    with pytest.raises(ValidationError, match="tenant"):
        from_json(SDK.write(untenanted))
    with pytest.raises(ValueError, match="invalid literal"):
        from_json(b"not json")


def test_bus_subjects_carry_tenant_entity_and_verb_not_the_major() -> None:
    assert bus_subject(change_event("acme", "L1", 1)) == "cadastre.acme.listing.updated"
    assert bus_subject(change_event("acme", "L1", 1, major=2)) == "cadastre.acme.listing.updated"
    open_house = change_event("t-2", "O1", 1, verb="deleted", entity="OpenHouse")
    assert bus_subject(open_house) == "cadastre.t-2.open_house.deleted"
    mass = EventEnvelope(
        source="/mls/a", type="cadastre.sync.mass_update.v1", time=EPOCH, tenant="acme"
    )
    assert bus_subject(mass) == "cadastre.acme.sync.mass_update"


def test_every_entity_change_event_has_a_v2() -> None:
    for entity in ENTITIES:
        for verb in ("created", "updated", "deleted"):
            assert entity_event_type(entity, verb, 2) in CATALOGUE
    with pytest.raises(KeyError):
        entity_event_type("Listing", "updated", 3)
    with pytest.raises(KeyError):
        entity_event_type("Listing", "refused", 2)


async def test_the_hub_emits_source_subject_and_origin(tmp_path: Path) -> None:
    store = FakeStore(FakeClock())
    engine = SyncEngine(store, load_registry(None), FakeClock())
    origin = Origin(
        system="mls",
        connection="austin",
        external_id="X1",
        source_version="7",
        source_time=EPOCH,
        causation_id="req-9",
    )
    result = await engine.apply(
        Change(
            tenant="acme",
            entity="Listing",
            origin=origin,
            fields={"ListingKey": "X1", "ListPrice": "100"},
        )
    )
    async with store.unit_of_work("acme") as uow:
        (message,) = await uow.outbox.pending()
    event = message.event
    assert event.id == result.event_id
    assert (event.source, event.subject, event.type) == (
        "/mls/austin",
        result.canonical_id,
        "cadastre.listing.created.v1",
    )
    assert event.data["origin"] == {
        "system": "mls",
        "connection": "austin",
        "external_id": "X1",
        "source_version": "7",
        "source_time": "2026-01-01T00:00:00Z",
        "causation_id": "req-9",
    }
    assert event.data["causation_id"] == "req-9"
    # what the bus carries is what the SDK reads
    assert SDK.read(None, to_json(event)).get_data() == json.loads(orjson.dumps(event.data))
