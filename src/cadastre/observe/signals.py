"""Signals: what every vendor call, sync run and sampled backlog looked like, per minute.

The gateway records one ``CallObservation`` per attempt, the sync runner counts records, and the
sampler sets gauges, all into ``Observations``: a cheap, synchronous, in-process accumulator
keyed by (tenant, connection, minute). The sampler drains it into the store every few seconds
(``uow.observations.add``), where rows of the same minute merge - counters add, gauges are last
wins - so any number of workers can flush the same minute. Detectors and the console read the
minutes back (``cadastre.observe.series``); nothing here does I/O.

Latency is kept as a histogram over fixed, log-spaced bucket edges (``LATENCY_EDGES``, ~x1.25
apart), so minutes, connections and workers add bucket by bucket and a quantile is read by
interpolating inside its bucket (at most ~12 % off, which is plenty to see a drift).

Vendor text never reaches a rollup raw: an error body is fingerprinted after ids, numbers and
timestamps are normalised away (so a thousand "request 8f3e... failed" answers are one error),
and the kept sample is redacted and neutralised like a log line. A response shape is its key
paths and JSON types, never its values.

The module is past 400 lines because it is the one definition of a rollup's content: what a call
turns into (buckets, fingerprints, shapes, endpoints), how two rollups merge, and the accumulator
that applies both. The store, the fake and the accumulator all merge through ``merge_rollups``;
split apart, the rules they must agree on would be in different places.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cadastre.observe.logging import neutralise, redact_text
from cadastre.ports import MinuteRollup

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.ports import Clock

_FIRST_EDGE, _LAST_EDGE, _EDGE_COUNT = 0.002, 120.0, 50
# 0.002 s .. 120 s in 50 log-spaced steps (a ratio of ~1.2516); rounded so the stored histogram
# is readable and edges compare exactly across processes
LATENCY_EDGES: tuple[float, ...] = tuple(
    float(f"{_FIRST_EDGE * (_LAST_EDGE / _FIRST_EDGE) ** (i / (_EDGE_COUNT - 1)):.4g}")
    for i in range(_EDGE_COUNT)
)
BUCKETS = len(LATENCY_EDGES) + 1  # the last bucket holds everything slower than 120 s

# The additive counters recorded with ``Observations.count`` (other names are refused, so a typo
# does not make a counter nobody reads).
COUNTERS = frozenset(
    {"records_synced", "records_quarantined", "sync_ok", "sync_failed", "webhooks_received",
     "writeback_applied", "writeback_failed"}
)  # fmt: skip
# The gauges the sampler records (exact strings; detectors and the console read them).
CONNECTION_GAUGES = frozenset(
    {"sync_lag_seconds", "quarantine_open", "token_expiry_seconds", "credential_needs_reauth",
     "writeback_pending"}
)  # fmt: skip
TENANT_GAUGES = frozenset({"outbox_backlog", "delivery_backlog", "webhooks_in_backlog"})

SAMPLE_CHARS = 200
# Only the head of an error body is read: enough to tell errors apart, cheap whatever its size.
_ERROR_HEAD = 4096
_SHAPE_DEPTH = 4
# A shape lists at most this many key paths: an object keyed by ids ({"L1": {...}, ...}) would
# otherwise be as long as the answer (it still fingerprints, by its first paths).
MAX_PATHS = 256
# A minute of one connection keeps at most this many distinct error fingerprints and shapes; the
# rest are counted under OTHER, so a vendor answering unique junk cannot grow a row without bound.
MAX_DISTINCT = 32
OTHER = "other"


def latency_bucket(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in (an upper edge is inclusive)."""
    if math.isnan(seconds) or seconds <= 0:
        return 0
    return bisect_left(LATENCY_EDGES, seconds)


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram over ``LATENCY_EDGES``, interpolated linearly
    inside its bucket (Prometheus' ``histogram_quantile``); ``None`` when it is empty. Values in
    the overflow bucket read as the last edge: all we know is that they were slower."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile: q must be within 0..1, not {q}")
    if len(buckets) > BUCKETS:
        raise ValueError(f"quantile: {len(buckets)} buckets, more than the {BUCKETS} there are")
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n <= 0:
            continue
        if seen + n >= rank:
            if i >= len(LATENCY_EDGES):
                return LATENCY_EDGES[-1]
            lower = LATENCY_EDGES[i - 1] if i > 0 else 0.0
            return lower + (LATENCY_EDGES[i] - lower) * max(rank - seen, 0.0) / n
        seen += n
    return LATENCY_EDGES[-1]  # pragma: no cover - rank <= total always finds a bucket


