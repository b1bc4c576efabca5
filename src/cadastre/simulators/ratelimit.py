"""The vendor's own rate limit, kept on the simulator's clock so violations are counted where the
vendor would count them.

``window="sliding"`` (the default) is the strict reading of "N requests per W seconds": at most
``requests`` admitted requests in ANY interval of ``per`` seconds (a log of admission times). A
client that keeps a token bucket or GCRA with burst <= ``requests`` and rate ``requests / per``
can still violate it, because a full burst followed by steady refill puts more than ``requests``
into one window; pace to the window, not only to the rate.
``window="fixed"`` counts per aligned window ``[k*per, (k+1)*per)`` of the simulator's monotonic
clock, as many vendors do; it allows up to 2x ``requests`` across a window boundary.
Rejected requests consume no budget.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per: float = 1.0
    window: Literal["sliding", "fixed"] = "sliding"

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError("a rate limit admits at least one request per window")
        if not self.per > 0:
            raise ValueError("a rate limit window lasts longer than zero seconds")
        if self.window not in ("sliding", "fixed"):
            raise ValueError("window is 'sliding' or 'fixed'")


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after: int  # whole seconds until a slot frees (>= 1) when refused, else 0


class RateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._admitted: deque[float] = deque()
        self._window_index = -1
        self._window_count = 0

    def admit(self, now: float) -> Admission:
        if self.limit.window == "fixed":
            return self._admit_fixed(now)
        return self._admit_sliding(now)

    def _admit_sliding(self, now: float) -> Admission:
        horizon = now - self.limit.per
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()
        if len(self._admitted) < self.limit.requests:
            self._admitted.append(now)
            return Admission(admitted=True, retry_after=0)
        frees_in = self._admitted[0] + self.limit.per - now
        return Admission(admitted=False, retry_after=max(1, math.ceil(frees_in)))

    def _admit_fixed(self, now: float) -> Admission:
        index = math.floor(now / self.limit.per)
        if index != self._window_index:
            self._window_index, self._window_count = index, 0
        if self._window_count < self.limit.requests:
            self._window_count += 1
            return Admission(admitted=True, retry_after=0)
        frees_in = (index + 1) * self.limit.per - now
        return Admission(admitted=False, retry_after=max(1, math.ceil(frees_in)))
