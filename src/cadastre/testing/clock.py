"""A fake clock the hub, the simulators and the tests share.

``sleep`` does not wait: it parks the caller until ``advance`` moves time past its deadline, so an
hour-long rate window or a day of token expiry is tested in microseconds and in a fixed order.
With ``autojump=True`` (trio's autojump clock) a sleep moves time to its own deadline at once,
for tests that only need backoffs to pass, not to be stepped through. Sleeps longer than
``autojump_limit`` are not jumped but wait for time to pass: those are watchdogs and other timers
that guard work, and jumping them would declare the work hung the moment it started.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(
        self, start: datetime = EPOCH, *, autojump: bool = False, autojump_limit: float = 600.0
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._start = start
        self._autojump = autojump
        self._autojump_limit = autojump_limit
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self._autojump and seconds <= self._autojump_limit:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake, in deadline order, everyone whose sleep has ended."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def set(self, when: datetime) -> None:
        self.advance((when - self.now()).total_seconds())
