"""Rate-limit buckets in Redis, shared by every worker, and the fail-safe around them.

``RedisRateLimitBackend``: one Lua script per take (``EVALSHA``), atomic on the server, reading
the server's own ``TIME`` so workers with skewed clocks agree. Each take also beats the worker's
heart in a sorted set, so every worker knows how many share the limit.

``FailSafeRateLimitBackend``: when Redis cannot be reached, the limit must not fall open (Envoy's
global rate limit does by default; Cadastre must not, RELIABILITY.md #6). Each worker then keeps a
bucket of its own at ``1 / n`` of the rate, with no burst, where ``n`` is the number of workers it
last saw (never fewer than ``min_workers``), and its first local slot waits until every slot
reserved in Redis before the outage has passed (``horizon + tolerance + interval``). Redis is
tried again every ``probe_every`` seconds; on return each bucket used meanwhile is deferred past
its burst, because Redis knows nothing of what was sent locally.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

from cadastre.gateway.ratelimit import MemoryRateLimitBackend
from cadastre.ports import Reservation

if TYPE_CHECKING:
    from cadastre.observe import Metrics
    from cadastre.ports import Clock

log = logging.getLogger(__name__)

# KEYS[1] bucket (its TAT), KEYS[2] the workers' heartbeat set.
# ARGV: mode, interval, tolerance, horizon | seconds, worker id, worker ttl.
# Numbers go back as strings: Redis truncates a Lua number to an integer.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode = ARGV[1]
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local keep_ms = 86400000
local tat = tonumber(redis.call('GET', KEYS[1]))
if mode == 'defer' then
  local floor = now + tonumber(ARGV[4]) + tolerance
  if tat == nil or tat < floor then
    redis.call('SET', KEYS[1], tostring(floor), 'PX', keep_ms)
  end
  return {1, '0', 0}
end
local ttl = tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[2], math.ceil(ttl * 2000))
local workers = redis.call('ZCARD', KEYS[2])
if tat == nil then tat = now + tolerance end
local wait = math.max(tat - tolerance, now) - now
if wait > tonumber(ARGV[4]) then
  return {0, tostring(wait), workers}
end
redis.call('SET', KEYS[1], tostring(math.max(tat, now) + interval), 'PX', keep_ms)
return {1, tostring(wait), workers}
"""


class RedisRateLimitBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cadastre:rl:",
        worker: str | None = None,
        worker_ttl: float = 10.0,
        timeout: float = 0.5,
        client: Any = None,
    ) -> None:
        """``timeout`` bounds every Redis call, so a dead server is noticed within it."""
        import redis.asyncio  # the driver only where Redis is configured

        self._redis = client or redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, health_check_interval=0,
        )  # fmt: skip
        self._script = self._redis.register_script(_SCRIPT)
        self._prefix = prefix
        self._workers_key = prefix + "workers"
        self.worker = worker or uuid.uuid4().hex
        self._worker_ttl = worker_ttl
        self.workers_seen = 1  # the most seen at once

    async def reserve(
        self, key: str, interval: float, tolerance: float, horizon: float
    ) -> Reservation:
        granted, wait, workers = await self._script(
            keys=[self._prefix + key, self._workers_key],
            args=["reserve", repr(interval), repr(tolerance), repr(horizon), self.worker,
                  repr(self._worker_ttl)],
        )  # fmt: skip
        # The most workers ever seen at once: a restarted Redis has forgotten the others, and the
        # fallback share must not grow because of that.
        self.workers_seen = max(self.workers_seen, int(workers))
        return Reservation(granted=bool(granted), wait=max(0.0, float(wait)))

    async def defer(self, key: str, seconds: float, tolerance: float) -> None:
        await self._script(
            keys=[self._prefix + key, self._workers_key],
            args=["defer", "0", repr(tolerance), repr(seconds), self.worker, "0"],
        )

    async def ping(self) -> None:
        # Connections from before an outage are dead; without this the first calls after a
        # successful ping would fail on them and declare a second outage.
        await self._redis.connection_pool.disconnect()
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


