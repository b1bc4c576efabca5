"""Refused webhook requests: counted, shown, logged, and bounded all three ways.

A refusal is counted in memory per (tenant, connection, reason, minute) with the last one's
headers as an example (signatures and anything secret-looking left out, no body), and the counts
go to the store with the inbox writer's next transaction, so a flood of forged requests costs a
few upserts rather than a write each. The first refusal of a (tenant, connection, reason) in a
minute is logged; the rest are only counted. Requests for no known endpoint (404) are counted
in the metrics and logged the same way, never stored: their names are the sender's to choose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cadastre.observe import get_logger
from cadastre.ports import RefusalTally

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.observe import Metrics
    from cadastre.ports import Clock

_log = get_logger("cadastre.webhooks.in")
# Header names never kept with a webhook or an example: signatures, credentials, cookies.
_PRIVATE = re.compile(
    r"(signature|authorization|cookie|token|secret|pass(word)?|session|api[-_]?key|"
    r"x-[a-z0-9-]*key)", re.IGNORECASE,
)  # fmt: skip
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
    "proxy-connection", "host", "content-length",
})  # fmt: skip
MAX_HEADERS = 50
MAX_VALUE = 1000
# (a request's header names, the scheme's private ones) -> which headers to keep, as (name as
# sent, lower-case name): a vendor sends the same names with every webhook, and deciding name by
# name was most of kept_headers' cost. The names are the sender's to choose: the memo is bounded.
_PLANS: dict[tuple[tuple[str, ...], frozenset[str]], tuple[tuple[str, str], ...]] = {}
_PLANS_MAX = 1024


def kept_headers(
    headers: Mapping[str, str], private: frozenset[str] = frozenset()
) -> dict[str, str]:
    """What of a request's headers is stored with it or shown: lower-case names, no signature
    (``private`` names the scheme's), nothing that names a secret, no hop-by-hop header, and
    at most ``MAX_HEADERS`` of ``MAX_VALUE`` characters."""
    key = (tuple(headers), private)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(key[0], private)
    return {lowered: headers[name][:MAX_VALUE] for name, lowered in plan}


def _plan(names: tuple[str, ...], private: frozenset[str]) -> tuple[tuple[str, str], ...]:
    plan, kept = [], set()
    for name in names:
        lowered = name.lower()
        if lowered in private or lowered in _HOP_BY_HOP or _PRIVATE.search(lowered):
            continue
        plan.append((name, lowered))
        kept.add(lowered)
        if len(kept) >= MAX_HEADERS:
            break
    return tuple(plan)


@dataclass
class _Count:
    count: int
    last_at: datetime
    example: dict[str, str] = field(default_factory=dict)


class RefusalLog:
    def __init__(self, clock: Clock, metrics: Metrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self._counts: dict[tuple[str, str, str, datetime], _Count] = {}
        self._logged: dict[tuple[str, str, str], datetime] = {}  # the minute last logged

    def __len__(self) -> int:
        return len(self._counts)

    def record(
        self, tenant: str, connection: str, reason: str, example: Mapping[str, str],
        message: str,
    ) -> None:  # fmt: skip
        """Count a refusal of a known endpoint (``example``: headers as ``kept_headers`` made
        them) and log it unless this minute already has."""
        now = self._clock.now()
        minute = now.replace(second=0, microsecond=0)
        key = (tenant, connection, reason, minute)
        held = self._counts.get(key)
        if held is None:
            self._counts[key] = _Count(1, now, dict(example))
        else:
            held.count += 1
            held.last_at, held.example = now, dict(example)
        self._observe(connection, reason)
        self._log(tenant, connection, reason, minute, message)

    def unknown(self, tenant: str, connection: str, message: str) -> None:
        """A request for no known endpoint: metrics and a log line, nothing stored."""
        minute = self._clock.now().replace(second=0, microsecond=0)
        self._observe("", "unknown_connection")
        named = f"{message} (tenant {tenant[:64]!r}, connection {connection[:64]!r})"
        self._log("", "", "unknown_connection", minute, named)

    def take(self) -> dict[str, list[RefusalTally]]:
        """The counts since the last ``take``, by tenant, for the store."""
        counts, self._counts = self._counts, {}
        taken: dict[str, list[RefusalTally]] = {}
        for (tenant, connection, reason, minute), held in counts.items():
            taken.setdefault(tenant, []).append(
                RefusalTally(connection, reason, minute, held.count, held.last_at, held.example)
            )
        return taken

    def _observe(self, connection: str, reason: str) -> None:
        if self._metrics is not None:
            refused = self._metrics.counter("cadastre_webhooks_refused_total")
            refused.labels(connection=connection, reason=reason).inc()

    def _log(self, tenant: str, connection: str, reason: str, minute: datetime,
             message: str) -> None:  # fmt: skip
        key = (tenant, connection, reason)
        if self._logged.get(key) == minute:
            return
        if len(self._logged) > 10_000:  # endpoints come and go; keep the memory bounded
            self._logged.clear()
        self._logged[key] = minute
        _log.warning("webhook refused (%s) for connection %r of tenant %r: %s; further ones "
                     "this minute are only counted (cadastre webhooks refusals)",
                     reason, connection, tenant, message)  # fmt: skip
