"""The real clock. Everything that reads time takes a ``Clock`` (see ``cadastre.ports``), so tests
and simulators can share a ``cadastre.testing.FakeClock`` instead."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
