"""Credentials on vendor requests, on a fake clock against ``httpx.MockTransport`` vendors:
``AuthTransport``, one authenticator per vault scheme (bearer tokens, API keys, Basic and Digest
passwords, session cookies) and ``GatewayTokenEndpoint``, through which the vault reaches token and
login endpoints. The token lifecycle itself (refresh, single flight, cooldowns, reauth) is tested in
tests/unit/vault/test_tokens.py; here, what the gateway does with what the vault hands it.

Every secret is a distinctive canary, looked for in every error, repr and log line."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from cadastre.errors import (
    ConfigurationError,
    CredentialNeedsReauth,
    RequestNotSent,
    VendorAuthRefused,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.gateway import Gateway, GatewayTokenEndpoint, VaultAuth, VendorPolicy
from cadastre.gateway.auth import (
    ApiKey,
    AuthTransport,
    BearerToken,
    Password,
    SessionCookie,
    authenticator_for,
)
from cadastre.gateway.outcome import CREDENTIAL_REFUSED
from cadastre.testing.vault import VaultKit

from .conftest import (
    CANARY_SECRET,
    CANARY_TOKEN,
    SteppingClock,
    TokenEndpoint,
    client_credentials,
)

POLICY = VendorPolicy(vendor="demo", max_attempts=3)
BASE = "https://vendor.test/odata"
TENANT = "acme"
API_KEY = "canary-api-key-3c8e71"
USER = "canary-user-5a1b"
PASSWORD = "canary-password-b24f90"
SESSION = "canary-session-e61d07"
FORM_SECRET = "canary-form-secret-90ad1f"
CANARIES = (CANARY_SECRET, CANARY_TOKEN, API_KEY, PASSWORD, SESSION, FORM_SECRET)

Handler = Callable[[httpx.Request], Any]


def gateway(clock: SteppingClock, vendor: Handler, auth: VaultAuth) -> Gateway:
    return Gateway(BASE, POLICY, clock=clock, auth=auth, transport=httpx.MockTransport(vendor))


async def stored(
    clock: SteppingClock, scheme: str, secrets: dict[str, str], **meta: Any
) -> tuple[VaultKit, VaultAuth]:
    kit = VaultKit(clock)
    return kit, await kit.add(TENANT, "vendor-login", scheme, secrets, **meta)


def leaks(*texts: str) -> list[str]:
    return [canary for canary in CANARIES if any(canary in text for text in texts)]


def everything_about(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


# ------------------------------------------------------------------------------ AuthTransport


@pytest.mark.parametrize("place", ["header", "query"])
async def test_the_credential_is_on_the_request_only_while_it_is_sent(
    clock: SteppingClock, place: str
) -> None:
    seen: list[httpx.URL | str | None] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request.url if place == "query" else request.headers.get("X-Api-Key"))
        return httpx.Response(200)

    where = {"query": "api_key", "header": None} if place == "query" else {"header": "X-Api-Key"}
    _, auth = await stored(clock, "api_key", {"api_key": API_KEY}, **where)
    transport = AuthTransport(httpx.MockTransport(vendor), ApiKey(auth))
    request = httpx.Request("GET", f"{BASE}/Property?$top=1", headers={"X-Keep": "1"})
    original = request.url
    response = await transport.handle_async_request(request)
    assert response.status_code == 200
    if place == "query":
        assert seen == [original.copy_set_param("api_key", API_KEY)]
    else:
        assert seen == [API_KEY]
    # after the call: the request as it came, its own headers and query kept
    assert request.url == original
    assert "X-Api-Key" not in request.headers
    assert request.headers["X-Keep"] == "1"
    assert leaks(str(request.url), repr(request), str(dict(request.headers))) == []


async def test_an_error_keeps_the_request_without_its_credential(clock: SteppingClock) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        assert request.url.params["api_key"] == API_KEY
        raise httpx.ReadError("connection reset", request=request)

    _, auth = await stored(clock, "api_key", {"api_key": API_KEY}, query="api_key", header=None)
    async with gateway(clock, vendor, auth) as gw:
        with pytest.raises(VendorUnavailable, match="GET /odata/Property failed: ReadError") as e:
            await gw.get("Property", params={"$top": 1})
    cause = e.value.__cause__
    assert isinstance(cause, httpx.ReadError)
    assert leaks(str(cause.request.url), *everything_about(e.value)) == []


async def test_a_401_is_marked_for_a_resend_and_the_credential_forgotten(
    clock: SteppingClock,
) -> None:
    statuses = iter([401, 403, 200])
    endpoint = TokenEndpoint()
    auth = await client_credentials(clock)
    bearer = BearerToken(auth, GatewayTokenEndpoint(httpx.MockTransport(endpoint), clock,
                                                    timeout=5.0))  # fmt: skip

    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses))

    transport = AuthTransport(httpx.MockTransport(vendor), bearer)
    refused, rejected, ok = [
        await transport.handle_async_request(httpx.Request("GET", f"{BASE}/x")) for _ in range(3)
    ]
    assert refused.extensions.get(CREDENTIAL_REFUSED) is True
    assert CREDENTIAL_REFUSED not in rejected.extensions  # a 403 is not about the credential
    assert CREDENTIAL_REFUSED not in ok.extensions
    # the refused token was forgotten: the next call fetched a new one
    assert len(endpoint.token_requests) == 2


# ------------------------------------------------------------------------------ bearer tokens


async def test_a_401_fetches_a_fresh_token_and_the_gateway_resends_once(
    clock: SteppingClock,
) -> None:
    endpoint = TokenEndpoint()
    async with gateway(clock, endpoint, await client_credentials(clock)) as gw:
        await gw.get("Property")
        endpoint.issued += 1  # the vendor revokes the held token before its expiry
        response = await gw.get("Property")
    assert response.status_code == 200
    assert len(endpoint.token_requests) == 2
    assert endpoint.api_auth == [f"Bearer {CANARY_TOKEN}-1", f"Bearer {CANARY_TOKEN}-1",
                                 f"Bearer {CANARY_TOKEN}-3"]  # fmt: skip
    assert clock.sleeps == [0.0]  # no backoff before the resend


async def test_a_post_refused_for_its_token_is_resent_once_too(clock: SteppingClock) -> None:
    endpoint = TokenEndpoint(api=lambda r: httpx.Response(201))
    async with gateway(clock, endpoint, await client_credentials(clock)) as gw:
        await gw.get("Property")
        endpoint.issued += 1
        response = await gw.request("POST", "Property", json={"a": 1})
    assert response.status_code == 201
    assert len(endpoint.api_auth) == 3


async def test_a_second_401_is_vendor_auth_refused_without_the_token(
    clock: SteppingClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    # a vendor that quotes the refused token back
    endpoint = TokenEndpoint(api=lambda r: httpx.Response(401, text=r.headers["Authorization"]))
    async with gateway(clock, endpoint, await client_credentials(clock)) as gw:
        with pytest.raises(VendorAuthRefused, match=r"'demo': GET /odata/Property answered 401"
                           ) as raised:  # fmt: skip
            await gw.get("Property")
    assert len(endpoint.api_auth) == 2
    assert len(endpoint.token_requests) == 2
    assert leaks(*everything_about(raised.value), caplog.text) == []


async def test_late_401s_for_a_stale_token_do_not_discard_its_successor(
    clock: SteppingClock,
) -> None:
    endpoint = TokenEndpoint()
    delays = iter(range(1000))

    async def vendor(request: httpx.Request) -> httpx.Response:
        stale = request.headers.get("Authorization") != f"Bearer {endpoint.current()}"
        if request.url.path != "/oauth/token" and stale:
            # refusals arrive spread out, many after the new token has been fetched
            for _ in range(next(delays)):
                await asyncio.sleep(0)
        return await endpoint(request)

    async with gateway(clock, vendor, await client_credentials(clock)) as gw:
        await gw.get("Property")
        endpoint.issued += 1
        responses = await asyncio.gather(*(gw.get("Property") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    # one refused token -> one new token, not one per refused caller
    assert len(endpoint.token_requests) == 2


# ------------------------------------------------------------------------------ API keys


async def test_an_api_key_goes_in_its_header(clock: SteppingClock) -> None:
    seen: list[httpx.URL] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        ok = request.headers.get("X-Vendor-Key") == API_KEY
        return httpx.Response(200 if ok else 401, json={})

    _, auth = await stored(clock, "api_key", {"api_key": API_KEY}, header="X-Vendor-Key")
    async with gateway(clock, vendor, auth) as gw:
        response = await gw.get("Property", params={"$top": 1})
    assert response.status_code == 200
    assert seen == [httpx.URL(f"{BASE}/Property?%24top=1")]  # in the header only
    assert "X-Vendor-Key" not in response.request.headers


async def test_an_api_key_goes_in_the_query_and_never_into_a_message(
    clock: SteppingClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    seen: list[tuple[httpx.URL, httpx.Headers]] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append((request.url, request.headers.copy()))  # as sent: stripped after the call
        return httpx.Response(200 if request.url.path.endswith("Property") else 400, json={})

    _, auth = await stored(clock, "api_key", {"api_key": API_KEY}, query="key", header=None)
    async with gateway(clock, vendor, auth) as gw:
        response = await gw.get("Property", params={"$top": 1})
        with pytest.raises(VendorRejected, match="400") as raised:
            await gw.get("Media")
    url, headers = seen[0]
    assert url.params["key"] == API_KEY
    assert url.params["$top"] == "1"
    assert "X-Api-Key" not in headers  # in the query only
    assert leaks(str(response.request.url), *everything_about(raised.value), caplog.text) == []


async def test_a_refused_api_key_is_read_again_from_the_vault(clock: SteppingClock) -> None:
    new_key = "canary-api-key-rotated-77c2"
    seen: list[str | None] = []
    live = [API_KEY]

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Api-Key"))
        return httpx.Response(200 if seen[-1] == live[0] else 401)

    kit, auth = await stored(clock, "api_key", {"api_key": API_KEY})
    async with gateway(clock, vendor, auth) as gw:
        await gw.get("Property")  # the old key is held ...
        # ... when another process rotates it: the vendor refuses the old one at once
        await kit.vault.update(await kit.vault.stored(TENANT, "vendor-login"),
                               secrets={"api_key": new_key})  # fmt: skip
        live[0] = new_key
        response = await gw.get("Property")
    assert response.status_code == 200
    # the 401 dropped the held key, so the resend did not wait for the periodic recheck
    assert seen == [API_KEY, API_KEY, new_key]


async def test_an_api_key_with_neither_header_nor_query_is_refused(clock: SteppingClock) -> None:
    kit = VaultKit(clock)
    auth = VaultAuth(kit.tokens, TENANT, "key", "api_key", {"header": None, "query": None})
    with pytest.raises(ConfigurationError, match="'key': an API key needs a header or a query"):
        gateway(clock, lambda r: httpx.Response(200), auth)


# ------------------------------------------------------------------------------ passwords


async def test_basic_sends_the_password_each_call_and_strips_it_after(
    clock: SteppingClock,
) -> None:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    seen: list[str | None] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200 if seen[-1] == expected else 401)

    _, auth = await stored(clock, "basic", {"username": USER, "password": PASSWORD})
    async with gateway(clock, vendor, auth) as gw:
        responses = [await gw.get("Property") for _ in range(2)]
    assert seen == [expected, expected]  # no challenge round trip for Basic
    assert all("Authorization" not in r.request.headers for r in responses)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - what RFC 7616's MD5 asks


class DigestVendor:
    """A RETS-style server: a request without Digest credentials is challenged (401 with a
    ``WWW-Authenticate: Digest`` header); one with them is checked as RFC 7616 computes it."""

    realm = "rets@vendor.test"
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"

    def __init__(self, password: str = PASSWORD) -> None:
        self.password = password
        self.challenges = 0
        self.answered: list[dict[str, str]] = []

    def challenge(self) -> httpx.Response:
        self.challenges += 1
        header = f'Digest realm="{self.realm}", nonce="{self.nonce}", qop="auth", algorithm=MD5'
        return httpx.Response(401, headers={"WWW-Authenticate": header})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("Authorization", "")
        if not sent.startswith("Digest "):
            return self.challenge()
        p = {k: quoted or bare for k, quoted, bare in
             re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', sent)}  # fmt: skip
        assert p["uri"] == request.url.raw_path.decode()
        ha1 = _md5(f"{p['username']}:{self.realm}:{self.password}")
        ha2 = _md5(f"{request.method}:{p['uri']}")
        wanted = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
        if p["username"] != USER or p["response"] != wanted:
            return self.challenge()
        self.answered.append(p)
        return httpx.Response(200, json={"ok": True})


async def test_digest_answers_the_challenge_and_reuses_it_on_the_next_call(
    clock: SteppingClock,
) -> None:
    vendor = DigestVendor()
    _, auth = await stored(clock, "digest", {"username": USER, "password": PASSWORD})
    async with gateway(clock, vendor, auth) as gw:
        first = await gw.get_json("Property", params={"$top": 1})
        second = await gw.get("Property", params={"$skip": 1})
    assert first == {"ok": True}
    assert second.status_code == 200
    assert vendor.challenges == 1  # one 401 for two calls: the challenge was kept
    assert [p["nc"] for p in vendor.answered] == ["00000001", "00000002"]
    assert "Authorization" not in second.request.headers
    assert clock.sleeps == []  # the challenge round trip is part of the call, not a retry


async def test_a_wrong_digest_password_is_refused_without_quoting_it(
    clock: SteppingClock,
) -> None:
    vendor = DigestVendor(password="the-right-one")
    _, auth = await stored(clock, "digest", {"username": USER, "password": PASSWORD})
    async with gateway(clock, vendor, auth) as gw:
        with pytest.raises(CredentialNeedsReauth, match="refused it") as raised:
            await gw.get("Property")
        for _ in range(3):  # RETS servers lock accounts after a few failures: no more tries
            with pytest.raises(CredentialNeedsReauth):
                await gw.get("Property")
    # one attempt, a challenge and the answer to it; the resend finds the same password refused
    # and stops before sending it again
    assert vendor.challenges == 2
    assert leaks(*everything_about(raised.value)) == []


# ------------------------------------------------------------------------------ session cookies

LOGIN_URL = "https://vendor.test/login"


class SessionVendor:
    """A legacy API behind a login form: ``/login`` sets ``sid`` (and a cookie of no interest);
    other paths want the current ``sid``."""

    def __init__(self, set_cookie: bool = True) -> None:
        self.set_cookie = set_cookie
        self.logins: list[bytes] = []
        self.generation = 0
        self.calls = 0

    def current(self) -> str:
        return f"sid={SESSION}-{self.generation}"

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let concurrent callers interleave, as on a real socket
        if request.url.path == "/login":
            self.logins.append(await request.aread())
            for _ in range(5):
                await asyncio.sleep(0)
            if not self.set_cookie:
                return httpx.Response(200, json={"welcome": True})
            self.generation += 1
            return httpx.Response(200, headers=[
                ("Set-Cookie", f"{self.current()}; Path=/; HttpOnly; Secure"),
                ("Set-Cookie", "theme=dark; Path=/"),
            ])  # fmt: skip
        self.calls += 1
        ok = request.headers.get("Cookie") == self.current()
        return httpx.Response(200 if ok else 401, json={})


async def session(clock: SteppingClock, **meta: Any) -> VaultAuth:
    meta = {"login_url": LOGIN_URL, "cookie": "sid", **meta}
    _, auth = await stored(clock, "session", {"username": USER, "password": PASSWORD}, **meta)
    return auth


async def test_one_login_serves_many_concurrent_calls(clock: SteppingClock) -> None:
    vendor = SessionVendor()
    async with gateway(clock, vendor, await session(clock)) as gw:
        responses = await asyncio.gather(*(gw.get("Property") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert len(vendor.logins) == 1
    assert parse_qs(vendor.logins[0].decode()) == {"username": [USER], "password": [PASSWORD]}
    assert vendor.calls == 20
    assert all("Cookie" not in r.request.headers for r in responses)


async def test_a_401_logs_in_again_and_resends(clock: SteppingClock) -> None:
    vendor = SessionVendor()
    async with gateway(clock, vendor, await session(clock)) as gw:
        await gw.get("Property")
        vendor.generation += 1  # the vendor ends the session
        response = await gw.get("Property")
    assert response.status_code == 200
    assert len(vendor.logins) == 2
    assert vendor.calls == 3  # the first call, the refused one and its resend


async def test_a_json_login_and_every_cookie_when_none_is_named(clock: SteppingClock) -> None:
    seen: list[str | None] = []
    vendor = SessionVendor()

    async def spy(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/login":
            seen.append(request.headers.get("Cookie"))
            return httpx.Response(200)
        return await vendor(request)

    auth = await session(clock, login_format="json", cookie=None)
    async with gateway(clock, spy, auth) as gw:
        await gw.get("Property")
    assert orjson.loads(vendor.logins[0]) == {"username": USER, "password": PASSWORD}
    assert seen == [f"sid={SESSION}-1; theme=dark"]


async def test_a_login_that_sets_no_cookie_is_refused(clock: SteppingClock) -> None:
    vendor = SessionVendor(set_cookie=False)
    async with gateway(clock, vendor, await session(clock)) as gw:
        with pytest.raises(CredentialNeedsReauth, match="answered 200 but set no cookie") as e:
            await gw.get("Property")
    assert "'vendor-login'" in str(e.value)
    assert vendor.calls == 0
    assert leaks(*everything_about(e.value)) == []


async def test_a_refused_login_stops_logging_in_and_does_not_quote_the_password(
    clock: SteppingClock,
) -> None:
    logins = 0

    async def vendor(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        logins += 1
        body = (await request.aread()).decode()
        return httpx.Response(401, json={"error": "invalid_login", "error_description": body})

    async with gateway(clock, vendor, await session(clock)) as gw:
        with pytest.raises(CredentialNeedsReauth, match=r"answered 401 Unauthorized") as raised:
            await gw.get("Property")
        for _ in range(5):  # vendors lock accounts after a few failed logins: no more tries
            with pytest.raises(CredentialNeedsReauth):
                await gw.get("Property")
    assert logins == 1
    assert leaks(*everything_about(raised.value)) == []


# ------------------------------------------------------------------------------ token endpoint


def endpoint_over(handler: Handler, clock: SteppingClock) -> GatewayTokenEndpoint:
    return GatewayTokenEndpoint(httpx.MockTransport(handler), clock, timeout=5.0)


FORM = {"grant_type": "client_credentials", "client_secret": FORM_SECRET}


class Refusing(httpx.AsyncBaseTransport):
    """A chain whose rate limiter (or breaker, or bulkhead) refuses before anything is sent."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.error


class BrokenBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"access_token": "'
        raise httpx.RemoteProtocolError("peer closed connection mid-body")


def _raise(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        # a transport error that quotes what it was sending, form and headers
        raise error(f"failed {request.content!r} {request.headers!r}", request=request)

    return handler


def _cut(request: httpx.Request) -> httpx.Response:
    """Headers arrive, then the connection drops part-way through the body."""
    return httpx.Response(200, stream=BrokenBody())


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_request_that_never_left_is_request_not_sent(
    clock: SteppingClock, error: type[httpx.TransportError]
) -> None:
    endpoint = endpoint_over(_raise(error), clock)
    with pytest.raises(
        RequestNotSent, match=f"POST https://vendor.test/oauth/token: {error.__name__}"
    ):
        await endpoint.send("POST", "https://vendor.test/oauth/token", form=FORM)


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(_raise(httpx.ReadTimeout), id="read-timeout"),
        pytest.param(_raise(httpx.ReadError), id="reset"),
        pytest.param(_cut, id="answer-cut"),
    ],
)
async def test_a_request_whose_answer_was_lost_may_have_acted(
    clock: SteppingClock, handler: Handler
) -> None:
    with pytest.raises(VendorUnavailable) as raised:
        await endpoint_over(handler, clock).send(
            "POST", "https://vendor.test/oauth/token", form=FORM
        )
    # the vendor may have acted on it: the vault must not take it for "never sent"
    assert not isinstance(raised.value, RequestNotSent)
    assert "POST https://vendor.test/oauth/token" in str(raised.value)


