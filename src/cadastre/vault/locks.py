"""Named locks for single-flight token refresh, in one process or across processes on one machine.

A refresh token may be spent only once: two workers refreshing one credential at the same moment
can each send it, and some vendors then revoke both. So exactly one holder refreshes while the
others wait for the lock and re-read the credential it stored.

``MemoryLockBackend`` serves one process (tests, a single worker). It keeps an ``asyncio.Lock``
per key only while someone holds or awaits it, so keys named after credentials do not accumulate.

``FileLockBackend`` serves every process on one machine, the embedded default: ``flock`` on a file
per key. The kernel releases it when the holder dies, however it dies, so ``lease`` is not needed.
Coroutines of one process first queue on an in-process lock, so only one of them polls the file.
The files stay (one per key ever locked): unlinking a lock file while another process has it open
would let two holders lock two different inodes of one name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cadastre.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_POLL_FIRST = 0.005  # seconds between tries of a file lock held elsewhere, doubling ...
_POLL_MOST = 0.1  # ... up to this


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # the holder and the waiters; the entry goes when none is left


class MemoryLockBackend:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @property
    def keys_in_use(self) -> int:
        """Keys with a holder or a waiter: the only ones kept."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, lease: float) -> AsyncIterator[None]:
        """``lease`` does not apply: a process that dies takes its locks with it."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    await entry.lock.acquire()
            except TimeoutError:
                raise LockTimeout(f"lock {key!r} still held after {wait:g} s") from None
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    async def aclose(self) -> None:
        pass


class FileLockBackend:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """The directory is made private (0700): lock files name no secret, but another user
        able to lock them could stall every refresh."""
        self._directory = Path(directory)
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._local = MemoryLockBackend()

    @property
    def keys_in_use(self) -> int:
        return self._local.keys_in_use

    def path(self, key: str) -> Path:
        """The key hashed: any key makes a safe file name, and the name reveals nothing."""
        return self._directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, lease: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + wait
        async with self._local.hold(key, wait=wait, lease=lease):
            fd = os.open(self.path(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                await _flock(fd, key, wait, deadline)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    async def aclose(self) -> None:
        pass


async def _flock(fd: int, key: str, wait: float, deadline: float) -> None:
    """Non-blocking tries with growing sleeps between: a blocking ``flock`` in a worker thread
    could not be abandoned at the deadline, and would hold the thread until the lock came."""
    delay = _POLL_FIRST
    while True:
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"lock {key!r} still held by another process after {wait:g} s")
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MOST)
