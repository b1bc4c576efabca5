"""Keep within a vendor's rate limit before the vendor has to say so: GCRA buckets, adaptive to the
vendor's own headers, in memory (embedded default) or in Redis (``ratelimit_redis``).

A ``RateRule`` is a vendor's documented limit, "``requests`` per ``per`` seconds", read the strict
way the simulators read it: at most that many requests in ANY window of ``per`` seconds. GCRA with
emission interval ``T`` and burst ``b`` admits at most ``per / T + b`` requests in such a window,
so ``T = per / (usable - b)``, where ``usable`` leaves ``headroom`` of the limit unused for what the
limiter cannot see (network jitter between the slot and the vendor's meter, clocks that differ).

Each call reserves a slot in every bucket that applies to it, in order: the connection's own
bucket, then the vendor credential's (shared by every stream, connection and tenant that spends
that quota). Reservations look at most ``horizon`` seconds ahead, so a worker that dies holds no
slot longer than that, and a caller whose slot lies further out sleeps and asks again. A wait that
would pass the call's deadline is not started: the call fails at once with
``VendorRateLimited(retry_after)`` and sends nothing.

Adaptive: after every answer ``observe`` reads the vendor's view. A 429's ``Retry-After`` (or
``RateLimit-Reset`` / ``X-RateLimit-Reset``) defers every slot past it; ``RateLimit-Remaining`` /
``X-RateLimit-Remaining`` (or the structured ``RateLimit: remaining=..., reset=...``) at 0 defers
to the reset, and below ``low_water`` of the limit spreads what remains over the time to reset,
slowing down before the vendor says no.

Written by hand: the libraries for this (limits, aiolimiter, pyrate-limiter) either cannot reserve
slots ahead on an injected clock, or keep Redis buckets on the caller's clock rather than the
server's (``TIME``), which workers with skewed clocks would break.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from cadastre.errors import ConfigurationError, VendorRateLimited
from cadastre.gateway.breaker import LOCAL_WAIT
from cadastre.gateway.outcome import parse_rate_limit_reset, parse_retry_after
from cadastre.gateway.records import TRACE
from cadastre.ports import Reservation

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, RateLimitBackend

DEADLINE = "cadastre.deadline"  # request extension: the call's deadline on clock.monotonic()
RATE_WAIT = "cadastre.rate_wait"  # response extension: seconds this attempt waited for its slots

# Structured field of the IETF draft: "RateLimit: limit=100, remaining=50, reset=5" (older drafts)
# or '"default";r=50;t=5' (draft 8 and later).
_STRUCTURED = re.compile(r"(?:^|[;,\s])(remaining|r|reset|t)=(\d+)")


@dataclass(frozen=True)
class RateRule:
    requests: int
    per: float = 1.0
    burst: int | None = None  # default: a quarter of what the window may use
    headroom: float = 0.1  # share of the limit left unused

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (isinstance(self.requests, int) and self.requests >= 2):
            problems.append(f"requests must be an integer of at least 2, not {self.requests!r}")
        if not (isinstance(self.per, int | float) and math.isfinite(self.per) and self.per > 0):
            problems.append(f"per must be a positive number of seconds, not {self.per!r}")
        if not (isinstance(self.headroom, int | float) and 0 <= self.headroom < 1):
            problems.append(f"headroom must be at least 0 and below 1, not {self.headroom!r}")
        if not problems:
            usable, burst = self.usable, self.burst_size
            if not (isinstance(burst, int) and 1 <= burst < usable):
                problems.append(
                    f"burst must be at least 1 and below the {usable} requests the window may "
                    f"use after headroom, not {burst!r}"
                )
        if problems:
            raise ConfigurationError("rate limit: " + "; ".join(problems))

    @property
    def usable(self) -> int:
        return math.floor(self.requests * (1 - self.headroom))

    @property
    def burst_size(self) -> int:
        return self.burst if self.burst is not None else max(1, self.usable // 4)

    @property
    def interval(self) -> float:
        return self.per / (self.usable - self.burst_size)

    @property
    def tolerance(self) -> float:
        return (self.burst_size - 1) * self.interval


class MemoryRateLimitBackend:
    """Buckets in this process, on the injected clock (the embedded default)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def reserve(
        self, key: str, interval: float, tolerance: float, horizon: float
    ) -> Reservation:
        now = self._clock.monotonic()
        # First sight: the burst counts as spent, since a restarted process cannot know what its
        # predecessor sent in the current window.
        tat = self._tat.get(key, now + tolerance)
        wait = max(tat - tolerance, now) - now
        if wait > horizon:
            return Reservation(granted=False, wait=wait)
        self._tat[key] = max(tat, now) + interval
        return Reservation(granted=True, wait=wait)

    async def defer(self, key: str, seconds: float, tolerance: float) -> None:
        floor = self._clock.monotonic() + seconds + tolerance
        if self._tat.get(key, -math.inf) < floor:
            self._tat[key] = floor

    def pending(self, key: str) -> float:
        """Seconds until the bucket has caught up with every slot it has given out."""
        return max(0.0, self._tat.get(key, -math.inf) - self._clock.monotonic())

    async def aclose(self) -> None:
        self._tat.clear()


