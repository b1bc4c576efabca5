"""One hub process calling a vendor with one shared OAuth2 credential, run by the refresh tests
several at a time (and killed by some of them):

    python -m tests.integration.vault.refresh_worker --db URL --key-file PATH \
        (--redis URL | --locks DIR) --sim URL --credential NAME --callers 50 \
        (--calls N | --seconds S) [--skew S]

Prints ``ready`` and waits for a line on stdin, so every worker starts calling together. Each
caller sends ``GET /api/me`` through a real gateway whose ``BearerToken`` asks the vault for the
token. At the end it prints one JSON line: ``{"ok": n, "failed": {error: n}, "refreshes": n}``.
Failpoints (``CADASTRE_FAILPOINTS``) make it kill itself inside a refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from cadastre.clock import SystemClock
from cadastre.gateway import Gateway, VaultAuth, VendorPolicy
from cadastre.ports import LockBackend
from cadastre.store import PostgresLockBackend, open_store
from cadastre.vault import (
    Defaults,
    FileLockBackend,
    FileMasterKeys,
    RedisLockBackend,
    TokenManager,
    Vault,
)

LOOPBACK = ("127.0.0.0/8", "::1")
TENANT = "acme"


async def run(args: argparse.Namespace) -> dict[str, object]:
    clock = SystemClock()
    store = await open_store(args.db, clock=clock, migrate=False)
    locks: LockBackend
    if args.redis:
        locks = RedisLockBackend(args.redis)
    elif args.pglock:
        locks = PostgresLockBackend(store.engine)
    else:
        locks = FileLockBackend(args.locks)
    vault = Vault(store, FileMasterKeys(Path(args.key_file)), clock)
    # A short lease: a killed refresher's Redis lock frees soon (a live one renews it).
    tokens = TokenManager(vault, locks, clock, skew=args.skew, cooldown=(0.05, 0.5), lock_lease=3.0)
    stored = await vault.stored(TENANT, args.credential)
    auth = VaultAuth(tokens, TENANT, args.credential, stored.scheme, dict(stored.meta),
                     Defaults(f"{args.sim}/oauth/token"), actor="connection:worker")  # fmt: skip
    policy = VendorPolicy(vendor="auth-sim", max_attempts=2, backoff_base=0.01, backoff_cap=0.05)
    gateway = Gateway(args.sim, policy, clock=clock, auth=auth, allow_hosts=LOOPBACK)
    ok = 0
    failed: Counter[str] = Counter()
    deadline = time.monotonic() + (args.seconds or 1e9)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def caller() -> None:
        nonlocal ok
        for _ in range(args.calls or 10**9):
            if time.monotonic() >= deadline:
                return
            try:
                await gateway.get("/api/me")
                ok += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted by its kind
                failed[type(error).__name__] += 1
                await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(caller() for _ in range(args.callers)))
    finally:
        await gateway.aclose()
        await locks.aclose()
        await store.close()
    return {"ok": ok, "failed": dict(failed), "refreshes": tokens.refreshes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--redis")
    parser.add_argument("--locks")
    parser.add_argument("--pglock", action="store_true", help="PostgreSQL advisory locks")
    parser.add_argument("--sim", required=True)
    parser.add_argument("--credential", required=True)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--skew", type=float, default=60.0)
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