# ----------------------------------------------------------------------------- shapes


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # not JSON; named so it shows, never its value


def _walk(value: Any, path: str, depth: int, out: set[str]) -> None:
    if depth > _SHAPE_DEPTH or len(out) >= MAX_PATHS:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if len(out) >= MAX_PATHS:
                return
            at = f"{path}.{key}" if path else str(key)
            out.add(f"{at}:{_json_type(item)}")
            _walk(item, at, depth + 1, out)
    elif isinstance(value, list | tuple) and value:
        at = f"{path}[]"
        out.add(f"{at}:{_json_type(value[0])}")
        _walk(value[0], at, depth + 1, out)


def shape_of(body: Any) -> tuple[str, list[str]]:
    """``(fingerprint, keys)`` of a parsed JSON body: its key paths with their JSON types
    (``"value[].ListPrice:number"``), sorted, to depth 4; an array is described by its first
    element. Values are never kept, so the fingerprint changes when a key or a type does and
    not when a value does. ``null`` is a type of its own: a field that turns null is a change."""
    keys: set[str] = set()
    if isinstance(body, dict):
        _walk(body, "", 1, keys)
    else:
        keys.add(f"$:{_json_type(body)}")
        _walk(body, "$", 1, keys)
    listed = sorted(keys)
    digest = hashlib.sha256("\n".join(listed).encode()).hexdigest()[:16]
    return digest, listed


# ----------------------------------------------------------------------------- errors

_VOLATILE = [
    # timestamps and dates first, before their digits are taken for numbers
    re.compile(
        r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
        r"|\d{2}:\d{2}:\d{2}",
        re.IGNORECASE,  # the text is lowercased before these run
    ),
    re.compile(
        r"\b(mon|tue|wed|thu|fri|sat|sun), \d{1,2} [a-z]{3} \d{4} \d{2}:\d{2}:\d{2} [a-z]+\b",
        re.IGNORECASE,
    ),
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE),
    # hex ids (request ids, hashes): 8+ hex digits with at least one decimal digit among them
    re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE),
    # tokens that mix letters and digits (ids such as "req_8Zx31kQ"), then plain numbers
    re.compile(r"\b(?=\w*\d)(?=\w*[a-z])\w{6,}\b", re.IGNORECASE),
    re.compile(r"\d+(\.\d+)?"),
]
_SPACE = re.compile(r"\s+")


def _text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body[:_ERROR_HEAD].decode("utf-8", errors="replace")
    return body[:_ERROR_HEAD]


def error_fingerprint(status: str, body: bytes | str | None) -> tuple[str, str]:
    """``(fingerprint, sample)`` of a non-2xx answer: the fingerprint hashes the status and the
    body's head with numbers, uuids, hex ids and timestamps normalised away (and secrets
    redacted first, so a rotating token does not make every answer look new); the sample is
    the redacted, neutralised head, at most 200 characters."""
    text = _SPACE.sub(" ", redact_text(_text(body))).strip()
    normal = text.lower()
    for pattern in _VOLATILE:
        normal = pattern.sub("#", normal)
    digest = hashlib.sha256(f"{status}\n{normal}".encode()).hexdigest()[:16]
    sample = neutralise(text)
    if len(sample) > SAMPLE_CHARS:
        sample = sample[: SAMPLE_CHARS - 1] + "…"
    return digest, sample


# ----------------------------------------------------------------------------- endpoints

_ODATA_KEY = re.compile(r"^([^()]*)\((.+)\)$")
_VERSION = re.compile(r"^v\d+(\.\d+)*$", re.IGNORECASE)
_ID_CHARS = re.compile(r"\d|%")


def endpoint_of(method: str, path: str) -> str:
    """``"GET /odata/Property({id})"``: the method and the path with ids replaced by ``{id}``
    (segments holding a digit, except API versions such as ``v2``; OData key predicates; very
    long segments), so every record's URL counts as one endpoint. The query is dropped."""
    path = path.split("?", 1)[0]
    parts = []
    for segment in path.split("/"):
        odata = _ODATA_KEY.match(segment)
        if odata:
            parts.append(f"{odata.group(1)}({{id}})")
        elif len(segment) > 40 or (_ID_CHARS.search(segment) and not _VERSION.match(segment)):
            parts.append("{id}")
        else:
            parts.append(segment)
    return f"{method.upper()} {'/'.join(parts) or '/'}"


