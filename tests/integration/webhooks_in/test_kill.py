"""RELIABILITY.md promise 13: a 2xx to a vendor's webhook means the event is durable.

A receiver process (the hub's API and workers over a SQLite file, ``receiver.py``) takes N signed
webhooks from concurrent senders that retry whatever got no 2xx on a compressed Svix schedule,
while the test SIGKILLs it K times at random points of the run and starts it again on the same
port. Afterwards every id that got a 2xx is in the inbox exactly once, every id got a 2xx in the
end, and the normaliser turned each into its one record. Normal run: N=2,000, K=5; ``--full``:
N=10,000, K=20.

The history of every request is kept (ok: a 2xx; info: no answer or a 5xx, so indeterminate);
an id's first "ok" must be in the inbox even if its later attempts were lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest

from tests import webhook_connector as hooks
from tests.integration.webhooks_in.conftest import CRM_SECRET, PROJECT, TENANT, open_hub
from tests.webhook_signers import standard

# Svix retries at 5 s, 5 min, 30 min, 2 h...: the same shape, compressed to fit a test.
RETRY_AFTER = (0.05, 0.1, 0.25, 0.5, 1.0)
SENDERS = 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """The receiver process, and a spare one that has done its imports and waits for "go"."""

    def __init__(self, port: int, env: dict[str, str], log: IO[bytes]) -> None:
        self.port = port
        self._env = env
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._spare: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.webhooks_in.receiver", str(self.port)],
            cwd=PROJECT, env=self._env, stdin=subprocess.PIPE, stdout=self._log,
            stderr=self._log,
        )  # fmt: skip

    def start(self) -> None:
        process = self._spare or self._spawn()
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.flush()
        self.process, self._spare = process, self._spawn()
        self.starts += 1

    async def ready(self, client: httpx.AsyncClient, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, "receiver died"
            try:
                if (await client.get("/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
        raise AssertionError("the receiver did not come up")

    def kill(self) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process.stdin.close()

    def stop(self) -> None:
        for process in (self.process, self._spare):
            if process is None:
                continue
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()


def webhook(i: int) -> bytes:
    when = f"2026-11-27T08:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z"
    return hooks.body(hooks.listing(f"K{i:05d}", when, ListPrice=1000 + i))


async def send_all(
    client: httpx.AsyncClient, ids: list[int], history: dict[int, list[str]],
    acked: list[int], stop_at: float,
) -> None:  # fmt: skip
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in ids:
        queue.put_nowait(i)

    async def sender() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body, attempt = webhook(i), 0
            while time.monotonic() < stop_at:
                # signed anew for each attempt, with its own time, as Svix does; the id stays
                headers = standard([CRM_SECRET], body, datetime.now(UTC), f"msg_{i}")
                try:
                    answer = await client.post(f"/webhooks/{TENANT}/crm", content=body,
                                               headers=headers, timeout=5)  # fmt: skip
                    outcome = "ok" if answer.status_code == 200 else f"info:{answer.status_code}"
                except httpx.TransportError as exc:
                    outcome = f"info:{type(exc).__name__}"
                history[i].append(outcome)
                if outcome == "ok":
                    acked.append(i)
                    break
                await asyncio.sleep(RETRY_AFTER[min(attempt, len(RETRY_AFTER) - 1)])
                attempt += 1

    await asyncio.gather(*[sender() for _ in range(SENDERS)])


async def kill_along(receiver: Receiver, client: httpx.AsyncClient, acked: list[int],
                     points: list[int], restarts: list[float]) -> None:  # fmt: skip
    """SIGKILL the receiver as the acknowledged count passes each of ``points`` (plus a random
    few milliseconds, so the kill lands anywhere in a request's life), and start it again."""
    for point in points:
        while len(acked) < point:
            await asyncio.sleep(0.005)
        await asyncio.sleep(random.uniform(0, 0.03))
        receiver.kill()
        began = time.monotonic()
        receiver.start()
        await receiver.ready(client)
        restarts.append(time.monotonic() - began)


def inbox(db: Path) -> tuple[list[str], Counter[str]]:
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT message_id FROM webhooks_in WHERE tenant = ? AND connection = 'crm'", (TENANT,)
        )]  # fmt: skip
        statuses = Counter(r[0] for r in conn.execute("SELECT status FROM webhooks_in"))
    return ids, statuses


