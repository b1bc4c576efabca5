"""What every detector shares: the input it reads, the finding it returns, the ``Detector``
protocol, rule parameter checks, and the minute windows and wording its findings use.

Windows are in whole minutes, since rollups are: a minute belongs to a window of ``w`` seconds
ending ``now`` when any of it lies in ``(now - w, now]``; a baseline is the ``baseline`` seconds
before the window's first minute. Wording helpers keep every ``changed`` text alike: values with
units, shares as percentages, spans as "5 min" or "1 h".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from cadastre.contract.events import EventEnvelope
from cadastre.ports import MinuteRollup

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from cadastre.ports import StoredCredential

MINUTE = timedelta(minutes=1)
_REFRESHING_SCHEMES = ("oauth2_client_credentials", "oauth2_authorization_code")


# ---------------------------------------------------------------------------------- interface


@dataclass(frozen=True)
class ConnectionInfo:
    name: str
    connector: str
    vendor: str
    status: str  # active | paused


@dataclass(frozen=True)
class CredentialInfo:
    name: str
    status: str  # a CredentialStatus value
    expires_at: datetime | None
    connections: tuple[str, ...]
    # Whether the hub renews it by itself when it expires (an OAuth2 access token with a way to
    # get another); only credentials that cannot are worth an expiry warning.
    refreshable: bool = False

    @classmethod
    def of(cls, stored: StoredCredential, connections: Iterable[str]) -> CredentialInfo:
        """What the detectors need of a stored credential (never a secret: only which fields
        exist)."""
        refreshable = stored.scheme == "oauth2_client_credentials" or (
            stored.scheme in _REFRESHING_SCHEMES and "refresh_token" in stored.secrets
        )
        return cls(
            name=stored.name,
            status=str(stored.status),
            expires_at=stored.expires_at,
            connections=tuple(sorted(connections)),
            refreshable=refreshable,
        )


@dataclass(frozen=True)
class DetectorInput:
    tenant: str
    now: datetime
    rollups: Sequence[MinuteRollup]  # the tenant's minutes over the longest span any rule needs
    connections: Sequence[ConnectionInfo]
    credentials: Sequence[CredentialInfo]
    drift: Sequence[EventEnvelope]  # cadastre.schema.drifted.v1 events in the span


@dataclass(frozen=True)
class Finding:
    key: str  # de-dup key within the rule: connection, credential, "connection/stream"
    vendor: str | None
    connection: str | None
    changed: str  # the measured fact, human readable, with numbers and the baseline
    started: datetime | None  # the first minute the data shows the condition, if known
    facts: Mapping[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    name: str

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the parameter when ``params`` will not do."""
        ...

    def span(self, params: Mapping[str, Any]) -> float:
        """Seconds of history ``find`` reads."""
        ...

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]: ...


# ---------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One rule parameter: its kind bounds it. ``seconds`` > 0, ``share`` in (0, 1], ``count``
    an integer >= 1, ``factor`` >= 1, ``amount`` >= 0, ``quantile`` in (0, 1), ``choice`` one of
    ``choices``, ``flag`` true or false."""

    kind: str
    default: Any
    choices: tuple[str, ...] = ()


def _check_value(detector: str, name: str, spec: Param, value: Any) -> None:
    where = f"{detector}: parameter {name!r}"
    if spec.kind == "flag":
        if not isinstance(value, bool):
            raise ValueError(f"{where} is true or false, not {value!r}")
        return
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ValueError(f"{where} is one of {', '.join(spec.choices)}, not {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} is a finite number, not {value!r}")
    bounds = {
        "seconds": (value > 0, "more than 0 seconds"),
        "share": (0 < value <= 1, "a share above 0 and at most 1"),
        "count": (isinstance(value, int) and value >= 1, "a whole number, at least 1"),
        "factor": (value >= 1, "a factor of at least 1"),
        "amount": (value >= 0, "at least 0"),
        "quantile": (0 < value < 1, "a quantile between 0 and 1"),
    }
    ok, wanted = bounds[spec.kind]
    if not ok:
        raise ValueError(f"{where} is {wanted}, not {value!r}")


class BaseDetector:
    """Shared parameter handling: ``params`` names each parameter with its kind and default."""

    name: str = ""
    params: Mapping[str, Param] = MappingProxyType({})

    def check_params(self, params: Mapping[str, Any]) -> None:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown} (it takes: {known})")
        for name, value in params.items():
            _check_value(self.name, name, self.params[name], value)

    def settings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {name: params.get(name, spec.default) for name, spec in self.params.items()}

    def span(self, params: Mapping[str, Any]) -> float:
        p = self.settings(params)
        # One minute more: the window's first minute may start before now - window.
        return float(p.get("window", 0) + p.get("baseline", 0)) + MINUTE.total_seconds()

    def find(self, data: DetectorInput, params: Mapping[str, Any]) -> list[Finding]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Split:
    window: list[MinuteRollup]
    baseline: list[MinuteRollup]
    baseline_start: datetime  # where the baseline span begins
    baseline_span: timedelta

    @property
    def has_history(self) -> bool:
        """Whether the baseline's data reaches back into the first quarter of its span (or its
        first minute). A connection whose data starts later has only part of a baseline (it is
        new, or the store lost minutes): its first 429 or its first slow minute would look like
        a change from "never"."""
        if not self.baseline:
            return False
        reach = max(self.baseline_span / 4, MINUTE)
        return self.baseline[0].minute < self.baseline_start + reach


def split_window(
    rollups: Iterable[MinuteRollup], now: datetime, window: float, baseline: float = 0.0
) -> Split:
    start = now - timedelta(seconds=window)
    base_start = start - timedelta(seconds=baseline)
    split = Split([], [], base_start, timedelta(seconds=baseline))
    for r in rollups:
        end = r.minute + MINUTE
        if end > start and r.minute <= now:
            split.window.append(r)
        elif baseline and start >= end > base_start:
            split.baseline.append(r)
    return split


def by_connection(
    data: DetectorInput, *, tenant_wide: bool = False
) -> dict[str, list[MinuteRollup]]:
    """Rollups per connection, oldest first, without paused connections (and without the
    tenant-wide samples unless asked)."""
    paused = {c.name for c in data.connections if c.status == "paused"}
    grouped: dict[str, list[MinuteRollup]] = defaultdict(list)
    for r in sorted(data.rollups, key=lambda r: r.minute):
        if r.connection in paused or (not r.connection and not tenant_wide):
            continue
        grouped[r.connection].append(r)
    return dict(grouped)


def vendor_of(
    data: DetectorInput, connection: str, rollups: Sequence[MinuteRollup] = ()
) -> str | None:
    for info in data.connections:
        if info.name == connection:
            return info.vendor or None
    return next((r.vendor for r in reversed(rollups) if r.vendor), None)


def first_minute(
    rollups: Sequence[MinuteRollup], shows: Callable[[MinuteRollup], bool]
) -> datetime:
    """The first minute that shows the condition, else the window's first minute."""
    return next((r.minute for r in rollups if shows(r)), rollups[0].minute)


def span_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def seconds_text(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.01 else f"{value * 1000:.1f} ms"


def share_text(value: float) -> str:
    return f"{value:.0%}" if value >= 0.01 or value == 0 else f"{value:.1%}"


def top_text(counter: Mapping[str, int], n: int = 3) -> str:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{k} x{v}" for k, v in ranked)
