"""The sampler: gauges read from the store match it (and reach Prometheus), minutes are
flushed, kept through a store outage, pruned past retention; the worker runs on the clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cadastre.errors import StoreUnavailable
from cadastre.observe import Freshness, Metrics, Observations, ObservationSampler
from cadastre.ports import (
    Connection,
    ConnectionStatus,
    CredentialStatus,
    MinuteRollup,
    ReceivedWebhook,
    StoredCredential,
    WriteState,
)
from cadastre.testing import EPOCH, FakeClock, FakeStore, FakeUnitOfWork
from cadastre.testing.store_webhooks_suite import delivery
from cadastre.testing.store_writes_suite import target, write

A = "acme"


def connection(name: str, credential: str | None) -> Connection:
    return Connection(A, name, "mls", "mls/reso", {}, credential, ConnectionStatus.ACTIVE, 1, EPOCH)


def credential(name: str, **extra: object) -> StoredCredential:
    fields: dict[str, object] = {
        "tenant": A, "name": name, "scheme": "oauth2_client_credentials",
        "status": CredentialStatus.ACTIVE, "meta": {}, "version": 1, "updated_at": EPOCH,
    }  # fmt: skip
    return StoredCredential(**(fields | extra))  # type: ignore[arg-type]


class Fresh:
    def __init__(self) -> None:
        self.known: dict[str, Freshness] = {}

    def freshness(self, tenant: str) -> dict[str, Freshness]:
        return self.known


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(clock: FakeClock) -> FakeStore:
    store = FakeStore(clock)
    await store.create_tenant(A, "Acme")
    async with store.unit_of_work(A) as uow:
        await uow.credentials.add(credential("mls-oauth", expires_at=EPOCH + timedelta(hours=1)))
        await uow.credentials.add(credential("crm-key", status=CredentialStatus.NEEDS_REAUTH))
        for name, cred in (("austin-mls", "mls-oauth"), ("crm", "crm-key"), ("plain", None)):
            await uow.connections.save(connection(name, cred), changed_by="t", change="added")
        for i in range(2):
            await uow.quarantine.add(connection="austin-mls", entity="Listing", external_id=f"X{i}",
                                     reason="bad", payload={}, code="invalid_value")  # fmt: skip
        await uow.webhooks_in.add_many([
            ReceivedWebhook("crm", f"m{i}", EPOCH, {}, b"{}") for i in range(3)
        ])  # fmt: skip
        await uow.deliveries.add_many([delivery("d1", "e1"), delivery("d2", "e2")])
        failed = target("w1", "plain", state=WriteState.FAILED)
        await uow.writes.add(write("w1"), [target("w1", "crm"), failed])
        await uow.commit()
    return store


async def test_gauges_match_the_store_and_reach_prometheus(
    store: FakeStore, clock: FakeClock
) -> None:
    observations, metrics, fresh = Observations(clock), Metrics(), Fresh()
    fresh.known["austin-mls"] = Freshness(EPOCH - timedelta(minutes=10), EPOCH)
    sampler = ObservationSampler(store, observations, clock, metrics, freshness=fresh)
    clock.advance(30)
    gauges = await sampler.sample(A)
    assert gauges == {
        "": {"outbox_backlog": 0.0, "delivery_backlog": 2.0, "webhooks_in_backlog": 3.0},
        "austin-mls": {"quarantine_open": 2.0, "writeback_pending": 0.0,
                       "credential_needs_reauth": 0.0, "token_expiry_seconds": 3570.0,
                       "sync_lag_seconds": 630.0},
        "crm": {"quarantine_open": 0.0, "writeback_pending": 1.0, "credential_needs_reauth": 1.0},
        "plain": {"quarantine_open": 0.0, "writeback_pending": 0.0},
    }  # fmt: skip
    value = metrics.registry.get_sample_value
    assert value("cadastre_delivery_backlog", {"tenant": A}) == 2.0
    assert value("cadastre_outbox_backlog", {"tenant": A}) == 0.0
    assert value("cadastre_token_expiry_seconds", {"connection": "austin-mls"}) == 3570.0
    assert await sampler.flush() == 4
    async with store.unit_of_work(A) as uow:
        stored = {r.connection: dict(r.gauges) for r in await uow.observations.window(since=EPOCH)}
    assert stored == gauges


async def test_lag_from_a_worker_that_no_longer_synced_last_is_left_out(
    store: FakeStore, clock: FakeClock
) -> None:
    fresh = Fresh()
    fresh.known["austin-mls"] = Freshness(EPOCH, EPOCH)
    async with store.unit_of_work(A) as uow:  # another worker synced it two minutes later
        rollup = MinuteRollup("austin-mls", EPOCH + timedelta(minutes=2), counts={"sync_ok": 1})
        await uow.observations.add([rollup])
        await uow.commit()
    sampler = ObservationSampler(store, Observations(clock), clock, freshness=fresh)
    assert "sync_lag_seconds" not in (await sampler.sample(A))["austin-mls"]
    fresh.known["austin-mls"] = Freshness(EPOCH, EPOCH + timedelta(minutes=2, seconds=5))
    assert (await sampler.sample(A))["austin-mls"]["sync_lag_seconds"] == 0.0


class FlakyStore(FakeStore):
    down = False

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> FakeUnitOfWork:
        if self.down:
            raise StoreUnavailable("database: gone")
        return super().unit_of_work(tenant, read_only=read_only)


async def test_a_flush_the_store_refuses_keeps_the_minutes(clock: FakeClock) -> None:
    store = FlakyStore(clock)
    observations = Observations(clock)
    sampler = ObservationSampler(store, observations, clock)
    observations.count(A, "austin-mls", "records_synced", 5)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await sampler.flush()
    observations.count(A, "austin-mls", "records_synced", 2)
    store.down = False
    assert await sampler.flush() == 1
    async with store.unit_of_work(A) as uow:
        (rollup,) = await uow.observations.window(since=EPOCH)
    assert rollup.counts == {"records_synced": 7}


async def test_the_worker_samples_flushes_and_prunes_on_the_clock(
    store: FakeStore, clock: FakeClock
) -> None:
    async with store.unit_of_work(A) as uow:  # a minute past the 14 days kept
        await uow.observations.add([MinuteRollup("old", EPOCH - timedelta(days=14, minutes=1))])
        await uow.commit()
    observations = Observations(clock)
    async with ObservationSampler(store, observations, clock, flush_seconds=15):
        observations.count(A, "austin-mls", "sync_ok")
        async with store.unit_of_work(A) as uow:
            assert len(await uow.observations.window(since=EPOCH - timedelta(days=30))) == 1
        while not clock.sleepers:  # the worker has started its wait
            await asyncio.sleep(0)
        clock.advance(15)
        for _ in range(50):  # the round's store calls, a few event-loop steps
            await asyncio.sleep(0)
            async with store.unit_of_work(A) as uow:
                found = await uow.observations.window(since=EPOCH - timedelta(days=30))
            if {r.connection for r in found} == {"austin-mls", "crm", "plain", ""}:
                break
        assert {r.connection for r in found} == {"austin-mls", "crm", "plain", ""}
        assert await uow_last_seen(store) == {"austin-mls": EPOCH}
        observations.count(A, "crm", "sync_failed")  # left for the worker's last flush
    async with store.unit_of_work(A) as uow:
        crm = await uow.observations.window(since=EPOCH, connection="crm")
    assert crm[-1].counts == {"sync_failed": 1}


async def uow_last_seen(store: FakeStore) -> dict[str, object]:
    async with store.unit_of_work(A) as uow:
        return dict(await uow.observations.last_seen())


def test_nonsense_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="positive"):
        ObservationSampler(FakeStore(clock), Observations(clock), clock, flush_seconds=0)


async def test_a_minute_the_store_cannot_hold_is_dropped_alone(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # A label longer than a stored connection name may be (a credential's token endpoint was
    # once metered as "credential:<name>"): that minute alone is dropped, not every tenant's.
    store = FakeStore(clock)
    for tenant in (A, "beta"):
        await store.create_tenant(tenant, tenant)
    observations = Observations(clock)
    sampler = ObservationSampler(store, observations, clock)
    too_long = "credential:" + "k" * 64
    observations.count(A, too_long, "records_synced", 1)
    observations.count(A, "austin-mls", "records_synced", 3)
    observations.count("beta", "crm", "records_synced", 4)
    assert await sampler.flush() == 2
    for tenant, name, n in ((A, "austin-mls", 3), ("beta", "crm", 4)):
        async with store.unit_of_work(tenant) as uow:
            (rollup,) = await uow.observations.window(since=EPOCH)
        assert (rollup.connection, rollup.counts) == (name, {"records_synced": n})
    assert observations.pending() == 0
    assert "cannot be stored" in caplog.text
