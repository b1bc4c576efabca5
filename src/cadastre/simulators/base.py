"""What every vendor simulator shares: a clock, a fault profile, a rate limit, counters and the
admin endpoints that drive them.

``Simulator.app`` is the ASGI app. It is the vendor's routes (``routes()``) behind one guard that,
for every non-admin request, counts it, applies the vendor rate limit (429 + ``Retry-After``,
counted as a violation; with ``rate_limit_headers`` set, every answer on a rate-limited path tells
the budget left), then draws a fault from the profile. Admin routes (``/admin/...``) skip the
guard: tests and benchmarks steer the vendor through them without disturbing it.

Admin API (JSON, no auth):
``GET /admin/stats``, ``POST /admin/reset-stats``, ``GET|POST /admin/faults`` (a FaultProfile as
JSON), ``GET|POST /admin/rate-limit`` (``{"requests": n, "per": s, "window": "sliding",
"headers": "x-ratelimit" | "ietf" | null}``, ``headers`` optional and kept when left out, or
``null`` for no limit). Subclasses add their own with ``admin_routes()``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, cast

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadastre.simulators.answers import answer_fault, delay, replay, send_json
from cadastre.simulators.clock import Clock, SystemClock
from cadastre.simulators.faults import (
    LATENCY,
    FaultKind,
    FaultProfile,
    InjectedLostResponse,
    odata_error,
)
from cadastre.simulators.ratelimit import (
    RATE_LIMIT_HEADERS,
    RateLimit,
    RateLimiter,
    RateLimitHeaders,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PREFIX = "/admin"


@dataclass
class SimStats:
    requests: int = 0  # every non-admin request, answered or not
    rate_limit_violations: int = 0  # requests that arrived with no budget left (answered 429)
    faults_injected: Counter[str] = field(default_factory=Counter)  # by FaultKind value, "latency"
    tokens_issued: int = 0
    in_flight: int = 0  # non-admin requests being handled right now
    max_in_flight: int = 0  # the most non-admin requests handled at once since the last reset

    def reset(self) -> None:
        self.requests = self.rate_limit_violations = self.tokens_issued = 0
        self.faults_injected.clear()
        # in_flight is a gauge, not a count: requests still running decrement it when they end.
        # The peak starts again from what is running now.
        self.max_in_flight = self.in_flight

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: dict(v) if isinstance(v, dict) else v for name, v in data.items()}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def read_json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body() or b"null")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None


class Simulator:
    # Paths the vendor rate limit applies to; empty = every non-admin path.
    rate_limited_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rate_limit: RateLimit | None = None,
        faults: FaultProfile | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.stats = SimStats()
        self.faults = faults if faults is not None else FaultProfile()
        self.rate_limit = rate_limit
        self.rate_limit_headers = rate_limit_headers
        routes = [*self._base_admin_routes(), *self.admin_routes(), *self.routes()]
        self._vendor = Starlette(routes=routes)
        self.app: ASGIApp = self._guard

    # ------------------------------------------------------------------ what subclasses provide

    def routes(self) -> list[BaseRoute]:
        """The vendor's own endpoints."""
        return []

    def admin_routes(self) -> list[BaseRoute]:
        """Extra ``/admin/...`` endpoints of one vendor (never faulted or rate limited)."""
        return []

    def throttled(self, retry_after: int) -> tuple[Any, dict[str, str]]:
        """The body and headers of the vendor's own 429 (``retry_after``: whole seconds until a
        slot frees). Default: an OData error with ``Retry-After``; a vendor that sends no
        ``Retry-After`` or another error shape overrides it."""
        return odata_error("TooManyRequests", "rate limit exceeded"), {
            "Retry-After": str(retry_after)
        }

    # ------------------------------------------------------------------------- live settings

    @property
    def faults(self) -> FaultProfile:
        return self._faults

    @faults.setter
    def faults(self, profile: FaultProfile) -> None:
        # A new profile restarts its generators, so the same profile replays the same faults.
        # Latency has a generator of its own so turning jitter on leaves the fault draws alone.
        self._faults = profile
        self._fault_rng = random.Random(profile.seed)  # noqa: S311 - reproducible, not secret
        self._latency_rng = random.Random(f"latency-{profile.seed}")  # noqa: S311

    @property
    def rate_limit(self) -> RateLimit | None:
        return self._limiter.limit if self._limiter is not None else None

    @rate_limit.setter
    def rate_limit(self, limit: RateLimit | None) -> None:
        self._limiter = RateLimiter(limit) if limit is not None else None

    @property
    def rate_limit_headers(self) -> RateLimitHeaders | None:
        """Which rate-limit headers answers carry while a rate limit is set (None: none)."""
        return self._rate_limit_headers

    @rate_limit_headers.setter
    def rate_limit_headers(self, style: RateLimitHeaders | None) -> None:
        self._rate_limit_headers = _checked_headers(style)

    # -------------------------------------------------------------------------------- guard

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            await self._vendor(scope, receive, send)
            return
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            await self._guarded(path, scope, receive, send)
        finally:
            stats.in_flight -= 1

    async def _guarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        limited = not self.rate_limited_paths or path.startswith(self.rate_limited_paths)
        if self._limiter is not None and limited:
            now = self.clock.monotonic()
            admission = self._limiter.admit(now)
            style = self._rate_limit_headers
            # After admit, so the numbers include this request.
            budget = self._limiter.headers(style, now) if style is not None else {}
            if not admission.admitted:
                self.stats.rate_limit_violations += 1
                body, headers = self.throttled(admission.retry_after)
                await send_json(send, 429, body, {**headers, **budget})
                return
            if budget:
                send = _with_headers(send, budget)
        profile = self._faults
        if not profile.applies_to(path):
            await self._vendor(scope, receive, send)
            return
        kind = profile.draw(self._fault_rng)
        if kind is not None:
            self.stats.faults_injected[kind.value] += 1
        seconds = 0.0
        if kind is FaultKind.SLOW:
            seconds = profile.slow_seconds  # instead of the latency, not on top of it
        elif profile.latency > 0 and kind is not FaultKind.HANG:
            self.stats.faults_injected[LATENCY] += 1
            seconds = profile.draw_latency(self._latency_rng)
        if seconds > 0:
            buffered = await delay(self.clock, seconds, receive)
            if buffered is None:
                return  # the client gave up while we dawdled
            receive = replay(buffered, receive)
        if kind is FaultKind.LOST_RESPONSE:
            # The vendor does the work (a write is applied); only the answer never leaves.
            await self._vendor(scope, receive, _swallow)
            raise InjectedLostResponse
        if kind is not None and kind is not FaultKind.SLOW:
            await answer_fault(
                kind, profile, rng=self._fault_rng, clock=self.clock, receive=receive, send=send
            )
            return
        if profile.reshapes():
            send = _reshaping(send, profile)
        await self._vendor(scope, receive, send)

    # ------------------------------------------------------------------------------- admin

    def _base_admin_routes(self) -> list[BaseRoute]:
        return [
            Route(f"{ADMIN_PREFIX}/stats", self._get_stats, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/reset-stats", self._reset_stats, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/faults", self._faults_endpoint, methods=["GET", "POST"]),
            Route(f"{ADMIN_PREFIX}/rate-limit", self._rate_limit, methods=["GET", "POST"]),
        ]

    async def _get_stats(self, request: Request) -> Response:
        return json_response(self.stats.to_json())

    async def _reset_stats(self, request: Request) -> Response:
        self.stats.reset()
        return json_response(self.stats.to_json())

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await read_json(request)
                if not isinstance(body, dict):
                    raise ValueError("the body is a JSON object of FaultProfile fields")
                self.faults = FaultProfile.from_json(body)
            except (ValueError, TypeError) as exc:
                return json_response(odata_error("BadRequest", str(exc)), 400)
        return json_response(self._faults.to_json())

    async def _rate_limit(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await read_json(request)
                if body is not None and not isinstance(body, dict):
                    raise ValueError(
                        'the body is {"requests": n, "per": seconds, "window": "sliding", '
                        '"headers": "x-ratelimit" | "ietf" | null} or null'
                    )
                if body is None:
                    self.rate_limit = None
                else:
                    settings = dict(body)
                    style = _checked_headers(settings.pop("headers", self._rate_limit_headers))
                    self.rate_limit = RateLimit(**settings)
                    self._rate_limit_headers = style
            except (ValueError, TypeError) as exc:
                return json_response(odata_error("BadRequest", str(exc)), 400)
        limit = self.rate_limit
        if limit is None:
            return json_response(None)
        return json_response({**asdict(limit), "headers": self._rate_limit_headers})


def _checked_headers(style: object) -> RateLimitHeaders | None:
    if style is not None and style not in RATE_LIMIT_HEADERS:
        raise ValueError(f"rate limit headers are {' or '.join(RATE_LIMIT_HEADERS)} or null")
    return cast("RateLimitHeaders | None", style)


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *raw]}
        await send(message)

    return sending


def _reshaping(send: Send, profile: FaultProfile) -> Send:
    """``send`` for an answer the profile's envelope options reshape: a 2xx JSON answer is held
    until its body is complete, reshaped, and sent with its new length; anything else passes."""
    held: list[Message] = []
    body = bytearray()

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kind = dict(message.get("headers", [])).get(b"content-type", b"")
            json = b"json" in kind
            if 200 <= message["status"] < 300 and json:
                held.append(message)
                return
        elif message["type"] == "http.response.body" and held:
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop()
            try:
                payload = orjson.dumps(profile.reshape(orjson.loads(bytes(body))))
            except orjson.JSONDecodeError:
                payload = bytes(body)  # not JSON after all: as the vendor sent it
            kept = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            kept.append((b"content-length", str(len(payload)).encode()))
            await send({**start, "headers": kept})
            message = {"type": "http.response.body", "body": payload}
        await send(message)

    return sending


async def _swallow(message: Message) -> None:
    return None
