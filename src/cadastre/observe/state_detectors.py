"""The detectors that read the hub's own state: backlogs growing (sampled gauges), credentials
about to expire or needing a person, schema drift events, and ``event`` (subsystem alerts,
which arrive as events and which the evaluator only clears).
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cadastre.observe.detection import (
    BaseDetector,
    Finding,
    Param,
    by_connection,
    span_text,
    split_window,
    vendor_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from cadastre.observe.detection import CredentialInfo, DetectorInput

# The gauges a backlog can be watched on (names as observe.signals records them).
BACKLOG_GAUGES = (
    "sync_lag_seconds",
    "quarantine_open",
    "writeback_pending",
    "outbox_backlog",
    "delivery_backlog",
    "webhooks_in_backlog",
)


class BacklogGrowth(BaseDetector):
    name = "backlog_growth"
    params = MappingProxyType(
        {
            "gauge": Param("choice", "sync_lag_seconds", BACKLOG_GAUGES),
            "window": Param("seconds", 900),
            "threshold": Param("amount", 1.0),
            "rising": Param("flag", True),  # false: the threshold alone (a stuck backlog)
        }
    )

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        p = self.settings(params)
        gauge = p["gauge"]
        found = []
        for connection, rollups in by_connection(data, tenant_wide=True).items():
            window = split_window(rollups, data.now, p["window"]).window
            points = [(r.minute, r.gauges[gauge]) for r in window if gauge in r.gauges]
            if not points:
                continue
            first, last = points[0][1], points[-1][1]
            if last < p["threshold"] or (p["rising"] and (len(points) < 2 or last <= first)):
                continue
            started = points[-1][0]
            for minute, value in reversed(points):
                if value < p["threshold"]:
                    break
                started = minute
            unit = " s" if gauge.endswith("_seconds") else ""
            trend = f", up from {first:g}{unit}" if p["rising"] else ""
            found.append(
                Finding(
                    key=connection or "tenant",
                    vendor=vendor_of(data, connection, rollups) if connection else None,
                    connection=connection or None,
                    changed=(
                        f"{gauge} {last:g}{unit}{trend} over the last {span_text(p['window'])}, at "
                        f"or above the {p['threshold']:g}{unit} threshold"
                    ),
                    started=started,
                    facts={
                        "gauge": gauge,
                        "value": last,
                        "first": first,
                        "threshold": p["threshold"],
                        "window": p["window"],
                        "points": [[m.isoformat(), v] for m, v in points],
                    },
                )
            )
        return found


# ---------------------------------------------------------------------------------- credentials


def _credential_finding(
    data: DetectorInput, info: CredentialInfo, changed: str, started: datetime | None,
    facts: Mapping[str, Any],
) -> Finding:  # fmt: skip
    vendors = {v for c in info.connections if (v := vendor_of(data, c))}
    return Finding(
        key=info.name,
        vendor=vendors.pop() if len(vendors) == 1 else None,
        connection=info.connections[0] if len(info.connections) == 1 else None,
        changed=changed,
        started=started,
        facts={"credential": info.name, "connections": list(info.connections), **facts},
    )


class CredentialExpiry(BaseDetector):
    """A credential the hub cannot renew by itself (an API key with an end date, a token
    without a refresh token) that expires within ``within`` seconds, or has expired. An OAuth2
    access token that the hub refreshes on use is never a finding: it expires every hour."""

    name = "credential_expiry"
    params = MappingProxyType({"within": Param("seconds", 7 * 86400)})

    def span(self, params: Mapping[str, Any]) -> float:
        return 0.0

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        within = self.settings(params)["within"]
        found = []
        for info in data.credentials:
            if info.status != "active" or info.expires_at is None or info.refreshable:
                continue
            left = (info.expires_at - data.now).total_seconds()
            if left > within:
                continue
            when = info.expires_at.isoformat()
            if left > 0:
                changed = (
                    f"credential {info.name!r} expires in {_duration(left)} (at {when}), inside "
                    f"the {_duration(within)} warning; it cannot renew itself"
                )
            else:
                changed = f"credential {info.name!r} expired {_duration(-left)} ago (at {when})"
            started = info.expires_at - timedelta(seconds=within)
            facts = {"expires_at": when, "seconds_left": left, "within": within}
            found.append(_credential_finding(data, info, changed, started, facts))
        return found


class CredentialReauth(BaseDetector):
    name = "credential_reauth"
    params = MappingProxyType({})

    def span(self, params: Mapping[str, Any]) -> float:
        return 3600.0  # to find when the needs_reauth gauge turned, if it did within the hour

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        found = []
        for info in data.credentials:
            if info.status != "needs_reauth":
                continue
            # The sampler's credential_needs_reauth gauge says since when, when it saw it.
            turned = [r.minute for r in data.rollups if r.connection in info.connections
                      and r.gauges.get("credential_needs_reauth")]  # fmt: skip
            started = min(turned) if turned else None
            used_by = ", ".join(info.connections) or "no connection"
            changed = (
                f"credential {info.name!r} needs to be connected again (status needs_reauth); "
                f"calls of {used_by} are refused until then"
            )
            found.append(_credential_finding(data, info, changed, started, {}))
        return found


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{seconds} s"


# ---------------------------------------------------------------------------------- schema drift


class SchemaDrift(BaseDetector):
    name = "schema_drift"
    params = MappingProxyType({"window": Param("seconds", 3600)})

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        window = self.settings(params)["window"]
        since = data.now - timedelta(seconds=window)
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for event in sorted(data.drift, key=lambda e: e.time):
            if not since < event.time <= data.now:
                continue
            d = event.data
            connection, stream = (
                str(d.get("connection", event.subject or "")),
                str(d.get("stream", "")),
            )
            entry = merged.setdefault(
                (connection, stream),
                {"since": event.time, "events": 0, "added": {}, "removed": {}, "retyped": {},
                 "new_values": {}, "open_ended": []},
            )  # fmt: skip
            entry["events"] += 1
            for part in ("added", "removed", "retyped"):
                entry[part].update(d.get(part) or {})
            for name, values in (d.get("new_values") or {}).items():
                entry["new_values"][name] = sorted({*entry["new_values"].get(name, ()), *values})
            entry["open_ended"] = sorted({*entry["open_ended"], *(d.get("open_ended") or ())})
        found = []
        for (connection, stream), entry in merged.items():
            changed = (
                f"{stream or 'a stream'} schema changed ({_drift_text(entry)}); "
                f"{entry['events']} drift event(s) in the last {span_text(window)}"
            )
            facts = {k: v for k, v in entry.items() if k != "since"}
            found.append(
                Finding(
                    key=f"{connection}/{stream}",
                    vendor=vendor_of(data, connection),
                    connection=connection or None,
                    changed=changed,
                    started=entry["since"],
                    facts={"stream": stream, **facts},
                )
            )
        return found


def _drift_text(entry: Mapping[str, Any]) -> str:
    parts = []
    if entry["added"]:
        parts.append("added " + ", ".join(
            f"{k} ({t})" if t else k for k, t in sorted(entry["added"].items())
        ))  # fmt: skip
    if entry["removed"]:
        parts.append("removed " + ", ".join(sorted(entry["removed"])))
    if entry["retyped"]:
        parts.append("retyped " + ", ".join(
            f"{k} {v.get('was')} -> {v.get('is')}" if isinstance(v, dict) else k
            for k, v in sorted(entry["retyped"].items())
        ))  # fmt: skip
    if entry["new_values"]:
        parts.append("new values " + "; ".join(
            f"{k}: {', '.join(v)}" for k, v in sorted(entry["new_values"].items())
        ))  # fmt: skip
    if entry["open_ended"]:
        parts.append("open-ended " + ", ".join(entry["open_ended"]))
    return "; ".join(parts) or "no detail"


class Event(BaseDetector):
    """Subsystem alerts (the vault's, the webhook sender's ...) arrive as events; a rule naming
    this detector only gives them a ``clear_for`` and an owner. It never finds anything."""

    name = "event"
    params = MappingProxyType({})

    def span(self, params: Mapping[str, Any]) -> float:
        return 0.0

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        return []
