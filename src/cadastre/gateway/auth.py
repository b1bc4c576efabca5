"""Credentials on vendor requests: the ``Authenticator`` port, ``AuthTransport`` and OAuth2 client
credentials (RFC 6749 section 4.4).

``AuthTransport`` sits below retry, so every attempt asks the authenticator afresh. On a 401 it
forgets the refused credential and marks the response; ``RetryTransport`` then sends the request
once more (REFRESH_TOKEN_THEN_RETRY), passing again through every layer between them, so the
resend pays the rate limit and counts in the breaker like any other call.

Secrets: the client secret is resolved only to build a token request and is not kept; the access
token is held as a ``Secret``; neither appears in a message, log line or repr. The credential sits
on a request only while that request is being sent.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import math
import re
import secrets
from http import HTTPStatus
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import quote_plus

import httpx
import orjson

from cadastre.errors import (
    ConfigurationError,
    CredentialError,
    VendorAuthRefused,
    VendorError,
    VendorProtocolError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.gateway.outcome import CREDENTIAL_REFUSED, parse_retry_after
from cadastre.ports import Secret

if TYPE_CHECKING:
    from cadastre.ports import Clock, Credential, CredentialProvider

# OAuth2 error codes meaning "this client may not have a token" (RFC 6749 section 5.2)
_REFUSALS = frozenset({"invalid_client", "unauthorized_client", "invalid_grant"})
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class Authenticator(Protocol):
    async def apply(self, request: httpx.Request) -> None:
        """Put the credential on ``request`` (headers)."""
        ...

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        """Forget the credential ``refused`` carried, or every cached one when None. Only that
        one: a concurrent caller may already have fetched its successor."""
        ...


class AuthTransport(httpx.AsyncBaseTransport):
    def __init__(self, next: httpx.AsyncBaseTransport, authenticator: Authenticator) -> None:
        self._next = next
        self._authenticator = authenticator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        original = request.headers.copy()
        await self._authenticator.apply(request)
        try:
            response = await self._next.handle_async_request(request)
            if response.status_code == HTTPStatus.UNAUTHORIZED:
                await self._authenticator.invalidate(request)
                response.extensions[CREDENTIAL_REFUSED] = True
            return response
        finally:
            # Errors and responses keep a reference to the request; without its credential.
            request.headers = original

    async def aclose(self) -> None:
        await self._next.aclose()


class OAuth2ClientCredentials:
    """Bearer tokens from a token endpoint, cached until ``expires_in - skew`` on the clock.

    One token request at a time (an ``asyncio.Lock``): callers that find the cache empty queue
    behind it and take its token, or its failure, instead of sending their own. A token without
    ``expires_in`` is kept until the vendor refuses it (401).
    """

    def __init__(
        self,
        token_url: str,
        credential: str,
        provider: CredentialProvider,
        clock: Clock,
        token_transport: httpx.AsyncBaseTransport,
        *,
        scope: str | None = None,
        skew: float = 30.0,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        timeout: float = 10.0,
    ) -> None:
        url = httpx.URL(token_url)
        port = f":{url.port}" if url.port else ""
        # userinfo and query left out: they are the usual places a secret hides in a URL
        self._where = f"token endpoint {url.scheme}://{url.host}{port}{url.path}"
        if url.scheme not in {"http", "https"} or not url.host:
            raise ConfigurationError(f"{self._where}: needs an absolute http(s) URL")
        if auth_method not in {"client_secret_basic", "client_secret_post"}:
            raise ConfigurationError(f"{self._where}: unknown auth_method {auth_method!r}")
        if not (math.isfinite(skew) and skew >= 0 and math.isfinite(timeout) and timeout > 0):
            raise ConfigurationError(f"{self._where}: skew must be >= 0 and timeout > 0")
        self._token_url = url
        self._credential = credential
        self._provider = provider
        self._clock = clock
        self._transport = token_transport
        self._scope = scope
        self._skew = skew
        self._auth_method = auth_method
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._token: Secret | None = None
        self._expires_at: float | None = None  # clock.monotonic(); None: until refused
        self._lock = asyncio.Lock()
        self._fetches = 0
        self._failure: VendorError | CredentialError | None = None

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials({self._where!r}, credential={self._credential!r})"

    async def apply(self, request: httpx.Request) -> None:
        token = await self._access_token()
        request.headers["Authorization"] = f"Bearer {token.reveal()}"

    async def invalidate(self, refused: httpx.Request | None = None) -> None:
        token = self._token
        if token is None:
            return
        sent = "" if refused is None else refused.headers.get("Authorization", "")
        if refused is None or secrets.compare_digest(
            sent.encode(), f"Bearer {token.reveal()}".encode()
        ):
            self._token = self._expires_at = None

    def _cached(self) -> Secret | None:
        if self._expires_at is not None and self._clock.monotonic() >= self._expires_at:
            return None
        return self._token

    async def _access_token(self) -> Secret:
        if (token := self._cached()) is not None:
            return token
        seen = self._fetches
        async with self._lock:
            if (token := self._cached()) is not None:
                return token
            if self._fetches != seen and self._failure is not None:
                # The token request this caller queued behind has just failed: share its answer
                # rather than send one more request per waiting caller into a failing endpoint.
                # A copy, so concurrent raisers do not share one traceback.
                raise copy.copy(self._failure)
            try:
                token, self._expires_at = await self._fetch()
            except (VendorError, CredentialError) as failure:
                self._failure = copy.copy(failure)  # without the traceback and its frames
                raise
            finally:
                self._fetches += 1
            self._token, self._failure = token, None
            return token

    async def _fetch(self) -> tuple[Secret, float | None]:
        started = self._clock.monotonic()
        answer = await self._post()
        # Raised here, outside any except block, so no chained httpx error keeps a reference to
        # the token request and the secret in it.
        if isinstance(answer, str):
            raise VendorUnavailable(f"{self._where}: {answer}")
        if answer.is_success:
            return self._read(answer.content, started)
        raise self._refusal(answer)

    async def _post(self) -> httpx.Response | str:
        request = await self._token_request()
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError as error:
            return f"token request failed: {type(error).__name__}"
        try:
            await response.aread()
        except httpx.HTTPError as error:
            return f"token response failed: {type(error).__name__}"
        finally:
            await response.aclose()
        return response

    async def _token_request(self) -> httpx.Request:
        credential = await self._provider.resolve(self._credential)
        client_id = _field(credential, "client_id").reveal()
        client_secret = _field(credential, "client_secret").reveal()
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        if self._auth_method == "client_secret_post":
            form |= {"client_id": client_id, "client_secret": client_secret}
        else:
            # RFC 6749 section 2.3.1: each part is form-encoded before the Basic encoding
            pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return httpx.Request(
            "POST", self._token_url, data=form, headers=headers,
            extensions={"timeout": self._timeout},
        )  # fmt: skip

    def _read(self, content: bytes, started: float) -> tuple[Secret, float | None]:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if not (isinstance(body, dict) and isinstance(token := body.get("access_token"), str)):
            raise VendorProtocolError(f"{self._where}: answered without an access_token")
        if not token:
            raise VendorProtocolError(f"{self._where}: answered an empty access_token")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise VendorProtocolError(f"{self._where}: issued a token that is not a Bearer token")
        lifetime = body.get("expires_in")
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            return Secret(token), None
        # the skew keeps a token from expiring in flight; a lifetime shorter than the skew is
        # still used for half of it rather than not at all
        return Secret(token), started + max(lifetime - self._skew, lifetime / 2)

    def _refusal(self, response: httpx.Response) -> VendorError:
        status = response.status_code
        code = _oauth_error(response.content)
        said = f"{status} {httpx.codes.get_reason_phrase(status)}" + (f" ({code})" if code else "")
        message = f"{self._where}: answered {said} for credential {self._credential!r}"
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return VendorRateLimited(message, retry_after)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status == HTTPStatus.REQUEST_TIMEOUT:
            return VendorUnavailable(message)
        if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN} or code in _REFUSALS:
            return VendorAuthRefused(message)
        return VendorRejected(message, status)


def _field(credential: Credential, name: str) -> Secret:
    value = credential.fields.get(name)
    if value is None:
        raise CredentialError(f"credential {credential.reference!r} has no field {name!r}")
    return value


def _oauth_error(content: bytes) -> str:
    """The ``error`` code of an OAuth2 error body, if it looks like one. Only the code: a vendor's
    ``error_description`` is free text that may quote what we sent."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
