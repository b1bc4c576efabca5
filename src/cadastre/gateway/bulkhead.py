"""A cap on concurrent calls to one vendor: its outage cannot hold every worker (RELIABILITY.md #4).

``async with bulkhead.slot():`` enters at once while fewer than ``max_concurrent`` calls are in
flight. Otherwise the caller queues (first come, first served) for up to ``max_wait`` seconds on
the injected clock, then gets ``BulkheadFull``; ``max_wait=0`` refuses at once. A freed slot goes
straight to the longest waiter, so a newcomer cannot overtake the queue. A waiter cancelled while
queueing leaves no trace; one cancelled just as a slot was handed to it passes the slot on.

``BulkheadTransport`` holds the slot for a whole attempt, reading the body included, so a vendor
that sends headers quickly and the body slowly still counts against the cap. The seconds spent
queueing are added to the request's ``LOCAL_WAIT`` extension, which the breaker above leaves out
of the call's duration, and to its ``CallRecord`` (``bulkhead_wait``), which names the bulkhead.

Written by hand rather than with ``asyncio.Semaphore``: the wait must run on the injected clock
(a FakeClock test steps it), and the stats need the queue itself.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from cadastre.errors import BulkheadFull, ConfigurationError
from cadastre.gateway.breaker import LOCAL_WAIT
from cadastre.gateway.records import TRACE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from cadastre.ports import Clock


@dataclass(frozen=True)
class BulkheadStats:
    vendor: str
    max_concurrent: int
    in_flight: int
    peak: int  # most calls ever in flight at once
    waiting: int
    granted: int  # slots given, at once or after a wait
    refused: int  # BulkheadFull raised
    total_wait_seconds: float  # queueing time of every caller that queued, granted or refused


class Bulkhead:
    def __init__(self, vendor: str, max_concurrent: int, max_wait: float, clock: Clock) -> None:
        problems: list[str] = []
        if not (
            isinstance(max_concurrent, int)
            and not isinstance(max_concurrent, bool)
            and max_concurrent >= 1
        ):
            problems.append(f"max_concurrent must be a whole number >= 1, not {max_concurrent!r}")
        if not (
            isinstance(max_wait, int | float)
            and not isinstance(max_wait, bool)
            and math.isfinite(max_wait)
            and max_wait >= 0
        ):
            problems.append(f"max_wait must be a finite number of seconds >= 0, not {max_wait!r}")
        if problems:
            raise ConfigurationError(f"bulkhead for vendor {vendor!r}: " + "; ".join(problems))
        self.vendor = vendor
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._peak = 0
        self._granted = 0
        self._refused = 0
        self._waited = 0.0

    def __repr__(self) -> str:
        return f"Bulkhead(vendor={self.vendor!r}, max_concurrent={self.max_concurrent})"

    def stats(self) -> BulkheadStats:
        return BulkheadStats(
            self.vendor, self.max_concurrent, self._in_flight, self._peak, len(self._waiters),
            self._granted, self._refused, self._waited,
        )  # fmt: skip

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one of the vendor's slots for the block; yields the seconds spent queueing."""
        waited = await self._acquire()
        try:
            yield waited
        finally:
            self._release()

    async def _acquire(self) -> float:
        if self._in_flight < self.max_concurrent and not self._waiters:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._granted += 1
            return 0.0
        if self.max_wait == 0:
            self._refused += 1
            raise self._full()
        clock = self._clock
        started = clock.monotonic()
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(handed)
        timer = asyncio.ensure_future(clock.sleep(self.max_wait))
        try:
            await asyncio.wait((handed, timer), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled while queueing. A slot handed over in the same instant is passed on.
            if handed.done() and not handed.cancelled():
                self._release()
            raise
        finally:
            timer.cancel()
            if not handed.done():
                handed.cancel()
            if handed in self._waiters:
                self._waiters.remove(handed)
            self._waited += clock.monotonic() - started
        if not handed.cancelled():  # handed a slot, even if the timer rang in the same instant
            self._granted += 1
            return clock.monotonic() - started
        self._refused += 1
        raise self._full(clock.monotonic() - started)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to it: in_flight stays as it is
                return
        self._in_flight -= 1

    def _full(self, waited: float = 0.0) -> BulkheadFull:
        return BulkheadFull(
            f"vendor {self.vendor!r}: all {self.max_concurrent} call slots stayed busy"
            + (f" for {waited:g} s" if waited else "")
        )


class BulkheadTransport(httpx.AsyncBaseTransport):
    def __init__(self, next: httpx.AsyncBaseTransport, bulkhead: Bulkhead) -> None:
        self._next = next
        self._bulkhead = bulkhead

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        record = request.extensions.get(TRACE)
        if record is not None:
            record.bulkhead = self._bulkhead.vendor
        entered = False
        try:
            async with self._bulkhead.slot() as waited:
                entered = True
                request.extensions[LOCAL_WAIT] = request.extensions.get(LOCAL_WAIT, 0.0) + waited
                if record is not None:
                    record.bulkhead_wait += waited
                response = await self._next.handle_async_request(request)
                try:
                    await response.aread()  # inside the slot: a slow body cannot hide from the cap
                except BaseException:
                    await response.aclose()
                    raise
                return response
        except BulkheadFull:
            if record is not None and not entered:
                record.bulkhead_wait += self._bulkhead.max_wait  # refused: it waited it all
            raise

    async def aclose(self) -> None:
        await self._next.aclose()
