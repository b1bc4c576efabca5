"""``drive``: a load of concurrent callers, for soaks and benchmarks (on the system clock unless
one is given).

Each of ``callers`` tasks calls ``call`` over and over. With ``rate``, the callers together start
that many calls per second: each starts one every ``callers / rate`` seconds on its own evenly
offset grid, never two at once and never making up a start it missed while its last call ran, so
the demand stays what was asked even when the system slows down. Without ``rate`` they call back to
back. The load stops after ``calls`` calls in all or once ``seconds`` have passed, whichever is
given (calls under way finish). An exception from ``call`` ends the load; wrap ``call`` to count
failures instead.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from cadastre.clock import SystemClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cadastre.ports import Clock


async def drive(
    call: Callable[[], Awaitable[object]],
    *,
    callers: int,
    rate: float | None = None,
    calls: int | None = None,
    seconds: float | None = None,
    clock: Clock | None = None,
) -> list[float]:
    """The latency of every call, in seconds, in the order they ended."""
    if (calls is None) == (seconds is None):
        raise ValueError("give either calls or seconds")
    clock = clock or SystemClock()
    latencies: list[float] = []
    left = calls
    stop = clock.monotonic() + seconds if seconds is not None else None
    gap = callers / rate if rate else 0.0

    def more() -> bool:
        nonlocal left
        if stop is not None:
            return clock.monotonic() < stop
        assert left is not None
        left -= 1
        return left >= 0

    async def caller(n: int) -> None:
        due = clock.monotonic() + gap * n / callers
        while True:
            if gap:
                await clock.sleep(due - clock.monotonic())
            if not more():
                return
            started = clock.monotonic()
            await call()
            ended = clock.monotonic()
            latencies.append(ended - started)
            due += gap
            if gap and due < ended:
                # Skip the starts missed while the call ran, but keep this caller's own offset:
                # restarting the grid at ``ended`` would line up every caller a refusal or a
                # timeout released at the same moment, into bursts no real load has.
                due += math.ceil((ended - due) / gap - 1e-9) * gap

    await asyncio.gather(*(caller(n) for n in range(callers)))
    return latencies
