"""``AlertEvaluator``: the rules' detectors run over a tenant's recent data, and each finding
held to its rule's ``for`` and ``clear_for`` (docs/alerts.md).

Per (rule, finding key), on every evaluation::

    absent   --found-->                     PENDING (since = finding.started or now)
    absent   --found, for 0 or held long--> FIRING   + cadastre.alert.raised.v1
    PENDING  --found, for seconds since-->  FIRING   + cadastre.alert.raised.v1
    PENDING  --not found-->                 RESOLVED (dropped: nobody was told, no event)
    FIRING   --not found for clear_for-->   RESOLVED + cadastre.alert.resolved.v1
    FIRING   --found-->                     FIRING   (last_seen_at, changed, facts refreshed)

A condition that comes back inside ``clear_for`` (flapping) keeps its one alert: only
``last_seen_at`` moves. Subsystem alerts (folded by ``AlertConsumer``) whose rule is an ``event``
rule resolve once ``clear_for`` passes without a repeat; one a detector rule absorbs is that
rule's alert and clears as its detector's do; a detector alert whose rule left the rules file
resolves at the next evaluation.

Each transition is one unit of work: the alert row and its event commit together, after a re-read
of the alert under ``current(for_update=True)``, so two evaluators racing (the hub runs one per
tenant under its ``LockBackend``, but a lock can be lost) make one alert and one event: the loser
finds the row changed, or the store's unique index refuses its second row. The refreshes of
alerts still found share one unit of work per evaluation.

The evaluator reads the store once per evaluation into a ``DetectorInput`` (rollups over the
longest span any rule needs, connections, credentials, drift events) and runs every rule's
detector on it; a detector that raises is logged and its alerts left as they are.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cadastre.contract.events import EventEnvelope
from cadastre.errors import AlreadyExists
from cadastre.observe.detection import ConnectionInfo, CredentialInfo, DetectorInput
from cadastre.observe.rules import render
from cadastre.ports import Alert, AlertState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from cadastre.observe.detection import Detector, Finding
    from cadastre.observe.rules import AlertRules, Rule
    from cadastre.ports import Clock, Connection, MinuteRollup, Store, UnitOfWork

log = logging.getLogger(__name__)

SOURCE = "/cadastre/observe"
RAISED = "cadastre.alert.raised.v1"
RESOLVED = "cadastre.alert.resolved.v1"
DRIFT = "cadastre.schema.drifted.v1"
MAX_DRIFT_EVENTS = 1000  # drift events read per evaluation (a storm of them says it already)
_SYSTEM = "observe"  # who resolves an alert whose condition cleared
Known = dict[str, dict[str, str | None]]  # connection -> {"mapping": ..., "credential": ...}


def new_alert_id() -> str:
    return f"al_{secrets.token_hex(10)}"


def alert_event(alert: Alert, at: datetime, *, resolved_by: str | None = None) -> EventEnvelope:
    """``cadastre.alert.raised.v1`` of a firing alert, or ``cadastre.alert.resolved.v1`` of a
    resolved one (``resolved_by``: "observe" or the person)."""
    data: dict[str, Any] = {
        "alert": alert.rule, "alert_id": alert.id, "key": alert.key,
        "severity": alert.severity, "owner": alert.owner, "vendor": alert.vendor,
        "connection": alert.connection, "summary": alert.summary, "changed": alert.changed,
        "since": alert.since.isoformat(), "action": alert.action, "rollback": alert.rollback,
        "facts": dict(alert.facts), "occurrences": alert.occurrences,
        "raised_at": alert.raised_at.isoformat() if alert.raised_at else None,
    }  # fmt: skip
    if resolved_by is not None:
        data["resolved_at"] = (alert.resolved_at or at).isoformat()
        data["resolved_by"] = resolved_by
        data["source"] = alert.source  # a subsystem alert's, when it is one
    return EventEnvelope(
        source=SOURCE, type=RESOLVED if resolved_by is not None else RAISED, subject=alert.key,
        time=at, tenant=alert.tenant, data=data,
    )  # fmt: skip


async def transition(
    uow: UnitOfWork, alert: Alert, *, expected: Alert | None, event: EventEnvelope | None
) -> bool:
    """Write ``alert`` (and ``event``) if the alert of its (rule, key) is still ``expected``
    (None: there is none); False, nothing written, when another writer got there first. The
    caller commits."""
    held = await uow.alerts.current(alert.rule, alert.key, for_update=True)
    if expected is None and held is not None:
        return False
    if expected is not None and (
        held is None or (held.id, held.state) != (expected.id, expected.state)
    ):
        return False
    try:
        await uow.alerts.put(alert)
    except AlreadyExists:  # another evaluator's row went in meanwhile
        return False
    if event is not None:
        await uow.outbox.add(event)
    return True


class AlertEvaluator:
    def __init__(
        self, store: Store, clock: Clock, rules: AlertRules, detectors: Mapping[str, Detector],
        *, mapping_of: Callable[[Connection], str | None] | None = None,
    ) -> None:  # fmt: skip
        """``mapping_of`` names a connection's mapping (the ``{mapping}`` of runbooks and
        rollback commands); the hub gives it, from the connector."""
        self._store = store
        self._clock = clock
        self.rules = rules
        self._detectors = detectors
        self._mapping_of = mapping_of

    async def evaluate(self, tenant: str) -> list[Alert]:
        """One evaluation of every rule for ``tenant``: the transitions made (alerts as they
        are now), in the order made."""
        now = self._clock.now()
        data, held, known = await self._read(tenant, now)
        made: list[Alert] = []
        refreshed: list[tuple[Alert, Alert]] = []  # (as read, as refreshed)
        failed: set[str] = set()
        for rule in self.rules.detecting:
            findings = self._find(rule, data)
            if findings is None:
                failed.add(rule.name)
                continue
            for key, finding in findings.items():
                current = held.pop((rule.name, key), None)
                fresh = self._shaped(rule, finding, current, tenant, now, known)
                if current is None:
                    started = finding.started or now
                    fire = (now - started).total_seconds() >= rule.for_
                    if fire:
                        fresh = replace(fresh, state=AlertState.FIRING, raised_at=now)
                    event = alert_event(fresh, now) if fire else None
                    if await self._write(fresh, None, event):
                        made.append(fresh)
                elif current.state is AlertState.PENDING and (
                    (now - current.since).total_seconds() >= rule.for_
                ):
                    fired = replace(fresh, state=AlertState.FIRING, raised_at=now)
                    if await self._write(fired, current, alert_event(fired, now)):
                        made.append(fired)
                else:
                    refreshed.append((current, fresh))
        for (name, _), current in held.items():
            if name in failed:
                continue  # its detector failed this time: nothing is known of it
            ended = self._ended(current, now)
            if ended is None:
                continue
            event = alert_event(ended, now, resolved_by=_SYSTEM) if current.raised_at else None
            if await self._write(ended, current, event):
                made.append(ended)
        if refreshed:
            await self._refresh(tenant, refreshed)
        return made

    # -- one evaluation's parts ------------------------------------------------------

    async def _read(
        self, tenant: str, now: datetime
    ) -> tuple[DetectorInput, dict[tuple[str, str], Alert], Known]:
        span = max(
            (self._detectors[r.detector].span(r.params) for r in self.rules.detecting
             if r.detector in self._detectors),
            default=0.0,
        )  # fmt: skip
        since = now - timedelta(seconds=span)
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            rollups = await uow.observations.window(since=since) if span else []
            connections = await uow.connections.all()
            stored = await uow.credentials.all()
            drift = await uow.outbox.recent([DRIFT], since=since, limit=MAX_DRIFT_EVENTS)
            open_alerts = await uow.alerts.open()
        users: dict[str, list[str]] = {}
        for c in connections:
            if c.credential:
                users.setdefault(c.credential, []).append(c.name)
        data = DetectorInput(
            tenant=tenant, now=now, rollups=rollups,
            connections=[
                ConnectionInfo(c.name, c.connector, _vendor(c.name, c.connector, rollups),
                               c.status.value)
                for c in connections
            ],
            credentials=[CredentialInfo.of(s, users.get(s.name, ())) for s in stored],
            drift=drift,
        )  # fmt: skip
        held = {(a.rule, a.key): a for a in open_alerts}
        # what runbooks name of a connection: its mapping and its credential
        known = {c.name: {"mapping": self._mapping(c), "credential": c.credential}
                 for c in connections}  # fmt: skip
        return data, held, known

    def _mapping(self, connection: Connection) -> str | None:
        if self._mapping_of is None:
            return None
        try:
            return self._mapping_of(connection)
        except Exception:  # noqa: BLE001 - a connector that cannot say leaves "<mapping>"
            return None

    def _find(self, rule: Rule, data: DetectorInput) -> dict[str, Finding] | None:
        detector = self._detectors.get(rule.detector)
        if detector is None:  # the rules were loaded against another registry
            log.error("alert rule %r names unknown detector %r", rule.name, rule.detector)
            return None
        try:
            findings = detector.find(data, rule.params)
        except Exception:  # a detector's bug must not stop the other rules
            log.exception("alert rule %r: detector %r failed", rule.name, rule.detector)
            return None
        by_key: dict[str, Finding] = {}
        for finding in findings:
            by_key.setdefault(finding.key, finding)
        return by_key

    def _shaped(
        self, rule: Rule, finding: Finding, current: Alert | None, tenant: str, now: datetime,
        known: Known,
    ) -> Alert:  # fmt: skip
        """The alert ``finding`` makes of ``rule``: ``current`` refreshed, or a new pending one."""
        id = current.id if current is not None else new_alert_id()
        facts = finding.facts
        about = known.get(finding.connection or "", {})
        values = {
            "tenant": tenant, "id": id, "rule": rule.name, "key": finding.key,
            "severity": rule.severity, "owner": rule.owner, "connection": finding.connection,
            "vendor": finding.vendor,
            "credential": _text(facts.get("credential")) or about.get("credential"),
            "stream": _text(facts.get("stream")), "subscription": _text(facts.get("subscription")),
            "mapping": about.get("mapping"),
        }  # fmt: skip
        rollback = render(rule.rollback, values) if rule.rollback else None
        action = render(rule.runbook, values)
        if rollback:
            action = f"{action} Rollback: `{rollback}`"
        if current is None:
            return Alert(
                id=id, tenant=tenant, rule=rule.name, key=finding.key, state=AlertState.PENDING,
                severity=rule.severity, owner=rule.owner, vendor=finding.vendor,
                connection=finding.connection, summary=render(rule.summary, values),
                changed=finding.changed, since=finding.started or now, action=action,
                rollback=rollback, facts=dict(facts), occurrences=1, raised_at=None,
                last_seen_at=now, resolved_at=None, source=SOURCE,
            )  # fmt: skip
        return replace(
            current, severity=rule.severity, owner=rule.owner,
            vendor=finding.vendor or current.vendor,
            connection=finding.connection or current.connection,
            summary=render(rule.summary, values), changed=finding.changed, action=action,
            rollback=rollback, facts=dict(facts), last_seen_at=now,
        )  # fmt: skip

    def _ended(self, current: Alert, now: datetime) -> Alert | None:
        """``current`` resolved, when what was not found this time ends it; else None."""
        rule = self.rules.get(current.rule)
        resolved = replace(current, state=AlertState.RESOLVED, resolved_at=now)
        quiet = (now - current.last_seen_at).total_seconds()
        if rule is None and (absorbing := self.rules.absorbing(current.rule)) is not None:
            # folded before a rule absorbed its name: that rule's alert says it now
            return resolved if quiet >= absorbing.clear_for else None
        if current.source != SOURCE and (rule is None or rule.is_event):
            # a subsystem alert: only an event rule's clear_for ends it (one a detector rule
            # absorbed is that rule's, below)
            return (
                resolved if rule is not None and rule.is_event and quiet >= rule.clear_for else None
            )
        if rule is None or rule.is_event:  # its rule left the file: nothing will clear it
            return resolved
        if current.state is AlertState.PENDING:  # dropped: it never fired
            return resolved
        return resolved if quiet >= rule.clear_for else None

    async def _write(
        self, alert: Alert, expected: Alert | None, event: EventEnvelope | None
    ) -> bool:
        async with self._store.unit_of_work(alert.tenant) as uow:
            if not await transition(uow, alert, expected=expected, event=event):
                return False
            await uow.commit()
        return True

    async def _refresh(self, tenant: str, refreshed: Sequence[tuple[Alert, Alert]]) -> None:
        async with self._store.unit_of_work(tenant) as uow:
            for current, fresh in refreshed:
                await transition(uow, fresh, expected=current, event=None)
            await uow.commit()


def _vendor(connection: str, connector: str, rollups: Sequence[MinuteRollup]) -> str:
    """The vendor a connection's calls were last recorded against (the gateway's
    ``vendor@host``), else its connector."""
    for rollup in reversed(rollups):
        if rollup.connection == connection and rollup.vendor:
            return rollup.vendor
    return connector


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
