"""The in-process and file lock backends: one holder at a time, a bounded wait, release however
the block ends, keys independent, nothing kept for keys no one holds."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cadastre.errors import LockTimeout, Transient
from cadastre.ports import LockBackend
from cadastre.vault.locks import FileLockBackend, MemoryLockBackend


@pytest.fixture(params=["memory", "file"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryLockBackend | FileLockBackend]:
    made = MemoryLockBackend() if request.param == "memory" else FileLockBackend(tmp_path / "l")
    yield made
    await made.aclose()


def test_both_satisfy_the_port(tmp_path: Path) -> None:
    backends: list[LockBackend] = [MemoryLockBackend(), FileLockBackend(tmp_path)]
    assert len(backends) == 2


async def test_fifty_coroutines_hold_the_lock_one_at_a_time(
    backend: MemoryLockBackend | FileLockBackend,
) -> None:
    counter = 0
    holders = 0
    most = 0

    async def bump() -> None:
        nonlocal counter, holders, most
        async with backend.hold("token:acme", wait=10, lease=5):
            holders += 1
            most = max(most, holders)
            seen = counter
            await asyncio.sleep(0.001)
            counter = seen + 1
            holders -= 1

    await asyncio.gather(*(bump() for _ in range(50)))
    assert counter == 50
    assert most == 1
    assert backend.keys_in_use == 0


async def test_a_waiter_gives_up_after_wait(backend: MemoryLockBackend | FileLockBackend) -> None:
    async with backend.hold("token:acme", wait=1, lease=5):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="token:acme") as raised:
            async with backend.hold("token:acme", wait=0.2, lease=5):
                pytest.fail("entered a held lock")
        assert 0.15 <= time.monotonic() - started < 1.0
        assert isinstance(raised.value, Transient)
    assert backend.keys_in_use == 0


async def test_a_failing_block_releases_the_lock(
    backend: MemoryLockBackend | FileLockBackend,
) -> None:
    with pytest.raises(RuntimeError, match="refresh failed"):
        async with backend.hold("token:acme", wait=1, lease=5):
            raise RuntimeError("refresh failed")
    async with backend.hold("token:acme", wait=0.1, lease=5):
        pass
    assert backend.keys_in_use == 0


async def test_different_keys_do_not_block_each_other(
    backend: MemoryLockBackend | FileLockBackend,
) -> None:
    async with backend.hold("token:acme", wait=1, lease=5):
        assert backend.keys_in_use == 1
        async with backend.hold("token:globex", wait=0.1, lease=5):
            assert backend.keys_in_use == 2
    assert backend.keys_in_use == 0


async def test_a_cancelled_waiter_leaves_the_lock_usable(
    backend: MemoryLockBackend | FileLockBackend,
) -> None:
    entered = asyncio.Event()

    async def waiter() -> None:
        async with backend.hold("token:acme", wait=10, lease=5):
            entered.set()

    async with backend.hold("token:acme", wait=1, lease=5):
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not entered.is_set()
    assert backend.keys_in_use == 0
    async with backend.hold("token:acme", wait=0.1, lease=5):
        pass


async def test_many_keys_leave_nothing_behind_in_memory() -> None:
    backend = MemoryLockBackend()
    for n in range(1000):
        async with backend.hold(f"token:{n}", wait=1, lease=5):
            pass
    async with backend.hold("busy", wait=1, lease=5):
        with pytest.raises(LockTimeout):
            async with backend.hold("busy", wait=0.01, lease=5):
                pass
    assert backend.keys_in_use == 0


async def test_two_file_backends_exclude_each_other_through_the_file(tmp_path: Path) -> None:
    # Two instances share no in-process lock: only flock keeps them apart, as two processes.
    first, second = FileLockBackend(tmp_path), FileLockBackend(tmp_path)
    async with first.hold("token:acme", wait=1, lease=5):
        with pytest.raises(LockTimeout, match="another process"):
            async with second.hold("token:acme", wait=0.2, lease=5):
                pytest.fail("entered a held lock")
    async with second.hold("token:acme", wait=0.1, lease=5):
        pass


async def test_file_backend_keeps_its_directory_private_and_names_hashed(tmp_path: Path) -> None:
    backend = FileLockBackend(tmp_path / "locks" / "nested")
    assert stat.S_IMODE((tmp_path / "locks" / "nested").stat().st_mode) == 0o700
    async with backend.hold("env:ACME/../../etc", wait=1, lease=5):
        pass
    [lock_file] = (tmp_path / "locks" / "nested").iterdir()
    assert lock_file == backend.path("env:ACME/../../etc")
    assert len(lock_file.stem) == 32
    assert "ACME" not in lock_file.name
