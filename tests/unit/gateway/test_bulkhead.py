"""The per-vendor bulkhead on a FakeClock (RELIABILITY.md #4): waits are fake time, stepped here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from cadastre.errors import BulkheadFull, ConfigurationError, VendorUnavailable
from cadastre.gateway.breaker import LOCAL_WAIT
from cadastre.gateway.bulkhead import Bulkhead, BulkheadTransport
from cadastre.gateway.records import TRACE, CallRecord
from cadastre.testing import FakeClock


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


async def ticks(n: int = 10) -> None:
    """Let every ready task run ``n`` times round (no fake time passes)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Held:
    """A slot taken and given back by the test itself, so the order of events is exact."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self._slot = bulkhead.slot()

    async def __aenter__(self) -> Held:
        await self._slot.__aenter__()
        return self

    async def release(self) -> None:
        await self._slot.__aexit__(None, None, None)

    async def __aexit__(self, *exc: object) -> None:
        pass


def record(vendor: str = "a") -> CallRecord:
    return CallRecord(tenant="t", vendor=vendor, connection="c", method="GET", path="/x",
                      pool="p", started=0.0)  # fmt: skip


async def test_the_cap_holds_under_50_concurrent_calls(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=4, max_wait=1000, clock=fake)
    inside = 0
    most = 0

    async def vendor(request: httpx.Request) -> httpx.Response:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await ticks(3)
        inside -= 1
        return httpx.Response(200)

    transport = BulkheadTransport(httpx.MockTransport(vendor), bulkhead)
    answers = await asyncio.gather(
        *(transport.handle_async_request(httpx.Request("GET", "https://a.test")) for _ in range(50))
    )
    assert [a.status_code for a in answers] == [200] * 50
    assert most == 4
    stats = bulkhead.stats()
    assert (stats.peak, stats.granted, stats.refused, stats.in_flight, stats.waiting) == (
        4, 50, 0, 0, 0,
    )  # fmt: skip
    assert stats.total_wait_seconds == 0.0  # fake time never moved
    assert fake.sleepers == 0  # every wait timer was cancelled


async def test_waiters_are_served_first_come_first_served(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=60, clock=fake)
    entered: list[int] = []

    async def caller(n: int) -> None:
        async with bulkhead.slot():
            entered.append(n)
            await ticks(2)

    async with Held(bulkhead) as held:
        tasks = []
        for n in range(8):
            tasks.append(asyncio.create_task(caller(n)))
            await ticks(1)
        assert bulkhead.stats().waiting == 8
        await held.release()
        tasks.append(asyncio.create_task(caller(8)))  # arrives after the release: no overtaking
        await asyncio.gather(*tasks)
    assert entered == list(range(9))


async def test_a_full_bulkhead_refuses_after_max_wait_on_the_clock(fake: FakeClock) -> None:
    bulkhead = Bulkhead("vendor-a", max_concurrent=1, max_wait=5, clock=fake)
    async with Held(bulkhead) as held:
        waiter = asyncio.create_task(bulkhead.slot().__aenter__())
        await ticks()
        fake.advance(4.9)
        await ticks()
        assert not waiter.done()
        assert bulkhead.stats().waiting == 1
        fake.advance(0.1)
        with pytest.raises(BulkheadFull, match="'vendor-a'") as refused:
            await waiter
        assert isinstance(refused.value, VendorUnavailable)
        stats = bulkhead.stats()
        assert (stats.refused, stats.waiting, stats.in_flight, stats.granted) == (1, 0, 1, 1)
        assert stats.total_wait_seconds == 5.0
        await held.release()
    assert bulkhead.stats().in_flight == 0
    assert fake.sleepers == 0


async def test_max_wait_zero_refuses_at_once_when_full(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=2, max_wait=0, clock=fake)
    async with bulkhead.slot() as first, bulkhead.slot() as second:
        assert (first, second) == (0.0, 0.0)
        with pytest.raises(BulkheadFull):
            async with bulkhead.slot():
                raise AssertionError("unreachable")
    async with bulkhead.slot():
        pass
    assert (bulkhead.stats().granted, bulkhead.stats().refused) == (3, 1)


async def test_a_waiter_cancelled_while_queueing_leaks_nothing(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=30, clock=fake)
    async with Held(bulkhead) as held:
        waiter = asyncio.create_task(bulkhead.slot().__aenter__())
        await ticks()
        fake.advance(2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.stats().waiting == 0
        await held.release()
    assert bulkhead.stats().in_flight == 0
    async with bulkhead.slot() as waited:
        assert waited == 0.0  # entered at once: the cancelled waiter holds nothing
    assert fake.sleepers == 0
    stats = bulkhead.stats()
    assert (stats.granted, stats.refused, stats.total_wait_seconds) == (2, 0, 2.0)


async def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_instant_is_passed_on(
    fake: FakeClock,
) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=30, clock=fake)
    entered: list[str] = []

    async def caller(name: str) -> None:
        async with bulkhead.slot():
            entered.append(name)

    async with Held(bulkhead) as held:
        first = asyncio.create_task(caller("first"))
        await ticks()
        second = asyncio.create_task(caller("second"))
        await ticks()
        await held.release()  # hands the slot to "first" without yielding ...
        first.cancel()  # ... which is cancelled before it could run
        await ticks()
    assert first.cancelled()
    assert second.done()
    assert entered == ["second"]
    stats = bulkhead.stats()
    assert (stats.in_flight, stats.waiting, stats.granted) == (0, 0, 2)


async def test_the_body_is_read_inside_the_slot(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=0, clock=fake)
    seen: list[int] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            seen.append(bulkhead.stats().in_flight)
            yield b"late body"

    transport = BulkheadTransport(
        httpx.MockTransport(lambda r: httpx.Response(200, stream=Body())), bulkhead
    )
    response = await transport.handle_async_request(httpx.Request("GET", "https://a.test"))
    assert seen == [1]
    assert response.content == b"late body"
    assert bulkhead.stats().in_flight == 0


async def test_a_broken_body_closes_the_response_and_frees_the_slot(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=0, clock=fake)
    closed: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"{"
            raise httpx.ReadError("reset")

        async def aclose(self) -> None:
            closed.append(True)

    transport = BulkheadTransport(
        httpx.MockTransport(lambda r: httpx.Response(200, stream=Body())), bulkhead
    )
    with pytest.raises(httpx.ReadError):
        await transport.handle_async_request(httpx.Request("GET", "https://a.test"))
    assert closed == [True]
    assert bulkhead.stats().in_flight == 0


async def test_one_vendors_full_bulkhead_never_holds_up_another(fake: FakeClock) -> None:
    a = Bulkhead("a", max_concurrent=2, max_wait=10, clock=fake)
    b = Bulkhead("b", max_concurrent=2, max_wait=10, clock=fake)
    hang = asyncio.Event()

    async def vendor_a(request: httpx.Request) -> httpx.Response:
        await hang.wait()
        return httpx.Response(200)

    to_a = BulkheadTransport(httpx.MockTransport(vendor_a), a)
    to_b = BulkheadTransport(httpx.MockTransport(lambda r: httpx.Response(200)), b)
    stuck = [
        asyncio.create_task(to_a.handle_async_request(httpx.Request("GET", "https://a.test")))
        for _ in range(6)
    ]
    await ticks()
    assert (a.stats().in_flight, a.stats().waiting) == (2, 4)
    records = [record("b") for _ in range(20)]
    for r in records:
        request = httpx.Request("GET", "https://b.test", extensions={TRACE: r})
        assert (await to_b.handle_async_request(request)).status_code == 200
    assert {(r.bulkhead, r.bulkhead_wait) for r in records} == {("b", 0.0)}
    assert b.stats().total_wait_seconds == 0.0
    assert b.stats().peak == 1
    fake.advance(10)  # A's queue gives up; A's two hung calls go on
    results = await asyncio.gather(*stuck[2:], return_exceptions=True)
    assert all(isinstance(r, BulkheadFull) for r in results)
    assert (a.stats().peak, a.stats().refused, a.stats().in_flight) == (2, 4, 2)
    hang.set()
    await asyncio.gather(*stuck[:2])
    assert a.stats().in_flight == 0


async def test_queueing_time_goes_to_the_request_and_its_record(fake: FakeClock) -> None:
    bulkhead = Bulkhead("a", max_concurrent=1, max_wait=10, clock=fake)
    transport = BulkheadTransport(httpx.MockTransport(lambda r: httpx.Response(200)), bulkhead)
    waited, refused = record(), record()
    async with Held(bulkhead) as held:
        request = httpx.Request("GET", "https://a.test", extensions={TRACE: waited})
        call = asyncio.create_task(transport.handle_async_request(request))
        await ticks()
        fake.advance(3)
        await held.release()
        await call
    assert request.extensions[LOCAL_WAIT] == 3.0  # the breaker above leaves it out of the duration
    assert (waited.bulkhead, waited.bulkhead_wait) == ("a", 3.0)
    async with Held(bulkhead) as held:
        call = asyncio.create_task(transport.handle_async_request(
            httpx.Request("GET", "https://a.test", extensions={TRACE: refused})
        ))  # fmt: skip
        await ticks()
        fake.advance(10)
        with pytest.raises(BulkheadFull):
            await call
        await held.release()
    assert (refused.bulkhead, refused.bulkhead_wait) == ("a", 10.0)


@pytest.mark.parametrize(
    ("max_concurrent", "max_wait", "named"),
    [
        (0, 1.0, ["max_concurrent"]),
        (True, 1.0, ["max_concurrent"]),
        (2.5, 1.0, ["max_concurrent"]),
        (1, -1.0, ["max_wait"]),
        (1, float("nan"), ["max_wait"]),
        (1, float("inf"), ["max_wait"]),
        (-3, -0.5, ["max_concurrent", "max_wait"]),
    ],
)
def test_invalid_settings_are_refused(
    fake: FakeClock, max_concurrent: int, max_wait: float, named: list[str]
) -> None:
    with pytest.raises(ConfigurationError, match="'a'") as refused:
        Bulkhead("a", max_concurrent, max_wait, fake)
    for name in named:
        assert name in str(refused.value)
    assert str(refused.value).count("must") == len(named)
