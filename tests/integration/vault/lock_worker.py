"""One process contending for a lock, run by the lock tests two at a time:

    python -m tests.integration.vault.lock_worker (--file DIR | --redis URL) --key KEY \
        --log PATH --rounds 20 --hold 0.01 [--lease 5] [--wait 30]

Prints ``ready`` and waits for a line on stdin, so both workers start contending together. Each
round takes the lock and appends ``begin PID N`` and ``end PID N`` to the log around ``--hold``
seconds. ``--rounds 0`` takes it once, prints ``held`` and keeps it until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from cadastre.ports import LockBackend
from cadastre.vault.locks import FileLockBackend
from cadastre.vault.locks_redis import RedisLockBackend


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


async def run(backend: LockBackend, args: argparse.Namespace) -> None:
    pid = os.getpid()
    if args.rounds == 0:
        async with backend.hold(args.key, wait=args.wait, lease=args.lease):
            note(args.log, f"begin {pid} 0")
            say("held")
            await asyncio.sleep(3600)
    for n in range(args.rounds):
        async with backend.hold(args.key, wait=args.wait, lease=args.lease):
            note(args.log, f"begin {pid} {n}")
            await asyncio.sleep(args.hold)
            note(args.log, f"end {pid} {n}")
        await asyncio.sleep(0.002)  # let the other worker in now and then


async def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--file")
    where.add_argument("--redis")
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--hold", type=float, default=0.01)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=30.0)
    args = parser.parse_args()
    backend: FileLockBackend | RedisLockBackend = (
        FileLockBackend(args.file) if args.file else RedisLockBackend(args.redis)
    )
    say("ready")
    await asyncio.to_thread(sys.stdin.readline)
    try:
        await run(backend, args)
    finally:
        await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
