"""What the detector integration tests share (issue 9 item 7): a hub on SQLite and vendor
simulators on one fake clock, and a ``Timeline`` that moves that clock in evaluation intervals,
running the test's traffic, the sampler and the alert evaluator at each, as ``cadastre serve``
does in the background (the test takes every step itself, so a run is deterministic).

Each test forces a detector's condition with a simulator's fault profile, then checks that the
alert fires within its window and clears after recovery, with these bounds:

- nothing fires while the vendor behaves;
- the alert fires within ``for`` + one evaluation interval of the evaluation that first found
  the condition, and never before ``for`` has passed since the minute the data shows it began;
- it resolves (``cadastre.alert.resolved.v1``) within ``clear_for`` + one interval of the last
  evaluation that found the condition, and that one comes at most the rule's window (plus the
  minute the window's edge falls in) after the fault ends: the window must first forget it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cadastre.bootstrap import Hub
from cadastre.contract.events import EventEnvelope
from cadastre.errors import CadastreError
from cadastre.observe.rules import default_rules_text
from cadastre.ports import Alert, AlertState
from cadastre.simulators import ResoSimulator, serve
from cadastre.testing import FakeClock
from tests.integration.mls_hub import TENANT, connect_reso, open_hub

INTERVAL = 30.0  # CADASTRE_ALERT_EVAL_SECONDS' default
MLS = "test-mls"  # the RESO connection
ODATA = ("/odata",)  # fault the MLS's data, never its token endpoint
RAISED, RESOLVED = "cadastre.alert.raised.v1", "cadastre.alert.resolved.v1"
MINUTE = 60.0

Traffic = Callable[[], Awaitable[Any]]


def shipped(name: str, **changes: Any) -> dict[str, Any]:
    """Rule ``name`` of the packaged default rules file, with ``changes`` (``params`` merged):
    the shipped summary, runbook and rollback at a test's shorter windows (``for_`` for
    ``for``), so a test takes minutes of fake time rather than hours."""
    rules = yaml.safe_load(default_rules_text())
    rule = dict(next(r for r in rules if r["name"] == name))
    params = {**rule.get("params", {}), **changes.pop("params", {})}
    if "for_" in changes:
        changes["for"] = changes.pop("for_")
    return {**rule, **changes, **({"params": params} if params else {})}


def rules_file(folder: Path, *rules: dict[str, Any]) -> Path:
    """A rules file of the test's own (``CADASTRE_ALERT_RULES`` replaces the default whole)."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(list(rules), sort_keys=False))
    return path


@asynccontextmanager
async def alerting_hub(
    tmp_path: Path, clock: FakeClock, *rules: dict[str, Any], **settings: Any
) -> AsyncIterator[Hub]:
    """A hub (``mls_hub.open_hub``) with ``rules`` instead of the default rules, when given."""
    if rules:
        settings["alert_rules"] = rules_file(tmp_path, *rules)
    async with open_hub(tmp_path, clock, **settings) as hub:
        yield hub


class Syncs:
    """The hub's traffic with the RESO simulator: agents edit a few listings and the hub syncs
    them every ``every`` intervals (once a minute by default). A sync the failing vendor stops
    is counted, not raised: that is the point."""

    def __init__(self, hub: Hub, sim: ResoSimulator, *, touch: int = 2, every: int = 2) -> None:
        self.hub, self.sim, self.touch, self.every = hub, sim, touch, every
        self.ran = self.failed = 0
        self.fetched: list[int] = []  # records each sync read

    async def __call__(self) -> None:
        self.ran += 1
        if self.ran % self.every:
            return
        self.sim.touch(count=self.touch)
        try:
            report = await self.hub.sync(TENANT, MLS)
        except CadastreError:
            self.failed += 1
        else:
            self.fetched.append(report.tally.fetched)


