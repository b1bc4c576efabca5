"""``AlertService`` (``hub.alerts``): list, show and resolve a tenant's alerts, evaluate its rules;
``AlertWorker``, which evaluates every tenant every ``CADASTRE_ALERT_EVAL_SECONDS``; and
``AlertConsumer``, the bus consumer ``alerts`` that folds subsystem alerts into the table.

Every writer of a tenant's alerts holds the lock ``alerts:<tenant>`` of the hub's
``LockBackend``: an evaluation takes it without waiting (a worker that cannot is not needed - the
one holding it is evaluating that tenant), a fold or a person's resolution waits for it. So one
evaluator runs per tenant across workers, and a resolution never crosses an evaluation; the
store's unique index and the evaluator's re-read under ``for_update`` stand behind the lock.

**Folding.** Subsystems (the vault, the webhook sender, write-back, sync) raise
``cadastre.alert.raised.v1`` with their own source and ``data.alert``, ``severity``,
``summary``, ``action``. The consumer makes each an alert (rule ``data.alert``, key the event's
subject), firing at once; a repeat of one not resolved adds an occurrence and refreshes it, never
a second row. Events are de-duplicated by id (``uow.consumed``) in the unit of work of the fold.
Such alerts resolve by a person (``resolve``), or after the ``clear_for`` of an ``event`` rule of
their name without a repeat (the evaluator).

**Absorbing.** Some subsystem alerts report what a detector finds too: the vault raises
``credential_needs_reauth`` when it marks a credential, and the ``credential_reauth`` detector
finds that credential at the next evaluation. A detector rule that ``absorbs`` the name takes the
event into its own alert, keyed by the event's subject (the key its detector gives the finding):
the one not resolved gains an occurrence (a pending one fires: the subsystem saw it happen), or a
firing one is made, in the rule's words, severity and owner. The evaluator then finds that
(rule, key) alert and keeps it - one problem, one alert - and clears it as any detector alert,
``clear_for`` after its detector stops finding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self

from cadastre.errors import CadastreError, LockTimeout, NotFound
from cadastre.observe.alerts import RAISED, SOURCE, alert_event, new_alert_id, transition
from cadastre.observe.rules import render
from cadastre.ports import Alert, AlertState

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence
    from types import TracebackType

    from cadastre.contract.events import EventEnvelope
    from cadastre.observe.alerts import AlertEvaluator
    from cadastre.observe.rules import AlertRules, Rule
    from cadastre.ports import (
        BusMessage,
        BusSubscription,
        Clock,
        EventBus,
        LockBackend,
        Store,
        UnitOfWork,
    )

log = logging.getLogger(__name__)

CONSUMER = "alerts"
SUBJECTS = ("cadastre.*.alert.raised",)
LOCK_WAIT = 30.0  # seconds a fold or a resolution waits for an evaluation to end
LOCK_LEASE = 300.0
DEFAULT_OWNER = "operations"  # a subsystem alert no rule names
STATES = ("open", "all", "pending", "firing", "resolved")  # what ``list`` filters by
HISTORY_READ = 1000
_KEPT = ("alert", "severity", "summary", "action", "changed")  # not repeated in facts


def lock_key(tenant: str) -> str:
    return f"alerts:{tenant}"


class AlertService:
    def __init__(
        self, store: Store, clock: Clock, evaluator: AlertEvaluator, locks: LockBackend
    ) -> None:
        self._store = store
        self._clock = clock
        self.evaluator = evaluator
        self._locks = locks

    @property
    def rules(self) -> AlertRules:
        return self.evaluator.rules

    async def list(
        self, tenant: str, *, state: str = "open", connection: str | None = None,
        rule: str | None = None, limit: int = 100,
    ) -> list[Alert]:  # fmt: skip
        """``state`` "open" (pending and firing), "all", or one state; newest first."""
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
        await self._tenant(tenant)
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            if state in ("all", AlertState.RESOLVED):
                # resolved ones are most of the history: read a generous page of it
                wide = limit if state == "all" else max(limit, HISTORY_READ)
                found = await uow.alerts.history(rule=rule, connection=connection, limit=wide)
            else:
                found = await uow.alerts.open(connection=connection)
        found = [
            a for a in found
            if (rule is None or a.rule == rule) and state in ("all", "open", a.state)
        ]  # fmt: skip
        return found[:limit]

    async def get(self, tenant: str, id: str) -> Alert:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.alerts.get(id)
        if found is None:
            raise NotFound(f"alert {id!r} does not exist")
        return found

    async def resolve(self, tenant: str, id: str, *, actor: str) -> Alert:
        """Resolve an alert by hand (``cadastre.alert.resolved.v1``, audited). One resolved
        already is returned as it is."""
        held = self._locks.hold(lock_key(tenant), wait=LOCK_WAIT, lease=LOCK_LEASE)
        async with held, self._store.unit_of_work(tenant) as uow:
            found = await uow.alerts.get(id)
            if found is None:
                raise NotFound(f"alert {id!r} does not exist")
            if found.state is AlertState.RESOLVED:
                return found
            now = self._clock.now()
            resolved = replace(found, state=AlertState.RESOLVED, resolved_at=now)
            event = alert_event(resolved, now, resolved_by=actor)
            if not await transition(uow, resolved, expected=found, event=event):
                raise NotFound(f"alert {id!r} changed meanwhile; look at it again")
            await uow.audit.append(
                actor=actor, action="alert.resolved", entity="Alert", entity_id=id,
                detail={"rule": found.rule, "key": found.key, "was": found.state.value},
            )  # fmt: skip
            await uow.commit()
        return resolved

    async def evaluate(self, tenant: str) -> builtins.list[Alert]:
        """Evaluate ``tenant``'s rules now, unless another worker is doing so (then [])."""
        try:
            async with self._locks.hold(lock_key(tenant), wait=0.0, lease=LOCK_LEASE):
                return await self.evaluator.evaluate(tenant)
        except LockTimeout:
            return []

    async def evaluate_all(self) -> int:
        """One round over every tenant; how many transitions it made."""
        made = 0
        for tenant in await self._store.list_tenants():
            try:
                made += len(await self.evaluate(tenant.id))
            except CadastreError as exc:  # the store is away: the next round tries again
                log.warning("alert evaluation of tenant %r failed: %s", tenant.id, exc)
        return made

    def worker(self, every: float) -> AlertWorker:
        return AlertWorker(self, self._clock, every)

    def consumer(self, bus: EventBus) -> AlertConsumer:
        return AlertConsumer(bus, self._store, self._clock, self.rules, self._locks)

    async def _tenant(self, tenant: str) -> None:
        if await self._store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")


