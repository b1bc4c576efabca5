"""The alert evaluator's state machine on a fake clock (docs/alerts.md): a rule fires after
``for`` and not before, resolves after ``clear_for`` clear and not before, a condition that
flaps inside ``clear_for`` stays one alert, and each episode raises one event and resolves with
one. The detectors here are switches the tests turn on and off; the real ones are tested in
``test_detectors``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.contract.events import EventEnvelope, from_json, to_json
from cadastre.observe.alerts import RAISED, RESOLVED, SOURCE, AlertEvaluator
from cadastre.observe.detection import Finding
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import parse_rules
from cadastre.ports import AlertState, Connection, ConnectionStatus
from cadastre.testing import EPOCH, FakeClock, FakeStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.observe.detection import DetectorInput
    from cadastre.ports import Alert

A, B = "acme", "globex"
EVERY = 30  # seconds between evaluations, as the hub's default


@dataclass
class Switch:
    """A detector whose findings the test sets (``on``) or clears (``off``)."""

    name: str = "switch"
    findings: dict[str, Finding] = field(default_factory=dict)
    broken: bool = False
    seen: list[DetectorInput] = field(default_factory=list)

    def check_params(self, params: Mapping[str, Any]) -> None:
        if set(params) - {"level"}:
            raise ValueError(f"switch: unknown parameter(s) {sorted(set(params) - {'level'})}")

    def span(self, params: Mapping[str, Any]) -> float:
        return 600.0

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        self.seen.append(data)
        if self.broken:
            raise RuntimeError("the detector has a bug")
        return list(self.findings.values())

    def on(self, key: str = "mls-1", **changes: Any) -> None:
        made = {
            "key": key, "vendor": "reso@mls.example", "connection": key,
            "changed": "error rate 62% (31 of 50 calls) over 5 min", "started": None,
            "facts": {"failed": 31, "calls": 50},
        }  # fmt: skip
        self.findings[key] = Finding(**(made | changes))

    def off(self, key: str = "mls-1") -> None:
        self.findings.pop(key, None)


RULES = """
- name: vendor_error_rate
  detector: switch
  for: 60
  clear_for: 120
  severity: critical
  owner: integrations-oncall
  summary: "{vendor} ({connection}): error rate spike"
  runbook: "Look at `cadastre alerts show {id} --tenant {tenant}`; mapping {mapping}."
  rollback: "cadastre rollback connection {connection} --tenant {tenant} --to previous"
- name: at_once
  detector: other
  for: 0
  clear_for: 0
  severity: info
  owner: data-mapping
  summary: "{connection} at once"
  runbook: "nothing"
- name: webhook_delivery_dead
  detector: event
  clear_for: 600
  severity: warning
  owner: platform-oncall
