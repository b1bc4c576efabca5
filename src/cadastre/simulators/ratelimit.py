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

With ``headers`` chosen, answers also tell the client its budget: ``x-ratelimit`` sends
``X-RateLimit-Limit``/``-Remaining``/``-Reset``, ``ietf`` the IETF draft's ``RateLimit-Limit``/
``-Remaining``/``-Reset``; Reset is whole seconds (rounded up) until the next used slot frees.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, get_args

RateLimitHeaders = Literal["x-ratelimit", "ietf"]
RATE_LIMIT_HEADERS: tuple[str, ...] = get_args(RateLimitHeaders)
_HEADER_PREFIX = {"x-ratelimit": "X-RateLimit", "ietf": "RateLimit"}


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

    def remaining(self, now: float) -> int:
        """Requests that would still be admitted at ``now``."""
        if self.limit.window == "fixed":
            used = self._window_count if self._window_index == self._index(now) else 0
        else:
            self._forget(now)
            used = len(self._admitted)
        return self.limit.requests - used

    def reset_in(self, now: float) -> float:
        """Seconds until the next used slot frees (0.0 when none is used)."""
        if self.limit.window == "fixed":
            index = self._index(now)
            used = self._window_index == index and self._window_count > 0
            return (index + 1) * self.limit.per - now if used else 0.0
        self._forget(now)
        return self._admitted[0] + self.limit.per - now if self._admitted else 0.0

    def headers(self, style: RateLimitHeaders, now: float) -> dict[str, str]:
        prefix = _HEADER_PREFIX[style]
        return {
            f"{prefix}-Limit": str(self.limit.requests),
            f"{prefix}-Remaining": str(self.remaining(now)),
            # Rounded first so float noise (6.000000001) does not cost a client a whole second.
            f"{prefix}-Reset": str(math.ceil(round(self.reset_in(now), 6))),
        }

    def _index(self, now: float) -> int:
        return math.floor(now / self.limit.per)

    def _forget(self, now: float) -> None:
        horizon = now - self.limit.per
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()

    def _admit_sliding(self, now: float) -> Admission:
        self._forget(now)
        if len(self._admitted) < self.limit.requests:
            self._admitted.append(now)
            return Admission(admitted=True, retry_after=0)
        frees_in = self._admitted[0] + self.limit.per - now
        return Admission(admitted=False, retry_after=max(1, math.ceil(frees_in)))

    def _admit_fixed(self, now: float) -> Admission:
        index = self._index(now)
        if index != self._window_index:
            self._window_index, self._window_count = index, 0
        if self._window_count < self.limit.requests:
            self._window_count += 1
            return Admission(admitted=True, retry_after=0)
        frees_in = (index + 1) * self.limit.per - now
        return Admission(admitted=False, retry_after=max(1, math.ceil(frees_in)))
