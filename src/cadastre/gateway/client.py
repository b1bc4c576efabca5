"""``Gateway``: the one object a connector calls a vendor through.

It assembles the transport chain in one place (``_assemble``), sends through it with an
``httpx.AsyncClient`` (base URL, query parameters, policy timeouts), and turns whatever the chain
finally answers into a response or one of Cadastre's errors:

| final answer | raised |
|---|---|
| 2xx | nothing: the response is returned, body read |
| 429 | ``VendorRateLimited(retry_after)`` |
| 5xx, timeouts, connect errors, resets | ``VendorUnavailable`` |
| 401 (after one resend with a fresh credential) | ``VendorAuthRefused`` |
| other 3xx / 4xx | ``VendorRejected(status)`` |
| a body ``get_json`` cannot parse, a content-encoding that fails | ``VendorProtocolError`` |

Messages name the vendor, the method, the URL path (never the query string) and the status.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Self, assert_never

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from cadastre import __version__
from cadastre.errors import (
    ConfigurationError,
    VendorAuthRefused,
    VendorError,
    VendorProtocolError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.gateway.address import AddressAllowList, guarded_transport
from cadastre.gateway.auth import (
    AuthTransport,
    GatewayTokenEndpoint,
    VaultAuth,
    authenticator_for,
)
from cadastre.gateway.breaker import BreakerTransport
from cadastre.gateway.bulkhead import BulkheadTransport
from cadastre.gateway.controls import Guards
from cadastre.gateway.metering import MeteringTransport
from cadastre.gateway.outcome import Outcome, classify
from cadastre.gateway.ratelimit import RateLimitTransport
from cadastre.gateway.records import TRACE, CallRecord
from cadastre.gateway.retry import ATTEMPTS, RetryTransport
from cadastre.observe import endpoint_of, shape_of, working_for

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from cadastre.gateway.auth import Authenticator, FlowAuthenticator
    from cadastre.gateway.policy import VendorPolicy
    from cadastre.gateway.translate import SchemaTranslator
    from cadastre.observe import Metrics, Observations
    from cadastre.ports import Clock

_tracer = trace.get_tracer("cadastre.gateway")


def default_transport(allow_hosts: Sequence[str]) -> httpx.AsyncBaseTransport:
    """The HTTP transport a gateway gets unless it is handed one: one connection pool per
    gateway, so a vendor that holds its connections cannot take another vendor's, and an address
    guard, so a vendor URL a tenant typed cannot reach private networks (RELIABILITY.md #16)."""
    return guarded_transport(allow=AddressAllowList.parse(allow_hosts))


def origin(url: str) -> str:
    """``host`` or ``host:port`` of an absolute URL: a vendor's address in names and labels."""
    parsed = httpx.URL(url)
    return parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"


def _assemble(
    http: httpx.AsyncBaseTransport,
    policy: VendorPolicy,
    clock: Clock,
    authenticator: Authenticator | FlowAuthenticator | None,
    metrics: Metrics | None,
    connection: str,
    rng: random.Random | None,
    guards: Guards,
    observations: Observations | None = None,
) -> httpx.AsyncBaseTransport:
    """retry -> breaker -> bulkhead -> auth -> rate limit -> metering -> HTTP.

    Retry is outermost so every attempt pays the rate limit, counts in the breaker and carries a
    fresh credential (ARCHITECTURE.md). The breaker sits above the bulkhead so that a call refused
    for want of a slot, which never reached the vendor, is not held against the vendor; the
    bulkhead sits above the rate limit so calls queueing for a rate slot count as in flight and
    one vendor's queue can never take more than its share of workers.

    Auth sits above the rate limit (ARCHITECTURE.md draws it below; docs/architecture.md says
    why): a call takes its rate slot only once it holds its credential. Below, calls that had
    taken slots would wait for a token request queued behind those very slots, and, the token
    come, send at once in a burst past the vendor's window. Every request an auth flow sends (a
    Digest challenge's answer, say) pays its own slot as well."""
    chain: httpx.AsyncBaseTransport = MeteringTransport(
        http, metrics, policy, connection, clock, observations=observations, tenant=guards.tenant
    )
    chain = _rate_limited(chain, policy, metrics, connection, guards)
    if authenticator is not None:
        chain = AuthTransport(chain, authenticator)
    if guards.bulkhead is not None:
        chain = BulkheadTransport(chain, guards.bulkhead)
    if guards.breaker is not None:
        chain = BreakerTransport(chain, guards.breaker, policy, clock)
    return RetryTransport(chain, policy, clock, rng, guards.budget)


def _rate_limited(
    chain: httpx.AsyncBaseTransport, policy: VendorPolicy, metrics: Metrics | None,
    connection: str, guards: Guards,
) -> httpx.AsyncBaseTransport:  # fmt: skip
    if not guards.limiters:
        return chain
    return RateLimitTransport(
        chain, guards.limiters, guards.vendor_limiter, name=policy.vendor,
        connection=connection, metrics=metrics,
    )  # fmt: skip


def _limited(
    http: httpx.AsyncBaseTransport, policy: VendorPolicy, clock: Clock, metrics: Metrics | None,
    connection: str, guards: Guards, observations: Observations | None = None,
) -> httpx.AsyncBaseTransport:  # fmt: skip
    """The token endpoint's chain: rate limit -> metering -> HTTP (no retry, no breaker)."""
    metered = MeteringTransport(
        http, metrics, policy, connection, clock, observations=observations, tenant=guards.tenant
    )
    return _rate_limited(metered, policy, metrics, connection, guards)


class Gateway:
    def __init__(
        self,
        base_url: str,
        policy: VendorPolicy,
        *,
        clock: Clock,
        authenticator: Authenticator | FlowAuthenticator | None = None,
        auth: VaultAuth | None = None,
        metrics: Metrics | None = None,
        connection: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        guards: Guards | None = None,
        allow_hosts: Sequence[str] = (),
        translator: SchemaTranslator | None = None,
        observations: Observations | None = None,
    ) -> None:
        """``transport`` is the innermost HTTP transport (default: an ``httpx.AsyncHTTPTransport``
        that refuses private addresses except ``allow_hosts``, see ``address``; tests pass
        ``httpx.MockTransport`` or ``httpx.ASGITransport``). The gateway owns it and closes it in
        ``aclose``. ``rng`` draws the backoff jitter. ``guards`` are the shared breaker,
        bulkhead, rate buckets and retry budget (``GatewayControls.guards``); without them the
        gateway only retries. ``translator`` rewrites JSON bodies between the vendor's schema
        and the one the connector reads. ``auth`` names the vault credential calls carry; its
        token, login and key-rotation requests go through ``token_endpoint``: this gateway's
        rate limit, metering and HTTP transport, without retries. ``observations`` (the hub's)
        hears of every attempt and of each JSON answer's shape (``cadastre.observe.signals``)."""
        try:
            base = httpx.URL(base_url)
        except httpx.InvalidURL:
            base = httpx.URL()  # refused just below, with the vendor named
        if base.scheme not in {"http", "https"} or not base.host:
            raise ConfigurationError(f"vendor {policy.vendor!r}: base URL must be absolute http(s)")
        self._base = base
        self._policy = policy
        self._clock = clock
        self._connection = connection
        self._guards = guards or Guards()
        self._translator = translator
        self._observations = observations
        http = transport if transport is not None else default_transport(allow_hosts)
        self._pool = f"{policy.vendor}/{connection}#{id(http):x}"
        self.token_endpoint = GatewayTokenEndpoint(
            _limited(http, policy, clock, metrics, connection, self._guards, observations), clock,
            timeout=policy.read, total=policy.total,
        )  # fmt: skip
        if auth is not None:
            if authenticator is not None:
                raise ConfigurationError("give a gateway an authenticator or vault auth, not both")
            authenticator = authenticator_for(auth, self.token_endpoint)
        self._chain = _assemble(
            http,
            policy,
            clock,
            authenticator,
            metrics,
            connection,
            rng,
            self._guards,
            observations,
        )
        # The client builds requests (base URL, query, default headers, timeouts); they are sent
        # straight into the chain, since AsyncClient.send logs every full URL, query string and
        # all, at INFO on the "httpx" logger. It also owns the chain, to close it.
        self._client = httpx.AsyncClient(
            base_url=base,
            transport=self._chain,
            timeout=httpx.Timeout(
                connect=policy.connect, read=policy.read, write=policy.read, pool=policy.connect
            ),
            headers={"User-Agent": f"cadastre/{__version__}"},
            follow_redirects=False,
            # With trust_env, proxy variables make httpx mount transports of its own that would
            # route calls around this chain (and around the address guard, which a proxy would
            # bypass anyway by resolving vendor hosts itself).
            trust_env=False,
        )

    def __repr__(self) -> str:
        base = self._base
        return f"Gateway(vendor={self._policy.vendor!r}, base_url='{base.scheme}://{base.host}')"

    async def get(
        self,
        url_or_path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return await self.request("GET", url_or_path, params=params, headers=headers)

    async def get_json(
        self,
        url_or_path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        response = await self.get(
            url_or_path, params=params, headers={"Accept": "application/json", **(headers or {})}
        )
        request = response.request
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
        else:
            self.note_shape(response, payload)
            if self._translator is None:
                return payload
            return self._translator.inbound(payload, path=request.url.path)
        # Raised outside the except block: the decode error holds the whole body.
        raise VendorProtocolError(
            f"{self._call(request)} answered a body that is not JSON "
            f"({len(response.content)} bytes)"
        )

    def note_shape(self, response: httpx.Response, body: Any) -> None:
        """Tell the hub's observations the shape of a 2xx JSON answer (``shape_of``: key paths
        and types, never values). ``get_json`` does; a connector that parses a body itself (to
        keep an unreadable page, say) calls it with what it parsed, so no page is parsed twice
        just to be looked at. Without observations it does nothing."""
        if self._observations is None or not response.is_success:
            return
        request = response.request
        self._observations.note_shape(
            self._guards.tenant, self._connection, endpoint_of(request.method, request.url.path),
            shape_of(body), vendor=self._policy.vendor,
        )  # fmt: skip

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one call through the chain; return the 2xx response (body read) or raise."""
        if self._client.is_closed:
            raise RuntimeError(f"vendor {self._policy.vendor!r}: the gateway is closed")
        if json is not None and self._translator is not None:
            json = self._translator.outbound(json, path=httpx.URL(url).path)
        request = self._client.build_request(
            method, url, params=params, headers=headers, json=json, content=content, data=data
        )
        url_ = request.url
        if (url_.scheme, url_.host, url_.port) != (self._base.scheme, self._base.host,
                                                   self._base.port):  # fmt: skip
            # An absolute URL (a vendor's next-page link, say) must not carry this vendor's
            # credential to another origin.
            raise ConfigurationError(
                f"vendor {self._policy.vendor!r}: refusing {request.method} to "
                f"{url_.scheme}://{url_.host}: not the origin this gateway serves"
            )
        vendor, clock = self._policy.vendor, self._clock
        record = CallRecord(
            tenant=self._guards.tenant, vendor=vendor, connection=self._connection,
            method=request.method, path=url_.path, pool=self._pool, started=clock.monotonic(),
        )  # fmt: skip
        request.extensions[TRACE] = record
        attributes = {
            "http.request.method": request.method, "url.path": url_.path,
            "server.address": url_.host, "cadastre.vendor": vendor,
            "cadastre.connection": self._connection,
        }  # fmt: skip
        with working_for(self._guards.tenant, self._connection), _tracer.start_as_current_span(
            f"{request.method} {vendor}", kind=SpanKind.CLIENT, attributes=attributes,
            # An exception's text may quote a vendor; the type suffices (set below; the span
            # would otherwise overwrite it with the text on the way out).
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                response = await self._send(request)
            except BaseException as error:
                record.outcome = type(error).__name__
                span.set_status(StatusCode.ERROR, record.outcome)
                raise
            else:
                record.outcome = "success"
                span.set_attribute("http.response.status_code", response.status_code)
            finally:
                record.seconds = clock.monotonic() - record.started
                span.set_attribute("cadastre.attempts", record.attempts)
                span.set_attribute("cadastre.rate_wait_seconds", record.rate_wait)
                span.set_attribute("cadastre.bulkhead_wait_seconds", record.bulkhead_wait)
                if self._guards.calls is not None:
                    self._guards.calls.append(record)
            return response

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._chain.handle_async_request(request)  # read by RetryTransport
        except httpx.HTTPError as error:
            mapped = self._failure(request, error)
            if mapped is None:
                raise
            raise mapped from error
        response.request = request
        verdict = classify(response, self._policy, now=self._clock.now())
        attempts = response.extensions.get(ATTEMPTS, 1)
        said = f"{self._call(request)} answered {verdict.reason}" + (
            f" after {attempts} attempts" if attempts > 1 else ""
        )
        match verdict.outcome:
            case Outcome.SUCCESS:
                return response
            case Outcome.RATE_LIMITED:
                wait = (
                    ""
                    if verdict.retry_after is None
                    else f"; retry after {verdict.retry_after:g} s"
                )
                raise VendorRateLimited(said + wait, verdict.retry_after)
            case Outcome.RETRY:
                raise VendorUnavailable(said)
            case Outcome.REFRESH_TOKEN_THEN_RETRY:
                # RetryTransport resends once with a fresh credential; refused again, it stops.
                raise VendorAuthRefused(said)
            case Outcome.FAIL:
                status = response.status_code
                if status == HTTPStatus.UNAUTHORIZED:
                    raise VendorAuthRefused(said)
                if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                    raise VendorUnavailable(said)
                raise VendorRejected(said, status)
            case _:
                assert_never(verdict.outcome)

    def _failure(self, request: httpx.Request, error: httpx.HTTPError) -> VendorError | None:
        said = f"{self._call(request)} failed: {type(error).__name__}"
        if isinstance(error, httpx.DecodingError):
            return VendorProtocolError(said)
        outcome = classify(error, self._policy, now=self._clock.now()).outcome
        match outcome:
            case Outcome.RETRY | Outcome.RATE_LIMITED:
                return VendorUnavailable(said)
            case Outcome.SUCCESS | Outcome.FAIL | Outcome.REFRESH_TOKEN_THEN_RETRY:
                # Not the vendor's doing (an unsupported URL, a header httpx cannot send): a bug,
                # surfaced as it is.
                return None
            case _:
                assert_never(outcome)

    def _call(self, request: httpx.Request) -> str:
        return f"vendor {self._policy.vendor!r}: {request.method} {request.url.path}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