"""


@dataclass
class World:
    store: FakeStore
    clock: FakeClock
    switch: Switch
    other: Switch
    evaluator: AlertEvaluator

    async def step(self, seconds: float = EVERY, tenant: str = A) -> list[Alert]:
        self.clock.advance(seconds)
        return await self.evaluator.evaluate(tenant)

    async def events(self, tenant: str = A) -> list[EventEnvelope]:
        async with self.store.unit_of_work(tenant, read_only=True) as uow:
            pending = await uow.outbox.pending(limit=1000)
        return [m.event for m in pending if m.event.type in (RAISED, RESOLVED)]

    async def alerts(self, tenant: str = A) -> list[Alert]:
        async with self.store.unit_of_work(tenant, read_only=True) as uow:
            return (await uow.alerts.history())[::-1]  # oldest first


def detectors(switch: Switch, other: Switch) -> dict[str, Any]:
    return {"switch": switch, "other": other, "event": DETECTORS["event"]}


@pytest.fixture
async def world() -> World:
    clock = FakeClock()
    store = FakeStore(clock)
    switch, other = Switch(), Switch(name="other")
    found = detectors(switch, other)
    rules = parse_rules(RULES, detectors=found)
    evaluator = AlertEvaluator(store, clock, rules, found, mapping_of=lambda c: f"{c.name}-map")
    for tenant in (A, B):
        await store.create_tenant(tenant, tenant)
    async with store.unit_of_work(A) as uow:
        connection = Connection(A, "mls-1", "mls", "mls/reso", {}, None,
                                ConnectionStatus.ACTIVE, 1, EPOCH)  # fmt: skip
        await uow.connections.save(connection, changed_by="test", change="added")
        await uow.commit()
    return World(store, clock, switch, other, evaluator)


async def test_fires_after_for_and_not_before(world: World) -> None:
    world.switch.on()
    made = await world.step(0)
    assert [(a.state, a.raised_at) for a in made] == [(AlertState.PENDING, None)]
    assert await world.step() == []  # 30 s: still pending
    assert [a.state for a in await world.alerts()] == [AlertState.PENDING]
    assert await world.events() == []
    fired = await world.step()  # 60 s held: fires
    assert [(a.state, a.raised_at) for a in fired] == [(AlertState.FIRING, world.clock.now())]
    assert fired[0].since == EPOCH
    assert fired[0].id == made[0].id
    assert [e.type for e in await world.events()] == [RAISED]
    assert await world.step() == []  # firing stays firing, no second event
    assert [e.type for e in await world.events()] == [RAISED]


async def test_clears_after_clear_for_and_not_before(world: World) -> None:
    world.switch.on()
    await world.step(0)
    await world.step(60)
    world.switch.off()
    last_seen = world.clock.now()
    for _ in range(3):  # 30, 60, 90 s clear: still firing
        assert await world.step() == []
    assert [a.state for a in await world.alerts()] == [AlertState.FIRING]
    resolved = await world.step()  # 120 s clear
    assert [(a.state, a.resolved_at) for a in resolved] == [
        (AlertState.RESOLVED, last_seen + timedelta(seconds=120))
    ]
    events = await world.events()
    assert [e.type for e in events] == [RAISED, RESOLVED]
    assert events[1].data["resolved_by"] == "observe"
    assert events[1].data["alert_id"] == events[0].data["alert_id"] == resolved[0].id
    assert await world.step() == []  # nothing more to say


async def test_flapping_inside_clear_for_stays_one_alert(world: World) -> None:
    world.switch.on()
    await world.step(0)
    await world.step(60)  # firing
    for _ in range(4):  # clear 90 s, back, clear 90 s, back: never clear for 120 s
        world.switch.off()
        for _ in range(3):
            await world.step()
        world.switch.on()
        await world.step()
    alerts = await world.alerts()
    assert [(a.state, a.occurrences) for a in alerts] == [(AlertState.FIRING, 1)]
    assert [e.type for e in await world.events()] == [RAISED]
    world.switch.off()
    for _ in range(4):
        await world.step()
    # a new episode later is a new alert, with its own raise and resolution
    world.switch.on()
    await world.step()
    await world.step(60)
    world.switch.off()
    for _ in range(4):
        await world.step()
    alerts = await world.alerts()
    assert [a.state for a in alerts] == [AlertState.RESOLVED, AlertState.RESOLVED]
    assert alerts[0].id != alerts[1].id
    events = await world.events()
    assert [e.type for e in events] == [RAISED, RESOLVED, RAISED, RESOLVED]
    assert [e.data["alert_id"] for e in events] == [alerts[0].id] * 2 + [alerts[1].id] * 2


async def test_a_pending_alert_that_clears_is_dropped_without_a_word(world: World) -> None:
    world.switch.on()
    await world.step(0)
    world.switch.off()
    dropped = await world.step()
    assert [(a.state, a.raised_at) for a in dropped] == [(AlertState.RESOLVED, None)]
    assert await world.events() == []
    world.switch.on()  # back: a new pending alert, whose for starts again
    await world.step()
    assert await world.step() == []
    assert [a.state for a in await world.step()] == [AlertState.FIRING]


async def test_for_zero_and_a_condition_that_began_long_ago_fire_at_once(world: World) -> None:
    world.other.on("pms-1")
    world.switch.on(started=EPOCH - timedelta(seconds=600))  # the data shows it began earlier
    made = await world.step(0)
    assert sorted((a.rule, a.state) for a in made) == [
        ("at_once", AlertState.FIRING), ("vendor_error_rate", AlertState.FIRING)]  # fmt: skip
    fired = next(a for a in made if a.rule == "vendor_error_rate")
    assert fired.since == EPOCH - timedelta(seconds=600)
    world.other.off("pms-1")  # clear_for 0: resolved at the next evaluation
    assert [(a.rule, a.state) for a in await world.step()] == [
        ("at_once", AlertState.RESOLVED)]  # fmt: skip


async def test_the_alert_says_which_vendor_what_changed_since_when_and_what_to_do(
    world: World,
) -> None:
    world.switch.on()
    await world.step(0)
    (fired,) = await world.step(60)
    (event,) = await world.events()
    assert event.source == SOURCE
    assert event.subject == "mls-1"
    rollback = "cadastre rollback connection mls-1 --tenant acme --to previous"
    assert event.data == {
        "alert": "vendor_error_rate", "alert_id": fired.id, "key": "mls-1",
        "severity": "critical", "owner": "integrations-oncall", "vendor": "reso@mls.example",
        "connection": "mls-1", "summary": "reso@mls.example (mls-1): error rate spike",
        "changed": "error rate 62% (31 of 50 calls) over 5 min", "since": EPOCH.isoformat(),
        "action": f"Look at `cadastre alerts show {fired.id} --tenant acme`; mapping "
        f"mls-1-map. Rollback: `{rollback}`",
        "rollback": rollback, "facts": {"failed": 31, "calls": 50}, "occurrences": 1,
        "raised_at": fired.raised_at.isoformat() if fired.raised_at else None,
    }  # fmt: skip
    assert from_json(to_json(event)) == event  # valid CloudEvents of the catalogue
    # the detectors were handed the tenant's connections
    assert [c.name for c in world.switch.seen[-1].connections] == ["mls-1"]


async def test_a_failing_detector_leaves_its_alerts_alone(world: World) -> None:
    world.switch.on()
    world.other.on("pms-1")
    await world.step(0)
    await world.step(60)
    world.switch.broken = True
    world.other.off("pms-1")
    for _ in range(6):
        await world.step()
    states = {a.rule: a.state for a in await world.alerts()}
    # the broken one keeps firing (nothing is known), the other rule went on working
    assert states == {"vendor_error_rate": AlertState.FIRING, "at_once": AlertState.RESOLVED}


async def test_an_alert_whose_rule_left_the_file_resolves(world: World) -> None:
    world.switch.on()
    await world.step(0)
    await world.step(60)
    found = detectors(world.switch, world.other)
    others = parse_rules(RULES.split("- name: at_once")[0].replace("vendor_error_rate",
                                                                   "renamed"),
                         detectors=found)  # fmt: skip
    world.evaluator = AlertEvaluator(world.store, world.clock, others, found)
    made = await world.step()
    assert sorted((a.rule, a.state) for a in made) == [
        ("renamed", AlertState.PENDING), ("vendor_error_rate", AlertState.RESOLVED)]  # fmt: skip
    assert [e.type for e in await world.events()] == [RAISED, RESOLVED]


async def test_tenants_are_evaluated_apart(world: World) -> None:
    world.switch.on()
    await world.step(0)
    await world.step(60)
    assert await world.alerts(B) == []
    assert [a.state for a in await world.step(0, tenant=B)] == [AlertState.PENDING]
    assert [a.tenant for a in await world.alerts(B)] == [B]
    assert await world.events(B) == []


async def test_a_resolution_is_a_cloudevent_of_the_catalogue(world: World) -> None:
    from cloudevents.core.formats.json import JSONFormat

    from cadastre.contract.events import CATALOGUE

    assert {RAISED, RESOLVED} <= CATALOGUE.keys()
    world.switch.on()
    await world.step(0)
    await world.step(60)
    world.switch.off()
    await world.step(120)
    raised, resolved = await world.events()
    read = JSONFormat().read(None, to_json(resolved))
    assert (read.get_type(), read.get_source(), read.get_subject()) == (
        RESOLVED, SOURCE, "mls-1")  # fmt: skip
    data = read.get_data()
    assert isinstance(data, dict)
    assert data["alert_id"] == raised.data["alert_id"]
    assert data["resolved_at"] == world.clock.now().isoformat()