class Reads:
    """Cheaper traffic for the detectors that only watch calls: every interval the connection's
    own connector (its gateway, so every attempt is metered into ``hub.observations``) reads
    the whole Property stream, page by page, without applying it - the vendor calls of a full
    sync without the mapping and storing that cost a test most of its time. ``read`` holds how
    many records each read got."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.read: list[int] = []
        self.failed = 0

    async def __call__(self) -> None:
        source = await self.hub.open_source(TENANT, MLS)  # kept open between calls by the hub
        got = 0
        try:
            async for page in source.connector.read("Property", None):
                got += len(page.records)
        except CadastreError:  # the vendor failed past the retries: that is the point
            self.failed += 1
        else:
            self.read.append(got)


@asynccontextmanager
async def reso_world(
    tmp_path: Path, clock: FakeClock, sim: ResoSimulator, *rules: dict[str, Any],
    page_size: int = 2,
) -> AsyncIterator[Hub]:  # fmt: skip
    """A hub with ``rules`` and a RESO connection ``MLS`` to ``sim`` on loopback (small pages,
    so a read makes several calls)."""
    async with serve(sim.app) as running, alerting_hub(tmp_path, clock, *rules) as hub:
        await connect_reso(hub, MLS, running.url, page_size=page_size)
        yield hub


@dataclass
class Timeline:
    hub: Hub
    clock: FakeClock
    rule: str  # the rule under test
    interval: float = INTERVAL
    transitions: list[tuple[datetime, Alert]] = field(default_factory=list)
    found_at: list[datetime] = field(default_factory=list)  # evaluations that found the rule's
    _next: datetime | None = None

    async def tick(self, traffic: Traffic | None = None) -> list[Alert]:
        """One evaluation interval: the traffic (which may take fake time: latency, backoff),
        then, at the interval's end, the sampler's round and one evaluation."""
        if self._next is None:
            self._next = self.clock.now()
        self._next += timedelta(seconds=self.interval)
        if traffic is not None:
            await traffic()
        while self._next < self.clock.now():  # the traffic overran: the next tick due
            self._next += timedelta(seconds=self.interval)
        self.clock.set(self._next)
        await self.hub.sampler.sample(TENANT)
        await self.hub.sampler.flush()
        made = await self.hub.alerts.evaluate(TENANT)
        now = self.clock.now()
        self.transitions.extend((now, a) for a in made)
        mine = [a for a in await self.hub.alerts.list(TENANT) if a.rule == self.rule]
        if any(a.last_seen_at == now and a.state is not AlertState.RESOLVED for a in mine):
            self.found_at.append(now)
        return made

    async def skip_to(self, when: datetime) -> None:
        """Move the clock on to the last interval's end before ``when`` without evaluating: a
        stretch where nothing changes, which a test need not pay for tick by tick."""
        if self._next is None:
            self._next = self.clock.now()
        while self._next + timedelta(seconds=self.interval) < when:
            self._next += timedelta(seconds=self.interval)
        self.clock.set(self._next)

    async def run(
        self, seconds: float, traffic: Traffic | None = None,
        until: Callable[[Alert], bool] | None = None,
    ) -> datetime | None:  # fmt: skip
        """Ticks for ``seconds``, or until a transition of the rule satisfies ``until``: when."""
        end = self.clock.now() + timedelta(seconds=seconds)
        while self.clock.now() < end:
            for alert in await self.tick(traffic):
                if alert.rule == self.rule and until is not None and until(alert):
                    return self.clock.now()
        return None

    async def until_firing(self, seconds: float, traffic: Traffic | None = None) -> datetime:
        when = await self.run(seconds, traffic, lambda a: a.state is AlertState.FIRING)
        assert when is not None, f"{self.rule} did not fire within {seconds} s: {self.made()}"
        return when

    async def until_resolved(self, seconds: float, traffic: Traffic | None = None) -> datetime:
        when = await self.run(seconds, traffic, lambda a: a.state is AlertState.RESOLVED)
        assert when is not None, f"{self.rule} did not resolve within {seconds} s: {self.made()}"
        return when

    def check_one_alert(self) -> None:
        """One alert went pending (or straight to firing), fired once and resolved once: no
        flapping, no second alert for the same condition."""
        states = [a.state for a in self.made()]
        assert states in (
            [AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED],
            [AlertState.FIRING, AlertState.RESOLVED],
        ), states
        assert len({a.id for a in self.made()}) == 1

    def made(self, state: AlertState | None = None) -> list[Alert]:
        return [a for _, a in self.transitions
                if a.rule == self.rule and (state is None or a.state is state)]  # fmt: skip

    async def events(self, type: str) -> list[EventEnvelope]:
        """The rule's alert events of ``type`` in the outbox, oldest first."""
        since = self.clock.now() - timedelta(days=1)
        async with self.hub.store.unit_of_work(TENANT, read_only=True) as uow:
            found = await uow.outbox.recent([type], since=since, limit=1000)
        return sorted((e for e in found if e.data.get("alert") == self.rule), key=lambda e: e.time)

    async def check_fired(self, fired: datetime, *, for_: float) -> EventEnvelope:
        """The bounds on firing (module docstring); the one raised event."""
        (alert,) = self.made(AlertState.FIRING)
        first_found = self.found_at[0]
        assert fired - first_found <= timedelta(seconds=for_ + self.interval), (fired, first_found)
        assert fired - alert.since >= timedelta(seconds=for_), (fired, alert.since)
        (raised,) = await self.events(RAISED)
        assert raised.time == fired
        assert raised.source == "/cadastre/observe"
        return raised

    async def check_resolved(
        self, resolved: datetime, *, recovered: datetime, window: float, clear_for: float
    ) -> EventEnvelope:
        """The bounds on resolving (module docstring), from ``recovered`` (the fault's end);
        the one resolved event."""
        last_found = self.found_at[-1]
        assert last_found - recovered <= timedelta(seconds=window + MINUTE + self.interval), (
            last_found, recovered,
        )  # fmt: skip
        bound = timedelta(seconds=clear_for + self.interval)
        assert resolved - last_found <= bound, (resolved, last_found)
        assert resolved - last_found >= timedelta(seconds=clear_for), (resolved, last_found)
        (event,) = await self.events(RESOLVED)
        assert event.time == resolved
        return event


def assert_names_everything(
    event: EventEnvelope, *, vendor: str | None, connection: str | None, changed: list[str],
    rollback: str | None,
) -> None:  # fmt: skip
    """An alert says which vendor and connection, what changed, since when, and what to do
    (with the rollback command when the rule names one)."""
    data = event.data
    assert data["vendor"] == vendor
    assert data["connection"] == connection
    for part in changed:
        assert part in data["changed"], (part, data["changed"])
    assert datetime.fromisoformat(data["since"]) <= event.time
    assert data["action"]
    assert data["rollback"] == rollback
    if rollback:
        assert rollback in data["action"]
    assert data["summary"]
