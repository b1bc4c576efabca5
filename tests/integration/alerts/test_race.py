"""Two evaluators racing over one tenant (the hub runs one per tenant under its lock, but a lock
can be lost: a lease runs out, a network splits) make one alert, one raised event and one
resolved event, on every store. Both read the store before either writes (a barrier), so each
transition is raced for real: on PostgreSQL the loser waits on the row lock or the unique index."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cadastre.observe.alerts import RAISED, RESOLVED, AlertEvaluator
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import parse_rules
from cadastre.ports import AlertState, Store
from cadastre.store import PostgresStore, SqliteStore
from cadastre.testing import FakeClock, FakeStore
from tests.integration.vault.conftest import fresh_postgres
from tests.unit.observe.test_alerts import Switch

A = "acme"
RULES = """
- name: vendor_error_rate
  detector: switch
  for: 60
  clear_for: 120
  severity: critical
  owner: integrations-oncall
  summary: "{connection}: error rate spike"
  runbook: "look"
"""


class Racing(AlertEvaluator):
    """An evaluator that waits, after reading, until its rival has read too."""

    barrier: asyncio.Barrier

    async def _read(self, tenant: str, now: datetime) -> Any:
        found = await super()._read(tenant, now)
        await self.barrier.wait()
        return found


@asynccontextmanager
async def opened(kind: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "fake":
        yield FakeStore(clock)
        return
    if kind == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(tmp_path / "cadastre.db", clock)
        await store.migrate()
        try:
            yield store
        finally:
            await store.close()
        return
    with fresh_postgres() as url:
        store = PostgresStore(url, clock)
        await store.migrate()
        try:
            yield store
        finally:
            await store.close()


@pytest.mark.parametrize(
    "kind", ["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_two_evaluators_racing_make_one_alert(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    switch = Switch()
    found = {"switch": switch, "event": DETECTORS["event"]}
    rules = parse_rules(RULES, detectors=found)
    async with opened(kind, clock, tmp_path) as store:
        evaluators = [Racing(store, clock, rules, found) for _ in range(2)]

        async def race() -> list[Any]:
            barrier = asyncio.Barrier(2)
            for evaluator in evaluators:
                evaluator.barrier = barrier
            made = await asyncio.gather(*(e.evaluate(A) for e in evaluators))
            return [a for alerts in made for a in alerts]

        switch.on()
        assert [a.state for a in await race()] == [AlertState.PENDING]  # one of the two made it
        clock.advance(60)
        assert [a.state for a in await race()] == [AlertState.FIRING]
        switch.off()
        clock.advance(120)
        assert [a.state for a in await race()] == [AlertState.RESOLVED]
        async with store.unit_of_work(A, read_only=True) as uow:
            alerts = await uow.alerts.history()
            events = [m.event for m in await uow.outbox.pending(limit=100)]
        assert [(a.state, a.occurrences) for a in alerts] == [(AlertState.RESOLVED, 1)]
        assert [e.type for e in events] == [RAISED, RESOLVED]
