"""Token refresh across real processes (RELIABILITY.md #17), against the auth simulator's strict
single-use refresh tokens (a reuse revokes the whole family and is counted):

- 50 callers in this process plus two worker processes of 50 callers each, on one credential,
  cause exactly one token-endpoint call: on SQLite with file locks (the embedded default) and on
  PostgreSQL with Redis locks (the distributed mode);
- workers refreshing every few hundred milliseconds are SIGKILLed at random moments and at named
  failpoints inside the refresh; after every kill the refresh token has never been sent twice
  (reuse 0), and the credential is either usable or ``needs_reauth`` because a kill fell between
  sending the token and storing its successor - never silently broken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from cadastre.clock import SystemClock
from cadastre.gateway import Gateway, VaultAuth, VendorPolicy
from cadastre.ports import CredentialStatus, LockBackend
from cadastre.simulators import serve
from cadastre.simulators.auth import AuthSettings, AuthSimulator
from cadastre.store import PostgresLockBackend, open_store
from cadastre.vault import (
    Defaults,
    FileLockBackend,
    FileMasterKeys,
    RedisLockBackend,
    TokenManager,
    Vault,
)
from tests.integration.vault.conftest import fresh_postgres

TENANT = "acme"
LOOPBACK = ("127.0.0.0/8", "::1")
ROOT = Path(__file__).resolve().parents[3]
log = logging.getLogger(__name__)


@dataclass
class Setup:
    db: str
    key_file: Path
    lock_args: list[str]
    locks: Callable[[Any], LockBackend]  # the hub side's, given its store


@pytest.fixture(params=["sqlite-file", "postgres-redis", "postgres-advisory"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    key_file = tmp_path / "vault.keys"
    FileMasterKeys(key_file, create=True)
    if request.param == "sqlite-file":
        locks = tmp_path / "locks"
        yield Setup(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", key_file,
                    ["--locks", str(locks)], lambda store: FileLockBackend(locks))  # fmt: skip
        return
    redis = os.environ.get("CADASTRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with fresh_postgres() as url:
        if request.param == "postgres-redis":
            yield Setup(url, key_file, ["--redis", redis], lambda store: RedisLockBackend(redis))
        else:  # no Redis: PostgreSQL advisory locks
            yield Setup(
                url, key_file, ["--pglock"], lambda store: PostgresLockBackend(store.engine)
            )


@asynccontextmanager
async def hub_side(setup: Setup) -> AsyncIterator[tuple[Vault, LockBackend]]:
    store = await open_store(setup.db, clock=SystemClock(), migrate=True)
    locks = setup.locks(store)
    try:
        await store.create_tenant(TENANT, "Acme")
        yield Vault(store, FileMasterKeys(setup.key_file), SystemClock()), locks
    finally:
        await locks.aclose()
        await store.close()


async def connected(vault: Vault, sim: AuthSimulator, url: str) -> str:
    """A credential as `credentials connect` leaves it: a refresh token, no access token yet."""
    name = f"xero-{secrets.token_hex(3)}"  # unique lock keys on the shared Redis
    grant = sim.grant("demo-client")
    await vault.add(
        TENANT, name, "oauth2_authorization_code",
        {"client_id": "demo-client", "client_secret": "demo-secret",
         "refresh_token": grant["refresh_token"]},
        {"token_url": f"{url}/oauth/token"},
    )  # fmt: skip
    return name


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, setup: Setup, url: str, name: str, *args: str,
                    failpoints: str = "") -> Worker:  # fmt: skip
        env = {**os.environ, "CADASTRE_FAILPOINTS": failpoints}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.vault.refresh_worker", "--db", setup.db,
            "--key-file", str(setup.key_file), *setup.lock_args, "--sim", url,
            "--credential", name, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )  # fmt: skip
        worker = cls(process)
        assert await worker.line() == "ready"
        return worker

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 60)
        return raw.decode().strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def summary(self) -> dict[str, Any]:
        line = await self.line()
        await self.process.wait()
        return dict(orjson.loads(line))

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


@pytest.mark.timeout(180)
async def test_fifty_callers_here_and_two_processes_refresh_once(setup: Setup) -> None:
    sim = AuthSimulator(settings=AuthSettings(rotation="single_use", token_ttl=3600))
    async with serve(sim.app) as running, hub_side(setup) as (vault, locks):
        name = await connected(vault, sim, running.url)
        sim.stats.reset()
        workers = [
            await Worker.start(setup, running.url, name, "--callers", "50", "--calls", "3")
            for _ in range(2)
        ]
        tokens = TokenManager(vault, locks, SystemClock())
        stored = await vault.stored(TENANT, name)
        auth = VaultAuth(tokens, TENANT, name, stored.scheme, dict(stored.meta), Defaults())
        policy = VendorPolicy(vendor="auth-sim", max_attempts=2)
        async with Gateway(running.url, policy, clock=SystemClock(), auth=auth,
                           allow_hosts=LOOPBACK) as gateway:  # fmt: skip
            for worker in workers:
                worker.go()
            here = await asyncio.gather(
                *(gateway.get("/api/me") for _ in range(50)), return_exceptions=True
            )
        summaries = [await w.summary() for w in workers]
    assert [r for r in here if isinstance(r, BaseException)] == []
    assert [s["failed"] for s in summaries] == [{}, {}]
    assert sum(s["ok"] for s in summaries) == 2 * 50 * 3
    assert sim.stats.token_endpoint_calls == 1
    assert sim.stats.refreshes == 1
    assert sim.stats.refresh_token_reuse == 0
    assert tokens.refreshes + sum(s["refreshes"] for s in summaries) == 1


KILL_POINTS = ["vault.refresh.marked", "vault.refresh.answered", "vault.refresh.stored"]


@pytest.mark.timeout(900)
async def test_refreshers_killed_at_random_never_reuse_a_refresh_token(
    setup: Setup, full_trials: bool
) -> None:
    trials = 60 if full_trials else 4  # CI: 4 per store (the 25-minute budget); --full: 60
    rng = random.Random(17)
    outcomes: dict[str, int] = {"usable": 0, "needs_reauth": 0}
    # Access tokens live 1 s and are refreshed 0.6 s early: every worker refreshes all the time.
    sim = AuthSimulator(settings=AuthSettings(rotation="single_use", token_ttl=1.0))
    async with serve(sim.app) as running, hub_side(setup) as (vault, _locks):
        for trial in range(trials):
            name = await connected(vault, sim, running.url)
            # half the trials also crash at a named point inside a refresh, the rest at random
            failpoints = f"{KILL_POINTS[(trial // 2) % 3]}:0.3" if trial % 2 == 0 else ""
            workers = [
                await Worker.start(
                    setup,
                    running.url,
                    name,
                    "--callers",
                    "5",
                    "--seconds",
                    "30",
                    "--skew",
                    "0.6",
                    failpoints=failpoints,
                )
                for _ in range(2)
            ]
            for worker in workers:
                worker.go()
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            for worker in workers:
                worker.kill()
                await worker.process.wait()
            # After the crash, a fresh process takes over the credential.
            survivor = await Worker.start(setup, running.url, name, "--callers", "5",
                                          "--seconds", "1.5", "--skew", "0.6")  # fmt: skip
            survivor.go()
            result = await survivor.summary()
            stored = await vault.stored(TENANT, name)
            assert sim.stats.refresh_token_reuse == 0, f"trial {trial}: a refresh token was reused"
            if stored.status is CredentialStatus.ACTIVE:
                assert result["ok"] > 0, (trial, result)
                outcomes["usable"] += 1
            else:
                assert stored.status is CredentialStatus.NEEDS_REAUTH, (trial, stored.status)
                assert "interrupted" in stored.status_reason or "lost" in stored.status_reason
                outcomes["needs_reauth"] += 1
    assert sim.stats.families_revoked == 0
    assert outcomes["usable"] > 0
    # shown with --log-cli-level=INFO
    log.info("%d kill trials: %s, refreshes %d", trials, outcomes, sim.stats.refreshes)