@pytest.mark.parametrize(
    "refusal",
    [VendorRateLimited("vendor 'demo': no rate slot before the deadline", 4.0),
     VendorUnavailable("vendor 'demo': refused below", 2.0)],
)  # fmt: skip
async def test_a_refusal_from_the_chain_is_request_not_sent(
    clock: SteppingClock, refusal: VendorUnavailable
) -> None:
    endpoint = GatewayTokenEndpoint(Refusing(refusal), clock, timeout=5.0)
    with pytest.raises(RequestNotSent, match=r"no rate slot|refused below") as raised:
        await endpoint.send("POST", "https://vendor.test/oauth/token", form=FORM)
    assert raised.value.retry_after == refusal.retry_after


async def test_the_reply_carries_status_headers_cookies_and_retry_after(
    clock: SteppingClock,
) -> None:
    later = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    answers = iter([
        httpx.Response(200, json={"ok": 1}, headers=[
            ("Set-Cookie", f"sid={SESSION}; Path=/; HttpOnly"),
            ("Set-Cookie", "lang=en"),
            ("Set-Cookie", "broken=\"unterminated"),  # unreadable: left out, not sent
            ("X-Request-Id", "r-1"),
        ]),
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": later}),
        httpx.Response(429, headers={"Retry-After": "soon"}),
    ])  # fmt: skip
    endpoint = endpoint_over(lambda r: next(answers), clock)
    ok, busy, dated, vague = [
        await endpoint.send("POST", "https://vendor.test/login", form=FORM) for _ in range(4)
    ]
    assert (ok.status, orjson.loads(ok.body), ok.headers["x-request-id"]) == (200, {"ok": 1}, "r-1")
    assert ok.cookies == {"sid": SESSION, "lang": "en"}
    assert ok.retry_after is None
    assert (busy.status, busy.retry_after) == (503, 7.0)
    assert dated.retry_after == pytest.approx(90.0)
    assert vague.retry_after is None


