"""GCRA buckets on the fake clock: the vendor's window is never exceeded, bursts are allowed after
idling, the vendor's own headers slow the limiter down, and a wait past the deadline sends
nothing."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import httpx
import pytest
import redis.exceptions

from cadastre.errors import ConfigurationError, VendorRateLimited
from cadastre.gateway import FailSafeRateLimitBackend, Gateway, VendorPolicy
from cadastre.gateway.controls import Guards
from cadastre.gateway.ratelimit import MemoryRateLimitBackend, RateLimiter, RateRule
from cadastre.simulators.ratelimit import RateLimit as VendorWindow
from cadastre.simulators.ratelimit import RateLimiter as VendorMeter
from cadastre.testing import FakeClock


def limiter(clock: FakeClock, rule: RateRule, key: str = "quota:demo") -> RateLimiter:
    return RateLimiter(key, rule, MemoryRateLimitBackend(clock), clock)


def test_the_rule_derives_gcra_from_the_vendors_window() -> None:
    rule = RateRule(requests=10, per=1.0, burst=3, headroom=0.1)
    assert rule.usable == 9
    assert rule.interval == pytest.approx(1 / 6)  # 9 - 3 left for the steady part of a window
    assert rule.tolerance == pytest.approx(2 / 6)
    assert RateRule(requests=100, per=60).burst_size == 22  # a quarter of the 90 usable


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"requests": 1}, "requests must be an integer of at least 2"),
        ({"requests": 10, "per": 0}, "per must be a positive number"),
        ({"requests": 10, "headroom": 1.0}, "headroom must be at least 0 and below 1"),
        ({"requests": 10, "burst": 9}, "burst must be at least 1 and below the 9"),
        ({"requests": 10, "burst": 0}, "burst must be at least 1"),
    ],
)
def test_a_rule_that_cannot_keep_the_window_is_refused(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RateRule(**kwargs)


async def drive(clock: FakeClock, bucket: RateLimiter, callers: int, seconds: float) -> list[float]:
    """``callers`` tasks take slots as fast as they are given for ``seconds`` of fake time."""
    sent: list[float] = []

    async def caller() -> None:
        while clock.monotonic() < seconds:
            await bucket.acquire(None, "test")
            sent.append(clock.monotonic())

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    while clock.monotonic() < seconds + 2:
        await asyncio.sleep(0)
        clock.advance(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return sent


@pytest.mark.parametrize(("requests", "per", "burst"), [(10, 1.0, 3), (5, 2.0, 1), (60, 60.0, 10)])
async def test_many_callers_never_break_the_vendors_sliding_window(
    requests: int, per: float, burst: int
) -> None:
    clock = FakeClock()
    rule = RateRule(requests=requests, per=per, burst=burst, headroom=0.0)
    sent = await drive(clock, limiter(clock, rule), callers=32, seconds=per * 5)
    meter = VendorMeter(VendorWindow(requests, per))
    refused = sum(not meter.admit(t).admitted for t in sent)
    assert refused == 0
    # and it is not merely idle: it uses most of what the rule allows
    assert len(sent) >= 0.8 * (rule.usable - rule.burst_size) * 5


async def test_a_bucket_paced_only_to_the_rate_does_break_the_window() -> None:
    """The meter above can fail: GCRA at the bare rate (interval per / requests) with a full
    burst puts more than ``requests`` into one window, which is why ``RateRule`` paces to the
    window instead."""
    clock = FakeClock()
    backend = MemoryRateLimitBackend(clock)
    interval = 1.0 / 10
    tolerance = 9 * interval
    await backend.reserve("naive", interval, tolerance, horizon=1e9)
    clock.advance(5.0)  # idle: the whole burst is back
    sent: list[float] = []
    while clock.monotonic() < 8.0:
        reservation = await backend.reserve("naive", interval, tolerance, horizon=0.0)
        if reservation.granted:
            sent.append(clock.monotonic())
        else:
            clock.advance(0.001)
    meter = VendorMeter(VendorWindow(10, 1.0))
    assert sum(not meter.admit(t).admitted for t in sent) > 0


async def test_a_fresh_bucket_counts_its_burst_as_spent_and_refills_when_idle() -> None:
    clock = FakeClock()
    rule = RateRule(requests=10, per=1.0, burst=4, headroom=0.0)
    bucket = limiter(clock, rule)
    waits = [await _reserve_wait(bucket) for _ in range(3)]
    assert waits[0] == pytest.approx(0.0)
    assert waits[1] == pytest.approx(rule.interval)  # no burst on first sight
    clock.advance(5.0)  # idle: the burst refills
    backend_waits = [await _reserve_wait(bucket) for _ in range(4)]
    assert backend_waits == pytest.approx([0.0, 0.0, 0.0, 0.0])
    assert await _reserve_wait(bucket) > 0


async def _reserve_wait(bucket: RateLimiter) -> float:
    reservation = await bucket._backend.reserve(
        bucket.key, bucket.rule.interval, bucket.rule.tolerance, horizon=1e9
    )
    assert reservation.granted
    return reservation.wait - 0.0


async def test_reservations_beyond_the_horizon_are_not_taken() -> None:
    clock = FakeClock()
    backend = MemoryRateLimitBackend(clock)
    rule = RateRule(requests=3, per=10.0, burst=1, headroom=0.0)  # one slot per 5 s
    first = await backend.reserve("k", rule.interval, rule.tolerance, horizon=1.0)
    second = await backend.reserve("k", rule.interval, rule.tolerance, horizon=1.0)
    third = await backend.reserve("k", rule.interval, rule.tolerance, horizon=1.0)
    assert first.granted
    assert not second.granted
    assert second.wait == pytest.approx(5.0)
    assert third.wait == pytest.approx(5.0)  # the refused ask reserved nothing


def answer(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://v.test"))


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "7"}, {"Retry-After": "Thu, 01 Jan 2026 00:00:07 GMT"},
     {"RateLimit-Reset": "7"}, {"X-RateLimit-Reset": "7"}],
)  # fmt: skip
async def test_a_429_defers_every_slot_past_what_the_vendor_asked(headers: dict[str, str]) -> None:
    clock = FakeClock()  # starts at 2026-01-01T00:00:00Z, so the HTTP-date is 7 s ahead
    bucket = limiter(clock, RateRule(requests=100, per=1.0, headroom=0.0))
    await bucket.observe(answer(429, headers))
    assert bucket.headroom == 0.0
    assert await _reserve_wait(bucket) >= 7.0


async def test_a_429_without_any_hint_skips_a_whole_window() -> None:
    clock = FakeClock()
    bucket = limiter(clock, RateRule(requests=100, per=3.0, headroom=0.0))
    await bucket.observe(answer(429, {"Retry-After": "soon"}))
    assert await _reserve_wait(bucket) >= 3.0


@pytest.mark.parametrize("prefix", ["X-RateLimit-", "RateLimit-"])
async def test_remaining_zero_waits_for_the_reset(prefix: str) -> None:
    clock = FakeClock()
    bucket = limiter(clock, RateRule(requests=100, per=1.0, headroom=0.0))
    await bucket.observe(
        answer(200, {f"{prefix}Limit": "50", f"{prefix}Remaining": "0", f"{prefix}Reset": "5"})
    )
    assert await _reserve_wait(bucket) >= 5.0
    assert bucket.headroom == 0.0


async def test_low_remaining_spreads_what_is_left_over_the_time_to_reset() -> None:
    clock = FakeClock()
    bucket = limiter(clock, RateRule(requests=1000, per=1.0, headroom=0.0))
    await bucket.observe(answer(200, {"RateLimit-Limit": "100", "RateLimit-Remaining": "3",
                                      "RateLimit-Reset": "8"}))  # fmt: skip
    assert await _reserve_wait(bucket) >= 2.0  # 8 s over the 3 left and the one after
    plenty = limiter(clock, RateRule(requests=1000, per=1.0, headroom=0.0), key="quota:other")
    await plenty.observe(answer(200, {"RateLimit-Limit": "100", "RateLimit-Remaining": "60",
                                      "RateLimit-Reset": "8"}))  # fmt: skip
    assert await _reserve_wait(plenty) < 0.1
    assert plenty.headroom == pytest.approx(0.6)


async def test_the_structured_ratelimit_field_is_read() -> None:
    clock = FakeClock()
    bucket = limiter(clock, RateRule(requests=1000, per=1.0, headroom=0.0))
    await bucket.observe(answer(200, {"RateLimit": '"default";r=0;t=4'}))
    assert await _reserve_wait(bucket) >= 4.0


async def test_a_slot_past_the_deadline_fails_the_call_at_once_and_sends_nothing() -> None:
    clock = FakeClock()
    sent: list[httpx.Request] = []
    rule = RateRule(requests=3, per=60.0, burst=1, headroom=0.0)  # one call per 30 s
    bucket = limiter(clock, rule)
    guards = Guards(limiters=(bucket,), vendor_limiter=bucket)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    policy = VendorPolicy(vendor="demo", total=10.0, max_attempts=3)
    async with Gateway("https://vendor.test", policy, clock=clock, guards=guards,
                       transport=httpx.MockTransport(handler)) as gw:  # fmt: skip
        await gw.get("a")
        before = clock.monotonic()
        with pytest.raises(VendorRateLimited, match="past the call's deadline") as caught:
            await gw.get("b")
    assert len(sent) == 1
    assert clock.monotonic() == before  # nobody slept on a slot it could not use
    assert caught.value.retry_after == pytest.approx(30.0)


async def test_every_attempt_pays_the_rate_limit() -> None:
    clock = FakeClock(autojump=True)
    statuses = iter([503, 503, 200])
    rule = RateRule(requests=12, per=1.0, burst=1, headroom=0.0)  # a slot each 1/11 s
    bucket = limiter(clock, rule)
    guards = Guards(limiters=(bucket,), vendor_limiter=bucket)
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.monotonic())
        return httpx.Response(next(statuses))

    policy = VendorPolicy(vendor="demo", backoff_base=0.001, backoff_cap=0.001)
    transport = httpx.MockTransport(handler)
    async with Gateway("https://vendor.test", policy, clock=clock, guards=guards,
                       transport=transport, rng=random.Random(1)) as gw:  # fmt: skip
        await gw.get("x")
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= rule.interval - 1e-9 for gap in gaps)


async def test_any_redis_failure_falls_back_to_the_local_share() -> None:
    """A Redis that answers but refuses (a wrong password, say) is as unusable as a dead one."""

    class Refusing:
        workers_seen = 2

        async def reserve(self, *args: object) -> None:
            raise redis.exceptions.ResponseError("NOAUTH Authentication required.")

        async def ping(self) -> None:
            raise redis.exceptions.ResponseError("NOAUTH Authentication required.")

    clock = FakeClock()
    backend = FailSafeRateLimitBackend(Refusing(), clock)  # type: ignore[arg-type]
    first = await backend.reserve("k", 0.1, 0.0, horizon=1e9)
    assert backend.degraded
    assert first.granted
    assert first.wait >= 1.0  # queued behind what Redis may have handed out before