# ----------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class CallObservation:
    """One vendor call attempt, as the gateway saw it."""

    tenant: str
    connection: str
    vendor: str
    outcome: str  # gateway Outcome value: success | retry | rate_limited | fail
    status: str  # "200", "503", or "timeout", "connect_error", "reset", "protocol_error"
    seconds: float
    endpoint: str  # "GET /odata/Property" (ids and numbers in the path replaced by {id})
    error: tuple[str, str] | None = None  # error_fingerprint of a non-2xx answer
    shape: tuple[str, list[str]] | None = None  # shape_of a 2xx JSON answer


def minute_of(at: datetime) -> datetime:
    """``at`` in UTC, truncated to its minute."""
    if at.tzinfo is None:
        raise ValueError("minute_of: a naive datetime has no minute in UTC")
    return at.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class _Minute:
    """A rollup being built (mutable; frozen into a ``MinuteRollup`` when drained)."""

    vendor: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=list)
    latency_sum: float = 0.0
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    shapes: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    gauges: dict[str, float] = field(default_factory=dict)

    def freeze(self, connection: str, minute: datetime) -> MinuteRollup:
        return MinuteRollup(
            connection=connection, minute=minute, vendor=self.vendor, calls=dict(self.calls),
            statuses=dict(self.statuses), latency=tuple(self.latency),
            latency_sum=self.latency_sum, errors=self.errors, shapes=self.shapes,
            counts=dict(self.counts), gauges=self.gauges,
        )  # fmt: skip


def _add_entry(
    into: dict[str, dict[str, Any]], key: str, count: int, entry: Mapping[str, Any]
) -> None:
    """Count ``count`` more of ``key`` (the first entry's details are kept), or of OTHER once
    the map holds MAX_DISTINCT keys."""
    held = into.get(key)
    if held is None and len(into) >= MAX_DISTINCT:
        key, entry = OTHER, {}
        held = into.get(key)
    if held is None:
        into[key] = {**entry, "count": count}
    else:
        held["count"] = int(held.get("count", 0)) + count


def _add_latency(into: list[int], more: Sequence[int]) -> list[int]:
    if len(into) < len(more):
        into.extend([0] * (len(more) - len(into)))
    for i, n in enumerate(more):
        into[i] += int(n)
    return into


def merge_rollups(old: MinuteRollup, new: MinuteRollup) -> MinuteRollup:
    """Two rollups of the same connection and minute as one: calls, statuses, latency, errors,
    shapes and counts add; ``new``'s gauges win; the vendor is ``new``'s when it names one."""
    errors = {k: dict(v) for k, v in old.errors.items()}
    for key, entry in new.errors.items():
        _add_entry(errors, key, int(entry.get("count", 0)), entry)
    shapes = {k: dict(v) for k, v in old.shapes.items()}
    for key, entry in new.shapes.items():
        _add_entry(shapes, key, int(entry.get("count", 0)), entry)
    return MinuteRollup(
        connection=old.connection, minute=old.minute, vendor=new.vendor or old.vendor,
        calls=dict(Counter(old.calls) + Counter(new.calls)),
        statuses=dict(Counter(old.statuses) + Counter(new.statuses)),
        latency=tuple(_add_latency(list(old.latency), new.latency)),
        latency_sum=old.latency_sum + new.latency_sum, errors=errors, shapes=shapes,
        counts=dict(Counter(old.counts) + Counter(new.counts)),
        gauges={**old.gauges, **new.gauges},
    )  # fmt: skip


def check_rollup(rollup: MinuteRollup) -> None:
    """Refuse what cannot be stored faithfully, naming the rollup (before anything is written)."""
    if rollup.minute.tzinfo is None or minute_of(rollup.minute) != rollup.minute:
        raise ValueError(
            f"observations: minute {rollup.minute.isoformat()} of connection "
            f"{rollup.connection!r} must be an aware datetime on a whole UTC minute"
        )
    if len(rollup.connection) > 64:
        raise ValueError(f"observations: connection name {rollup.connection[:70]!r}... too long")
    for name, value in rollup.gauges.items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"observations: gauge {name!r} of {rollup.connection!r} is {value!r}")


def combine_rollups(rollups: Sequence[MinuteRollup]) -> list[MinuteRollup]:
    """The rollups with those of the same (connection, minute) merged in order, sorted by key."""
    merged: dict[tuple[str, datetime], MinuteRollup] = {}
    for rollup in rollups:
        check_rollup(rollup)
        key = (rollup.connection, rollup.minute)
        held = merged.get(key)
        merged[key] = rollup if held is None else merge_rollups(held, rollup)
    return [merged[k] for k in sorted(merged)]