class RateLimiter:
    """One bucket: a rule, the key it lives under and the backend holding it."""

    def __init__(
        self,
        key: str,
        rule: RateRule,
        backend: RateLimitBackend,
        clock: Clock,
        *,
        horizon: float = 1.0,
        low_water: float = 0.1,
    ) -> None:
        self.key = key
        self.rule = rule
        self._backend = backend
        self._clock = clock
        self._horizon = horizon
        self._low_water = low_water
        self.headroom: float | None = None  # remaining / limit from the vendor's last headers

    async def acquire(self, deadline: float | None, what: str) -> float:
        """Wait for a slot; returns the seconds waited. ``what`` names the call in errors."""
        clock, rule = self._clock, self.rule
        waited = 0.0
        while True:
            horizon = self._horizon
            if deadline is not None:
                horizon = min(horizon, max(0.0, deadline - clock.monotonic()))
            reservation = await self._backend.reserve(
                self.key, rule.interval, rule.tolerance, horizon
            )
            if reservation.granted:
                if reservation.wait > 0:
                    await clock.sleep(reservation.wait)
                return waited + reservation.wait
            if deadline is not None and clock.monotonic() + reservation.wait >= deadline:
                raise VendorRateLimited(
                    f"{what}: the next rate-limit slot is {reservation.wait:.3g} s away, past "
                    "the call's deadline; not sent",
                    reservation.wait,
                )
            pause = max(reservation.wait - self._horizon, rule.interval)
            await clock.sleep(pause)
            waited += pause

    async def observe(self, response: httpx.Response) -> None:
        """Slow down as the vendor's own headers ask (see the module docstring)."""
        headers, now = response.headers, self._clock.now()
        tolerance = self.rule.tolerance
        if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
            wait = parse_retry_after(headers.get("Retry-After"), now)
            if wait is None:
                wait = parse_rate_limit_reset(headers, now)
            # Without a hint, skip at least one window: the vendor's meter is ahead of ours.
            await self._backend.defer(
                self.key, wait if wait is not None else self.rule.per, tolerance
            )
            self.headroom = 0.0
            return
        remaining, reset, limit = _quota(headers, now)
        if remaining is None:
            return
        if limit:
            self.headroom = max(0.0, min(1.0, remaining / limit))
        if reset is None:
            return
        if remaining <= 0:
            await self._backend.defer(self.key, reset, tolerance)
        elif limit is None or remaining <= max(1.0, self._low_water * limit):
            await self._backend.defer(self.key, reset / (remaining + 1), tolerance)


def _quota(
    headers: httpx.Headers, now: datetime
) -> tuple[float | None, float | None, float | None]:
    """(remaining, seconds to reset, limit) from whichever rate-limit headers the vendor sends."""
    for prefix in ("RateLimit-", "X-RateLimit-"):
        remaining = _number(headers.get(prefix + "Remaining"))
        if remaining is not None:
            reset = parse_rate_limit_reset(
                httpx.Headers({prefix + "Reset": headers.get(prefix + "Reset", "")}), now
            )
            return remaining, reset, _number(headers.get(prefix + "Limit"))
    structured = headers.get("RateLimit")
    if structured:
        found = {name: float(value) for name, value in _STRUCTURED.findall(structured)}
        remaining = found.get("remaining", found.get("r"))
        if remaining is not None:
            return remaining, found.get("reset", found.get("t")), None
    return None, None, None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip().split(",")[0])
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class RateLimitTransport(httpx.AsyncBaseTransport):
    """Below the breaker and bulkhead, above auth: every attempt (each retry, the resend after a
    refused token) waits for its slots in ``limiters``; ``vendor`` (the credential's bucket, one
    of them) learns from the answers."""

    def __init__(
        self,
        next: httpx.AsyncBaseTransport,
        limiters: Sequence[RateLimiter],
        vendor: RateLimiter | None,
        *,
        name: str,
        connection: str,
        metrics: Metrics | None = None,
    ) -> None:
        if vendor is not None and vendor not in limiters:
            raise ConfigurationError("the vendor bucket must be one of the limiters")
        self._next = next
        self._limiters = tuple(limiters)
        self._vendor = vendor
        self._name = name
        self._connection = connection
        self._wait = metrics.histogram("cadastre_ratelimit_wait_seconds") if metrics else None
        self._headroom = metrics.gauge("cadastre_ratelimit_headroom_ratio") if metrics else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = request.extensions.get(DEADLINE)
        what = f"vendor {self._name!r}: {request.method} {request.url.path}"
        waited = 0.0
        for limiter in self._limiters:
            waited += await limiter.acquire(deadline, what)
        if self._wait is not None:
            self._wait.labels(self._name, self._connection).observe(waited)
        # Queueing here is not the vendor being slow: the breaker takes it off the call's duration.
        request.extensions[LOCAL_WAIT] = request.extensions.get(LOCAL_WAIT, 0.0) + waited
        record = request.extensions.get(TRACE)
        if record is not None:
            record.rate_buckets = tuple(limiter.key for limiter in self._limiters)
            record.rate_wait += waited
        response = await self._next.handle_async_request(request)
        response.extensions[RATE_WAIT] = waited
        if self._vendor is not None:
            await self._vendor.observe(response)
            if self._headroom is not None and self._vendor.headroom is not None:
                self._headroom.labels(self._name, self._connection).set(self._vendor.headroom)
        return response

    async def aclose(self) -> None:
        await self._next.aclose()