def listings(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM external_refs WHERE tenant = ? AND connection = 'crm'", (TENANT,)
        ).fetchone()[0])  # fmt: skip


def announced(db: Path) -> Counter[str]:
    """How many listing events the outbox holds per listing (its subject): a webhook applied
    twice (say, after a kill between its page's commit and its settling) would show as two."""
    with sqlite3.connect(db) as conn:
        events = [orjson.loads(r[0]) for r in conn.execute(
            "SELECT event FROM outbox WHERE tenant = ?", (TENANT,)
        )]  # fmt: skip
    return Counter(e["subject"] for e in events if e["type"].startswith("cadastre.listing."))


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_acknowledged_webhook_is_stored_exactly_once_across_kills(
    tmp_path: Path, full_trials: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    n, kills = (10_000, 20) if full_trials else (1_000, 3)
    seed = int(os.environ.get("CADASTRE_KILL_SEED", time.time_ns() % 1_000_000))
    random.seed(seed)
    data = tmp_path / "var"
    settings: dict[str, Any] = {"data_dir": data}
    hooks.register(monkeypatch)
    from cadastre.testing import FakeClock

    hub = await open_hub(FakeClock(datetime.now(UTC)), **settings)
    await hub.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env |= {
        "CADASTRE_DATA_DIR": str(data), "CADASTRE_MAPPINGS_DIR": str(PROJECT / "mappings"),
        "CADASTRE_LOG_LEVEL": "WARNING", "CADASTRE_SCHEDULE_SYNCS": "false",
        "CADASTRE_PUBLIC_URL": "https://hub.example",
    }  # fmt: skip
    history: dict[int, list[str]] = {i: [] for i in range(n)}
    acked: list[int] = []
    points = sorted(random.sample(range(n // 20, n - n // 20), kills))
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    timings: dict[str, float] = {}
    with (tmp_path / "receiver.log").open("ab") as log:
        receiver = Receiver(free_port(), env, log)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}",
                                     limits=limits) as client:  # fmt: skip
            started = time.monotonic()
            receiver.start()
            try:
                await receiver.ready(client)
                timings["first_start"] = time.monotonic() - started
                stop_at = time.monotonic() + 600
                restarts: list[float] = []
                killer = asyncio.create_task(kill_along(receiver, client, acked, points, restarts))
                await send_all(client, list(range(n)), history, acked, stop_at)
                await killer
                timings["sent"] = time.monotonic() - started
                timings["restarts"] = sum(restarts)
                # the normaliser drains the inbox in the end (nudged, then by its poll)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    _, statuses = inbox(data / "cadastre.db")
                    if statuses.get("pending", 0) == 0:
                        break
                    await asyncio.sleep(0.2)
                timings["drained"] = time.monotonic() - started
            finally:
                receiver.stop()
    context = f"seed {seed}, kills at {points}"
    assert receiver.starts == kills + 1, context
    ids, statuses = inbox(data / "cadastre.db")
    never = [i for i, h in history.items() if "ok" not in h]
    assert never == [], context  # every id got its 2xx in the end
    assert len(ids) == len(set(ids)), context  # none stored twice
    assert set(ids) == {f"msg_{i}" for i in range(n)}, context  # every acknowledged one stored
    uncertain = sum(1 for h in history.values() if h[0] != "ok")
    assert uncertain > 0, f"no request was caught by a kill ({context})"
    assert statuses == Counter({"processed": n}), context
    assert listings(data / "cadastre.db") == n, context  # each webhook's record, once
    per_listing = announced(data / "cadastre.db")
    assert len(per_listing) == n, context  # one record made per webhook ...
    assert set(per_listing.values()) == {1}, context  # ... and announced once: no second effect
    attempts = sum(len(h) for h in history.values())
    summary = orjson.dumps({"n": n, "kills": kills, "seed": seed, "retried": uncertain,
                            "attempts": attempts, **timings})  # fmt: skip
    (tmp_path / "summary.json").write_bytes(summary)
