"""``PostgresLockBackend``: the ``LockBackend`` port on PostgreSQL session advisory locks, for the
distributed mode without Redis (the issue names "a Redis or PostgreSQL lock").

A holder keeps one pooled connection for the block and takes ``pg_try_advisory_lock`` on a 64-bit
hash of the key, polling with backoff until ``wait``; PostgreSQL releases the lock the moment that
connection ends, so a holder killed mid-refresh frees it at once (``lease`` is not needed).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import text

from cadastre.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine


class PostgresLockBackend:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine  # the store's: closed with it

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, lease: float) -> AsyncIterator[None]:
        lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        deadline = time.monotonic() + wait
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            pause = 0.01
            while not (
                await conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id})
            ).scalar():
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"lock {key!r} stayed held for {wait:g} s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})

    async def aclose(self) -> None:
        return None
