"""RetryTransport on a fake clock: every wait is fake time, nothing sleeps for real."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from cadastre.errors import VendorRateLimited, VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.gateway.retry import ATTEMPTS, RetryTransport, backoff_ceiling
from cadastre.testing import FakeClock

from .conftest import Ceiling

Handler = Callable[[httpx.Request], httpx.Response]


class Vendor:
    """A scripted vendor: answers (responses, or exceptions to raise) in order, recording when
    each attempt arrived on the clock."""

    def __init__(self, clock: FakeClock, *answers: httpx.Response | Exception) -> None:
        self.clock = clock
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.times: list[float] = []
        self.bodies: list[bytes] = []
        self.timeouts: list[dict[str, float]] = []
        self.last: httpx.Response | Exception = httpx.Response(200)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(self.clock.monotonic())
        self.bodies.append(request.read())
        self.timeouts.append(dict(request.extensions["timeout"]))
        self.last = next(self.answers, self.last)
        if isinstance(self.last, Exception):
            raise self.last
        return self.last

    @property
    def attempts(self) -> int:
        return len(self.times)


def retrying(vendor: Vendor, clock: FakeClock, rng: random.Random | None = None, **policy: object):
    settings: dict[str, object] = {"vendor": "demo", **policy}
    return RetryTransport(
        httpx.MockTransport(vendor), VendorPolicy(**settings),  # type: ignore[arg-type]
        clock, rng or random.Random(7),
    )  # fmt: skip


async def send(transport: RetryTransport, method: str = "GET", **kw: object) -> httpx.Response:
    request = httpx.Request(method, "https://vendor.test/Property?token=qs", **kw)  # type: ignore[arg-type]
    return await transport.handle_async_request(request)


def timeout(request_method: str = "GET") -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out", request=httpx.Request(request_method, "https://v.test"))


async def test_503_then_200_is_retried_and_the_answer_carries_its_attempts(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(503), httpx.Response(200))
    response = await send(retrying(vendor, clock))
    assert response.status_code == 200
    assert vendor.attempts == 3
    assert response.extensions[ATTEMPTS] == 3


async def test_gives_up_after_max_attempts_and_returns_the_last_answer(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503))
    response = await send(retrying(vendor, clock, max_attempts=4))
    assert (response.status_code, vendor.attempts) == (503, 4)
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_a_4xx_or_unlisted_5xx_is_not_retried(clock, status: int) -> None:
    vendor = Vendor(clock, httpx.Response(status))
    response = await send(retrying(vendor, clock))
    assert (response.status_code, vendor.attempts, clock.sleeps) == (status, 1, [])


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 504])
async def test_retryable_statuses(clock, status: int) -> None:
    vendor = Vendor(clock, httpx.Response(status), httpx.Response(200))
    assert (await send(retrying(vendor, clock))).status_code == 200
    assert vendor.attempts == 2


async def test_429_with_retry_after_7_waits_at_least_7_seconds(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200))
    assert (await send(retrying(vendor, clock))).status_code == 200
    assert vendor.times[1] - vendor.times[0] >= 7


async def test_429_with_an_http_date_7_seconds_ahead_waits_at_least_7_seconds(clock) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=7), usegmt=True)
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200))
    assert (await send(retrying(vendor, clock))).status_code == 200
    assert vendor.times[1] - vendor.times[0] >= 7


async def test_nothing_is_sent_before_retry_after_has_passed() -> None:
    """On a plain FakeClock: the retry stays parked until time is moved past the wait."""
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200))
    call = asyncio.create_task(send(retrying(vendor, clock)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert (vendor.attempts, clock.sleepers) == (1, 1)
    clock.advance(6.99)
    for _ in range(5):
        await asyncio.sleep(0)
    assert vendor.attempts == 1
    clock.advance(0.01)
    assert (await call).status_code == 200
    assert vendor.times == [0.0, 7.0]


async def test_a_malformed_retry_after_falls_back_to_backoff(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "later"}),
                    httpx.Response(200))  # fmt: skip
    await send(retrying(vendor, clock, rng=Ceiling()))
    assert clock.sleeps == [0.5]


async def test_rate_limit_reset_is_honoured_when_retry_after_is_missing(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"X-RateLimit-Reset": "12"}),
                    httpx.Response(200))  # fmt: skip
    await send(retrying(vendor, clock))
    assert clock.sleeps[0] >= 12


async def test_retry_after_over_the_cap_is_not_slept(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "3600"}))
    response = await send(retrying(vendor, clock, retry_after_cap=300))
    assert (response.status_code, vendor.attempts, clock.sleeps) == (429, 1, [])


async def test_a_gateway_turns_it_into_vendor_rate_limited_with_the_wait(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "3600"}))
    gateway = Gateway("https://vendor.test", VendorPolicy(vendor="demo"), clock=clock,
                      transport=httpx.MockTransport(vendor))  # fmt: skip
    with pytest.raises(VendorRateLimited) as raised:
        await gateway.get("/Property")
    assert raised.value.retry_after == 3600
    assert (vendor.attempts, clock.sleeps, clock.monotonic()) == (1, [], 0.0)


async def test_backoff_is_capped_exponential(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503))
    await send(retrying(vendor, clock, rng=Ceiling(), max_attempts=9, total=1000))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_full_jitter_stays_within_zero_and_the_ceiling(clock) -> None:
    policy = {"max_attempts": 10, "total": 10_000, "backoff_base": 0.5, "backoff_cap": 30.0}
    for seed in range(30):
        clock.sleeps.clear()
        vendor = Vendor(clock, httpx.Response(503))
        await send(retrying(vendor, clock, rng=random.Random(seed), **policy))
        assert len(clock.sleeps) == 9
        for n, slept in enumerate(clock.sleeps):
            assert 0.0 <= slept <= min(30.0, 0.5 * 2**n)
    assert backoff_ceiling(VendorPolicy(vendor="demo"), 10_000) == 30.0


async def test_the_jitter_is_spread_not_fixed(clock) -> None:
    firsts = []
    for seed in range(200):
        clock.sleeps.clear()
        vendor = Vendor(clock, httpx.Response(503), httpx.Response(200))
        await send(retrying(vendor, clock, rng=random.Random(seed)))
        firsts.append(clock.sleeps[0])
    # uniform on [0, 0.5]: each quarter of the range gets a fair share of 200 draws
    quarters = [sum(1 for s in firsts if q * 0.125 <= s < (q + 1) * 0.125) for q in range(4)]
    assert all(25 <= count <= 75 for count in quarters), quarters


async def test_the_total_deadline_stops_the_retries(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503))
    response = await send(retrying(vendor, clock, rng=Ceiling(), max_attempts=100, total=10))
    # waits 0.5 + 1 + 2 + 4 = 7.5 s; the next (8 s) would end past 10 s, so it is not started
    assert (response.status_code, vendor.attempts) == (503, 5)
    assert clock.monotonic() == 7.5


async def test_a_retry_after_past_the_deadline_is_not_waited(clock) -> None:
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": "7"}))
    response = await send(retrying(vendor, clock, total=10))
    assert (response.status_code, vendor.attempts, clock.monotonic()) == (429, 2, 7.0)


async def test_each_attempt_is_cut_to_the_time_left(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(200))
    await send(retrying(vendor, clock, rng=Ceiling(), read=30, connect=5, total=10))
    assert vendor.timeouts[0] == {"connect": 5, "read": 10, "write": 10, "pool": 5}
    assert vendor.timeouts[1] == {"connect": 5, "read": 9.5, "write": 9.5, "pool": 5}


async def test_a_read_timeout_on_get_is_retried(clock) -> None:
    vendor = Vendor(clock, timeout(), httpx.Response(200))
    assert (await send(retrying(vendor, clock))).status_code == 200


async def test_a_post_without_a_key_is_not_resent_after_a_timeout(clock) -> None:
    vendor = Vendor(clock, timeout("POST"), httpx.Response(201))
    with pytest.raises(httpx.ReadTimeout):
        await send(retrying(vendor, clock), "POST", content=b"{}")
    assert vendor.attempts == 1


async def test_a_post_without_a_key_is_not_resent_after_a_503(clock) -> None:
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(201))
    response = await send(retrying(vendor, clock), "POST", content=b"{}")
    assert (response.status_code, vendor.attempts) == (503, 1)


async def test_a_post_with_an_idempotency_key_is_resent_whole(clock) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    class Streaming(httpx.AsyncBaseTransport):
        """Reads the request body as a socket transport does (MockTransport buffers it first)."""

        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.bodies.append(b"".join([part async for part in request.stream]))  # type: ignore[union-attr]
            if len(self.bodies) == 1:
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(201)

    inner = Streaming()
    transport = RetryTransport(inner, VendorPolicy(vendor="demo"), clock, random.Random(1))
    request = httpx.Request("POST", "https://vendor.test/x", content=body(),
                            headers={"Idempotency-Key": "k-1"})  # fmt: skip
    response = await transport.handle_async_request(request)
    assert response.status_code == 201
    assert inner.bodies == [b'{"a":1}', b'{"a":1}']


async def test_a_post_that_never_connected_may_be_resent(clock) -> None:
    refused = httpx.ConnectError("refused", request=httpx.Request("POST", "https://v.test"))
    vendor = Vendor(clock, refused, httpx.Response(201))
    response = await send(retrying(vendor, clock), "POST", content=b"{}")
    assert (response.status_code, vendor.attempts) == (201, 2)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_idempotent_methods_are_resent(clock, method: str) -> None:
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(200))
    assert (await send(retrying(vendor, clock), method)).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_unsafe_methods_are_not(clock, method: str) -> None:
    vendor = Vendor(clock, httpx.Response(502), httpx.Response(200))
    assert (await send(retrying(vendor, clock), method)).status_code == 502


async def test_exhausted_errors_are_raised_as_they_are(clock) -> None:
    vendor = Vendor(clock, timeout())
    with pytest.raises(httpx.ReadTimeout):
        await send(retrying(vendor, clock, max_attempts=3))
    assert vendor.attempts == 3


async def test_dropped_answers_are_read_and_closed(clock) -> None:
    closed: list[bool] = []

    class Tracked(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b"busy"

        async def aclose(self) -> None:
            closed.append(True)

    busy = [httpx.Response(503, stream=Tracked()) for _ in range(2)]
    vendor = Vendor(clock, *busy, httpx.Response(200))
    await send(retrying(vendor, clock))
    assert closed == [True, True]


async def test_a_body_that_breaks_off_is_retried(clock) -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'{"value": ['
            raise httpx.RemoteProtocolError("peer closed connection mid-body")

    vendor = Vendor(clock, httpx.Response(200, stream=Broken()), httpx.Response(200, json=[]))
    response = await send(retrying(vendor, clock))
    assert (response.content, vendor.attempts) == (b"[]", 2)


async def test_a_retry_is_logged_by_path_without_the_query(clock, caplog) -> None:
    caplog.set_level("DEBUG", logger="cadastre.gateway")
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(200))
    await send(retrying(vendor, clock))
    text = caplog.text
    assert "GET /Property: 503 Service Unavailable on attempt 1; retrying" in text
    assert "token=qs" not in text


async def test_unavailable_from_below_is_retried_even_for_post(clock) -> None:
    vendor = Vendor(clock, VendorUnavailable("token endpoint: 503"), httpx.Response(201))
    response = await send(retrying(vendor, clock), "POST", content=b"{}")
    assert (response.status_code, vendor.attempts) == (201, 2)
