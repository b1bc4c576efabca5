"""Fault profiles: what a misbehaving vendor does, drawn from a seeded generator so a run can be
repeated exactly.

Each request to a faulted path draws at most one fault kind (the rates are shares of one draw, so
they add up to at most 1), and then, if ``latency`` is set, waits a latency drawn from
``latency_distribution`` on the simulator's clock before answering. Admin paths are never
faulted. How each kind is answered lives in ``answers``.

Two further options change how the vendor *behaves* without changing its schema, as vendors do
between releases: ``error_format`` is the JSON its injected errors and throttles are written in
(a vendor moving from OData errors to RFC 9457 problem details), and the ``envelope_*`` options
reshape its own 2xx JSON answers on faulted paths (a top-level key renamed, such as the paging
link, keys added, or the whole body wrapped under one key).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from http import HTTPStatus
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping


class FaultKind(StrEnum):
    ERROR = "error"  # 500, 502 or 503
    THROTTLE = "throttle"  # 429 with Retry-After
    THROTTLE_NO_RETRY_AFTER = "throttle_no_retry_after"
    HANG = "hang"  # never answers
    RESET = "reset"  # headers and part of the body, then the connection drops
    GARBAGE = "garbage"  # 200 with a body that is not JSON at all (a proxy's HTML page)
    TRUNCATED = "truncated"  # 200, a correct Content-Length, JSON cut off mid-record
    SLOW = "slow"  # answers normally, but only after slow_seconds
    LOST_RESPONSE = "lost_response"  # the request is processed, then the connection drops


LatencyDistribution = Literal["fixed", "uniform", "exponential", "lognormal"]
LATENCY_DISTRIBUTIONS: tuple[str, ...] = get_args(LatencyDistribution)
# "odata": {"error": {"code", "message"}}; "problem": RFC 9457 problem details; "flat": a bare
# object with a per-answer request id, as many REST vendors write theirs.
ErrorFormat = Literal["odata", "problem", "flat"]
ERROR_FORMATS: tuple[str, ...] = get_args(ErrorFormat)
EnvelopeValue = str | int | float | bool | None
JSON = "application/json"
LATENCY = "latency"  # counted in stats beside the kinds, but not drawn: it delays every answer
Z_99 = NormalDist().inv_cdf(0.99)
_INTEGER_FIELDS = ("seed", "retry_after")
_BOOLEAN_FIELDS = ("retry_after_http_date",)
_MAPPING_FIELDS = ("envelope_rename", "envelope_extra")


class InjectedReset(Exception):
    """Raised after a partial response so the server drops the connection; ``serve`` keeps it out
    of the logs, since resetting is the simulator doing its job."""


class InjectedLostResponse(InjectedReset):
    """Raised after the vendor processed a request whose answer was swallowed. ``serve`` closes
    the connection before any byte of a response is written (a bare ASGI server would answer 500
    instead, so lost responses need ``serve`` or an in-process transport)."""


@dataclass(frozen=True)
class FaultProfile:
    latency: float = 0.0  # seconds; the median for lognormal, the mean otherwise
    latency_distribution: LatencyDistribution = "fixed"
    latency_p99: float = 0.0  # seconds, lognormal only: the 99th percentile
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    throttle_no_retry_after_rate: float = 0.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    garbage_rate: float = 0.0
    truncated_rate: float = 0.0
    slow_rate: float = 0.0
    lost_response_rate: float = 0.0
    paths: tuple[str, ...] = ()  # path prefixes to fault; empty = every non-admin path
    seed: int = 0
    retry_after: int = 1  # seconds, sent with THROTTLE
    retry_after_http_date: bool = False  # send Retry-After as an HTTP-date instead of seconds
    slow_seconds: float = 60.0  # how long a SLOW answer takes, on the simulator clock
    error_format: ErrorFormat = "odata"  # the body of injected errors and throttles
    # Reshaping the vendor's own 2xx JSON object answers (applied in this order): top-level keys
    # renamed (old -> new), keys added, then the whole body wrapped under one key ("" = not).
    # Given as JSON objects; held as sorted pairs so the profile stays frozen and hashable.
    envelope_rename: tuple[tuple[str, str], ...] = ()
    envelope_extra: tuple[tuple[str, EnvelopeValue], ...] = ()
    envelope_wrap: str = ""

    def __post_init__(self) -> None:
        paths: object = self.paths  # callers may hand in a list (or, by mistake, one string)
        if not isinstance(paths, tuple | list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths is a list of path prefixes")
        object.__setattr__(self, "paths", tuple(paths))
        self._check_envelope()
        rates = self.rates()
        if any(not 0.0 <= rate <= 1.0 for rate in rates.values()):
            raise ValueError("fault rates are between 0 and 1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates are shares of one draw and add up to at most 1")
        seconds = (self.latency, self.latency_p99, self.retry_after, self.slow_seconds)
        if any(not math.isfinite(value) or value < 0 for value in seconds):
            raise ValueError("latency, latency_p99, retry_after and slow_seconds are finite, >= 0")
        self._check_distribution()

    def _check_distribution(self) -> None:
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise ValueError(f"latency_distribution is one of {', '.join(LATENCY_DISTRIBUTIONS)}")
        if self.latency_distribution != "lognormal":
            if self.latency_p99:
                raise ValueError("latency_p99 applies to the lognormal latency_distribution only")
            return
        # A lognormal needs a positive median; p99 below the median would need a negative spread.
        if self.latency <= 0:
            raise ValueError("a lognormal latency needs latency (the median) > 0")
        if self.latency_p99 < self.latency:
            raise ValueError("latency_p99 is at least latency (the median)")

    def _check_envelope(self) -> None:
        if self.error_format not in ERROR_FORMATS:
            raise ValueError(f"error_format is one of {', '.join(ERROR_FORMATS)}")
        if not isinstance(self.envelope_wrap, str):
            raise ValueError("envelope_wrap is a key (a string; empty: no wrapping)")
        rename = _pairs("envelope_rename", self.envelope_rename)
        if not all(isinstance(new, str) and new for _, new in rename):
            raise ValueError("envelope_rename maps keys to new, non-empty key names")
        extra = _pairs("envelope_extra", self.envelope_extra)
        if not all(v is None or isinstance(v, str | int | float | bool) for _, v in extra):
            raise ValueError("envelope_extra values are JSON scalars (string, number, bool, null)")
        object.__setattr__(self, "envelope_rename", rename)
        object.__setattr__(self, "envelope_extra", extra)

    def reshapes(self) -> bool:
        """Whether the vendor's own answers are reshaped (see ``reshape``)."""
        return bool(self.envelope_rename or self.envelope_extra or self.envelope_wrap)

    def reshape(self, body: Any) -> Any:
        """A 2xx JSON answer as this profile's envelope options have it: a JSON object gets its
        keys renamed (in place, so the key order is otherwise kept), keys added, then is
        wrapped; any other JSON value is only wrapped."""
        if isinstance(body, dict):
            renames = dict(self.envelope_rename)
            body = {renames.get(key, key): value for key, value in body.items()}
            body.update(self.envelope_extra)
        return {self.envelope_wrap: body} if self.envelope_wrap else body

    def rates(self) -> dict[FaultKind, float]:
        return {
            FaultKind.ERROR: self.error_rate,
            FaultKind.THROTTLE: self.throttle_rate,
            FaultKind.THROTTLE_NO_RETRY_AFTER: self.throttle_no_retry_after_rate,
            FaultKind.HANG: self.hang_rate,
            FaultKind.RESET: self.reset_rate,
            FaultKind.GARBAGE: self.garbage_rate,
            FaultKind.TRUNCATED: self.truncated_rate,
            FaultKind.SLOW: self.slow_rate,
            FaultKind.LOST_RESPONSE: self.lost_response_rate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultProfile:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault profile fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "paths":
                if not isinstance(value, list | tuple):
                    raise ValueError("paths is a list of path prefixes")
                values[name] = tuple(value)
            elif name in _MAPPING_FIELDS:
                if not isinstance(value, dict):
                    raise ValueError(f"{name} is a JSON object")
                values[name] = tuple(value.items())
            elif name in ("latency_distribution", "error_format", "envelope_wrap"):
                if not isinstance(value, str):
                    raise ValueError(f"{name} is a string")
                values[name] = value
            elif name in _BOOLEAN_FIELDS:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} is true or false")
                values[name] = value
            elif name in _INTEGER_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} is an integer")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} is a number")
                values[name] = float(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["paths"] = list(self.paths)
        for name in _MAPPING_FIELDS:
            data[name] = dict(getattr(self, name))
        return data

    def applies_to(self, path: str) -> bool:
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def draw(self, rng: random.Random) -> FaultKind | None:
        rates = self.rates()
        if not any(rates.values()):
            return None  # leave the generator untouched: switching faults on later replays a seed
        point = rng.random()
        for kind, rate in rates.items():
            if point < rate:
                return kind
            point -= rate
        return None

    def draw_latency(self, rng: random.Random) -> float:
        """Seconds to wait before one answer. ``uniform`` spreads over [0, 2 * latency] and
        ``exponential`` has mean ``latency`` (both average ``latency``, as ``fixed`` does);
        ``lognormal`` has median ``latency`` and 99th percentile ``latency_p99``."""
        if self.latency <= 0:
            return 0.0
        if self.latency_distribution == "uniform":
            return rng.uniform(0.0, 2 * self.latency)
        if self.latency_distribution == "exponential":
            return rng.expovariate(1 / self.latency)
        if self.latency_distribution == "lognormal":
            sigma = math.log(self.latency_p99 / self.latency) / Z_99
            return rng.lognormvariate(math.log(self.latency), sigma)
        return self.latency


def _pairs(name: str, value: object) -> tuple[tuple[str, Any], ...]:
    """A JSON object (or pairs, as a frozen profile holds it) as pairs sorted by key."""
    items = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(items, tuple | list) or not all(
        isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str) and item[0]
        for item in items
    ):
        raise ValueError(f"{name} is a JSON object with non-empty keys")
    return tuple(sorted(((key, v) for key, v in items), key=lambda pair: pair[0]))


def odata_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_body(
    style: ErrorFormat, status: int, code: str, message: str, request_id: str
) -> tuple[dict[str, Any], str]:
    """An error answer's JSON and content type in ``style`` (see ``ErrorFormat``)."""
    if style == "problem":
        problem = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
                   "detail": message, "instance": f"/requests/{request_id}"}  # fmt: skip
        return problem, "application/problem+json"
    if style == "flat":
        return {"errorCode": code, "errorMessage": message, "requestId": request_id}, JSON
    return odata_error(code, message), JSON
