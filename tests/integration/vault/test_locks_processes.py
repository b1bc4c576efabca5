"""Locks between real processes: two workers contending for one key never overlap, through a file
lock and through Redis; a holder killed with SIGKILL frees a file lock at once and a Redis lock
when its lease ends; a holder renews its Redis lease for as long as it holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cadastre.errors import LockTimeout
from cadastre.store import PostgresLockBackend, PostgresStore
from cadastre.vault.locks import FileLockBackend
from cadastre.vault.locks_redis import RedisLockBackend
from tests.conformance.conftest import postgres_admin_url
from tests.conftest import PROJECT_ROOT, service_missing
from tests.redis_server import PrivateRedis, answers, free_port

SHARED = "redis://127.0.0.1:6379/0"


@pytest.fixture
def shared_redis() -> str:
    if not answers(6379):
        service_missing("redis", "Redis is not answering on 127.0.0.1:6379")
    return SHARED


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        if not raw:
            await self.process.wait()
            assert self.process.stderr is not None
            err = await self.process.stderr.read()
            pytest.fail(f"worker exited {self.process.returncode}: {err.decode()[-3000:]}")
        return raw.decode().strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def finished(self) -> None:
        _, err = await asyncio.wait_for(self.process.communicate(), timeout=60)
        assert self.process.returncode == 0, err.decode()[-3000:]

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.communicate()


@contextlib.asynccontextmanager
async def workers(count: int, *args: str) -> AsyncIterator[list[Worker]]:
    """``count`` workers, all ready; none started. Any still running at the end is killed."""
    started: list[Worker] = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.vault.lock_worker", *args,
                cwd=PROJECT_ROOT, stdin=PIPE, stdout=PIPE, stderr=PIPE,
            )  # fmt: skip
            started.append(Worker(process))
        for worker in started:
            assert await worker.line() == "ready"
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                await worker.kill()


def assert_no_overlap(log: Path, rounds: int) -> set[str]:
    """Every ``begin`` is followed by its own ``end``; returns the pids seen."""
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * rounds
    for begin, end in zip(lines[::2], lines[1::2], strict=True):
        assert begin.startswith("begin "), lines
        assert end == "end " + begin.removeprefix("begin "), lines
    return {line.split()[1] for line in lines}


async def contend(rounds: int, *args: str) -> None:
    async with workers(2, "--rounds", str(rounds), *args) as pair:
        for worker in pair:
            worker.go()
        await asyncio.gather(*(w.finished() for w in pair))


async def test_two_processes_never_overlap_on_a_file_lock(tmp_path: Path, key: str) -> None:
    log = tmp_path / "markers"
    await contend(30, "--file", str(tmp_path / "locks"), "--key", key, "--log", str(log))
    assert len(assert_no_overlap(log, 60)) == 2


async def test_two_processes_never_overlap_on_a_redis_lock(
    tmp_path: Path, key: str, shared_redis: str
) -> None:
    log = tmp_path / "markers"
    await contend(30, "--redis", shared_redis, "--key", key, "--log", str(log))
    assert len(assert_no_overlap(log, 60)) == 2


async def test_a_killed_holder_frees_a_file_lock_at_once(tmp_path: Path, key: str) -> None:
    locks = tmp_path / "locks"
    here = FileLockBackend(locks)
    args = ("--file", str(locks), "--key", key, "--log", str(tmp_path / "markers"))
    async with workers(1, "--rounds", "0", *args) as [holder]:
        holder.go()
        assert await holder.line() == "held"
        with pytest.raises(LockTimeout):
            async with here.hold(key, wait=0.3, lease=5):
                pytest.fail("entered a lock another process holds")
        await holder.kill()
        started = time.monotonic()
        async with here.hold(key, wait=5, lease=5):
            assert time.monotonic() - started < 0.2


async def test_a_killed_holder_frees_a_redis_lock_when_its_lease_ends(
    tmp_path: Path, key: str, shared_redis: str
) -> None:
    here = RedisLockBackend(shared_redis)
    args = ("--redis", shared_redis, "--key", key, "--log", str(tmp_path / "markers"))
    try:
        async with workers(1, "--rounds", "0", "--lease", "0.5", *args) as [holder]:
            holder.go()
            assert await holder.line() == "held"
            # renewed at a third of the lease: still held well past the first lease
            await asyncio.sleep(0.8)
            with pytest.raises(LockTimeout):
                async with here.hold(key, wait=0.3, lease=5):
                    pytest.fail("entered a lock another process holds")
            await holder.kill()
            killed = time.monotonic()
            async with here.hold(key, wait=5, lease=5):
                assert time.monotonic() - killed < 0.5 + 0.4
    finally:
        await here.aclose()


async def test_holders_renew_their_lease_and_keep_the_lock_three_leases_long(
    tmp_path: Path, key: str, shared_redis: str
) -> None:
    log = tmp_path / "markers"
    await contend(
        1, "--redis", shared_redis, "--key", key, "--log", str(log), "--lease", "0.3",
        "--hold", "0.9",
    )  # fmt: skip
    assert len(assert_no_overlap(log, 2)) == 2


async def test_redis_down_is_a_lock_timeout_that_shows_no_password(key: str) -> None:
    backend = RedisLockBackend(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(LockTimeout, match="unreachable") as raised:
            async with backend.hold(key, wait=5, lease=1):
                pytest.fail("entered a lock without Redis")
        assert "hunter2" not in str(raised.value)
        assert raised.value.__cause__ is None
    finally:
        await backend.aclose()


async def test_redis_dying_while_held_does_not_fail_the_block(
    private_redis: PrivateRedis, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisLockBackend(private_redis.url)
    done = False
    try:
        with caplog.at_level(logging.WARNING, logger="cadastre.vault.locks_redis"):
            async with backend.hold(key, wait=1, lease=0.3):
                private_redis.kill()
                await asyncio.sleep(0.4)  # at least one renewal fails meanwhile
                done = True
    finally:
        await backend.aclose()
    assert done
    messages = [r.getMessage() for r in caplog.records]
    assert any("not renewed" in m for m in messages), messages
    assert any("not released" in m for m in messages), messages


async def test_postgres_advisory_locks_exclude_and_time_out(key: str) -> None:
    """Two stores (as two processes would have) on one database: the second holder waits, times
    out while the first holds, and gets the lock once it is released."""
    stores = [PostgresStore(postgres_admin_url()) for _ in range(2)]
    first, second = (PostgresLockBackend(s.engine) for s in stores)
    try:
        async with first.hold(key, wait=1, lease=5):
            with pytest.raises(LockTimeout, match="stayed held"):
                async with second.hold(key, wait=0.3, lease=5):
                    pass
            async with second.hold(f"{key}-other", wait=0.3, lease=5):
                pass  # another key is free
        async with second.hold(key, wait=1, lease=5):
            pass
    finally:
        for store in stores:
            await store.close()