async def test_token_requests_are_sent_once_with_the_policy_timeout(clock: SteppingClock) -> None:
    seen: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503)

    policy = VendorPolicy(vendor="demo", read=2.5, max_attempts=5)
    async with Gateway(BASE, policy, clock=clock, transport=httpx.MockTransport(vendor)) as gw:
        reply = await gw.token_endpoint.send("POST", "https://vendor.test/oauth/token", form=FORM,
                                             headers={"Accept": "application/json"})  # fmt: skip
    assert reply.status == 503
    assert len(seen) == 1  # never retried: a refresh token must not be sent twice
    assert seen[0].extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5,
                                             "pool": 2.5}  # fmt: skip
    assert parse_qs(seen[0].content.decode()) == {k: [v] for k, v in FORM.items()}


@pytest.mark.parametrize(
    "url",
    ["/oauth/token", "ftp://vendor.test/oauth/token", "file:///etc/passwd",
     f"ftp://user:{FORM_SECRET}@vendor.test/t?key={FORM_SECRET}", "https:///no-host"],
)  # fmt: skip
async def test_a_url_that_is_not_absolute_http_is_a_configuration_error(
    clock: SteppingClock, url: str
) -> None:
    sent: list[httpx.Request] = []
    endpoint = endpoint_over(sent.append, clock)
    with pytest.raises(ConfigurationError, match="needs an absolute http") as raised:
        await endpoint.send("POST", url, form=FORM)
    assert sent == []
    assert leaks(*everything_about(raised.value)) == []


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param(lambda: httpx.MockTransport(_raise(httpx.ConnectError)), id="connect"),
        pytest.param(lambda: httpx.MockTransport(_raise(httpx.ReadTimeout)), id="read"),
        pytest.param(lambda: httpx.MockTransport(_raise(httpx.WriteError)), id="write"),
        pytest.param(lambda: httpx.MockTransport(_cut), id="answer-cut"),
        pytest.param(lambda: Refusing(VendorRateLimited("no slot", 1.0)), id="rate-limit"),
    ],
)  # fmt: skip
async def test_no_secret_from_the_request_in_any_error(
    clock: SteppingClock, chain: Callable[[], httpx.AsyncBaseTransport]
) -> None:
    endpoint = GatewayTokenEndpoint(chain(), clock, timeout=5.0)
    with pytest.raises(VendorError) as raised:
        await endpoint.send("POST", "https://vendor.test/oauth/token", form=FORM,
                            headers={"Authorization": f"Basic {FORM_SECRET}"})  # fmt: skip
    assert leaks(*everything_about(raised.value)) == []
    # raised outside the handler: no chained httpx error keeps the request (and its secrets) alive
    assert raised.value.__context__ is None
    assert raised.value.__cause__ is None


