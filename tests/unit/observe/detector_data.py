"""Builders for detector tests: minutes counted back from ``NOW``, rollups of calls at a given
latency, gauges, and the ``DetectorInput`` around them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cadastre.contract.events import EventEnvelope
from cadastre.observe.detectors import ConnectionInfo, CredentialInfo, DetectorInput
from cadastre.observe.signals import BUCKETS, latency_bucket
from cadastre.ports import MinuteRollup

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CONNECTION = "austin-mls"
VENDOR = "reso"
TENANT = "acme"


def ago(minutes: int) -> datetime:
    """The minute starting ``minutes`` before NOW (``ago(1)`` is the last closed minute)."""
    return NOW - timedelta(minutes=minutes)


def latency(seconds: float, n: int) -> list[int]:
    buckets = [0] * BUCKETS
    buckets[latency_bucket(seconds)] = n
    return buckets


def calls(
    minute: int,
    *,
    ok: int = 0,
    failed: int = 0,
    throttled: int = 0,
    seconds: float = 0.1,
    statuses: Mapping[str, int] | None = None,
    errors: Mapping[str, Mapping[str, Any]] | None = None,
    shapes: Mapping[str, Mapping[str, Any]] | None = None,
    connection: str = CONNECTION,
) -> MinuteRollup:
    """One minute of ``ok`` successes, ``failed`` 503s and ``throttled`` 429s, all taking
    ``seconds`` (statuses as given when ``statuses`` says)."""
    total = ok + failed + throttled
    outcomes = {"success": ok, "retry": failed, "rate_limited": throttled}
    mix = statuses if statuses is not None else {"200": ok, "503": failed, "429": throttled}
    return MinuteRollup(
        connection=connection,
        minute=ago(minute),
        vendor=VENDOR,
        calls={k: v for k, v in outcomes.items() if v},
        statuses={k: v for k, v in mix.items() if v},
        latency=latency(seconds, total) if total else (),
        latency_sum=seconds * total,
        errors=errors or {},
        shapes=shapes or {},
    )


def gauges(minute: int, connection: str = CONNECTION, **values: float) -> MinuteRollup:
    return MinuteRollup(connection=connection, minute=ago(minute), gauges=values)


def drift_event(
    at: datetime, stream: str = "Property", connection: str = CONNECTION, **changes: Any
) -> EventEnvelope:
    data = {"connection": connection, "stream": stream, "added": {}, "removed": {},
            "retyped": {}, "new_values": {}, "open_ended": [], **changes}  # fmt: skip
    return EventEnvelope(
        source=f"/mls/{connection}", type="cadastre.schema.drifted.v1", subject=connection,
        time=at, tenant=TENANT, data=data,
    )  # fmt: skip


def given(
    rollups: Sequence[MinuteRollup] = (),
    *,
    credentials: Sequence[CredentialInfo] = (),
    drift: Sequence[EventEnvelope] = (),
    paused: bool = False,
    now: datetime = NOW,
) -> DetectorInput:
    connection = ConnectionInfo(CONNECTION, "mls/reso", VENDOR, "paused" if paused else "active")
    return DetectorInput(
        tenant=TENANT, now=now, rollups=list(rollups), connections=[connection],
        credentials=list(credentials), drift=list(drift),
    )  # fmt: skip