def _unreachable(error: BaseException) -> bool:
    import redis.exceptions

    # Any Redis failure (down, a wrong password, a server refusing scripts) leaves the shared
    # buckets out of reach: fall back to the local share rather than fail the vendor call.
    return isinstance(error, redis.exceptions.RedisError | OSError | TimeoutError)


class FailSafeRateLimitBackend:
    def __init__(
        self,
        shared: RedisRateLimitBackend,
        clock: Clock,
        *,
        min_workers: int = 1,
        probe_every: float = 1.0,
        horizon: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._shared = shared
        self._clock = clock
        self._local = MemoryRateLimitBackend(clock)
        self._min_workers = max(1, min_workers)
        self._probe_every = probe_every
        self._horizon = horizon
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self._share = 1
        self._used_locally: dict[str, float] = {}  # key -> tolerance, to defer on recovery
        self._gauge = metrics.gauge("cadastre_ratelimit_fallback") if metrics else None
        self.fallbacks = 0  # outages noticed, for tests and the pipeline's records

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def reserve(
        self, key: str, interval: float, tolerance: float, horizon: float
    ) -> Reservation:
        if self.degraded and not await self._recovered():
            return await self._reserve_locally(key, interval, tolerance, horizon)
        try:
            return await self._shared.reserve(key, interval, tolerance, horizon)
        except Exception as error:
            if not _unreachable(error):
                raise
            self._fall_back(error)
            return await self._reserve_locally(key, interval, tolerance, horizon)

    async def defer(self, key: str, seconds: float, tolerance: float) -> None:
        await self._local.defer(key, seconds, 0.0)
        if self.degraded:
            return
        try:
            await self._shared.defer(key, seconds, tolerance)
        except Exception as error:
            if not _unreachable(error):
                raise
            self._fall_back(error)

    async def _reserve_locally(
        self, key: str, interval: float, tolerance: float, horizon: float
    ) -> Reservation:
        if key not in self._used_locally:
            self._used_locally[key] = tolerance
            # Slots reserved in Redis before the outage end by now + horizon; the shared TAT
            # lies at most tolerance + interval beyond that.
            await self._local.defer(key, self._horizon + tolerance + interval, 0.0)
        share = self._share
        # No burst locally: the n workers each sending a slot at the same moment are the burst.
        # When n is more than the rule's burst, each slows by as much again.
        burst = round(tolerance / interval) + 1
        local_interval = interval * share * math.ceil(share / burst)
        return await self._local.reserve(key, local_interval, 0.0, horizon)

    def _fall_back(self, error: BaseException) -> None:
        now = self._clock.monotonic()
        if self._down_since is None:
            self._down_since = now
            self.fallbacks += 1
            self._share = max(self._min_workers, self._shared.workers_seen)
            log.warning(
                "rate limits: Redis unreachable (%s); each of %d workers keeps 1/%d of every "
                "limit locally until it is back",
                type(error).__name__, self._share, self._share,
            )  # fmt: skip
            if self._gauge is not None:
                self._gauge.set(1)
        self._next_probe = now + self._probe_every

    async def _recovered(self) -> bool:
        now = self._clock.monotonic()
        if now < self._next_probe or self._probing:
            return False
        self._probing = True  # one probe at a time; the other callers keep the local share
        try:
            await self._shared.ping()
            # Redis knows nothing of what was sent locally: spend each bucket's burst there, and
            # keep it behind the slots this worker already promised locally.
            for key, tolerance in list(self._used_locally.items()):
                await self._shared.defer(key, self._local.pending(key), tolerance)
        except Exception as error:
            if not _unreachable(error):
                raise
            self._next_probe = self._clock.monotonic() + self._probe_every
            return False
        finally:
            self._probing = False
        log.warning("rate limits: Redis is back; buckets are shared again")
        self._down_since = None
        self._used_locally.clear()
        await self._local.aclose()
        if self._gauge is not None:
            self._gauge.set(0)
        return True

    async def aclose(self) -> None:
        await self._shared.aclose()
