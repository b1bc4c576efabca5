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
from typing import TYPE_CHECKING, Any, Literal, Self, assert_never

import httpx
import orjson

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
from cadastre.gateway.auth import AuthTransport, OAuth2ClientCredentials
from cadastre.gateway.metering import MeteringTransport
from cadastre.gateway.outcome import Outcome, classify
from cadastre.gateway.retry import ATTEMPTS, RetryTransport

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping
    from types import TracebackType

    from cadastre.gateway.auth import Authenticator
    from cadastre.gateway.policy import VendorPolicy
    from cadastre.observe import Metrics
    from cadastre.ports import Clock, CredentialProvider


def _assemble(
    http: httpx.AsyncBaseTransport,
    policy: VendorPolicy,
    clock: Clock,
    authenticator: Authenticator | None,
    metrics: Metrics | None,
    connection: str,
    rng: random.Random | None,
) -> httpx.AsyncBaseTransport:
    """retry -> [breaker/bulkhead -> rate limit: the next issue] -> auth -> metering -> HTTP.

    Retry is outermost so every attempt pays the rate limit, counts in the breaker and carries a
    fresh credential (ARCHITECTURE.md)."""
    chain: httpx.AsyncBaseTransport = MeteringTransport(http, metrics, policy, connection, clock)
    if authenticator is not None:
        chain = AuthTransport(chain, authenticator)
    return RetryTransport(chain, policy, clock, rng)


class Gateway:
    def __init__(
        self,
        base_url: str,
        policy: VendorPolicy,
        *,
        clock: Clock,
        authenticator: Authenticator | None = None,
        metrics: Metrics | None = None,
        connection: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``transport`` is the innermost HTTP transport (default ``httpx.AsyncHTTPTransport``;
        tests pass ``httpx.MockTransport`` or ``httpx.ASGITransport``). The gateway owns it and
        closes it in ``aclose``. ``rng`` draws the backoff jitter."""
        base = httpx.URL(base_url)
        if base.scheme not in {"http", "https"} or not base.host:
            raise ConfigurationError(f"vendor {policy.vendor!r}: base URL must be absolute http(s)")
        self._base = base
        self._policy = policy
        self._clock = clock
        http = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._chain = _assemble(http, policy, clock, authenticator, metrics, connection, rng)
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
            # route calls around this chain; a proxy goes into the innermost transport instead.
            trust_env=False,
        )

    @classmethod
    def for_oauth2(
        cls,
        base_url: str,
        policy: VendorPolicy,
        *,
        clock: Clock,
        token_url: str,
        credential: str,
        provider: CredentialProvider,
        scope: str | None = None,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        metrics: Metrics | None = None,
        connection: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> Gateway:
        """A gateway whose calls carry OAuth2 client-credentials tokens; the token requests share
        its HTTP transport and are metered under the same labels."""
        http = transport if transport is not None else httpx.AsyncHTTPTransport()
        authenticator = OAuth2ClientCredentials(
            token_url, credential, provider, clock,
            MeteringTransport(http, metrics, policy, connection, clock),
            scope=scope, auth_method=auth_method, timeout=policy.read,
        )  # fmt: skip
        return cls(
            base_url, policy, clock=clock, authenticator=authenticator, metrics=metrics,
            connection=connection, transport=http, rng=rng,
        )  # fmt: skip

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
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
        # Raised outside the except block: the decode error holds the whole body.
        request = response.request
        raise VendorProtocolError(
            f"{self._call(request)} answered a body that is not JSON "
            f"({len(response.content)} bytes)"
        )

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
