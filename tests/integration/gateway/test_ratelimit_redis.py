"""Rate-limit buckets in a real Redis: workers share one limit, and when Redis dies each falls back
to a local share instead of to no limit (RELIABILITY.md #5, #6). Real time, real sockets; the
vendor's sliding window is metered with the simulators' own meter on ``time.monotonic()``."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from cadastre.clock import SystemClock
from cadastre.gateway import FailSafeRateLimitBackend, RedisRateLimitBackend
from cadastre.gateway.ratelimit import RateLimiter, RateRule
from cadastre.simulators.ratelimit import RateLimit as VendorWindow
from cadastre.simulators.ratelimit import RateLimiter as VendorMeter
from tests.conftest import service_missing
from tests.redis_server import PrivateRedis, answers

SHARED = "redis://127.0.0.1:6379/0"
RULE = RateRule(requests=20, per=1.0, burst=4)  # 18 usable: a slot each 1/14 s after the burst


@pytest.fixture
async def shared_redis() -> str:
    if not answers(6379):
        service_missing("redis", "Redis is not answering on 127.0.0.1:6379")
    return SHARED


def prefix() -> str:
    return f"cadastre-test:{uuid.uuid4().hex}:"


async def hammer(
    buckets: list[RateLimiter], callers: int, seconds: float, sent: list[float]
) -> None:
    """Every bucket (one per worker) gets ``callers`` tasks taking slots as fast as granted."""
    stop = time.monotonic() + seconds

    async def caller(bucket: RateLimiter) -> None:
        while time.monotonic() < stop:
            await bucket.acquire(None, "test")
            sent.append(time.monotonic())

    await asyncio.gather(*(caller(b) for b in buckets for _ in range(callers)))


def violations(sent: list[float], rule: RateRule) -> int:
    meter = VendorMeter(VendorWindow(rule.requests, rule.per))
    return sum(not meter.admit(t).admitted for t in sorted(sent))


async def test_two_workers_share_one_limit_through_redis(shared_redis: str) -> None:
    clock = SystemClock()
    keyspace = prefix()
    workers = [RedisRateLimitBackend(shared_redis, prefix=keyspace) for _ in range(2)]
    buckets = [RateLimiter("quota:demo", RULE, w, clock) for w in workers]
    sent: list[float] = []
    try:
        await hammer(buckets, callers=16, seconds=3.0, sent=sent)
    finally:
        for worker in workers:
            await worker.aclose()
    assert violations(sent, RULE) == 0
    # One shared budget: together about the rule's pace, not twice it. Callers queued at the
    # stop still get their slots, so the span runs past the 3 s.
    steady = (RULE.usable - RULE.burst_size) / RULE.per
    span = max(sent) - min(sent)
    assert 0.8 * steady * span <= len(sent) <= steady * span + RULE.burst_size + 1
    assert {w.workers_seen for w in workers} == {2}


async def test_skewed_worker_clocks_do_not_matter_the_script_reads_redis_time(
    shared_redis: str,
) -> None:
    class Skewed(SystemClock):
        def __init__(self, skew: float) -> None:
            self.skew = skew

        def monotonic(self) -> float:
            return super().monotonic() + self.skew

    keyspace = prefix()
    workers = [RedisRateLimitBackend(shared_redis, prefix=keyspace) for _ in range(2)]
    skews = (-2.0, 2.0)
    buckets = [
        RateLimiter("quota:demo", RULE, w, Skewed(s)) for w, s in zip(workers, skews, strict=True)
    ]
    sent: list[float] = []
    try:
        await hammer(buckets, callers=8, seconds=2.0, sent=sent)
    finally:
        for worker in workers:
            await worker.aclose()
    assert violations(sent, RULE) == 0


async def test_when_redis_dies_every_worker_keeps_a_local_share_and_recovers(
    tmp_path: Path,
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    clock = SystemClock()
    workers = [
        FailSafeRateLimitBackend(
            RedisRateLimitBackend(redis.url, prefix="t:"), clock, probe_every=0.5
        )
        for _ in range(2)
    ]
    buckets = [RateLimiter("quota:demo", RULE, w, clock) for w in workers]
    sent: list[float] = []

    async def outage() -> tuple[float, float]:
        await asyncio.sleep(2.0)
        killed = time.monotonic()
        redis.kill()
        await asyncio.sleep(2.5)
        redis.start()  # empty: it kept nothing on disk
        return killed, time.monotonic()

    try:
        (killed, restarted), _ = await asyncio.gather(
            outage(), hammer(buckets, callers=8, seconds=7.0, sent=sent)
        )
    finally:
        redis.kill()
        for worker in workers:
            await worker.aclose()
    assert violations(sent, RULE) == 0
    assert all(w.fallbacks == 1 for w in workers)
    assert not any(w.degraded for w in workers)  # back on Redis by itself
    during = [t for t in sent if killed < t < restarted]
    after = [t for t in sent if t > restarted + 1.0]
    # Calls went on during the outage (queued, then the local shares), and after it.
    assert len(during) > 0
    assert len(after) > 0
    # each worker took 1/2 of the rule without burst while Redis was gone
    assert len(during) <= (restarted - killed) * (RULE.usable - RULE.burst_size) / RULE.per + 2
