"""The dispatcher's handler over FakeStore: one delivery per matching active subscription of the
event's tenant; exact types pin a major (the event converted), families take events as emitted;
an event delivered again by the bus adds nothing; an alert about a subscription is not sent to
it; and the sender is nudged only when something was added."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from cadastre.bus import InProcessBus
from cadastre.contract.events import EventEnvelope
from cadastre.errors import ConfigurationError
from cadastre.ports import BusMessage, Subscription, SubscriptionStatus
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.webhooks.out_events import check_event_types, wanted_type
from cadastre.webhooks.outbound import DeliveryDispatcher

A, B = "acme", "globex"


def subscription(id: str, *types: str, status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
                 ) -> Subscription:  # fmt: skip
    return Subscription(id, f"https://{id}.example.com/", types, "", status, "", None,
                        f"subscription-{id}", EPOCH, EPOCH)  # fmt: skip


def event(type: str = "cadastre.listing.updated.v1", tenant: str = A, **data: object,
          ) -> EventEnvelope:  # fmt: skip
    return EventEnvelope(source="/mls/austin", type=type, subject="L1", time=EPOCH,
                         tenant=tenant, data=data)  # fmt: skip


def messages(*events: EventEnvelope) -> list[BusMessage]:
    return [BusMessage(e, f"cadastre.{e.tenant}.listing.updated", 1) for e in events]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(FakeClock())


async def _subscribe(store: FakeStore, tenant: str, *subs: Subscription) -> None:
    async with store.unit_of_work(tenant) as uow:
        for s in subs:
            await uow.subscriptions.add(s)
        await uow.commit()


async def _deliveries(store: FakeStore, tenant: str = A) -> dict[tuple[str, str], str]:
    """(subscription, event type sent) -> body."""
    async with store.unit_of_work(tenant, read_only=True) as uow:
        return {(d.subscription, d.event_type): d.body for d in await uow.deliveries.find()}


async def test_matching_subscriptions_get_one_delivery_each(store: FakeStore) -> None:
    await _subscribe(
        store, A, subscription("all", "cadastre.listing.*"),
        subscription("pinned", "cadastre.listing.updated.v1"),
        subscription("other", "cadastre.office.*"),
        subscription("off", "cadastre.listing.*", status=SubscriptionStatus.DISABLED),
    )  # fmt: skip
    await _subscribe(store, B, subscription("theirs", "cadastre.listing.*"))
    nudged: list[str] = []
    bus = InProcessBus(store.clock)
    sent = event(ListPrice=1)
    async with DeliveryDispatcher(bus, store, store.clock, nudge=nudged.append):
        await bus.publish([sent])  # returns once the consumer has handled it
    await bus.publish([event()])  # stopped: the durable consumer keeps it for later
    await bus.close()
    found = await _deliveries(store)
    assert set(found) == {("all", sent.type), ("pinned", sent.type)}
    body = json.loads(found["all", sent.type])
    assert (body["id"], body["type"], body["tenant"], body["data"]) == (
        sent.id, sent.type, A, {"ListPrice": 1},
    )  # fmt: skip
    assert "dataschema" not in body  # unset attributes are left out
    assert await _deliveries(store, B) == {}  # not another tenant's subscriptions
    assert nudged == [A]
    assert len(await _deliveries(store)) == 2  # the event published after it stopped: not yet


async def test_an_event_delivered_again_adds_nothing(store: FakeStore) -> None:
    await _subscribe(store, A, subscription("all", "cadastre.listing.*"))
    nudged: list[str] = []
    dispatcher = DeliveryDispatcher(InProcessBus(), store, store.clock, nudge=nudged.append)
    sent = event()
    await dispatcher.handle(messages(sent))
    await dispatcher.handle(messages(sent, sent))  # the bus redelivers; a batch repeats it
    async with store.unit_of_work(A, read_only=True) as uow:
        assert len(await uow.deliveries.find()) == 1
    assert nudged == [A]  # nothing new the second time


async def test_a_pinned_major_gets_the_event_converted(store: FakeStore) -> None:
    await _subscribe(store, A, subscription("v1", "cadastre.listing.updated.v1"),
                     subscription("any", "cadastre.listing.*"))  # fmt: skip
    v2 = event(
        "cadastre.listing.updated.v2", entity="Listing", changed={"ListPrice": 2}, removed=[],
        origin={"system": "mls", "connection": "austin", "causation_id": "c1"}, version=3,
        idempotency_key="k", confidence={"record": 0.9, "fields": {}},
    )  # fmt: skip
    await DeliveryDispatcher(InProcessBus(), store, store.clock).handle(messages(v2))
    found = await _deliveries(store)
    assert set(found) == {("v1", "cadastre.listing.updated.v1"), ("any", v2.type)}
    as_v1 = json.loads(found["v1", "cadastre.listing.updated.v1"])
    assert as_v1["id"] == v2.id  # the same event, so the subscriber de-duplicates it
    assert as_v1["data"]["fields"] == {"ListPrice": 2}
    assert json.loads(found["any", v2.type])["data"]["changed"] == {"ListPrice": 2}


async def test_an_alert_about_a_subscription_is_not_sent_to_it(store: FakeStore) -> None:
    await _subscribe(store, A, subscription("failing", "cadastre.alert.*"),
                     subscription("ops", "cadastre.alert.raised.v1"))  # fmt: skip
    data = {"alert": "webhook_delivery_dead", "subscription": "failing"}
    alert = EventEnvelope(source="/cadastre/webhooks", type="cadastre.alert.raised.v1",
                          subject="failing", time=EPOCH, tenant=A, data=data)  # fmt: skip
    await DeliveryDispatcher(InProcessBus(), store, store.clock).handle(messages(alert))
    assert set(await _deliveries(store)) == {("ops", alert.type)}


async def test_deliveries_are_due_at_once(store: FakeStore) -> None:
    await _subscribe(store, A, subscription("all", "cadastre.listing.*"))
    store.clock.advance(30)  # type: ignore[attr-defined]
    await DeliveryDispatcher(InProcessBus(), store, store.clock).handle(messages(event()))
    async with store.unit_of_work(A, read_only=True) as uow:
        [delivery] = await uow.deliveries.find()
    assert delivery.next_attempt_at == delivery.created_at == EPOCH + timedelta(seconds=30)
    assert (delivery.attempts, delivery.redeliveries) == (0, 0)


def test_wanted_types() -> None:
    updated = "cadastre.listing.updated.v1"
    assert wanted_type(["cadastre.listing.*"], updated) == updated
    assert wanted_type(["cadastre.listing.updated.v2"], updated) == "cadastre.listing.updated.v2"
    assert wanted_type(["cadastre.listing.*", "cadastre.listing.updated.v2"], updated) == (
        "cadastre.listing.updated.v2"
    )  # the pin wins over the family
    assert wanted_type(["cadastre.listing.created.v1"], updated) is None
    assert wanted_type(["cadastre.listing_x.*"], updated) is None
    assert wanted_type(["cadastre.open_house.*"], "cadastre.open_house.deleted.v1")


def test_event_types_are_checked_against_the_catalogue() -> None:
    asked = [" cadastre.listing.* ", "cadastre.listing.*", "cadastre.alert.raised.v1"]
    assert check_event_types(asked) == ("cadastre.listing.*", "cadastre.alert.raised.v1")
    for bad in (["cadastre.listing.updated.v9"], ["cadastre.*"], ["cadastre.nope.*"], ["*"], []):
        with pytest.raises(ConfigurationError):
            check_event_types(bad)
    with pytest.raises(ConfigurationError, match="at most 50"):
        check_event_types([f"cadastre.listing.{v}.v1" for v in ("created", "updated")] * 26
                          + [f"cadastre.x{i}.*" for i in range(50)])  # fmt: skip
