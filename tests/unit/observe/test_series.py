"""The read-model helpers over stored minutes."""

from __future__ import annotations

from datetime import timedelta

from cadastre.observe import LATENCY_EDGES, series
from cadastre.observe.signals import BUCKETS
from cadastre.ports import MinuteRollup
from cadastre.testing import EPOCH


def minute(n: int) -> object:
    return EPOCH + timedelta(minutes=n)


def rollup(at: int, connection: str = "a", **fields: object) -> MinuteRollup:
    return MinuteRollup(connection, EPOCH + timedelta(minutes=at), **fields)  # type: ignore[arg-type]


def latency(bucket: int, n: int) -> tuple[int, ...]:
    found = [0] * BUCKETS
    found[bucket] = n
    return tuple(found)


def test_error_rate_counts_retry_and_fail_but_not_pacing() -> None:
    rollups = [
        rollup(0, calls={"success": 6, "retry": 2}),
        rollup(1, calls={"fail": 1, "rate_limited": 5, "refresh_token_then_retry": 1}),
    ]
    assert series.error_rate(rollups) == (3, 15)
    assert series.error_rate([]) == (0, 0)
    assert series.calls(rollups) == 15


def test_p95_reads_the_summed_histogram() -> None:
    fast = rollup(0, latency=latency(5, 95))
    slow = rollup(1, latency=latency(30, 5))
    found = series.p95([fast, slow])
    assert found is not None
    assert LATENCY_EDGES[4] < found <= LATENCY_EDGES[5]
    # one more slow call moves the 95th call into the slow bucket
    assert (series.p95([fast, rollup(2, latency=latency(30, 6))]) or 0) > LATENCY_EDGES[29]
    assert series.p95([rollup(0, calls={"success": 1})]) is None  # no latency kept


def test_per_minute_gives_every_minute_a_value_or_none() -> None:
    rollups = [
        rollup(1, calls={"success": 4}), rollup(1, "b", calls={"success": 1}),
        rollup(3, calls={"fail": 2}), rollup(9, calls={"success": 1}),
    ]  # fmt: skip

    def rate(group: object) -> float | None:
        failed, total = series.error_rate(group)  # type: ignore[arg-type]
        return failed / total if total else None

    start = EPOCH + timedelta(seconds=59)  # its minute is where the series starts
    assert series.per_minute(rollups, start, 4, rate) == [None, 0.0, None, 1.0]
    assert series.per_minute(rollups, start, 4, lambda g: float(series.calls(g))) == [
        0.0, 5.0, 0.0, 2.0,
    ]  # fmt: skip


def test_latest_gauge_and_its_series() -> None:
    rollups = [
        rollup(2, gauges={"quarantine_open": 5.0}),
        rollup(0, gauges={"quarantine_open": 1.0, "sync_lag_seconds": 9.0}),
        rollup(3, "b", gauges={"quarantine_open": 7.0}),
        rollup(4, "", gauges={"outbox_backlog": 3.0}),
        rollup(5, calls={"success": 1}),
    ]
    assert series.latest_gauge(rollups, "a", "quarantine_open") == 5.0
    assert series.latest_gauge(rollups, "a", "sync_lag_seconds") == 9.0
    assert series.latest_gauge(rollups, "", "outbox_backlog") == 3.0
    assert series.latest_gauge(rollups, "a", "writeback_pending") is None
    assert series.gauge_series(rollups, "a", "quarantine_open") == [
        (minute(0), 1.0), (minute(2), 5.0),
    ]  # fmt: skip


def test_counters_and_statuses_add_up() -> None:
    rollups = [
        rollup(0, counts={"records_synced": 10, "sync_ok": 1}, statuses={"200": 3}),
        rollup(1, counts={"records_synced": 5}, statuses={"200": 1, "503": 2}),
    ]
    assert series.counter(rollups, "records_synced") == 15
    assert series.counter(rollups, "sync_failed") == 0
    assert series.statuses(rollups) == {"200": 4, "503": 2}