async def test_the_reply_repr_holds_no_secret(clock: SteppingClock) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        echo = request.content.decode()
        return httpx.Response(200, text=echo, headers={"Set-Cookie": f"sid={SESSION}"})

    reply = await endpoint_over(vendor, clock).send("POST", "https://vendor.test/t", form=FORM)
    assert FORM_SECRET in reply.body.decode()  # the vendor echoed it ...
    assert leaks(repr(reply), str(reply)) == []  # ... and the repr does not show it


# ------------------------------------------------------------------------------ reprs


async def test_authenticators_and_the_gateway_print_no_secret(clock: SteppingClock) -> None:
    endpoint = TokenEndpoint()
    token_endpoint = endpoint_over(endpoint, clock)
    bearer = BearerToken(await client_credentials(clock), token_endpoint)
    await bearer.apply(httpx.Request("GET", f"{BASE}/x"))
    _, key = await stored(clock, "api_key", {"api_key": API_KEY})
    api_key = ApiKey(key)
    await api_key.apply(httpx.Request("GET", f"{BASE}/x"))
    _, login = await stored(clock, "digest", {"username": USER, "password": PASSWORD})
    password = Password(login)
    await password.flow()
    cookie = SessionCookie(await session(clock), endpoint_over(SessionVendor(), clock))
    await cookie.apply(httpx.Request("GET", f"{BASE}/x"))
    for authenticator in (bearer, api_key, password, cookie):
        assert leaks(repr(authenticator), str(authenticator), repr(vars(authenticator))) == []
    assert repr(bearer) == "BearerToken(credential='mls')"
    gw = gateway(clock, endpoint, await client_credentials(clock))
    async with gw:
        await gw.get("Property")
    assert leaks(repr(gw)) == []


