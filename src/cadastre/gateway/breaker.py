"""A circuit breaker per connection (RELIABILITY.md #1-#3), with Resilience4j's semantics.

- CLOSED: each call's result goes into a sliding window: the last ``window_size`` calls (count), or
  per-second buckets over the last ``window_size`` seconds (time). Once the window holds
  ``minimum_calls``, a failure rate >= ``failure_rate_threshold`` or a slow-call rate >=
  ``slow_call_rate_threshold`` opens the breaker. A call is slow when it took
  ``slow_call_duration`` or more; a slow failure counts in both rates. IGNORED calls don't count.
- OPEN: ``acquire`` raises ``CircuitOpen(retry_after=seconds until half-open)``; nothing is sent.
  After ``open_duration`` the next ``acquire`` (or read of ``state``) moves to HALF_OPEN.
- HALF_OPEN: ``half_open_probes`` permits per cycle. An IGNORED or released probe gives its slot
  back. When all K have a result: either rate >= its threshold -> OPEN, else CLOSED with an empty
  window. A probe still out ``max_half_open_wait`` after it was let through (a hung probe) sends
  the breaker back to OPEN, so a hang cannot pin it (Resilience4j #903). A cycle with no probe
  out never expires: a quiet connection is not punished for being quiet.

Results are tagged with the generation they were let through in; a result arriving after a state
change (a hung probe answering at last, a call in flight when the breaker opened) is dropped.
Transitions happen lazily, on ``acquire``, ``state``, ``snapshot`` and results, on the injected
clock's ``monotonic()``.

Written by hand: no maintained asyncio breaker (aiobreaker, purgatory, pybreaker's async mode)
offers an injectable clock, count and time windows, a slow-call rate and a maximum half-open wait
together; this one is a few small state methods. The result rules and the transport live here
too (a little past 400 lines): they are the breaker's only way in.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Self, assert_never

import httpx

from cadastre.errors import BulkheadFull, CircuitOpen, ConfigurationError, VendorRateLimited
from cadastre.gateway.outcome import Outcome, classify
from cadastre.gateway.records import TRACE

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from cadastre.gateway.policy import VendorPolicy
    from cadastre.ports import Clock

log = logging.getLogger(__name__)

# Request extension: seconds a layer below the breaker kept the request waiting locally (the
# bulkhead's queue, the rate limiter's pacing). That time is ours, not the vendor's, so it is not
# part of the call's duration: local queueing must not read as a slow vendor.
LOCAL_WAIT = "cadastre.local_wait"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CallResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float = 10.0
    window: Literal["count", "time"] = "count"
    window_size: int = 50  # calls (count window) or seconds (time window)
    minimum_calls: int = 20
    open_duration: float = 30.0
    half_open_probes: int = 3
    max_half_open_wait: float = 60.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 < value <= 1):
                problems.append(f"{name} must be in (0, 1], not {value!r}")
        for name in ("slow_call_duration", "open_duration", "max_half_open_wait"):
            value = getattr(self, name)
            if not (_is_number(value) and value > 0):
                problems.append(f"{name} must be a positive number of seconds, not {value!r}")
        if self.window not in ("count", "time"):
            problems.append(f"window must be 'count' or 'time', not {self.window!r}")
        for name in ("window_size", "minimum_calls", "half_open_probes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                problems.append(f"{name} must be a whole number of at least 1, not {value!r}")
        sizes = (self.minimum_calls, self.window_size)
        if self.window == "count" and all(map(_is_number, sizes)) and sizes[0] > sizes[1]:
            problems.append(
                f"minimum_calls ({self.minimum_calls}) is more than a count window holds "
                f"(window_size {self.window_size}): the breaker could never open"
            )
        if problems:
            raise ConfigurationError("breaker policy: " + "; ".join(problems))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class BreakerSnapshot:
    vendor: str
    connection: str
    state: BreakerState
    calls: int  # CLOSED: in the window; HALF_OPEN: probes answered; OPEN: what opened it
    failure_rate: float  # 0.0 when there are no calls
    slow_call_rate: float
    retry_in: float | None  # OPEN: seconds until half-open; otherwise None
    opened_count: int
    transitions: int


@dataclass
class _Figures:
    calls: int = 0
    failures: int = 0
    slow: int = 0

    def add(self, other: _Figures, sign: int = 1) -> None:
        self.calls += sign * other.calls
        self.failures += sign * other.failures
        self.slow += sign * other.slow

    def rates(self) -> tuple[float, float]:
        if not self.calls:
            return 0.0, 0.0
        return self.failures / self.calls, self.slow / self.calls


class _Window:
    """The last ``size`` buckets: one per call (count window) or per clock second (time window)."""

    def __init__(self, size: int, by_time: bool) -> None:
        self._size = size
        self._by_time = by_time
        self._buckets: deque[tuple[int, _Figures]] = deque()  # (call number or second, figures)
        self._total = _Figures()
        self._calls = 0

    def add(self, call: _Figures, now: float) -> None:
        self._calls += 1
        key = math.floor(now) if self._by_time else self._calls
        self._expire(key)
        if not self._buckets or self._buckets[-1][0] != key:
            self._buckets.append((key, _Figures()))
        self._buckets[-1][1].add(call)
        self._total.add(call)

    def figures(self, now: float) -> _Figures:
        if self._by_time:
            self._expire(math.floor(now))
        return self._total

    def _expire(self, newest: int) -> None:
        while self._buckets and self._buckets[0][0] <= newest - self._size:
            self._total.add(self._buckets.popleft()[1], sign=-1)


class Permit:
    """Leave to make one call: ``record`` its result once, or ``release`` it (no result: the call
    was cancelled). Used as a context manager, a permit without a result is released on exit."""

    __slots__ = ("_breaker", "_done", "generation", "granted_at")

    def __init__(self, breaker: CircuitBreaker, generation: int, granted_at: float) -> None:
        self._breaker = breaker
        self.generation = generation
        self.granted_at = granted_at
        self._done = False

    def record(self, result: CallResult, duration: float) -> None:
        if self._done:
            raise RuntimeError("this permit's result is already recorded or released")
        self._done = True
        self._breaker._on_result(self, result, duration)

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._on_release(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CircuitBreaker:
    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Clock,
        *,
        vendor: str,
        connection: str,
        on_transition: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.policy = policy
        self.vendor = vendor
        self.connection = connection
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._window = self._new_window()
        self._opened_at = 0.0
        self._tripped = _Figures()  # what opened the breaker, for the snapshot
        self._probes: set[Permit] = set()  # half-open permits still out
        self._answered = _Figures()  # half-open probes with a result
        self._opened_count = 0
        self._transitions = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker(vendor={self.vendor!r}, connection={self.connection!r})"

    @property
    def state(self) -> BreakerState:
        self._refresh(self._clock.monotonic())
        return self._state

    def acquire(self) -> Permit:
        """A permit to send one call, or ``CircuitOpen`` when the breaker refuses it."""
        now = self._clock.monotonic()
        self._refresh(now)
        if self._state is BreakerState.OPEN:
            wait = self._opened_at + self.policy.open_duration - now
            raise CircuitOpen(f"{self._named()}: circuit open; half-open in {wait:g} s", wait)
        permit = Permit(self, self._generation, now)
        if self._state is BreakerState.HALF_OPEN:
            if len(self._probes) + self._answered.calls >= self.policy.half_open_probes:
                raise CircuitOpen(f"{self._named()}: circuit half-open and its "
                                  f"{self.policy.half_open_probes} probes are out")  # fmt: skip
            self._probes.add(permit)
        return permit

    def snapshot(self) -> BreakerSnapshot:
        now = self._clock.monotonic()
        self._refresh(now)
        retry_in = None
        if self._state is BreakerState.CLOSED:
            figures = self._window.figures(now)
        elif self._state is BreakerState.HALF_OPEN:
            figures = self._answered
        else:
            figures = self._tripped
            retry_in = max(0.0, self._opened_at + self.policy.open_duration - now)
        failure_rate, slow_rate = figures.rates()
        return BreakerSnapshot(
            self.vendor, self.connection, self._state, figures.calls, failure_rate, slow_rate,
            retry_in, self._opened_count, self._transitions,
        )  # fmt: skip

    # ------------------------------------------------------------------ permits report here

    def _on_result(self, permit: Permit, result: CallResult, duration: float) -> None:
        now = self._clock.monotonic()
        self._refresh(now)
        if permit.generation != self._generation:
            return  # let through under an earlier state: it no longer says anything
        self._probes.discard(permit)
        if result is CallResult.IGNORED:
            return  # in half-open, the slot is free again
        call = _Figures(1, result is CallResult.FAILURE, duration >= self.policy.slow_call_duration)
        if self._state is BreakerState.CLOSED:
            self._window.add(call, now)
            figures = self._window.figures(now)
            if figures.calls >= self.policy.minimum_calls and self._over(figures):
                self._tripped = replace(figures)
                self._enter(BreakerState.OPEN, now)
        elif self._state is BreakerState.HALF_OPEN:
            self._answered.add(call)
            if self._answered.calls >= self.policy.half_open_probes:
                if self._over(self._answered):
                    self._tripped = self._answered
                    self._enter(BreakerState.OPEN, now)
                else:
                    self._enter(BreakerState.CLOSED, now)
        # OPEN: only a permit from an earlier generation gets here, and it returned above

    def _on_release(self, permit: Permit) -> None:
        self._refresh(self._clock.monotonic())
        if permit.generation == self._generation:
            self._probes.discard(permit)

    # ------------------------------------------------------------------ state

    def _over(self, figures: _Figures) -> bool:
        failure_rate, slow_rate = figures.rates()  # division, so "exactly at" compares exactly
        return (
            failure_rate >= self.policy.failure_rate_threshold
            or slow_rate >= self.policy.slow_call_rate_threshold
        )

    def _refresh(self, now: float) -> None:
        """Make the time-driven transitions that fell due since the last look."""
        policy = self.policy
        if self._state is BreakerState.HALF_OPEN and self._probes:
            hung_at = min(p.granted_at for p in self._probes) + policy.max_half_open_wait
            if now >= hung_at:
                self._tripped = self._answered
                # As if a timer had fired then: a long-unread breaker may be due for half-open.
                self._enter(BreakerState.OPEN, hung_at)
        if self._state is BreakerState.OPEN and now >= self._opened_at + policy.open_duration:
            self._enter(BreakerState.HALF_OPEN, now)

    def _enter(self, new: BreakerState, at: float) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._transitions += 1
        self._probes = set()
        self._answered = _Figures()
        if new is BreakerState.OPEN:
            self._opened_at = at
            self._opened_count += 1
        elif new is BreakerState.CLOSED:
            self._window = self._new_window()
        if self._on_transition is not None:
            try:
                self._on_transition(old, new)
            except Exception:
                # An observer (a gauge, a log line) must not change what the call returns.
                log.exception("%s: breaker transition callback failed", self._named())

    def _new_window(self) -> _Window:
        return _Window(self.policy.window_size, by_time=self.policy.window == "time")

    def _named(self) -> str:
        return f"vendor {self.vendor!r}, connection {self.connection!r}"


def breaker_result(
    result: httpx.Response | BaseException, policy: VendorPolicy, now: datetime
) -> CallResult:
    """What one answer says about the vendor's health (RELIABILITY.md #3).

    A vendor that answers, even "no" (4xx, an unfollowed 3xx), is up. A 429 or a refused
    credential is about us, not its health. A refusal by a layer below (bulkhead, rate limiter) or
    our own bug never reached it. Cancellation (any BaseException that is not an Exception) is no
    result at all: IGNORED here, and ``BreakerTransport`` releases the permit instead.
    """
    if isinstance(result, CircuitOpen | BulkheadFull | VendorRateLimited):
        return CallResult.IGNORED
    if not isinstance(result, httpx.Response | Exception):
        return CallResult.IGNORED
    outcome = classify(result, policy, now=now).outcome
    match outcome:
        case Outcome.SUCCESS:
            return CallResult.SUCCESS
        case Outcome.RATE_LIMITED | Outcome.REFRESH_TOKEN_THEN_RETRY:
            return CallResult.IGNORED
        case Outcome.RETRY:
            return CallResult.FAILURE
        case Outcome.FAIL:
            if not isinstance(result, httpx.Response):
                return CallResult.IGNORED
            return CallResult.FAILURE if result.status_code >= 500 else CallResult.SUCCESS
        case _:
            assert_never(outcome)


class BreakerTransport(httpx.AsyncBaseTransport):
    """Asks the breaker before each attempt and tells it how the attempt went, body included.

    A refusal raises ``CircuitOpen`` (a ``VendorUnavailable`` with ``retry_after``) before anything
    is sent. The call's ``CallRecord`` (``request.extensions[TRACE]``) names the breaker consulted
    and whether it refused."""

    def __init__(
        self,
        next: httpx.AsyncBaseTransport,
        breaker: CircuitBreaker,
        policy: VendorPolicy,
        clock: Clock,
    ) -> None:
        self._next = next
        self._breaker = breaker
        self._policy = policy
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        record = request.extensions.get(TRACE)
        if record is not None:
            record.breaker = f"{record.tenant}/{self._breaker.connection}"
        try:
            permit = self._breaker.acquire()
        except CircuitOpen:
            if record is not None:
                record.breaker_refused = True
            raise
        with permit:  # released, no result, if the attempt is cancelled
            request.extensions[LOCAL_WAIT] = 0.0  # the same request comes back on each retry
            started = self._clock.monotonic()
            try:
                response = await self._next.handle_async_request(request)
                try:
                    # Inside the breaker: a reset mid-body is a failure, a slow body a slow call.
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
            except Exception as error:
                self._record(permit, error, request, started)
                raise
            self._record(permit, response, request, started)
            return response

    def _record(
        self, permit: Permit, result: httpx.Response | Exception, request: httpx.Request,
        started: float,
    ) -> None:  # fmt: skip
        local = request.extensions.get(LOCAL_WAIT, 0.0)
        duration = max(0.0, self._clock.monotonic() - started - local)
        permit.record(breaker_result(result, self._policy, self._clock.now()), duration)

    async def aclose(self) -> None:
        await self._next.aclose()
