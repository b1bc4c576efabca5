"""The fleet view's and the connection page's read models: what the hub knows of each connection,
gathered from the gateway's breakers (this process's), the stored minutes of vendor calls
(``uow.observations``, every worker's), open alerts and the quarantine.

Rates and the p95 cover the last ``WINDOW`` (15 minutes); the sparklines one point a minute over
the last ``SPARK_MINUTES`` (60), the current minute last. A minute without calls is a gap in the
error-rate and latency lines (nothing to measure), and zero in the calls line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cadastre.console.health import Health, judge
from cadastre.gateway import BreakerSnapshot
from cadastre.observe import minute_of, series
from cadastre.ports import Alert, Connection, ConnectionVersion

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.bootstrap import Hub
    from cadastre.ports import MinuteRollup

WINDOW = timedelta(minutes=15)
SPARK_MINUTES = 60
HISTORY = timedelta(hours=24)  # the connection page's errors and sync activity
LAG_GAUGE = "sync_lag_seconds"


@dataclass(frozen=True)
class FleetRow:
    tenant: str
    connection: Connection
    vendor: str
    health: Health
    breaker: BreakerSnapshot | None
    calls: int  # over WINDOW
    failed: int
    error_rate: float | None  # None without calls
    p95: float | None
    lag: float | None  # seconds; None until the sampler has measured it
    last_sync: datetime | None  # the latest minute a sync run finished well
    quarantined: int
    alerts: list[Alert]
    spark_calls: list[float | None]
    spark_errors: list[float | None]
    spark_p95: list[float | None]


@dataclass(frozen=True)
class ErrorSeen:
    fingerprint: str
    status: str
    sample: str
    count: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class SyncMinute:
    minute: datetime
    ok: int
    failed: int
    synced: int
    quarantined: int


@dataclass(frozen=True)
class Version:
    version: ConnectionVersion
    changed_keys: list[str]  # config keys that differ from the version before


@dataclass(frozen=True)
class ConnectionDetail:
    row: FleetRow
    versions: list[Version]
    errors: list[ErrorSeen]
    syncs: list[SyncMinute]


def _rate(rollups: Sequence[MinuteRollup]) -> float | None:
    failed, total = series.error_rate(rollups)
    return failed / total if total else None


def _calls(rollups: Sequence[MinuteRollup]) -> float:
    return float(series.calls(rollups))


def row_of(
    tenant: str,
    connection: Connection,
    *,
    now: datetime,
    rollups: Sequence[MinuteRollup],
    breaker: BreakerSnapshot | None,
    last_sync: datetime | None,
    quarantined: int,
    alerts: Sequence[Alert],
) -> FleetRow:
    """One connection's row, from its own minutes of the last hour."""
    start = minute_of(now) - timedelta(minutes=SPARK_MINUTES - 1)
    recent = [r for r in rollups if r.minute >= minute_of(now - WINDOW)]
    failed, total = series.error_rate(recent)
    vendor = breaker.vendor if breaker is not None else ""
    vendor = vendor or next((r.vendor for r in reversed(rollups) if r.vendor), "")
    mine = [a for a in alerts if a.connection == connection.name]
    return FleetRow(
        tenant=tenant, connection=connection, vendor=vendor,
        health=judge(connection.status, breaker.state if breaker else None, failed, total, mine),
        breaker=breaker, calls=total, failed=failed, error_rate=failed / total if total else None,
        p95=series.p95(recent), lag=series.latest_gauge(rollups, connection.name, LAG_GAUGE),
        last_sync=last_sync, quarantined=quarantined, alerts=mine,
        spark_calls=series.per_minute(rollups, start, SPARK_MINUTES, _calls),
        spark_errors=series.per_minute(rollups, start, SPARK_MINUTES, _rate),
        spark_p95=series.per_minute(rollups, start, SPARK_MINUTES, series.p95),
    )  # fmt: skip


async def fleet(hub: Hub, tenant: str, now: datetime) -> list[FleetRow]:
    """Every connection of ``tenant``, by name."""
    connections = await hub.connections.all(tenant)
    breakers = hub.controls.breaker_states(tenant)
    since = minute_of(now) - timedelta(minutes=SPARK_MINUTES - 1)
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        rollups = await uow.observations.window(since=since)
        last = await uow.observations.last_seen()
        alerts = await uow.alerts.open()
        quarantined = await uow.quarantine.open_counts()
    by_connection: dict[str, list[MinuteRollup]] = defaultdict(list)
    for rollup in rollups:
        by_connection[rollup.connection].append(rollup)
    return [
        row_of(
            tenant,
            c,
            now=now,
            rollups=by_connection.get(c.name, []),
            breaker=breakers.get(c.name),
            last_sync=last.get(c.name),
            quarantined=quarantined.get(c.name, 0),
            alerts=alerts,
        )
        for c in connections
    ]


async def connection_detail(hub: Hub, tenant: str, name: str, now: datetime) -> ConnectionDetail:
    """``NotFound`` for a connection the tenant does not have."""
    connection = await hub.connections.get(tenant, name)
    history = await hub.connections.history(tenant, name)
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        rollups = await uow.observations.window(since=minute_of(now - HISTORY), connection=name)
        last = await uow.observations.last_seen()
        alerts = await uow.alerts.open(connection=name)
        quarantined = (await uow.quarantine.open_counts()).get(name, 0)
    hour = minute_of(now) - timedelta(minutes=SPARK_MINUTES - 1)
    row = row_of(
        tenant, connection, now=now, rollups=[r for r in rollups if r.minute >= hour],
        breaker=hub.controls.breaker_states(tenant).get(name), last_sync=last.get(name),
        quarantined=quarantined, alerts=alerts,
    )  # fmt: skip
    return ConnectionDetail(row, _versions(history), _errors(rollups), _syncs(rollups))


def _versions(history: Sequence[ConnectionVersion]) -> list[Version]:
    out: list[Version] = []
    before: dict[str, Any] = {}
    for each in history:
        config = dict(each.connection.config)
        keys = sorted(k for k in config.keys() | before.keys() if config.get(k) != before.get(k))
        out.append(Version(each, keys))
        before = config
    return list(reversed(out))  # newest first


def _errors(rollups: Sequence[MinuteRollup]) -> list[ErrorSeen]:
    """The vendor's error answers over the rollups, by fingerprint, most recent first."""
    found: dict[str, ErrorSeen] = {}
    for rollup in rollups:  # oldest first
        for fp, seen in rollup.errors.items():
            count = int(seen.get("count", 0))
            held = found.get(fp)
            found[fp] = ErrorSeen(
                fingerprint=fp, status=str(seen.get("status", "")),
                sample=str(seen.get("sample", "")), count=count + (held.count if held else 0),
                first=held.first if held else rollup.minute, last=rollup.minute,
            )  # fmt: skip
    return sorted(found.values(), key=lambda e: (e.last, e.count), reverse=True)


def _syncs(rollups: Sequence[MinuteRollup]) -> list[SyncMinute]:
    """Minutes in which sync runs of the connection ended, newest first."""
    out = []
    for rollup in rollups:
        counts = rollup.counts
        ok, failed = int(counts.get("sync_ok", 0)), int(counts.get("sync_failed", 0))
        synced = int(counts.get("records_synced", 0))
        quarantined = int(counts.get("records_quarantined", 0))
        if ok or failed or synced or quarantined:
            out.append(SyncMinute(rollup.minute, ok, failed, synced, quarantined))
    return list(reversed(out))