async def test_each_scheme_gets_its_authenticator(clock: SteppingClock) -> None:
    endpoint = endpoint_over(print, clock)
    kinds = {
        "oauth2_client_credentials": BearerToken, "oauth2_authorization_code": BearerToken,
        "api_key": ApiKey, "basic": Password, "digest": Password, "session": SessionCookie,
    }  # fmt: skip
    tokens = VaultKit(clock).tokens
    for scheme, kind in kinds.items():
        meta = {"header": "X-Api-Key", "login_url": LOGIN_URL}
        assert (
            type(authenticator_for(VaultAuth(tokens, TENANT, "c", scheme, meta), endpoint)) is kind
        )
    with pytest.raises(ValueError, match="'kerberos'"):
        authenticator_for(VaultAuth(tokens, TENANT, "c", "kerberos"), endpoint)


async def test_a_token_request_that_would_wait_past_its_deadline_is_not_sent() -> None:
    """Token requests pay the vendor's rate limit, but never wait beyond the policy's total: the
    slot past it refuses the request (RequestNotSent), so a refresh marker is not left set behind
    a long queue."""
    from cadastre.gateway import GatewayControls, GatewaySettings
    from cadastre.testing import FakeClock

    clock = FakeClock(autojump=True)
    sent: list[str] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer"})

    settings = GatewaySettings.model_validate({"rate_limit": {"requests": 10, "per": 6000}})
    controls = GatewayControls(clock)
    guards = controls.guards(tenant=TENANT, connection="c", vendor="v", settings=settings,
                             credential="c")  # fmt: skip
    policy = VendorPolicy(vendor="v", max_attempts=1, total=30.0)
    async with Gateway(BASE, policy, clock=clock, guards=guards,
                       transport=httpx.MockTransport(vendor)) as gw:  # fmt: skip
        answers: list[float | None] = []
        for _ in range(3):
            try:
                answers.append((await gw.token_endpoint.send("POST", f"{BASE}/token")).status)
            except RequestNotSent as refused:
                answers.append(refused.retry_after)
    await controls.aclose()
    assert len(sent) <= 1  # the bucket's first slot, if its burst allows one
    assert all(isinstance(a, float) and a > 30 for a in answers[len(sent) :])
