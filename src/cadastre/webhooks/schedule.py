"""When an outbound webhook is attempted again: Svix's published schedule (docs.svix.com, "Retry
Schedule"), each wait counted from the failure of the attempt before it:

| attempt | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |
|---|---|---|---|---|---|---|---|---|
| wait before it | now | 5 s | 5 min | 30 min | 2 h | 5 h | 10 h | 10 h |

Eight attempts over about 27.6 hours; after the eighth failure the delivery is dead-lettered.
Every wait but the first is drawn uniformly within ``jitter`` (10 %) of its step, so the
deliveries that failed together (an endpoint down for a minute) do not all come back in the same
second. A 429's ``Retry-After`` lengthens a wait, never shortens it, and is honoured up to
``retry_after_cap`` (a day): an endpoint cannot park a delivery for ever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

SVIX_WAITS: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True)
class RetrySchedule:
    waits: tuple[float, ...] = SVIX_WAITS  # before attempt 1, 2, ...
    jitter: float = 0.1  # each wait is drawn from [step * (1 - jitter), step * (1 + jitter)]
    retry_after_cap: float = 86_400.0

    def __post_init__(self) -> None:
        if not self.waits or any(not math.isfinite(w) or w < 0 for w in self.waits):
            raise ValueError("a retry schedule is at least one finite wait >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a share of each wait, in [0, 1)")
        if self.retry_after_cap < 0:
            raise ValueError("retry_after_cap is seconds >= 0")

    @property
    def attempts(self) -> int:
        return len(self.waits)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The earliest and latest wait before attempt ``attempt`` (1-based), jitter included,
        Retry-After aside."""
        step = self.waits[attempt - 1]
        return step * (1 - self.jitter), step * (1 + self.jitter)

    def wait_after(
        self, failed: int, rng: random.Random, retry_after: float | None = None
    ) -> float | None:
        """Seconds from the failure of attempt ``failed`` (1-based) to the next attempt; None
        when that was the last one (the delivery is dead)."""
        if failed < 1:
            raise ValueError("attempts are counted from 1")
        if failed >= len(self.waits):
            return None
        low, high = self.bounds(failed + 1)
        wait = rng.uniform(low, high)
        if retry_after is not None and math.isfinite(retry_after):
            wait = max(wait, min(retry_after, self.retry_after_cap))
        return wait
