"""Credentials on vendor requests: the ``Authenticator`` port, ``AuthTransport``, one authenticator
per vault scheme, and ``GatewayTokenEndpoint``, through which the vault reaches token, login and
key-rotation endpoints.

``AuthTransport`` sits below retry, so every attempt asks the authenticator afresh. On a 401 it
forgets the refused credential and marks the response; ``RetryTransport`` then sends the request
once more (REFRESH_TOKEN_THEN_RETRY), passing again through every layer between them, so the
resend pays the rate limit and counts in the breaker like any other call.

The secrets themselves live in the vault (``cadastre.vault``): authenticators ask its
``TokenManager`` for them on each request and hold nothing but what the manager hands back. A
credential sits on a request only while that request is being sent; errors and responses keep the
request without it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, Protocol, assert_never, runtime_checkable

import httpx

from cadastre.errors import (
    ConfigurationError,
    RequestNotSent,
    VendorAuthRefused,
    VendorError,
    VendorUnavailable,
)
from cadastre.gateway.outcome import CREDENTIAL_REFUSED, parse_retry_after
from cadastre.gateway.ratelimit import DEADLINE
from cadastre.observe import SECRETS
from cadastre.ports import EndpointReply, Secret
from cadastre.vault import Defaults, Scheme, TokenManager
from cadastre.vault.oauth import refusal

if TYPE_CHECKING:
    from cadastre.ports import Clock, TokenEndpoint


class Authenticator(Protocol):
    async def apply(self, request: httpx.Request) -> None:
        """Put the credential on ``request`` (headers, or the query for some API keys)."""
        ...

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        """Forget the credential ``refused`` carried, or every cached one when None. Only that
        one: a concurrent caller may already have fetched its successor."""
        ...


@runtime_checkable
class FlowAuthenticator(Protocol):
    """An authenticator that needs the vendor's challenge first (HTTP Digest): it hands
    ``AuthTransport`` an ``httpx.Auth`` whose flow the transport drives."""

    async def flow(self) -> httpx.Auth: ...

    async def invalidate(self, refused: httpx.Request | None = None) -> None: ...


class AuthTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, next: httpx.AsyncBaseTransport, authenticator: Authenticator | FlowAuthenticator
    ) -> None:
        self._next = next
        self._authenticator = authenticator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        original_headers, original_url = request.headers.copy(), request.url
        try:
            if isinstance(self._authenticator, FlowAuthenticator):
                response = await self._drive(request, await self._authenticator.flow())
            else:
                await self._authenticator.apply(request)
                response = await self._next.handle_async_request(request)
            if response.status_code == HTTPStatus.UNAUTHORIZED:
                await self._authenticator.invalidate(request)
                response.extensions[CREDENTIAL_REFUSED] = True
            return response
        finally:
            # Errors and responses keep a reference to the request; without its credential.
            request.headers, request.url = original_headers, original_url

    async def _drive(self, request: httpx.Request, auth: httpx.Auth) -> httpx.Response:
        """Run an ``httpx.Auth`` flow (as ``httpx.AsyncClient`` does) through the layers below:
        each request it yields is sent, and each answer handed back, until it stops."""
        flow = auth.async_auth_flow(request)
        sent = await flow.__anext__()
        response = await self._next.handle_async_request(sent)
        while True:
            # Transports answer responses without their request; flows read it (DigestAuth
            # looks at the challenge's cookies), and AsyncClient would have set it.
            response.request = sent
            if auth.requires_response_body:
                await response.aread()
            try:
                sent = await flow.asend(response)
            except StopAsyncIteration:
                return response
            await response.aclose()
            response = await self._next.handle_async_request(sent)

    async def aclose(self) -> None:
        await self._next.aclose()


# ------------------------------------------------------------------------------ vault schemes


@dataclass(frozen=True)
class VaultAuth:
    """Which vault credential a gateway's calls carry, and who is reading it (the audit's
    ``actor``)."""

    tokens: TokenManager
    tenant: str
    credential: str
    scheme: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    actor: str = "gateway"


def authenticator_for(
    auth: VaultAuth, endpoint: TokenEndpoint
) -> Authenticator | FlowAuthenticator:
    match Scheme(auth.scheme):
        case Scheme.OAUTH2_CLIENT_CREDENTIALS | Scheme.OAUTH2_AUTHORIZATION_CODE:
            return BearerToken(auth, endpoint)
        case Scheme.API_KEY:
            return ApiKey(auth)
        case Scheme.BASIC | Scheme.DIGEST:
            return Password(auth)
        case Scheme.SESSION:
            return SessionCookie(auth, endpoint)
        case Scheme.WEBHOOK_SECRET:
            raise ConfigurationError(
                f"credential {auth.credential!r} is a webhook signing secret; a connection "
                "names it under webhook.credential, not as the credential it calls its vendor with"
            )
        case _ as unreachable:
            assert_never(unreachable)


class BearerToken:
    """OAuth2 access tokens (RFC 6750) from the ``TokenManager``: refreshed before expiry,
    single-flight across callers and processes."""

    def __init__(self, auth: VaultAuth, endpoint: TokenEndpoint) -> None:
        self._auth = auth
        self._endpoint = endpoint

    def __repr__(self) -> str:
        return f"BearerToken(credential={self._auth.credential!r})"

    async def apply(self, request: httpx.Request) -> None:
        a = self._auth
        token = await a.tokens.access_token(
            a.tenant, a.credential, self._endpoint, actor=a.actor, defaults=a.defaults
        )
        request.headers["Authorization"] = f"Bearer {token.reveal()}"

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        sent = "" if refused is None else refused.headers.get("Authorization", "")
        scheme, _, token = sent.partition(" ")
        held = Secret(token) if scheme.lower() == "bearer" and token else None
        await self._auth.tokens.refused(self._auth.tenant, self._auth.credential, held)


class ApiKey:
    """A static key in a header (``meta.header``) or the query (``meta.query``); for a key pair
    (Buildium), the non-secret client id ``meta.id`` in ``meta.id_header`` beside it."""

    def __init__(self, auth: VaultAuth) -> None:
        self._auth = auth
        self._header = auth.meta.get("header")
        self._query = auth.meta.get("query")
        self._id_header, self._id = auth.meta.get("id_header"), auth.meta.get("id")
        if not (self._header or self._query):
            raise ConfigurationError(
                f"credential {auth.credential!r}: an API key needs a header or a query parameter"
            )

    def __repr__(self) -> str:
        return f"ApiKey(credential={self._auth.credential!r})"

    async def apply(self, request: httpx.Request) -> None:
        a = self._auth
        key = (await a.tokens.secrets(a.tenant, a.credential, actor=a.actor))["api_key"]
        if self._id_header and self._id:
            request.headers[str(self._id_header)] = str(self._id)
        if self._query:
            request.url = request.url.copy_set_param(str(self._query), key.reveal())
        else:
            request.headers[str(self._header)] = key.reveal()

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        await self._auth.tokens.refused(self._auth.tenant, self._auth.credential, None)


class Password:
    """HTTP Basic (RFC 7617) or Digest (RFC 7616, as RETS servers ask for), by httpx's own
    ``BasicAuth`` / ``DigestAuth``; a Digest challenge is kept and reused while the password
    stays the same."""

    def __init__(self, auth: VaultAuth) -> None:
        self._auth = auth
        self._held: tuple[dict[str, Secret], httpx.Auth] | None = None

    def __repr__(self) -> str:
        return f"Password(credential={self._auth.credential!r}, scheme={self._auth.scheme!r})"

    async def flow(self) -> httpx.Auth:
        a = self._auth
        fields = await a.tokens.secrets(a.tenant, a.credential, actor=a.actor)
        if self._held is None or self._held[0] is not fields:
            user, password = fields["username"].reveal(), fields["password"].reveal()
            made: httpx.Auth = (
                httpx.DigestAuth(user, password) if a.scheme == Scheme.DIGEST
                else httpx.BasicAuth(user, password)
            )  # fmt: skip
            self._held = (fields, made)
        return self._held[1]

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        self._held = None
        await self._auth.tokens.refused(self._auth.tenant, self._auth.credential, None)


class SessionCookie:
    """A legacy login: username and password posted to ``meta.login_url`` (as a form or JSON),
    the session cookie it sets held in memory and sent on every call; a 401 logs in again (one
    login at a time)."""

    def __init__(self, auth: VaultAuth, endpoint: TokenEndpoint) -> None:
        self._auth = auth
        self._endpoint = endpoint
        self._cookie: Secret | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SessionCookie(credential={self._auth.credential!r})"

    async def apply(self, request: httpx.Request) -> None:
        cookie = self._cookie or await self._login()
        request.headers["Cookie"] = cookie.reveal()

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        held = self._cookie
        sent = "" if refused is None else refused.headers.get("Cookie", "")
        if held is not None and (
            refused is None or secrets.compare_digest(sent.encode(), held.reveal().encode())
        ):
            self._cookie = None

    async def _login(self) -> Secret:
        async with self._lock:
            if self._cookie is not None:
                return self._cookie
            a = self._auth
            a.tokens.check_cooldown(a.tenant, a.credential)
            fields = await a.tokens.secrets(a.tenant, a.credential, actor=a.actor)
            body = {f: fields[f].reveal() for f in ("username", "password")}
            url = str(a.meta["login_url"])
            if a.meta.get("login_format") == "json":
                reply = await self._endpoint.send("POST", url, json=body)
            else:
                reply = await self._endpoint.send("POST", url, form=body)
            del body
            where = f"login of credential {a.credential!r}"
            wanted = a.meta.get("cookie")
            jar = {k: v for k, v in reply.cookies.items() if not wanted or k == wanted}
            if 200 <= reply.status < 300 and jar:
                for value in jar.values():
                    SECRETS.add(value)
                self._cookie = Secret("; ".join(f"{k}={v}" for k, v in jar.items()))
                return self._cookie
            failure = (
                refusal(reply, where) if not 200 <= reply.status < 300
                else VendorAuthRefused(f"{where}: answered {reply.status} but set no cookie")
            )  # fmt: skip
            if isinstance(failure, VendorUnavailable):  # 5xx, 429: later, not in a storm
                raise a.tokens.cool(a.tenant, a.credential, failure)
            # Refused (a wrong password, a login page without a session): no more tries until a
            # person fixes it - vendors lock accounts after a few failed logins.
            raise await a.tokens.login_refused(a.tenant, a.credential, str(failure))


# ------------------------------------------------------------------------------ token endpoint


class GatewayTokenEndpoint:
    """The ``TokenEndpoint`` port over a gateway's lower layers (rate limit, metering, the guarded
    HTTP transport): token requests pay the vendor's rate limit, obey the address rules and are
    metered, but are never retried - a refresh token must not be sent twice. Outbound webhook
    deliveries take the same path (``content``: the exact bytes they signed), since their retry
    schedule is the delivery's own, kept in the store."""

    def __init__(
        self, chain: httpx.AsyncBaseTransport, clock: Clock, *, timeout: float,
        total: float | None = None,
    ) -> None:  # fmt: skip
        """``timeout`` bounds each connect and read; ``total`` the whole request, its wait for a
        rate-limit slot included (a slot beyond it refuses the request: ``RequestNotSent``)."""
        self._chain = chain
        self._clock = clock
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._total = total

    async def send(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        max_body: int | None = None,
    ) -> EndpointReply:
        """``max_body``: keep at most that many bytes of the answer and drop the connection
        past them (an endpoint a tenant named must not fill our memory)."""
        target = httpx.URL(url)
        # userinfo and query left out: they are the usual places a secret hides in a URL
        where = f"{method} {target.scheme}://{target.host}{target.path}"
        if target.scheme not in {"http", "https"} or not target.host:
            raise ConfigurationError(f"{where}: needs an absolute http(s) URL")
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if self._total is not None:
            extensions[DEADLINE] = self._clock.monotonic() + self._total
        request = httpx.Request(
            method, target, data=dict(form) if form is not None else None, json=json,
            content=content, headers=dict(headers or {}), extensions=extensions,
        )  # fmt: skip
        answer = await self._exchange(request, max_body)
        del request  # it carried the secrets
        # Raised here, outside any except block, so no chained httpx error keeps a reference to
        # the request and the secret in it.
        if isinstance(answer, VendorError):
            raise answer
        return answer

    async def _exchange(
        self, request: httpx.Request, max_body: int | None = None
    ) -> EndpointReply | VendorError:
        where = f"{request.method} {request.url.scheme}://{request.url.host}{request.url.path}"
        try:
            response = await self._chain.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return RequestNotSent(f"{where}: {type(error).__name__}")
        except httpx.HTTPError as error:
            return VendorUnavailable(f"{where}: no answer ({type(error).__name__})")
        except VendorUnavailable as refused:  # a rate limit or breaker: nothing left this host
            return RequestNotSent(str(refused), refused.retry_after)
        try:
            body = await response.aread() if max_body is None else await _head(response, max_body)
        except httpx.HTTPError as error:
            return VendorUnavailable(f"{where}: the answer broke off ({type(error).__name__})")
        finally:
            await response.aclose()
        return EndpointReply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            body,
            _cookies(response.headers.get_list("set-cookie")),
            parse_retry_after(response.headers.get("Retry-After"), self._clock.now()),
        )

    async def aclose(self) -> None:
        await self._chain.aclose()


async def _head(response: httpx.Response, limit: int) -> bytes:
    if response.is_stream_consumed:  # built from bytes in memory (a test's transport): read
        return response.content[:limit]
    # Raw bytes: a compressed answer is not inflated, so it cannot grow past the limit here.
    kept, size = [], 0
    async for chunk in response.aiter_raw():
        kept.append(chunk[: max(0, limit - size)])
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(kept)


def _cookies(headers: list[str]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in headers:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header)
        except CookieError:
            continue  # a cookie we cannot read is one we will not send
        jar |= {name: morsel.value for name, morsel in cookie.items()}
    return jar
