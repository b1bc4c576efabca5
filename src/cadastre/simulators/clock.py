"""The simulators' own view of time.

The simulators stand in for vendors and import nothing of Cadastre, so they declare the clock they
need here. ``cadastre.testing.FakeClock`` satisfies this Protocol structurally, which is how a test
gives the hub and a simulator one shared, fake time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
