"""A system clock that ``POST /admin/clock`` can move forward: what a simulator running as a
process uses, so a script can jump past an access token's hour or CDC's 30 days."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class OffsetClock:
    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._offset += seconds