class AlertWorker:
    """``AlertService.evaluate_all`` every ``every`` seconds on the hub's clock (a worker of
    ``Hub.running``)."""

    def __init__(self, service: AlertService, clock: Clock, every: float) -> None:
        self._service = service
        self._clock = clock
        self._every = every
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._service.evaluate_all()
            except Exception:  # a bug must not stop the hub: logged, tried again next round
                log.exception("alert evaluation failed")
            await self._clock.sleep(self._every)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="alert evaluator")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class AlertConsumer:
    """The bus consumer ``alerts``: folds subsystem alerts into the alerts table."""

    def __init__(
        self, bus: EventBus, store: Store, clock: Clock, rules: AlertRules, locks: LockBackend
    ) -> None:
        self._bus = bus
        self._store = store
        self._clock = clock
        self._rules = rules
        self._locks = locks
        self._subscription: BusSubscription | None = None

    async def __aenter__(self) -> Self:
        self._subscription = await self._bus.subscribe(CONSUMER, self.handle, subjects=SUBJECTS)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def handle(self, messages: Sequence[BusMessage]) -> None:
        """One batch, a unit of work per tenant: folds and the consumer's marks commit
        together, so a batch delivered again folds nothing twice."""
        by_tenant: dict[str, list[EventEnvelope]] = defaultdict(list)
        for message in messages:
            by_tenant[message.event.tenant].append(message.event)
        for tenant, events in by_tenant.items():
            held = self._locks.hold(lock_key(tenant), wait=LOCK_WAIT, lease=LOCK_LEASE)
            async with held, self._store.unit_of_work(tenant) as uow:
                fresh = set(await uow.consumed.first_seen(CONSUMER, [e.id for e in events]))
                for event in events:
                    if event.id in fresh and event.type == RAISED and event.source != SOURCE:
                        await self.fold(uow, event)
                await uow.commit()

    async def fold(self, uow: UnitOfWork, event: EventEnvelope) -> Alert:
        """The alert ``event`` makes or repeats (written in ``uow``, not committed)."""
        data = event.data
        name = _text(data.get("alert")) or "subsystem_alert"
        key = event.subject or _text(data.get("connection")) or _text(data.get("credential")) or (
            "tenant")  # fmt: skip
        absorbing = self._rules.absorbing(name)
        if absorbing is not None:
            return await self._absorb(uow, event, absorbing, key)
        rule = self._rules.get(name)
        summary = _text(data.get("summary")) or f"{name} ({key})"
        facts = {k: v for k, v in data.items() if k not in _KEPT}
        current = await uow.alerts.current(name, key, for_update=True)
        if current is not None:
            repeated = replace(
                current, occurrences=current.occurrences + 1,
                last_seen_at=max(current.last_seen_at, event.time), summary=summary,
                changed=_text(data.get("changed")) or summary,
                action=_text(data.get("action")) or current.action, facts=facts,
            )  # fmt: skip
            await uow.alerts.put(repeated)
            return repeated
        alert = Alert(
            id=new_alert_id(), tenant=event.tenant, rule=name, key=key, state=AlertState.FIRING,
            severity=_severity(data.get("severity"), rule.severity if rule else "warning"),
            owner=rule.owner if rule else DEFAULT_OWNER, vendor=_text(data.get("vendor")),
            connection=_text(data.get("connection")), summary=summary,
            changed=_text(data.get("changed")) or summary, since=event.time,
            action=_text(data.get("action")) or (rule.runbook if rule else "")
            or "look at the alert's facts; resolve it once handled",
            rollback=None, facts=facts, occurrences=1, raised_at=event.time,
            last_seen_at=event.time, resolved_at=None, source=event.source,
        )  # fmt: skip
        await uow.alerts.put(alert)
        return alert

    async def _absorb(self, uow: UnitOfWork, event: EventEnvelope, rule: Rule, key: str) -> Alert:
        """``event`` folded into ``rule``'s alert of ``key`` (the rule absorbs its name)."""
        data = event.data
        # what was raised, beside the detector's facts (credential, connections)
        facts = {k: v for k, v in data.items() if k not in _KEPT}
        facts["absorbed"] = data.get("alert")
        current = await uow.alerts.current(rule.name, key, for_update=True)
        if current is not None:
            pending = current.state is AlertState.PENDING
            repeated = replace(
                current, occurrences=current.occurrences + 1,
                last_seen_at=max(current.last_seen_at, event.time),
                facts={**current.facts, **facts},
                state=AlertState.FIRING if pending else current.state,
                raised_at=event.time if pending else current.raised_at,
            )  # fmt: skip
            await uow.alerts.put(repeated)
            return repeated
        id = new_alert_id()
        values = {
            "tenant": event.tenant, "id": id, "rule": rule.name, "key": key,
            "severity": rule.severity, "owner": rule.owner,
            "connection": _text(data.get("connection")), "vendor": _text(data.get("vendor")),
            "credential": _text(data.get("credential")), "stream": _text(data.get("stream")),
            "subscription": _text(data.get("subscription")),
        }  # fmt: skip
        rollback = render(rule.rollback, values) if rule.rollback else None
        action = render(rule.runbook, values)
        if rollback:
            action = f"{action} Rollback: `{rollback}`"
        summary = render(rule.summary, values)
        alert = Alert(
            id=id, tenant=event.tenant, rule=rule.name, key=key, state=AlertState.FIRING,
            severity=rule.severity, owner=rule.owner, vendor=values["vendor"],
            connection=values["connection"], summary=summary,
            changed=_text(data.get("changed")) or _text(data.get("summary")) or summary,
            since=event.time, action=action, rollback=rollback, facts=facts, occurrences=1,
            raised_at=event.time, last_seen_at=event.time, resolved_at=None,
            source=event.source,
        )  # fmt: skip
        await uow.alerts.put(alert)
        return alert


def _severity(value: Any, default: str) -> str:
    return value if value in ("info", "warning", "critical") else default


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
