"""How hard to try one vendor: timeouts, the retry schedule and which statuses are worth a retry.

A ``VendorPolicy`` is plain data, checked when it is built so a bad setting fails at start-up
rather than on the first outage. Times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cadastre.errors import ConfigurationError

DEFAULT_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A 4xx says "your request is wrong"; sending it again cannot help, except for these three, whose
# meaning is "not now" (RELIABILITY.md #8).
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class VendorPolicy:
    vendor: str
    connect: float = 5.0  # TCP + TLS handshake, and waiting for a pooled connection
    read: float = 30.0  # between two bytes of the answer (also used for writing the request)
    total: float = 120.0  # deadline for one call, every attempt and every wait included
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    # A vendor asking for a longer pause than this is not waited for in-process: the call fails at
    # once with VendorRateLimited(retry_after) so the caller can park the job instead.
    retry_after_cap: float = 300.0
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.vendor.strip():
            problems.append("vendor must be named")
        for name in ("connect", "read", "total", "backoff_base", "backoff_cap", "retry_after_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number of seconds, not {value!r}")
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            problems.append(f"max_attempts must be at least 1, not {self.max_attempts!r}")
        if not problems and self.backoff_cap < self.backoff_base:
            problems.append("backoff_cap must not be below backoff_base")
        # frozen: normalise a list or set from settings into the declared frozenset
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        wrong = sorted(
            s for s in self.retry_statuses if not (s in RETRYABLE_CLIENT_ERRORS or 500 <= s <= 599)
        )
        if wrong:
            problems.append(
                f"retry_statuses {wrong} are not retryable (only 408, 425, 429 and 5xx are)"
            )
        if problems:
            raise ConfigurationError(f"vendor policy {self.vendor!r}: " + "; ".join(problems))
