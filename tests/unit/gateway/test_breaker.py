"""The circuit breaker on a FakeClock (RELIABILITY.md #1-#3): nothing here waits in real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cadastre.errors import (
    AddressRefused,
    BulkheadFull,
    CircuitOpen,
    ConfigurationError,
    VendorProtocolError,
    VendorRateLimited,
    VendorUnavailable,
)
from cadastre.gateway import VendorPolicy
from cadastre.gateway.breaker import (
    LOCAL_WAIT,
    BreakerPolicy,
    BreakerState,
    BreakerTransport,
    CallResult,
    CircuitBreaker,
    breaker_result,
)
from cadastre.gateway.outcome import CREDENTIAL_REFUSED
from cadastre.gateway.records import TRACE, CallRecord
from cadastre.testing import EPOCH, FakeClock

S, F, I = CallResult.SUCCESS, CallResult.FAILURE, CallResult.IGNORED  # noqa: E741
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
VENDOR = VendorPolicy(vendor="demo")


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def breaker(
    clock: FakeClock, transitions: list[tuple[str, str]] | None = None, **settings: Any
) -> CircuitBreaker:
    def note(old: BreakerState, new: BreakerState) -> None:
        if transitions is not None:
            transitions.append((old.value, new.value))

    return CircuitBreaker(
        BreakerPolicy(**settings), clock, vendor="demo", connection="austin", on_transition=note
    )


def call(b: CircuitBreaker, result: CallResult, duration: float = 0.1, times: int = 1) -> None:
    for _ in range(times):
        b.acquire().record(result, duration)


def trip(b: CircuitBreaker) -> None:
    while b.state is CLOSED:
        call(b, F)


# ----------------------------------------------------------------------------- opening (#1)

SMALL = {"window_size": 20, "minimum_calls": 10, "failure_rate_threshold": 0.5}


@pytest.mark.parametrize(
    ("settings", "calls", "expected"),
    [
        pytest.param(SMALL, [(F, 0.1)] * 9, CLOSED, id="min-1 calls all failing"),
        pytest.param(SMALL, [(S, 0.1)] * 5 + [(F, 0.1)] * 5, OPEN, id="min calls exactly at T"),
        pytest.param(SMALL, [(S, 0.1)] * 6 + [(F, 0.1)] * 4, CLOSED, id="min calls just under T"),
        pytest.param({**SMALL, "failure_rate_threshold": 0.3},
                     [(S, 0.1)] * 7 + [(F, 0.1)] * 3, OPEN, id="exactly 0.3 (float division)"),
        pytest.param({**SMALL, "slow_call_duration": 2.0}, [(S, 2.0)] * 10, OPEN,
                     id="all succeed but slow"),
        pytest.param({**SMALL, "slow_call_duration": 2.0}, [(S, 1.99)] * 10, CLOSED,
                     id="all just under slow"),
        pytest.param({**SMALL, "slow_call_duration": 2.0}, [(S, 2.0)] * 9 + [(S, 0.1)], CLOSED,
                     id="slow rate 0.9 under S=1.0"),
        pytest.param({**SMALL, "slow_call_duration": 2.0, "slow_call_rate_threshold": 0.5,
                      "failure_rate_threshold": 0.5},
                     [(S, 0.1)] * 5 + [(F, 2.0)] * 4 + [(S, 2.0)], OPEN,
                     id="a slow failure counts in both rates"),
        pytest.param(SMALL, [(F, 0.1)] * 9 + [(I, 0.1)] * 20, CLOSED,
                     id="ignored calls do not count"),
        pytest.param(SMALL, [(S, 0.1)] * 15 + [(F, 0.1)] * 10, OPEN,
                     id="count window: old successes leave the ring"),
    ],
)  # fmt: skip
def test_the_opening_table(
    fake: FakeClock, settings: dict[str, Any], calls: list[tuple[CallResult, float]],
    expected: BreakerState,
) -> None:  # fmt: skip
    b = breaker(fake, **settings)
    for result, duration in calls:
        call(b, result, duration)
    assert b.state is expected


def test_a_count_window_forgets_failures_older_than_its_size(fake: FakeClock) -> None:
    b = breaker(fake, window_size=10, minimum_calls=10, failure_rate_threshold=0.5)
    call(b, F, times=4)
    call(b, S, times=10)  # the 4 failures fall out of the ring
    call(b, F, times=4)  # 4 in the last 10; 8 of 18 counted forever would be 0.44: closed too
    assert b.state is CLOSED
    call(b, F)  # 5 of the last 10
    assert b.state is OPEN


def test_a_time_window_ages_out_old_buckets(fake: FakeClock) -> None:
    b = breaker(fake, window="time", window_size=10, minimum_calls=5, failure_rate_threshold=0.4)
    call(b, F, times=4)  # at second 0
    fake.advance(9.5)
    assert b.snapshot().calls == 4  # second 0 is still one of the last 10
    fake.advance(0.5)  # now second 10: second 0 has left the window
    assert b.snapshot().calls == 0
    call(b, S, times=5)  # 4 of 9 would be 0.44 >= 0.4
    assert b.state is CLOSED
    assert b.snapshot().calls == 5


def test_a_time_window_opens_on_failures_spread_within_it(fake: FakeClock) -> None:
    b = breaker(fake, window="time", window_size=10, minimum_calls=5, failure_rate_threshold=0.6)
    call(b, S, times=5)
    fake.advance(10)  # the successes age out
    for _ in range(5):
        call(b, F)
        fake.advance(1.5)
    # 5 of 5 in the window; had the successes stayed, 5 of 10 = 0.5 < 0.6
    assert b.state is OPEN


def test_a_time_window_needs_its_minimum_calls_in_the_window(fake: FakeClock) -> None:
    b = breaker(fake, window="time", window_size=5, minimum_calls=4)
    for _ in range(10):
        call(b, F)
        fake.advance(2)  # never more than 3 calls within 5 seconds
    assert b.state is CLOSED


# ------------------------------------------------------------------------ open and half-open (#2)


async def test_open_refuses_and_the_vendor_receives_nothing(fake: FakeClock) -> None:
    received: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(500)

    b = breaker(fake, window_size=50, minimum_calls=20, open_duration=30)
    transport = BreakerTransport(httpx.MockTransport(vendor), b, VENDOR, fake)
    for _ in range(20):
        response = await transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
        assert response.status_code == 500
    assert b.state is OPEN
    assert len(received) == 20  # a 500 storm opens within one window: at minimum_calls
    fake.advance(12)
    for _ in range(100):
        with pytest.raises(CircuitOpen) as refused:
            await transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
    assert len(received) == 20
    assert "'demo'" in str(refused.value)
    assert "'austin'" in str(refused.value)
    assert refused.value.retry_after == pytest.approx(18)
    assert isinstance(refused.value, VendorUnavailable)


def test_after_open_duration_the_breaker_is_half_open(fake: FakeClock) -> None:
    b = breaker(fake, open_duration=30)
    trip(b)
    fake.advance(29.9)
    assert b.state is OPEN
    assert b.snapshot().retry_in == pytest.approx(0.1)
    fake.advance(0.1)
    assert b.state is HALF_OPEN
    assert b.snapshot().retry_in is None


def test_only_k_probes_per_cycle_also_on_the_second_cycle(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=3, open_duration=30)
    trip(b)
    for _cycle in range(2):
        fake.advance(30)
        probes = [b.acquire() for _ in range(3)]
        with pytest.raises(CircuitOpen, match="half-open"):
            b.acquire()
        for probe in probes:
            probe.record(F, 0.1)
        assert b.state is OPEN
    assert b.snapshot().opened_count == 3


def test_answered_probes_still_use_up_the_cycle(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=3, failure_rate_threshold=0.5)
    trip(b)
    fake.advance(30)
    call(b, F, times=2)  # 2 of 3 failed: the cycle will reopen, whatever the third says
    last = b.acquire()
    with pytest.raises(CircuitOpen):
        b.acquire()  # a 4th probe in this cycle could outvote the failures
    last.record(S, 0.1)
    assert b.state is OPEN


def test_k_successful_probes_close_it_with_a_fresh_window(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=3, minimum_calls=5, window_size=5)
    trip(b)
    fake.advance(30)
    probes = [b.acquire() for _ in range(3)]
    for probe in probes[:2]:
        probe.record(S, 0.1)
    assert b.state is HALF_OPEN  # not before all K have answered
    probes[2].record(S, 0.1)
    assert b.state is CLOSED
    assert b.snapshot().calls == 0
    call(b, F, times=4)  # the old failures are gone: 4 calls are under minimum_calls
    assert b.state is CLOSED


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([S, S, S, F], CLOSED),  # 0.25 < 0.5
        ([S, S, F, F], OPEN),  # exactly 0.5
        ([F, S, S, S], CLOSED),
    ],
)
def test_probes_decide_by_the_failure_threshold(
    fake: FakeClock, results: list[CallResult], expected: BreakerState
) -> None:
    b = breaker(fake, half_open_probes=4, failure_rate_threshold=0.5)
    trip(b)
    fake.advance(30)
    for result in results:
        call(b, result)
    assert b.state is expected


def test_one_failed_probe_over_the_threshold_reopens(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=3, failure_rate_threshold=0.3, open_duration=30)
    trip(b)
    fake.advance(30)
    call(b, S, times=2)
    call(b, F)  # 1 of 3 >= 0.3
    assert b.state is OPEN
    assert b.snapshot().retry_in == 30


def test_slow_probes_reopen(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=2, slow_call_duration=5.0)
    trip(b)
    fake.advance(30)
    call(b, S, duration=5.0, times=2)
    assert b.state is OPEN


def test_ignored_and_released_probes_give_their_slot_back(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=2)
    trip(b)
    fake.advance(30)
    first, second = b.acquire(), b.acquire()
    first.record(I, 0.1)  # a 429: says nothing about the vendor's health
    second.release()  # cancelled
    second.release()  # idempotent
    third, fourth = b.acquire(), b.acquire()
    with pytest.raises(CircuitOpen):
        b.acquire()
    third.record(S, 0.1)
    fourth.record(S, 0.1)
    assert b.state is CLOSED


def test_a_permit_counts_once(fake: FakeClock) -> None:
    b = breaker(fake, minimum_calls=2, window_size=2)
    permit = b.acquire()
    permit.record(F, 0.1)
    with pytest.raises(RuntimeError):
        permit.record(F, 0.1)
    permit.release()  # a no-op after a result
    assert b.snapshot().calls == 1
    released = b.acquire()
    released.release()
    with pytest.raises(RuntimeError):
        released.record(F, 0.1)
    assert (b.state, b.snapshot().calls) == (CLOSED, 1)


def test_hung_probes_reopen_after_max_half_open_wait_and_late_answers_change_nothing(
    fake: FakeClock,
) -> None:
    transitions: list[tuple[str, str]] = []
    b = breaker(fake, transitions, half_open_probes=3, open_duration=30, max_half_open_wait=60)
    trip(b)
    fake.advance(30)
    hung = [b.acquire() for _ in range(3)]  # the vendor never answers them
    fake.advance(59.9)
    assert b.state is HALF_OPEN
    fake.advance(0.1)
    assert b.state is OPEN
    assert b.snapshot().retry_in == 30
    hung[0].record(S, 60)  # late answers from the old cycle
    assert b.state is OPEN
    fake.advance(30)
    assert b.state is HALF_OPEN
    fresh = b.acquire()
    hung[1].record(S, 90)
    hung[2].record(S, 90)  # would close the breaker if they counted in this cycle
    assert b.state is HALF_OPEN
    assert b.snapshot().calls == 0
    fresh.record(S, 0.1)
    call(b, S, times=2)
    assert b.state is CLOSED
    assert transitions == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("half_open", "closed"),
    ]  # fmt: skip


def test_a_hung_probe_noticed_late_counts_its_open_duration_from_the_deadline(
    fake: FakeClock,
) -> None:
    b = breaker(fake, half_open_probes=1, open_duration=30, max_half_open_wait=60)
    trip(b)
    fake.advance(30)
    b.acquire()  # hangs
    fake.advance(60 + 30)  # nobody looked at the breaker meanwhile
    assert b.state is HALF_OPEN
    assert b.snapshot().opened_count == 2


def test_a_quiet_half_open_cycle_does_not_expire(fake: FakeClock) -> None:
    b = breaker(fake, half_open_probes=3, max_half_open_wait=60)
    trip(b)
    fake.advance(30)
    call(b, S)
    fake.advance(600)  # one call an hour is no hung probe
    call(b, S)
    fake.advance(600)
    call(b, S)
    assert b.state is CLOSED


def test_a_call_in_flight_when_the_breaker_opened_does_not_count_afterwards(
    fake: FakeClock,
) -> None:
    b = breaker(fake, minimum_calls=5, window_size=5, half_open_probes=1)
    slow = b.acquire()
    trip(b)
    fake.advance(30)
    assert b.state is HALF_OPEN
    slow.record(S, 31)  # from the closed state: not a probe
    assert b.state is HALF_OPEN
    call(b, S)
    assert b.state is CLOSED


def test_transitions_are_reported_in_order_and_counted(fake: FakeClock) -> None:
    transitions: list[tuple[str, str]] = []
    b = breaker(fake, transitions, half_open_probes=1, open_duration=10)
    trip(b)
    fake.advance(10)
    call(b, F)
    fake.advance(10)
    call(b, S)
    assert transitions == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("half_open", "closed"),
    ]  # fmt: skip
    snap = b.snapshot()
    assert (snap.opened_count, snap.transitions, snap.state) == (2, 5, CLOSED)


def test_a_failing_transition_callback_does_not_break_the_breaker(fake: FakeClock) -> None:
    def broken(old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("gauge down")

    b = CircuitBreaker(BreakerPolicy(), fake, vendor="demo", connection="c", on_transition=broken)
    trip(b)
    assert b.state is OPEN


def test_the_snapshot_reports_the_window(fake: FakeClock) -> None:
    b = breaker(fake, minimum_calls=10, window_size=10, slow_call_duration=1)
    call(b, S, times=2)
    call(b, F, duration=2, times=1)
    call(b, S, duration=1, times=1)
    snap = b.snapshot()
    assert (snap.vendor, snap.connection, snap.state) == ("demo", "austin", CLOSED)
    assert (snap.calls, snap.failure_rate, snap.slow_call_rate) == (4, 0.25, 0.5)
    assert snap.retry_in is None
    trip(b)
    assert b.snapshot().calls == 10  # what opened it
    assert b.snapshot().failure_rate >= 0.5


# ----------------------------------------------------------------------------- what counts (#3)


def refused_401() -> httpx.Response:
    return httpx.Response(401, extensions={CREDENTIAL_REFUSED: True})


def error(kind: type[httpx.HTTPError]) -> httpx.HTTPError:
    return kind("boom", request=httpx.Request("GET", "https://v.test"))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (httpx.Response(200), S), (httpx.Response(204), S),
        (httpx.Response(302), S), (httpx.Response(400), S), (httpx.Response(404), S),
        (httpx.Response(401), S), (httpx.Response(403), S), (httpx.Response(422), S),
        (httpx.Response(429, headers={"Retry-After": "7"}), I), (refused_401(), I),
        (httpx.Response(408), F), (httpx.Response(500), F), (httpx.Response(501), F),
        (httpx.Response(502), F), (httpx.Response(503), F), (httpx.Response(504), F),
        (error(httpx.ReadTimeout), F), (error(httpx.ConnectTimeout), F),
        (error(httpx.ConnectError), F), (error(httpx.ReadError), F),
        (error(httpx.RemoteProtocolError), F),
        (VendorUnavailable("token endpoint 503"), F), (VendorProtocolError("no token"), F),
        (CircuitOpen("below", 3.0), I), (BulkheadFull("full"), I),
        (VendorRateLimited("local limiter", 2.0), I),
        (AddressRefused("private address"), I), (RuntimeError("our bug"), I),
        (error(httpx.UnsupportedProtocol), I), (asyncio.CancelledError(), I),
    ],
    ids=repr,
)  # fmt: skip
def test_breaker_result(result: httpx.Response | BaseException, expected: CallResult) -> None:
    assert breaker_result(result, VENDOR, EPOCH) is expected


def test_a_5xx_the_policy_does_not_retry_is_still_a_failure() -> None:
    policy = VendorPolicy(vendor="demo", retry_statuses=frozenset({429}))
    assert breaker_result(httpx.Response(503), policy, EPOCH) is F


Answer = Callable[[httpx.Request], httpx.Response]


async def storm(fake: FakeClock, answer: Answer, calls: int, **settings: Any) -> CircuitBreaker:
    b = breaker(fake, **settings)
    transport = BreakerTransport(httpx.MockTransport(answer), b, VENDOR, fake)
    for _ in range(calls):
        with contextlib.suppress(httpx.HTTPError, CircuitOpen):
            await transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
        fake.advance(3)  # a 10-minute storm at one call per 3 s
    return b


async def test_a_429_storm_keeps_it_closed(fake: FakeClock) -> None:
    b = await storm(fake, lambda r: httpx.Response(429, headers={"Retry-After": "7"}), 200)
    assert b.state is CLOSED
    assert b.snapshot().calls == 0


async def test_a_404_storm_keeps_it_closed(fake: FakeClock) -> None:
    b = await storm(fake, lambda r: httpx.Response(404), 200)
    assert (b.state, b.snapshot().calls) == (CLOSED, 50)


async def test_a_timeout_storm_opens_it(fake: FakeClock) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    b = await storm(fake, hang, 20, window_size=50, minimum_calls=20)
    assert b.state is OPEN


async def test_a_connect_error_storm_opens_it_in_a_time_window(fake: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    b = await storm(fake, refuse, 10, window="time", window_size=60, minimum_calls=10)
    assert b.state is OPEN


# ----------------------------------------------------------------------------- the transport


class Body(httpx.AsyncByteStream):
    """A body that takes ``seconds`` of fake time to arrive, or breaks half-way."""

    def __init__(self, clock: FakeClock, seconds: float, fail: bool = False) -> None:
        self.clock, self.seconds, self.fail = clock, seconds, fail
        self.closed = False

    async def __aiter__(self):
        yield b"{"
        self.clock.advance(self.seconds)
        if self.fail:
            raise httpx.ReadError("reset mid-body")
        yield b"}"

    async def aclose(self) -> None:
        self.closed = True


def slow_body(clock: FakeClock, seconds: float, fail: bool = False) -> httpx.Response:
    return httpx.Response(200, stream=Body(clock, seconds, fail))


async def test_a_slow_body_is_a_slow_call(fake: FakeClock) -> None:
    b = breaker(fake, minimum_calls=1, window_size=1, slow_call_duration=5)
    transport = BreakerTransport(httpx.MockTransport(lambda r: slow_body(fake, 5)), b, VENDOR, fake)
    response = await transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
    assert response.content == b"{}"  # read inside the breaker
    assert b.state is OPEN
    assert b.snapshot().slow_call_rate == 1.0


async def test_a_reset_mid_body_is_a_failure_and_the_response_is_closed(fake: FakeClock) -> None:
    answers: list[httpx.Response] = []
    bodies: list[Body] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        bodies.append(Body(fake, 0.1, fail=True))
        answers.append(httpx.Response(200, stream=bodies[-1]))
        return answers[-1]

    b = breaker(fake, minimum_calls=2, window_size=2)
    transport = BreakerTransport(httpx.MockTransport(vendor), b, VENDOR, fake)
    with pytest.raises(httpx.ReadError):
        await transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
    assert (b.snapshot().calls, b.snapshot().failure_rate) == (1, 1.0)
    assert answers[0].is_closed
    assert bodies[0].closed


async def test_local_waiting_below_the_breaker_is_not_a_slow_vendor(fake: FakeClock) -> None:
    attempts: list[float] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        if not attempts:  # first attempt: 50 s in the bulkhead queue, then a quick answer
            request.extensions[LOCAL_WAIT] += 50
            fake.advance(50)
        else:  # the retry: no queue, but the vendor takes 20 s
            fake.advance(20)
        attempts.append(fake.monotonic())
        return httpx.Response(200)

    b = breaker(fake, minimum_calls=1, window_size=2, slow_call_duration=10,
                slow_call_rate_threshold=0.5)  # fmt: skip
    transport = BreakerTransport(httpx.MockTransport(vendor), b, VENDOR, fake)
    request = httpx.Request("GET", "https://v.test/x")
    await transport.handle_async_request(request)
    assert (b.state, b.snapshot().slow_call_rate) == (CLOSED, 0.0)
    await transport.handle_async_request(request)  # the same request: its old wait is cleared
    assert b.state is OPEN


async def test_a_cancelled_probe_gives_its_slot_back(fake: FakeClock) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    b = breaker(fake, half_open_probes=1)
    trip(b)
    fake.advance(30)
    transport = BreakerTransport(httpx.MockTransport(hang), b, VENDOR, fake)
    task = asyncio.create_task(
        transport.handle_async_request(httpx.Request("GET", "https://v.test/x"))
    )
    await started.wait()
    with pytest.raises(CircuitOpen):
        b.acquire()  # the one probe is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    b.acquire().record(S, 0.1)  # the slot came back
    assert b.state is CLOSED


async def test_the_call_record_names_the_breaker_and_its_refusal(fake: FakeClock) -> None:
    b = breaker(fake)
    trip(b)
    transport = BreakerTransport(httpx.MockTransport(lambda r: httpx.Response(200)), b, VENDOR,
                                 fake)  # fmt: skip
    record = CallRecord(tenant="acme", vendor="demo", connection="austin", method="GET",
                        path="/x", pool="p", started=0.0)  # fmt: skip
    with pytest.raises(CircuitOpen):
        await transport.handle_async_request(
            httpx.Request("GET", "https://v.test/x", extensions={TRACE: record})
        )
    assert (record.breaker, record.breaker_refused) == ("acme/austin", True)


# ----------------------------------------------------------------------------- configuration


def test_the_defaults_are_valid() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_rate_threshold, policy.window_size, policy.minimum_calls) == (
        0.5,
        50,
        20,
    )


def test_a_count_window_smaller_than_minimum_calls_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"minimum_calls \(30\).*window_size 20"):
        BreakerPolicy(window_size=20, minimum_calls=30)
    BreakerPolicy(window="time", window_size=20, minimum_calls=30)  # 30 calls in 20 s is fine


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.01}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -0.1}, "slow_call_rate_threshold"),
        ({"slow_call_rate_threshold": float("nan")}, "slow_call_rate_threshold"),
        ({"slow_call_duration": -1}, "slow_call_duration"),
        ({"open_duration": 0}, "open_duration"),
        ({"max_half_open_wait": -5}, "max_half_open_wait"),
        ({"max_half_open_wait": float("inf")}, "max_half_open_wait"),
        ({"window": "sliding"}, "window"),
        ({"window_size": 0, "minimum_calls": 0}, "window_size"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"minimum_calls": 2.5}, "minimum_calls"),
        ({"half_open_probes": True}, "half_open_probes"),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        BreakerPolicy(**settings)  # type: ignore[arg-type]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as refused:
        BreakerPolicy(
            failure_rate_threshold=1.5, slow_call_rate_threshold=0, slow_call_duration=-1,
            open_duration=-2, max_half_open_wait=0, window_size=10, minimum_calls=11,
            half_open_probes=0,
        )  # fmt: skip
    message = str(refused.value)
    for name in ("failure_rate_threshold", "slow_call_rate_threshold", "slow_call_duration",
                 "open_duration", "max_half_open_wait", "minimum_calls (11)",
                 "half_open_probes"):  # fmt: skip
        assert name in message
    assert message.count(";") == 6
