"""Promise 10 across the bus: kill -9 between commit and publish, and between publish and marking,
then restart until the outbox drains. Afterwards every committed change's event was delivered and
no consumer effect happened twice (the effect commits with its de-duplication mark).

The first two lives die at each failpoint for sure; later ones at random. In-process bus: the
consumer dies with the relay. NATS: the test process consumes from the shared server while the
publisher is killed again and again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from cadastre.bus import InProcessBus, NatsJetStreamBus
from cadastre.store import SqliteStore
from tests.conftest import PROJECT_ROOT
from tests.integration.bus.kill_worker import CONSUMER, EFFECT, effect
from tests.nats_server import shared_nats_url

BEFORE, AFTER = "outbox.relay.before_publish", "outbox.relay.published"


async def life(data_dir: Path, tenant: str, n: int, bus: str, failpoints: str, url: str) -> int:
    env = {**os.environ, "CADASTRE_FAILPOINTS": failpoints, "PYTHONPATH": str(PROJECT_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.bus.kill_worker", str(data_dir), tenant, str(n),
        bus, url, env=env, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    code = process.returncode
    assert code in (0, -signal.SIGKILL), err.decode()[-2000:]
    return code


async def trial(data_dir: Path, tenant: str, n: int, bus: str, chance: float, url: str = "") -> int:
    """Lives until one ends on its own; how many lives it took."""
    schedule = [f"{AFTER}:1", f"{BEFORE}:1"]  # the first two die for certain, one at each point
    lives = 0
    while True:
        armed = schedule[lives] if lives < len(schedule) else f"{BEFORE}:{chance},{AFTER}:{chance}"
        code = await life(data_dir, tenant, n, bus, armed, url)
        lives += 1
        if lives <= len(schedule):
            assert code == -signal.SIGKILL, "a failpoint armed for certain did not fire"
        elif code == 0:
            return lives
        assert lives < 400, "the outbox never drained"


async def check(store: SqliteStore, tenant: str, n: int) -> None:
    async with store.unit_of_work(tenant) as uow:
        assert await uow.outbox.pending() == []
        published = [m.event.id for m in await uow.outbox.feed(limit=10 * n)]
        effects = Counter(
            [e.detail["event_id"] async for e in uow.audit.entries() if e.action == EFFECT]
        )
        assert await uow.records.count("Listing") == n
        assert (await uow.audit.verify()).ok
    assert len(published) == n  # one event per committed change, each numbered once
    assert set(effects) == set(published)  # every event delivered ...
    assert max(effects.values()) == 1  # ... and acted on once


async def test_kill_between_commit_and_publish_in_process_bus(
    tmp_path: Path, full_trials: bool
) -> None:
    n, tenant = (300 if full_trials else 40), "acme"
    lives = await trial(tmp_path, tenant, n, "memory", 0.02 if full_trials else 0.1)
    store = SqliteStore(tmp_path / "cadastre.db")
    try:
        await check(store, tenant, n)
        # replaying the whole outbox twice more changes nothing (RELIABILITY.md #10)
        bus = InProcessBus()
        await bus.subscribe(CONSUMER, effect(store, tenant), subjects=[f"cadastre.{tenant}.>"])
        async with store.unit_of_work(tenant, read_only=True) as uow:
            everything = [m.event for m in await uow.outbox.feed(limit=10 * n)]
        for _ in range(2):
            await bus.publish(everything)
        await bus.close()
        await check(store, tenant, n)
    finally:
        await store.close()
    assert lives >= 3


async def test_kill_between_commit_and_publish_nats(tmp_path: Path, full_trials: bool) -> None:
    url = shared_nats_url()
    n, tenant = (300 if full_trials else 40), f"kill-{uuid.uuid4().hex[:10]}"
    store = SqliteStore(tmp_path / "cadastre.db")
    await store.migrate()
    bus = NatsJetStreamBus(url, retry_first=0.02, fetch_wait=0.2)
    consumer = f"{CONSUMER}-{tenant}"
    subscription = await bus.subscribe(
        consumer, effect(store, tenant, consumer), subjects=[f"cadastre.{tenant}.>"], batch=20
    )
    try:
        lives = await trial(tmp_path, tenant, n, "nats", 0.02 if full_trials else 0.1, url)
        for _ in range(500):  # the consumer catches up with the last life's events
            async with store.unit_of_work(tenant, read_only=True) as uow:
                done = [e async for e in uow.audit.entries() if e.action == EFFECT]
            if len({e.detail["event_id"] for e in done}) >= n:
                break
            await asyncio.sleep(0.02)
        await subscription.stop()
        await check(store, tenant, n)
    finally:
        await bus.delete_consumer(consumer)
        await bus.close()
        await store.close()
    assert lives >= 3


@pytest.fixture(autouse=True)
def _no_failpoints_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADASTRE_FAILPOINTS", raising=False)
