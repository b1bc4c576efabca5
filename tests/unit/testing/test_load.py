"""``drive`` on the fake clock: callers pace to the asked rate, never make up a missed start, and
stop by count or by time."""

from __future__ import annotations

import itertools

import pytest

from cadastre.testing import FakeClock
from cadastre.testing.load import drive


async def test_paced_callers_start_the_asked_rate_and_stop_at_the_time() -> None:
    clock = FakeClock(autojump=True)
    starts: list[float] = []

    async def call() -> None:
        starts.append(clock.monotonic())
        await clock.sleep(0.01)

    # one caller: an autojumping clock moves for every sleeper, so concurrent ones blur it
    latencies = await drive(call, callers=1, rate=20.0, seconds=10.0, clock=clock)
    assert len(starts) == len(latencies) == 200  # 20 a second for 10 s
    assert latencies == pytest.approx([0.01] * 200)
    assert max(starts) < 10.0


async def test_a_slow_call_is_not_followed_by_a_burst_of_missed_starts() -> None:
    clock = FakeClock(autojump=True)
    starts: list[float] = []

    async def call() -> None:
        starts.append(clock.monotonic())
        await clock.sleep(1.0 if len(starts) == 1 else 0.0)

    await drive(call, callers=1, rate=10.0, calls=5, clock=clock)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1.0, 0.1, 0.1, 0.1])


async def test_back_to_back_by_count() -> None:
    clock = FakeClock(autojump=True)
    done: list[int] = []

    async def call() -> None:
        done.append(1)

    assert len(await drive(call, callers=8, calls=50, clock=clock)) == 50
    assert len(done) == 50


async def test_count_or_time_not_both() -> None:
    async def call() -> None:
        return None

    with pytest.raises(ValueError, match="either calls or seconds"):
        await drive(call, callers=1, calls=1, seconds=1.0)
    with pytest.raises(ValueError, match="either calls or seconds"):
        await drive(call, callers=1)
