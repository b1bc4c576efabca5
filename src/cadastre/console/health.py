"""A connection's health verdict on the fleet view: one word an operator can scan a page of, with
the reasons that gave it.

- ``paused``: a person paused the connection (nothing else is judged: no calls are expected).
- ``failing``: its breaker is open (calls are refused), a critical alert about it is firing, or at
  least half its vendor calls failed over the window (with enough calls to say so).
- ``degraded``: its breaker is half-open (probing), another alert about it is firing, or the
  failed share is at least ``DEGRADED_RATE``.
- ``ok``: none of that.

Failed calls are those ``observe.series`` counts as failed (the vendor answered with an error or
not at all; rate limiting is not failure). Pending alerts do not count: nobody has been told of
them yet, and a condition that clears within its rule's ``for`` was noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadastre.gateway import BreakerState
from cadastre.ports import AlertState, ConnectionStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.ports import Alert

FAILING_RATE = 0.5
DEGRADED_RATE = 0.05
MIN_CALLS = 5  # fewer calls than this in the window say nothing about an error rate
VERDICTS = ("ok", "degraded", "failing", "paused")


@dataclass(frozen=True)
class Health:
    verdict: str  # one of VERDICTS
    reasons: list[str] = field(default_factory=list)


def judge(
    status: ConnectionStatus,
    breaker: BreakerState | None,
    failed: int,
    total: int,
    alerts: Sequence[Alert],
) -> Health:
    if status is ConnectionStatus.PAUSED:
        return Health("paused", ["paused by an operator"])
    failing: list[str] = []
    degraded: list[str] = []
    if breaker is BreakerState.OPEN:
        failing.append("breaker open: calls are refused")
    elif breaker is BreakerState.HALF_OPEN:
        degraded.append("breaker half-open: probing the vendor")
    if total >= MIN_CALLS:
        rate = failed / total
        said = f"{rate:.0%} of {total} calls failed"
        if rate >= FAILING_RATE:
            failing.append(said)
        elif rate >= DEGRADED_RATE:
            degraded.append(said)
    for alert in alerts:
        if alert.state is not AlertState.FIRING:
            continue
        (failing if alert.severity == "critical" else degraded).append(
            f"{alert.severity} alert: {alert.summary}"
        )
    if failing:
        return Health("failing", failing + degraded)
    if degraded:
        return Health("degraded", degraded)
    return Health("ok")
