"""The fleet view's health verdict: a theory table over breaker state, failed share (with its
minimum of calls, boundaries inclusive) and firing alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cadastre.console.health import DEGRADED_RATE, FAILING_RATE, MIN_CALLS, judge
from cadastre.gateway import BreakerState
from cadastre.ports import Alert, AlertState, ConnectionStatus

ACTIVE, PAUSED = ConnectionStatus.ACTIVE, ConnectionStatus.PAUSED
CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def alert(severity: str, state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        id="al", tenant="acme", rule="r", key="k", state=state, severity=severity, owner="o",
        vendor=None, connection="c", summary=f"{severity} thing", changed="", since=T0,
        action="", rollback=None, facts={}, occurrences=1, raised_at=T0, last_seen_at=T0,
        resolved_at=None, source="/cadastre/observe",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "breaker", "failed", "total", "alerts", "verdict"),
    [
        (ACTIVE, None, 0, 0, [], "ok"),  # no calls since the hub started
        (ACTIVE, CLOSED, 0, 100, [], "ok"),
        (PAUSED, OPEN, 100, 100, [alert("critical")], "paused"),  # nothing else is judged
        (ACTIVE, OPEN, 0, 0, [], "failing"),
        (ACTIVE, HALF, 0, 0, [], "degraded"),
        # the failed share, boundaries inclusive, with at least MIN_CALLS calls
        (ACTIVE, CLOSED, 5, 10, [], "failing"),  # exactly FAILING_RATE
        (ACTIVE, CLOSED, 49, 100, [], "degraded"),
        (ACTIVE, CLOSED, 5, 100, [], "degraded"),  # exactly DEGRADED_RATE
        (ACTIVE, CLOSED, 4, 100, [], "ok"),
        (ACTIVE, CLOSED, MIN_CALLS - 1, MIN_CALLS - 1, [], "ok"),  # too few calls to say
        (ACTIVE, CLOSED, MIN_CALLS, MIN_CALLS, [], "failing"),
        # firing alerts: critical fails it, any other degrades it; pending ones are not told yet
        (ACTIVE, CLOSED, 0, 100, [alert("critical")], "failing"),
        (ACTIVE, CLOSED, 0, 100, [alert("warning")], "degraded"),
        (ACTIVE, CLOSED, 0, 100, [alert("info")], "degraded"),
        (ACTIVE, CLOSED, 0, 100, [alert("critical", AlertState.PENDING)], "ok"),
        (ACTIVE, CLOSED, 0, 100, [alert("critical", AlertState.RESOLVED)], "ok"),
        (ACTIVE, HALF, 0, 100, [alert("critical")], "failing"),  # the worst wins
    ],
)
def test_the_verdict(
    status: ConnectionStatus, breaker: BreakerState | None, failed: int, total: int,
    alerts: list[Alert], verdict: str,
) -> None:  # fmt: skip
    health = judge(status, breaker, failed, total, alerts)
    assert health.verdict == verdict
    assert bool(health.reasons) == (verdict != "ok")


def test_the_thresholds_are_what_the_table_assumes() -> None:
    assert (FAILING_RATE, DEGRADED_RATE, MIN_CALLS) == (0.5, 0.05, 5)


def test_reasons_say_what_was_measured() -> None:
    health = judge(ACTIVE, HALF, 31, 50, [alert("warning")])
    assert health.verdict == "failing"  # 62% failed; the lesser reasons are kept after it
    assert health.reasons == [
        "62% of 50 calls failed", "breaker half-open: probing the vendor",
        "warning alert: warning thing",
    ]  # fmt: skip
