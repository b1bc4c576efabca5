"""A crash between a subscriber's 2xx and recording it (RELIABILITY.md #15, docs/webhooks-out.md
"Workers"): the sender is killed -9 right after an endpoint answered, again and again, and
restarted until nothing is due. Every delivery ends delivered, nothing is lost; the answered but
unrecorded ones were sent again, with the same ``webhook-id`` and the same bytes, which is the
at-least-once the docs promise (the subscriber de-duplicates by ``webhook-id``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from cadastre.ports import DeliveryStatus
from cadastre.simulators import serve
from cadastre.simulators.subscriber import SubscriberSimulator
from cadastre.store import SqliteStore
from tests.conftest import PROJECT_ROOT
from tests.integration.webhooks_out.kill_worker import TENANT

ANSWERED = "webhooks.out.answered"


async def life(data_dir: Path, url: str, n: int, offset: float, failpoints: str) -> int:
    env = {**os.environ, "CADASTRE_FAILPOINTS": failpoints, "PYTHONPATH": str(PROJECT_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.webhooks_out.kill_worker", str(data_dir), url,
        str(n), str(offset), env=env, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    code = process.returncode
    assert code in (0, -signal.SIGKILL), err.decode()[-2000:]
    assert code is not None
    return code


async def test_killed_after_the_answer_sends_again_and_loses_nothing(
    tmp_path: Path, full_trials: bool
) -> None:
    n = 60 if full_trials else 12
    sim = SubscriberSimulator()  # no secrets: signatures are tested elsewhere
    async with serve(sim.app) as running:
        url = f"{running.url}/hooks"
        lives, offset = 0, 0.0
        store = SqliteStore(tmp_path / "cadastre.db")
        try:
            while True:
                # the first life dies at its first answer for certain, the next few at random
                armed = f"{ANSWERED}:1" if lives == 0 else f"{ANSWERED}:0.3" if lives < 6 else ""
                code = await life(tmp_path, url, n, offset, armed)
                lives += 1
                if lives == 1:
                    assert code == -signal.SIGKILL, "the failpoint armed for certain did not fire"
                offset += 100.0  # past every claim the life left, and every retry's wait
                async with store.unit_of_work(TENANT, read_only=True) as uow:
                    found = await uow.deliveries.find(limit=1000)
                if len(found) == n and all(d.status is DeliveryStatus.DELIVERED for d in found):
                    break
                assert lives < 40, "the deliveries never all arrived"
        finally:
            await store.close()

    bodies: dict[str, set[bytes]] = defaultdict(set)
    accepted: dict[str, int] = defaultdict(int)
    for got in sim.accepted():
        bodies[got.webhook_id].add(got.body)
        accepted[got.webhook_id] += 1
    assert set(accepted) == {d.event_id for d in found}  # every one arrived ...
    assert all(len(b) == 1 for b in bodies.values())  # ... each time the same bytes
    # the first life's answered attempt was never recorded: that delivery was sent again
    assert max(accepted.values()) >= 2
    assert lives >= 2


@pytest.fixture(autouse=True)
def _no_failpoints_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADASTRE_FAILPOINTS", raising=False)