class Observations:
    """The in-process accumulator of one hub: cheap and synchronous, so the gateway can record
    on every attempt. Minutes are by ``clock``; ``drain`` hands them to the sampler, which
    stores them. A lock keeps it safe to record from a worker thread too."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._minutes: dict[tuple[str, str, datetime], _Minute] = {}

    def _at(self, tenant: str, connection: str) -> _Minute:
        key = (tenant, connection, minute_of(self._clock.now()))
        found = self._minutes.get(key)
        if found is None:
            found = self._minutes[key] = _Minute()
        return found

    def record(self, call: CallObservation) -> None:
        with self._lock:
            minute = self._at(call.tenant, call.connection)
            if call.vendor:
                minute.vendor = call.vendor
            minute.calls[call.outcome] += 1
            minute.statuses[call.status] += 1
            bucket = latency_bucket(call.seconds)
            if not minute.latency:
                minute.latency = [0] * BUCKETS
            minute.latency[bucket] += 1
            minute.latency_sum += max(call.seconds, 0.0)
            if call.error is not None:
                fp, sample = call.error
                _add_entry(minute.errors, fp, 1, {"status": call.status, "sample": sample})
            if call.shape is not None:
                fp, keys = call.shape
                _add_entry(minute.shapes, fp, 1, {"endpoint": call.endpoint, "keys": list(keys)})

    def note_shape(
        self, tenant: str, connection: str, endpoint: str, shape: tuple[str, list[str]],
        vendor: str = "",
    ) -> None:  # fmt: skip
        """A 2xx JSON answer's shape, heard apart from its call: the gateway meters the attempt
        before anyone has parsed its body, and parses it once, above (``Gateway.get_json``)."""
        with self._lock:
            minute = self._at(tenant, connection)
            if vendor:
                minute.vendor = vendor
            fp, keys = shape
            _add_entry(minute.shapes, fp, 1, {"endpoint": endpoint, "keys": list(keys)})

    def count(self, tenant: str, connection: str, name: str, n: int = 1, vendor: str = "") -> None:
        if name not in COUNTERS:
            raise ValueError(f"observations: unknown counter {name!r} (one of {sorted(COUNTERS)})")
        with self._lock:
            minute = self._at(tenant, connection)
            if vendor:
                minute.vendor = vendor
            minute.counts[name] += n

    def gauge(self, tenant: str, connection: str, name: str, value: float) -> None:
        known = TENANT_GAUGES if connection == "" else CONNECTION_GAUGES
        if name not in known:
            raise ValueError(
                f"observations: unknown gauge {name!r} for "
                f"{'the tenant' if connection == '' else 'a connection'} (one of {sorted(known)})"
            )
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"observations: gauge {name!r} must be a finite number, not {value}")
        with self._lock:
            self._at(tenant, connection).gauges[name] = float(value)

    def drain(self, *, before: datetime | None = None) -> dict[str, list[MinuteRollup]]:
        """Tenant -> the rollups of minutes that ended by ``before`` (every minute when
        ``None``), oldest first. What is drained is gone from here."""
        cut = None if before is None else minute_of(before)
        out: dict[str, list[MinuteRollup]] = {}
        with self._lock:
            for key in sorted(self._minutes, key=lambda k: (k[2], k[0], k[1])):
                tenant, connection, minute = key
                if cut is not None and minute >= cut:
                    continue
                built = self._minutes.pop(key)
                out.setdefault(tenant, []).append(built.freeze(connection, minute))
        return out

    def restore(self, tenant: str, rollups: Sequence[MinuteRollup]) -> None:
        """Put drained rollups back (a flush that could not store them), merged with whatever
        was recorded since, so a store outage loses nothing it can hold on to."""
        with self._lock:
            for rollup in rollups:
                key = (tenant, rollup.connection, rollup.minute)
                held = self._minutes.pop(key, None)
                merged = rollup if held is None else merge_rollups(rollup, held.freeze(*key[1:]))
                self._minutes[key] = _Minute(
                    vendor=merged.vendor, calls=Counter(merged.calls),
                    statuses=Counter(merged.statuses), latency=list(merged.latency),
                    latency_sum=merged.latency_sum,
                    errors={k: dict(v) for k, v in merged.errors.items()},
                    shapes={k: dict(v) for k, v in merged.shapes.items()},
                    counts=Counter(merged.counts), gauges=dict(merged.gauges),
                )  # fmt: skip

    def pending(self) -> int:
        """How many (tenant, connection, minute) rollups wait to be drained."""
        with self._lock:
            return len(self._minutes)

    def drop_oldest(self, n: int) -> int:
        """Forget the ``n`` oldest rollups (memory is bounded while the store is away)."""
        with self._lock:
            oldest = sorted(self._minutes, key=lambda k: k[2])[: max(n, 0)]
            for key in oldest:
                del self._minutes[key]
            return len(oldest)
