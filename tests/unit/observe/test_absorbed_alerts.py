"""One refused token refresh is one alert: the vault's own ``credential_needs_reauth`` event and
the ``credential_reauth`` detector's finding of the same credential meet in the one alert of the
rule that ``absorbs`` the vault's name, whichever comes first, and that alert clears as the
detector's once the credential is connected again (docs/alerts.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from cadastre.contract.events import EventEnvelope
from cadastre.errors import CredentialNeedsReauth
from cadastre.observe.alert_service import AlertService
from cadastre.observe.alerts import RAISED, RESOLVED, SOURCE, AlertEvaluator
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import load_rules
from cadastre.ports import (
    Alert,
    AlertState,
    BusMessage,
    Connection,
    ConnectionStatus,
    CredentialStatus,
    EndpointReply,
)
from cadastre.testing import EPOCH, FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.vault import Defaults, MemoryLockBackend

A = "acme"
EVERY = 30  # seconds between evaluations, as the hub's default


class Refusing:
    """A token endpoint whose user revoked the app: every refresh is ``invalid_grant``."""

    async def send(
        self, method: str, url: str, *, form: Mapping[str, str] | None = None, json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> EndpointReply:  # fmt: skip
        body = orjson.dumps({"error": "invalid_grant"})
        return EndpointReply(400, {"content-type": "application/json"}, body)


@dataclass
class World:
    clock: FakeClock
    kit: VaultKit
    service: AlertService

    async def refuse_a_refresh(self) -> EventEnvelope:
        """The hub asks for a token; the vendor refuses the refresh; the vault marks the
        credential and raises its alert: that new event of the outbox."""
        seen = {e.id for e in await self.events(RAISED)}
        with pytest.raises(CredentialNeedsReauth):
            await self.kit.tokens.access_token(
                A, "crm-oauth", Refusing(), actor="test", defaults=Defaults("https://t.test/tok")
            )
        (raised,) = [e for e in await self.events(RAISED) if e.id not in seen]
        assert (raised.source, raised.subject) == ("/cadastre/vault", "crm-oauth")
        assert raised.data["alert"] == "credential_needs_reauth"
        return raised

    async def reconnect(self, refresh_token: str) -> None:
        stored = await self.kit.vault.stored(A, "crm-oauth")
        await self.kit.vault.update(stored, secrets={"refresh_token": refresh_token},
                                    status=CredentialStatus.ACTIVE, reason="")  # fmt: skip

    async def fold(self, *events: EventEnvelope) -> None:
        consumer = self.service.consumer(bus=None)  # type: ignore[arg-type]  # batches by hand
        await consumer.handle([BusMessage(e, f"cadastre.{A}.alert.raised", 1) for e in events])

    async def evaluate(self, seconds: float = EVERY) -> list[Alert]:
        self.clock.advance(seconds)
        return await self.service.evaluate(A)

    async def alerts(self) -> list[Alert]:
        """Every alert of the tenant, newest first."""
        async with self.kit.store.unit_of_work(A, read_only=True) as uow:
            return await uow.alerts.history()

    async def events(self, type: str) -> list[EventEnvelope]:
        async with self.kit.store.unit_of_work(A, read_only=True) as uow:
            return [m.event for m in await uow.outbox.pending(limit=1000) if m.event.type == type]


@pytest.fixture
async def world() -> World:
    clock = FakeClock()
    kit = VaultKit(clock)
    await kit.vault.add(
        A, "crm-oauth", "oauth2_authorization_code",
        {"client_id": "id", "client_secret": "s3cret-client-value", "refresh_token": "r0"},
    )  # fmt: skip
    async with kit.store.unit_of_work(A) as uow:
        crm = Connection(A, "crm", "crm", "crm/hubspot", {}, "crm-oauth", ConnectionStatus.ACTIVE,
                         1, EPOCH)  # fmt: skip
        await uow.connections.save(crm, changed_by="test", change="added")
        await uow.commit()
    rules = load_rules(None, detectors=DETECTORS)  # the packaged default
    evaluator = AlertEvaluator(kit.store, clock, rules, DETECTORS)
    return World(clock, kit, AlertService(kit.store, clock, evaluator, MemoryLockBackend()))


@pytest.mark.parametrize("first", ["the vault's event", "the detector"])
async def test_one_refused_refresh_is_one_alert_that_clears_once_reconnected(
    world: World, first: str
) -> None:
    raised = await world.refuse_a_refresh()
    if first == "the vault's event":
        await world.fold(raised)
        (alert,) = await world.alerts()
        assert alert.source == "/cadastre/vault"
        assert alert.state is AlertState.FIRING
        assert alert.raised_at == raised.time
        assert "invalid_grant" in alert.changed  # the vault's words: what it was refused
        assert alert.facts["absorbed"] == "credential_needs_reauth"
        assert await world.evaluate() == []  # the detector finds the credential: that alert
    else:
        made = await world.evaluate()  # for: 0, so it fires at once
        assert [(a.rule, a.state) for a in made] == [("credential_reauth", AlertState.FIRING)]
        await world.fold(raised)
        (alert,) = await world.alerts()
        assert alert.facts["absorbed"] == "credential_needs_reauth"  # beside the detector's
    (alert,) = await world.alerts()
    assert (alert.rule, alert.key, alert.state) == ("credential_reauth", "crm-oauth",
                                                    AlertState.FIRING)  # fmt: skip
    assert alert.occurrences == (2 if first == "the detector" else 1)
    assert (alert.severity, alert.owner) == ("critical", "integrations-oncall")
    assert alert.summary == "credential crm-oauth needs to be connected again"
    assert "cadastre credentials connect crm-oauth --tenant acme" in alert.action
    assert alert.facts["credential"] == "crm-oauth"
    # the detector's own raise only when it came first; else the vault's event announced it
    observed = [e for e in await world.events(RAISED) if e.source == SOURCE]
    assert len(observed) == (1 if first == "the detector" else 0)

    for _ in range(5):  # later evaluations, and the event delivered again: still the one alert
        assert await world.evaluate() == []
    await world.fold(raised)
    (still,) = await world.alerts()
    assert (still.id, still.state, still.occurrences) == (alert.id, AlertState.FIRING,
                                                          alert.occurrences)  # fmt: skip

    await world.reconnect("r-new")  # a person connects it again
    rule = world.service.rules.get("credential_reauth")
    assert rule is not None
    ended: list[Alert] = []
    for _ in range(int(rule.clear_for // EVERY) + 2):
        if ended := await world.evaluate():
            break
    assert [(a.id, a.state) for a in ended] == [(alert.id, AlertState.RESOLVED)]
    (done,) = await world.alerts()
    assert done.state is AlertState.RESOLVED
    (resolution,) = await world.events(RESOLVED)
    assert (resolution.data["alert_id"], resolution.data["resolved_by"]) == (alert.id, "observe")


async def test_a_refusal_after_the_resolution_is_a_new_alert(world: World) -> None:
    await world.fold(await world.refuse_a_refresh())
    await world.reconnect("r1")
    await world.evaluate(120)
    assert [a.state for a in await world.alerts()] == [AlertState.RESOLVED]
    world.clock.advance(3600)
    await world.fold(await world.refuse_a_refresh())
    newest, older = await world.alerts()
    assert (newest.rule, newest.key, newest.state) == ("credential_reauth", "crm-oauth",
                                                       AlertState.FIRING)  # fmt: skip
    assert (newest.occurrences, older.state) == (1, AlertState.RESOLVED)
    assert newest.id != older.id


async def test_a_pending_alert_fires_when_the_subsystem_reports_it(world: World) -> None:
    """With a ``for`` the detector's alert waits as pending; the vault's event says it
    happened: the alert fires then, still one."""
    rules = load_rules(None, detectors=DETECTORS)
    slow = tuple(
        r.model_copy(update={"for_": 600.0}) if r.name == "credential_reauth" else r
        for r in rules
    )  # fmt: skip
    world.service.evaluator.rules = type(rules)(slow, rules.source)
    world.service = AlertService(world.kit.store, world.clock, world.service.evaluator,
                                 MemoryLockBackend())  # fmt: skip
    raised = await world.refuse_a_refresh()
    (pending,) = await world.evaluate()
    assert pending.state is AlertState.PENDING
    await world.fold(raised)
    (alert,) = await world.alerts()
    assert (alert.id, alert.state, alert.raised_at) == (pending.id, AlertState.FIRING,
                                                        raised.time)  # fmt: skip


async def test_an_alert_folded_under_the_name_before_it_was_absorbed_resolves(
    world: World,
) -> None:
    """A deployment folded ``credential_needs_reauth`` alerts of their own before the rule
    absorbed the name: such a leftover resolves after the absorbing rule's ``clear_for``
    without a repeat (the rule's own alert says it now)."""
    leftover = Alert(
        id="al_old", tenant=A, rule="credential_needs_reauth", key="crm-oauth",
        state=AlertState.FIRING, severity="critical", owner="integrations-oncall", vendor=None,
        connection=None, summary="s", changed="c", since=EPOCH, action="a", rollback=None,
        facts={}, occurrences=1, raised_at=EPOCH, last_seen_at=EPOCH, resolved_at=None,
        source="/cadastre/vault",
    )  # fmt: skip
    async with world.kit.store.unit_of_work(A) as uow:
        await uow.alerts.put(leftover)
        await uow.commit()
    assert await world.evaluate(30) == []  # within clear_for (60 s) of its last sighting
    (ended,) = await world.evaluate(60)
    assert (ended.id, ended.state) == ("al_old", AlertState.RESOLVED)
