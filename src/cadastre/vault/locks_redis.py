"""Named locks in Redis, for single-flight token refresh across machines.

Taken with ``SET NX PX``: the lease bounds how long a holder that died keeps the lock. Each take
stores a random token, and both release and renewal are Lua scripts that act only while the key
still holds that token, so a holder whose lease ran out can never free or extend the next holder's
lock. While the block runs a background task renews the lease every third of it, so a slow
refresh keeps the lock without a lease long enough to stall everyone after a crash.

Redis being unreachable raises ``LockTimeout`` (transient, as waiting too long is) at once: the
caller retries later rather than refreshing without the lock. Messages name the key, never the
URL, which may carry a password.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from cadastre.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

_POLL_FIRST = 0.01  # seconds between tries of a lock held elsewhere, doubling ...
_POLL_MOST = 0.2  # ... up to this, each drawn with jitter so waiters do not retry in step

# KEYS[1] lock, ARGV[1] the holder's token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lock, ARGV[1] the holder's token, ARGV[2] lease in milliseconds.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _unreachable(error: BaseException) -> bool:
    import redis.exceptions

    return isinstance(error, redis.exceptions.RedisError | OSError | TimeoutError)


class RedisLockBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cadastre:lock:",
        timeout: float = 0.5,
        client: Any = None,
    ) -> None:
        """``timeout`` bounds every Redis call, so a dead server is noticed within it."""
        import redis.asyncio  # the driver only where Redis is configured

        self._redis = client or redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, health_check_interval=0,
        )  # fmt: skip
        self._release = self._redis.register_script(_RELEASE)
        self._renew = self._redis.register_script(_RENEW)
        self._prefix = prefix
        self._rng = random.Random()  # noqa: S311 - jitter spreads retries; it guards nothing

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, lease: float) -> AsyncIterator[None]:
        name = self._prefix + key
        token = secrets.token_hex(16)
        lease_ms = max(1, round(lease * 1000))
        await self._take(key, name, token, lease_ms, wait)
        renewing = asyncio.create_task(self._keep(key, name, token, lease_ms, lease / 3))
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.wait([renewing])  # unlike awaiting it, keeps a cancel of our own
            if not renewing.cancelled() and renewing.exception() is not None:
                log.warning("lock %r: lease renewal failed (%r)", key, renewing.exception())
            await self._give_back(key, name, token)

    async def _take(self, key: str, name: str, token: str, lease_ms: int, wait: float) -> None:
        deadline = time.monotonic() + wait
        delay = _POLL_FIRST
        while True:
            try:
                if await self._redis.set(name, token, nx=True, px=lease_ms):
                    return
            except Exception as error:
                if not _unreachable(error):
                    raise
                raise LockTimeout(
                    f"lock {key!r}: Redis is unreachable ({type(error).__name__})"
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(f"lock {key!r} still held elsewhere after {wait:g} s")
            await asyncio.sleep(min(self._rng.uniform(delay / 2, delay), remaining))
            delay = min(delay * 2, _POLL_MOST)

    async def _keep(self, key: str, name: str, token: str, lease_ms: int, every: float) -> None:
        """Renew until cancelled. A failed renewal is tried again at the next beat while the lease
        may still run; a lock found taken by another is beyond saving."""
        while True:
            await asyncio.sleep(every)
            try:
                renewed = await self._renew(keys=[name], args=[token, lease_ms])
            except Exception as error:
                if not _unreachable(error):
                    raise
                log.warning("lock %r: lease not renewed, Redis unreachable (%s)",
                            key, type(error).__name__)  # fmt: skip
                continue
            if not renewed:
                log.warning("lock %r: lease ran out while held; another may hold it now", key)
                return

    async def _give_back(self, key: str, name: str, token: str) -> None:
        """A release that fails is left to the lease: raising here would hide the block's own
        outcome (the refreshed token is already stored)."""
        try:
            await self._release(keys=[name], args=[token])
        except Exception as error:
            if not _unreachable(error):
                raise
            log.warning("lock %r: not released, Redis unreachable (%s); the lease will end it",
                        key, type(error).__name__)  # fmt: skip

    async def aclose(self) -> None:
        await self._redis.aclose()
