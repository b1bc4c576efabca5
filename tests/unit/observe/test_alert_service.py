"""Subsystem alerts folded by the ``alerts`` consumer (a repeat is an occurrence, never a second
row; a redelivered event folds nothing), their resolution by an ``event`` rule's ``clear_for`` or
by a person, and the service's listing, scoped to a tenant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cadastre.contract.events import EventEnvelope
from cadastre.errors import NotFound
from cadastre.observe.alert_service import CONSUMER, SUBJECTS, AlertService
from cadastre.observe.alerts import RAISED, RESOLVED, AlertEvaluator
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import parse_rules
from cadastre.ports import AlertState, BusMessage
from cadastre.testing import EPOCH, FakeClock, FakeStore
from cadastre.vault import MemoryLockBackend
from cadastre.webhooks.out_events import alert as webhooks_alert

A, B = "acme", "globex"
RULES = """
- name: webhook_delivery_dead
  detector: event
  clear_for: 3600
  severity: warning
  owner: platform-oncall
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(clock: FakeClock) -> AlertService:
    store = FakeStore(clock)
    for tenant in (A, B):
        await store.create_tenant(tenant, tenant)
    rules = parse_rules(RULES, detectors=DETECTORS)
    return AlertService(store, clock, AlertEvaluator(store, clock, rules, DETECTORS),
                        MemoryLockBackend())  # fmt: skip


def dead(clock: FakeClock, subscription: str = "sub_1", tenant: str = A) -> EventEnvelope:
    """What the webhook sender raises for a dead-lettered delivery (its real shape)."""
    return webhooks_alert(tenant, subscription, clock.now(), {
        "alert": "webhook_delivery_dead", "severity": "warning", "subscription": subscription,
        "delivery": "dlv_1", "summary": f"delivery dlv_1 to subscription {subscription} failed "
        "all 8 attempts", "action": f"`cadastre deliveries redeliver dlv_1 --tenant {tenant}`",
    })  # fmt: skip


async def fold(service: AlertService, *events: EventEnvelope) -> None:
    consumer = service.consumer(bus=None)  # type: ignore[arg-type]  # handed batches directly
    await consumer.handle([BusMessage(e, f"cadastre.{e.tenant}.alert.raised", 1) for e in events])


async def resolved_events(service: AlertService, tenant: str = A) -> list[EventEnvelope]:
    async with service.evaluator._store.unit_of_work(tenant, read_only=True) as uow:
        return [
            m.event for m in await uow.outbox.pending(limit=100) if m.event.type == RESOLVED
        ]  # fmt: skip


def test_the_consumer_takes_alert_events_only() -> None:
    assert CONSUMER == "alerts"
    assert SUBJECTS == ("cadastre.*.alert.raised",)


async def test_a_repeated_dead_delivery_alert_is_one_row_with_two_occurrences(
    service: AlertService, clock: FakeClock
) -> None:
    first = dead(clock)
    await fold(service, first)
    clock.advance(300)
    second = dead(clock)
    await fold(service, second, first)  # the first delivered again, beside the repeat
    await fold(service, second)  # and the repeat again, alone
    (alert,) = await service.list(A, state="all")
    assert (alert.rule, alert.key, alert.state, alert.occurrences) == (
        "webhook_delivery_dead", "sub_1", AlertState.FIRING, 2)  # fmt: skip
    assert (alert.since, alert.raised_at, alert.last_seen_at) == (
        EPOCH, EPOCH, EPOCH + timedelta(seconds=300))  # fmt: skip
    assert (alert.owner, alert.severity, alert.source) == (
        "platform-oncall", "warning", "/cadastre/webhooks")  # fmt: skip
    assert alert.action == "`cadastre deliveries redeliver dlv_1 --tenant acme`"
    assert alert.facts["subscription"] == "sub_1"
    # another subscription, and the same one in another tenant, are alerts of their own
    await fold(service, dead(clock, "sub_2"), dead(clock, tenant=B))
    assert sorted(a.key for a in await service.list(A)) == ["sub_1", "sub_2"]
    assert [a.key for a in await service.list(B)] == ["sub_1"]


