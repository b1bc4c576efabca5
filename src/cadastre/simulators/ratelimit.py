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

Real MLSs count several windows at once (MLS Grid: 2 per second, 7,200 per hour and 40,000 per
day). ``also`` holds further windows counted beside the first, each on the same clock: a request
is admitted only when every window has room, and only then does it use a slot in each. A refusal
waits for the slowest window (``Retry-After`` is the longest of them), and the headers describe
the window with the least left.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, get_args

RateLimitHeaders = Literal["x-ratelimit", "ietf"]
RATE_LIMIT_HEADERS: tuple[str, ...] = get_args(RateLimitHeaders)
_HEADER_PREFIX = {"x-ratelimit": "X-RateLimit", "ietf": "RateLimit"}
_EDGE = 1e-9  # seconds: float rounding at a window's edge, not time a client could gain


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per: float = 1.0
    window: Literal["sliding", "fixed"] = "sliding"
    # Further windows counted beside this one (as RateLimits or their JSON objects; kept flat).
    also: tuple[RateLimit, ...] = ()

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError("a rate limit admits at least one request per window")
        if not self.per > 0:
            raise ValueError("a rate limit window lasts longer than zero seconds")
        if self.window not in ("sliding", "fixed"):
            raise ValueError("window is 'sliding' or 'fixed'")
        if isinstance(self.also, RateLimit | dict) or not isinstance(self.also, list | tuple):
            raise ValueError("also is a list of rate limits")
        windows: list[RateLimit] = []
        for item in self.also:
            window = RateLimit(**item) if isinstance(item, dict) else item
            if not isinstance(window, RateLimit):
                raise ValueError("also is a list of rate limits")
            windows += [RateLimit(window.requests, window.per, window.window), *window.also]
        object.__setattr__(self, "also", tuple(windows))  # frozen: set once, here

    @property
    def windows(self) -> tuple[RateLimit, ...]:
        """Every window, this one first, each without further ``also``."""
        return (RateLimit(self.requests, self.per, self.window), *self.also)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after: int  # whole seconds until a slot frees (>= 1) when refused, else 0


class _Window:
    """One window's count."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._admitted: deque[float] = deque()
        self._window_index = -1
        self._window_count = 0

    def refusal(self, now: float) -> int:
        """Whole seconds (>= 1) until this window has room, or 0 when it has room now."""
        if self.remaining(now) > 0:
            return 0
        return max(1, math.ceil(self.reset_in(now)))

    def use(self, now: float) -> None:
        if self.limit.window == "fixed":
            index = self._index(now)
            if index != self._window_index:
                self._window_index, self._window_count = index, 0
            self._window_count += 1
        else:
            self._admitted.append(now)

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

    def _index(self, now: float) -> int:
        return math.floor(now / self.limit.per)

    def _forget(self, now: float) -> None:
        # A slot frees at admitted + per. Compared as a sum, with a nanosecond's slack: a client
        # that waits out the window to its edge on the same clock computes that instant with
        # float rounding (now - per is 76.19999999999999 for 136.2 - 60), and is not early.
        per, edge = self.limit.per, now + _EDGE
        while self._admitted and self._admitted[0] + per <= edge:
            self._admitted.popleft()


class RateLimiter:
    """Every window of a RateLimit, counted together."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._windows = [_Window(window) for window in limit.windows]

    def admit(self, now: float) -> Admission:
        # Checked in every window before any slot is used: a refused request costs nothing.
        waits = [window.refusal(now) for window in self._windows]
        if any(waits):
            return Admission(admitted=False, retry_after=max(waits))
        for window in self._windows:
            window.use(now)
        return Admission(admitted=True, retry_after=0)

    def remaining(self, now: float) -> int:
        """Requests that would still be admitted at ``now`` (the tightest window's)."""
        return min(window.remaining(now) for window in self._windows)

    def reset_in(self, now: float) -> float:
        """Seconds until the tightest window's next used slot frees (0.0 when none is used)."""
        return self._tightest(now).reset_in(now)

    def headers(self, style: RateLimitHeaders, now: float) -> dict[str, str]:
        tightest = self._tightest(now)
        prefix = _HEADER_PREFIX[style]
        return {
            f"{prefix}-Limit": str(tightest.limit.requests),
            f"{prefix}-Remaining": str(tightest.remaining(now)),
            # Rounded first so float noise (6.000000001) does not cost a client a whole second.
            f"{prefix}-Reset": str(math.ceil(round(tightest.reset_in(now), 6))),
        }

    def _tightest(self, now: float) -> _Window:
        # The fewest left; among equals, the one that frees last.
        return min(self._windows, key=lambda w: (w.remaining(now), -w.reset_in(now)))
