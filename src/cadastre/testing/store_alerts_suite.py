"""``AlertsStoreSuite``: the conformance tests of ``uow.alerts`` (issue 9) and of
``outbox.recent``: an alert round-trips and updates by id, a tenant has at most one alert not
resolved per (rule, key) - also when two writers race - open and history list newest first with
their filters, and tenants never see each other's.

Subclass it with a ``store`` fixture (empty at the start of each test) built on the ``clock``
fixture, as for ``StoreSuite``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.contract.events import EventEnvelope
from cadastre.errors import AlreadyExists
from cadastre.ports import (
    Alert,
    AlertState,
    Subscription,
    SubscriptionFormat,
    SubscriptionStatus,
)
from cadastre.testing.clock import EPOCH, FakeClock

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"


def alert(id: str, *, tenant: str = A, rule: str = "vendor_error_rate", key: str = "mls-1",
          state: AlertState = AlertState.PENDING, connection: str | None = "mls-1",
          **changes: Any) -> Alert:  # fmt: skip
    made = Alert(
        id=id, tenant=tenant, rule=rule, key=key, state=state, severity="critical",
        owner="integrations-oncall", vendor="reso@mls.example", connection=connection,
        summary="reso@mls.example (mls-1): error rate spike",
        changed="error rate 62% (31 of 50 calls) over 5 min", since=EPOCH,
        action="check the vendor's status page", rollback=None,
        facts={"failed": 31, "calls": 50, "rate": 0.62}, occurrences=1, raised_at=None,
        last_seen_at=EPOCH, resolved_at=None, source="/cadastre/observe",
    )  # fmt: skip
    return replace(made, **changes)


class AlertsStoreSuite:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    async def test_an_alert_round_trips_and_updates_by_id(self, store: Store) -> None:
        first = alert("al_1")
        async with store.unit_of_work(A) as uow:
            await uow.alerts.put(first)
            await uow.commit()
        fired = replace(
            first, state=AlertState.FIRING, raised_at=EPOCH + timedelta(seconds=60),
            last_seen_at=EPOCH + timedelta(seconds=60), occurrences=2,
            facts={"nested": {"rates": [0.5, 0.62]}}, rollback="cadastre rollback connection x",
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            assert await uow.alerts.get("al_1") == first
            await uow.alerts.put(fired)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.alerts.get("al_1") == fired
            assert await uow.alerts.current("vendor_error_rate", "mls-1") == fired
            assert await uow.alerts.current("vendor_error_rate", "mls-2") is None
            assert await uow.alerts.get("nope") is None
            assert [a.id for a in await uow.alerts.history()] == ["al_1"]
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.alerts.get("al_1") is None
            assert await uow.alerts.current("vendor_error_rate", "mls-1") is None
            assert await uow.alerts.open() == []
            assert await uow.alerts.history() == []

    async def test_one_alert_not_resolved_per_rule_and_key(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.alerts.put(alert("al_1"))
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            with pytest.raises(AlreadyExists, match="open already"):
                await uow.alerts.put(alert("al_2", state=AlertState.FIRING))
            # the transaction is still usable: other keys, other rules go in
            await uow.alerts.put(alert("al_3", key="mls-2"))
            await uow.alerts.put(alert("al_4", rule="vendor_latency_drift"))
            await uow.commit()
        async with store.unit_of_work(B) as uow:  # another tenant has its own
            await uow.alerts.put(alert("al_5", tenant=B))
            await uow.commit()
        resolved = replace(alert("al_1"), state=AlertState.RESOLVED, resolved_at=EPOCH)
        async with store.unit_of_work(A) as uow:
            await uow.alerts.put(resolved)
            await uow.alerts.put(alert("al_2"))  # a new episode once the last one is resolved
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert (await uow.alerts.current("vendor_error_rate", "mls-1") or resolved).id == "al_2"
            assert [a.id for a in await uow.alerts.history(rule="vendor_error_rate")] == [
                "al_2", "al_3", "al_1"]  # fmt: skip

    async def test_an_id_of_another_tenant_or_a_wrong_tenant_is_refused(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.alerts.put(alert("al_1"))
            with pytest.raises(ValueError, match="tenant"):
                await uow.alerts.put(alert("al_2", tenant=B))
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            with pytest.raises(AlreadyExists):
                await uow.alerts.put(alert("al_1", tenant=B, key="other"))
        async with store.unit_of_work(A, read_only=True) as uow:
            assert (await uow.alerts.get("al_1") or alert("x")).key == "mls-1"

    async def test_two_writers_racing_make_one_alert(self, store: Store) -> None:
        async def insert(id: str) -> None:
            async with store.unit_of_work(A) as uow:
                await uow.alerts.put(alert(id))
                await uow.commit()

        async with store.unit_of_work(A) as first:
            await first.alerts.put(alert("al_1"))
            # the second writer starts while the first holds its uncommitted row: PostgreSQL
            # makes it wait on the unique index, SQLite and the fake at the write lock
            second = asyncio.create_task(insert("al_2"))
            await asyncio.sleep(0.05)
            await first.commit()
        with pytest.raises(AlreadyExists):
            await second
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [a.id for a in await uow.alerts.history()] == ["al_1"]

    async def test_open_and_history_newest_first_with_filters(self, store: Store) -> None:
        made = [
            alert("al_1", key="mls-1", connection="mls-1"),
            alert("al_2", key="pms-1", connection="pms-1", state=AlertState.FIRING),
            alert("al_3", rule="credential_expiry", key="cred", connection=None),
            alert("al_4", rule="vendor_latency_drift", key="mls-1", connection="mls-1",
                  state=AlertState.RESOLVED, resolved_at=EPOCH),
        ]  # fmt: skip
        async with store.unit_of_work(A) as uow:
            for item in made:
                await uow.alerts.put(item)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [a.id for a in await uow.alerts.open()] == ["al_3", "al_2", "al_1"]
            assert [a.id for a in await uow.alerts.open(connection="mls-1")] == ["al_1"]
            assert [a.id for a in await uow.alerts.history()] == ["al_4", "al_3", "al_2", "al_1"]
            assert [a.id for a in await uow.alerts.history(limit=2)] == ["al_4", "al_3"]
            assert [a.id for a in await uow.alerts.history(connection="mls-1")] == [
                "al_4", "al_1"]  # fmt: skip
            assert [a.id for a in await uow.alerts.history(rule="credential_expiry")] == ["al_3"]
            assert await uow.alerts.history(rule="nope") == []

    async def test_recent_events_of_some_types_newest_first(
        self, store: Store, clock: FakeClock
    ) -> None:
        def event(tenant: str, type: str, n: int) -> EventEnvelope:
            return EventEnvelope(source="/mls/a", type=type, subject=f"S{n}", time=clock.now(),
                                 tenant=tenant, data={"n": n})  # fmt: skip

        drift, alerted = "cadastre.schema.drifted.v1", "cadastre.alert.raised.v1"
        written = []
        for n, type in enumerate([drift, "cadastre.listing.updated.v1", drift, alerted, drift]):
            async with store.unit_of_work(A) as uow:
                written.append(event(A, type, n))
                await uow.outbox.add(written[-1])
                await uow.commit()
            clock.advance(60)
        async with store.unit_of_work(B) as uow:
            await uow.outbox.add(event(B, drift, 9))
            await uow.commit()
        async with store.unit_of_work(A) as uow:  # published or not alike
            await uow.outbox.mark_published([written[0].id])
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            everything = await uow.outbox.recent([drift], since=EPOCH)
            assert everything == [written[4], written[2], written[0]]
            assert await uow.outbox.recent([drift, alerted], since=EPOCH, limit=2) == [
                written[4], written[3]]  # fmt: skip
            # since is inclusive: written[2] went in at EPOCH + 120 s
            since = EPOCH + timedelta(seconds=120)
            assert await uow.outbox.recent([drift], since=since) == [written[4], written[2]]
            assert await uow.outbox.recent([drift], since=clock.now()) == []
            assert await uow.outbox.recent([], since=EPOCH) == []
            assert await uow.outbox.recent(["cadastre.sync.mass_update.v1"], since=EPOCH) == []

    async def test_a_subscription_keeps_its_format(self, store: Store) -> None:
        def subscription(id: str, format: SubscriptionFormat | None) -> Subscription:
            made = Subscription(
                id=id, url=f"https://{id}.example.com/", event_types=("cadastre.alert.*",),
                description="", status=SubscriptionStatus.ACTIVE, status_reason="",
                failing_since=None, credential=f"subscription-{id}", created_at=EPOCH,
                updated_at=EPOCH,
            )  # fmt: skip
            return made if format is None else replace(made, format=format)

        async with store.unit_of_work(A) as uow:
            await uow.subscriptions.add(subscription("s1", None))
            await uow.subscriptions.add(subscription("s2", SubscriptionFormat.SLACK))
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = {s.id: s.format for s in await uow.subscriptions.all()}
        assert found == {"s1": SubscriptionFormat.STANDARD, "s2": SubscriptionFormat.SLACK}