async def test_an_event_rule_resolves_a_subsystem_alert_after_clear_for_without_a_repeat(
    service: AlertService, clock: FakeClock
) -> None:
    await fold(service, dead(clock))
    clock.advance(1800)
    await fold(service, dead(clock))  # a repeat moves the clock of clear_for
    clock.advance(3599)
    assert await service.evaluate(A) == []
    clock.advance(1)
    (resolved,) = await service.evaluate(A)
    assert (resolved.state, resolved.occurrences) == (AlertState.RESOLVED, 2)
    (event,) = await resolved_events(service)
    assert (event.data["alert_id"], event.data["resolved_by"]) == (resolved.id, "observe")
    assert event.data["source"] == "/cadastre/webhooks"


async def test_an_alert_no_rule_names_waits_for_a_person(
    service: AlertService, clock: FakeClock
) -> None:
    event = webhooks_alert(A, "W1", clock.now(), {
        "alert": "writeback_indeterminate", "severity": "critical", "connection": "crm-1",
        "summary": "write W1 to crm-1: unknown whether the vendor applied it",
        "action": "`cadastre writes show W1 --tenant acme`",
    })  # fmt: skip
    await fold(service, event)
    clock.advance(30 * 86400)
    assert await service.evaluate(A) == []
    (alert,) = await service.list(A)
    assert (alert.owner, alert.severity, alert.connection) == ("operations", "critical", "crm-1")
    with pytest.raises(NotFound):  # another tenant's id is not found
        await service.resolve(B, alert.id, actor="cli")
    done = await service.resolve(A, alert.id, actor="cli")
    assert (done.state, done.resolved_at) == (AlertState.RESOLVED, clock.now())
    assert await service.resolve(A, alert.id, actor="cli") == done  # once only
    (resolution,) = await resolved_events(service)
    assert resolution.data["resolved_by"] == "cli"
    async with service.evaluator._store.unit_of_work(A, read_only=True) as uow:
        entries = [e async for e in uow.audit.entries()]
    assert [(e.actor, e.action, e.entity_id) for e in entries] == [
        ("cli", "alert.resolved", alert.id)]  # fmt: skip
    # a new occurrence after the resolution is a new alert
    await fold(service, event.model_copy(update={"id": "another"}))
    assert [a.id != alert.id for a in await service.list(A)] == [True]


async def test_detector_alerts_are_not_folded_again(
    service: AlertService, clock: FakeClock
) -> None:
    ours = EventEnvelope(source="/cadastre/observe", type=RAISED, subject="mls-1",
                         time=clock.now(), tenant=A,
                         data={"alert": "vendor_error_rate"})  # fmt: skip
    other = EventEnvelope(source="/mls/a", type="cadastre.listing.updated.v1", subject="L1",
                          time=clock.now(), tenant=A, data={})  # fmt: skip
    await fold(service, ours, other)
    assert await service.list(A, state="all") == []


async def test_listing_filters(service: AlertService, clock: FakeClock) -> None:
    await fold(service, dead(clock, "sub_1"), dead(clock, "sub_2"))
    (first, second) = await service.list(A)  # newest first
    assert (first.key, second.key) == ("sub_2", "sub_1")
    await service.resolve(A, second.id, actor="cli")
    found: dict[str, Any] = {
        state: [a.key for a in await service.list(A, state=state)]
        for state in ("open", "all", "firing", "pending", "resolved")
    }
    assert found == {"open": ["sub_2"], "all": ["sub_2", "sub_1"], "firing": ["sub_2"],
                     "pending": [], "resolved": ["sub_1"]}  # fmt: skip
    assert [a.key for a in await service.list(A, state="all", limit=1)] == ["sub_2"]
    assert await service.list(A, rule="nope", state="all") == []
    with pytest.raises(ValueError, match="state"):
        await service.list(A, state="closed")
    with pytest.raises(NotFound, match="tenant"):
        await service.list("nobody")
    assert (await service.get(A, first.id)).key == "sub_2"
    with pytest.raises(NotFound):
        await service.get(B, first.id)
