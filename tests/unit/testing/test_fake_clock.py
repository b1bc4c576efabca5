from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cadastre.testing import EPOCH, FakeClock


async def test_sleepers_wake_in_deadline_order_only_when_time_passes() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("hour", 3600), ("min", 60)]]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(59.9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(3600)
    await asyncio.gather(*tasks)
    assert woke == ["min", "hour"]
    assert clock.now() == EPOCH + timedelta(seconds=3659.9)
    assert clock.monotonic() == pytest.approx(3659.9)


def test_time_never_goes_backwards_and_start_must_be_aware() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone"):
        FakeClock(datetime(2026, 1, 1))  # noqa: DTZ001
    clock.set(datetime(2026, 1, 2, tzinfo=UTC))
    assert clock.monotonic() == 86400
