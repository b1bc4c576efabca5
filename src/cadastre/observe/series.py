"""Read-model helpers over stored minutes, for the detectors and the console.

Everything takes the ``MinuteRollup`` rows ``uow.observations.window`` returns (any mix of
connections and minutes; filter first when one connection is meant) and is pure.

What counts as failed: calls whose outcome is ``retry`` or ``fail`` - the vendor answered with an
error or not at all. ``rate_limited`` is the vendor pacing us (it never trips a breaker either)
and ``refresh_token_then_retry`` is a token that expired in flight; neither is an error of the
vendor's.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from cadastre.observe.signals import BUCKETS, minute_of, quantile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from cadastre.ports import MinuteRollup

FAILED_OUTCOMES = frozenset({"retry", "fail"})


def error_rate(rollups: Iterable[MinuteRollup]) -> tuple[int, int]:
    """``(failed, total)`` calls; the rate is theirs to divide (``total`` may be 0)."""
    failed = total = 0
    for rollup in rollups:
        for outcome, n in rollup.calls.items():
            total += n
            if outcome in FAILED_OUTCOMES:
                failed += n
    return failed, total


def calls(rollups: Iterable[MinuteRollup]) -> int:
    return sum(sum(r.calls.values()) for r in rollups)


def latency_histogram(rollups: Iterable[MinuteRollup]) -> list[int]:
    """The rollups' latency buckets added together."""
    total = [0] * BUCKETS
    for rollup in rollups:
        for i, n in enumerate(rollup.latency[:BUCKETS]):
            total[i] += n
    return total


def p95(rollups: Iterable[MinuteRollup]) -> float | None:
    """The 95th percentile of call latency, in seconds; ``None`` without calls."""
    return quantile(latency_histogram(rollups), 0.95)


def statuses(rollups: Iterable[MinuteRollup]) -> Counter[str]:
    """Status (``"200"``, ``"503"``, ``"timeout"``) -> calls."""
    total: Counter[str] = Counter()
    for rollup in rollups:
        total.update(rollup.statuses)
    return total


def counter(rollups: Iterable[MinuteRollup], name: str) -> int:
    """An additive counter (``records_synced``, ``sync_failed`` ...) summed."""
    return sum(int(r.counts.get(name, 0)) for r in rollups)


def per_minute(
    rollups: Iterable[MinuteRollup],
    since: datetime,
    minutes: int,
    fn: Callable[[Sequence[MinuteRollup]], float | None],
) -> list[float | None]:
    """``fn`` applied to each of ``minutes`` consecutive minutes from ``since``'s (a sparkline):
    ``fn`` gets that minute's rollups (an empty list for a minute without any) and says what it
    is worth, ``None`` for "no data"."""
    start = minute_of(since)
    groups: dict[datetime, list[MinuteRollup]] = {}
    for rollup in rollups:
        groups.setdefault(rollup.minute, []).append(rollup)
    return [fn(groups.get(start + timedelta(minutes=i), [])) for i in range(minutes)]


def latest_gauge(rollups: Iterable[MinuteRollup], connection: str, name: str) -> float | None:
    """The newest value of gauge ``name`` sampled for ``connection`` ("" for the tenant-wide
    ones), or ``None`` when none was."""
    found: tuple[datetime, float] | None = None
    for rollup in rollups:
        if rollup.connection != connection or name not in rollup.gauges:
            continue
        if found is None or rollup.minute >= found[0]:
            found = (rollup.minute, float(rollup.gauges[name]))
    return None if found is None else found[1]


def gauge_series(
    rollups: Iterable[MinuteRollup], connection: str, name: str
) -> list[tuple[datetime, float]]:
    """``(minute, value)`` of gauge ``name`` for ``connection``, oldest first."""
    found = [
        (r.minute, float(r.gauges[name]))
        for r in rollups
        if r.connection == connection and name in r.gauges
    ]
    return sorted(found, key=lambda pair: pair[0])
