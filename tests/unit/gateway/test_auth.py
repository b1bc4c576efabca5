"""OAuth2 client credentials through the gateway, on a fake clock and a mock vendor."""

from __future__ import annotations

import asyncio
import base64
import traceback
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from cadastre.errors import (
    ConfigurationError,
    CredentialError,
    VendorAuthRefused,
    VendorProtocolError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.gateway import Gateway, OAuth2ClientCredentials, VendorPolicy
from cadastre.gateway.auth import AuthTransport

from .conftest import CANARY_SECRET, CANARY_TOKEN, CLIENT_ID, FakeProvider, TokenEndpoint

POLICY = VendorPolicy(vendor="demo", max_attempts=3)


def oauth(endpoint: TokenEndpoint, clock, provider=None, **kw) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        "https://vendor.test/oauth/token", "env:DEMO_MLS", provider or FakeProvider(), clock,
        httpx.MockTransport(endpoint), **kw,
    )  # fmt: skip


def gateway(endpoint: TokenEndpoint, clock, **kw) -> Gateway:
    return Gateway.for_oauth2(
        "https://vendor.test/odata", POLICY, clock=clock, token_url="https://vendor.test/oauth/token",
        credential="env:DEMO_MLS", provider=kw.pop("provider", FakeProvider()),
        transport=httpx.MockTransport(endpoint), **kw,
    )  # fmt: skip


async def test_token_request_uses_basic_auth_and_the_grant(clock) -> None:
    endpoint = TokenEndpoint()
    async with gateway(endpoint, clock, scope="api") as gw:
        assert (await gw.get_json("Property")) == {"ok": True}
    (request,) = endpoint.token_requests
    assert request.method == "POST"
    assert parse_qs(endpoint.token_bodies[0].decode()) == {
        "grant_type": ["client_credentials"], "scope": ["api"]
    }  # fmt: skip
    scheme, encoded = request.headers["Authorization"].split(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", f"{CLIENT_ID}:{CANARY_SECRET}")
    assert endpoint.api_auth == [f"Bearer {CANARY_TOKEN}-1"]


async def test_basic_auth_form_encodes_each_part(clock) -> None:
    endpoint = TokenEndpoint()
    provider = FakeProvider(client_id="id:with space", client_secret="s&cret:=")
    async with gateway(endpoint, clock, provider=provider) as gw:
        await gw.get("Property")
    encoded = endpoint.token_requests[0].headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode() == "id%3Awith+space:s%26cret%3A%3D"


async def test_client_secret_post_puts_the_credential_in_the_body(clock) -> None:
    endpoint = TokenEndpoint()
    async with gateway(endpoint, clock, auth_method="client_secret_post") as gw:
        await gw.get("Property")
    assert "Authorization" not in endpoint.token_requests[0].headers
    form = parse_qs(endpoint.token_bodies[0].decode())
    assert form["client_id"] == [CLIENT_ID]
    assert form["client_secret"] == [CANARY_SECRET]


async def test_the_token_is_cached_until_expiry_minus_skew_then_refreshed(clock) -> None:
    endpoint = TokenEndpoint(expires_in=3600)
    provider = FakeProvider()
    async with gateway(endpoint, clock, provider=provider) as gw:
        await gw.get("Property")
        clock.advance(3569)
        await gw.get("Property")
        assert len(endpoint.token_requests) == 1
        clock.advance(2)  # 3571 s: within the 30 s skew of expiry
        await gw.get("Property")
    assert len(endpoint.token_requests) == 2
    assert endpoint.api_auth[-1] == f"Bearer {CANARY_TOKEN}-2"
    # the secret is looked up for each token request, not kept in between
    assert provider.resolved == 2


async def test_a_token_shorter_than_the_skew_is_used_for_half_its_life(clock) -> None:
    endpoint = TokenEndpoint(expires_in=20)
    async with gateway(endpoint, clock) as gw:
        await gw.get("Property")
        clock.advance(9.9)
        await gw.get("Property")
        clock.advance(0.2)
        await gw.get("Property")
    assert len(endpoint.token_requests) == 2


async def test_a_token_without_expires_in_is_kept_until_refused(clock) -> None:
    endpoint = TokenEndpoint(expires_in=None)
    async with gateway(endpoint, clock) as gw:
        await gw.get("Property")
        clock.advance(86_400 * 30)
        await gw.get("Property")
    assert len(endpoint.token_requests) == 1


async def test_50_concurrent_callers_with_an_empty_cache_make_one_token_request(clock) -> None:
    endpoint = TokenEndpoint()
    async with gateway(endpoint, clock) as gw:
        responses = await asyncio.gather(*(gw.get("Property") for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len(endpoint.token_requests) == 1
    assert len(endpoint.api_auth) == 50


async def test_50_concurrent_callers_share_one_failure_instead_of_storming(clock) -> None:
    endpoint = TokenEndpoint(answers=[httpx.Response(401, json={"error": "invalid_client"})])
    async with gateway(endpoint, clock) as gw:
        results = await asyncio.gather(
            *(gw.get("Property") for _ in range(50)), return_exceptions=True
        )
    assert all(isinstance(r, VendorAuthRefused) for r in results)
    assert len(endpoint.token_requests) == 1
    assert endpoint.api_auth == []


async def test_a_401_refreshes_the_token_and_resends_once(clock) -> None:
    endpoint = TokenEndpoint()
    async with gateway(endpoint, clock) as gw:
        await gw.get("Property")
        endpoint.issued += 1  # the vendor revokes the cached token before its expiry
        response = await gw.get("Property")
    assert response.status_code == 200
    assert len(endpoint.token_requests) == 2
    assert endpoint.api_auth == [f"Bearer {CANARY_TOKEN}-1", f"Bearer {CANARY_TOKEN}-1",
                                 f"Bearer {CANARY_TOKEN}-3"]  # fmt: skip
    assert clock.sleeps == [0.0]  # no backoff before the resend


async def test_a_post_refused_for_its_token_is_resent_once_too(clock) -> None:
    endpoint = TokenEndpoint(api=lambda r: httpx.Response(201))
    async with gateway(endpoint, clock) as gw:
        await gw.get("Property")
        endpoint.issued += 1
        response = await gw.request("POST", "Property", json={"a": 1})
    assert response.status_code == 201


async def test_a_second_401_is_vendor_auth_refused(clock) -> None:
    endpoint = TokenEndpoint(api=lambda r: httpx.Response(401))
    async with gateway(endpoint, clock) as gw:
        with pytest.raises(VendorAuthRefused, match=r"'demo': GET /odata/Property answered 401"):
            await gw.get("Property")
    assert len(endpoint.api_auth) == 2
    assert len(endpoint.token_requests) == 2


async def test_late_401s_for_a_stale_token_do_not_discard_its_successor(clock) -> None:
    endpoint = TokenEndpoint()
    delays = iter(range(1000))

    async def vendor(request: httpx.Request) -> httpx.Response:
        stale = request.headers.get("Authorization") != f"Bearer {endpoint.current()}"
        if request.url.path != "/oauth/token" and stale:
            # refusals arrive spread out, many after the new token has been fetched
            for _ in range(next(delays)):
                await asyncio.sleep(0)
        return await endpoint(request)

    async with Gateway.for_oauth2(
        "https://vendor.test/odata", POLICY, clock=clock, token_url="https://vendor.test/oauth/token",
        credential="env:DEMO_MLS", provider=FakeProvider(), transport=httpx.MockTransport(vendor),
    ) as gw:  # fmt: skip
        await gw.get("Property")
        endpoint.issued += 1
        responses = await asyncio.gather(*(gw.get("Property") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    # one refused token -> one new token, not one per refused caller
    assert len(endpoint.token_requests) == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"error": "invalid_client"}), VendorAuthRefused),
        (httpx.Response(400, json={"error": "unauthorized_client"}), VendorAuthRefused),
        (httpx.Response(401, json={"error": "invalid_client"}), VendorAuthRefused),
        (httpx.Response(401), VendorAuthRefused),
        (httpx.Response(403, text="no"), VendorAuthRefused),
        (httpx.Response(400, json={"error": "invalid_scope"}), VendorRejected),
        (httpx.Response(404), VendorRejected),
        (httpx.Response(429, headers={"Retry-After": "5"}), VendorRateLimited),
        (httpx.Response(500), VendorUnavailable),
        (httpx.Response(503), VendorUnavailable),
        (httpx.Response(200, text="<html>not json</html>"), VendorProtocolError),
        (httpx.Response(200, json={"token_type": "bearer"}), VendorProtocolError),
        (httpx.Response(200, json={"access_token": ""}), VendorProtocolError),
        (httpx.Response(200, json={"access_token": "x", "token_type": "mac"}), VendorProtocolError),
        (httpx.Response(200, json=["access_token"]), VendorProtocolError),
    ],
)
async def test_token_endpoint_answers(
    clock, answer: httpx.Response, error: type[Exception]
) -> None:
    authenticator = oauth(TokenEndpoint(answers=[answer]), clock)
    with pytest.raises(error) as raised:
        await authenticator.apply(httpx.Request("GET", "https://vendor.test/x"))
    assert type(raised.value) is error
    assert "token endpoint https://vendor.test/oauth/token" in str(raised.value)


async def test_token_endpoint_timeouts_are_vendor_unavailable(clock) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    authenticator = OAuth2ClientCredentials(
        "https://vendor.test/oauth/token", "env:DEMO_MLS", FakeProvider(), clock,
        httpx.MockTransport(hang), timeout=2.5,
    )  # fmt: skip
    with pytest.raises(VendorUnavailable, match="token request failed: ReadTimeout") as raised:
        await authenticator.apply(httpx.Request("GET", "https://vendor.test/x"))
    # raised outside the handler: no chained httpx error keeps the token request alive
    assert raised.value.__context__ is None
    assert raised.value.__cause__ is None


async def test_token_requests_carry_their_timeout(clock) -> None:
    seen: list[dict[str, float]] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"access_token": "t", "expires_in": 60})

    authenticator = OAuth2ClientCredentials(
        "https://vendor.test/oauth/token", "env:DEMO_MLS", FakeProvider(), clock,
        httpx.MockTransport(endpoint), timeout=2.5,
    )  # fmt: skip
    await authenticator.apply(httpx.Request("GET", "https://vendor.test/x"))
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


async def test_a_token_endpoint_outage_is_retried_by_the_gateway(clock) -> None:
    endpoint = TokenEndpoint(answers=[httpx.Response(503), None])
    async with gateway(endpoint, clock) as gw:
        assert (await gw.get("Property")).status_code == 200
    assert len(endpoint.token_requests) == 2


async def test_an_unknown_credential_or_missing_field_is_a_credential_error(clock) -> None:
    endpoint = TokenEndpoint()
    authenticator = OAuth2ClientCredentials(
        "https://vendor.test/oauth/token", "env:NOPE", FakeProvider(), clock,
        httpx.MockTransport(endpoint),
    )  # fmt: skip
    with pytest.raises(CredentialError, match="'env:NOPE'"):
        await authenticator.apply(httpx.Request("GET", "https://vendor.test/x"))
    lacking = oauth(endpoint, clock, provider=FakeProvider(client_id="only-id"))
    with pytest.raises(CredentialError, match="no field 'client_secret'"):
        await lacking.apply(httpx.Request("GET", "https://vendor.test/x"))
    assert endpoint.token_requests == []


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"token_url": "/oauth/token"}, "absolute http"),
        ({"token_url": "ftp://vendor.test/t"}, "absolute http"),
        ({"auth_method": "private_key_jwt"}, "unknown auth_method"),
        ({"skew": -1.0}, "skew must be"),
        ({"timeout": 0.0}, "timeout > 0"),
    ],
)
def test_bad_settings_are_refused(clock, kwargs: dict[str, object], problem: str) -> None:
    values: dict[str, object] = {"token_url": "https://vendor.test/oauth/token", **kwargs}
    url = values.pop("token_url")
    with pytest.raises(ConfigurationError, match=problem):
        OAuth2ClientCredentials(
            url, "env:DEMO_MLS", FakeProvider(), clock,  # type: ignore[arg-type]
            httpx.MockTransport(TokenEndpoint()), **values,  # type: ignore[arg-type]
        )  # fmt: skip


async def test_the_credential_is_on_the_request_only_while_it_is_sent(clock) -> None:
    endpoint = TokenEndpoint()
    transport = AuthTransport(httpx.MockTransport(endpoint), oauth(endpoint, clock))
    request = httpx.Request("GET", "https://vendor.test/x", headers={"X-Keep": "1"})
    response = await transport.handle_async_request(request)
    assert response.status_code == 200
    assert endpoint.api_auth == [f"Bearer {CANARY_TOKEN}-1"]
    assert "Authorization" not in request.headers
    assert request.headers["X-Keep"] == "1"


# ------------------------------------------------------------------------ secrets never leak


def leaks(*texts: str) -> list[str]:
    return [t for t in texts if CANARY_SECRET in t or CANARY_TOKEN in t]


def everything_about(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


HOSTILE = [
    # a token endpoint that quotes what it was sent, in every place it could
    httpx.Response(400, json={"error": "invalid_client", "error_description": CANARY_SECRET}),
    httpx.Response(400, json={"error": CANARY_SECRET}),
    httpx.Response(500, text=f"upstream said {CANARY_SECRET}"),
    httpx.Response(200, text=f'{{"access_token": "{CANARY_TOKEN}", broken'),
    httpx.Response(200, json={"access_token": CANARY_TOKEN, "token_type": CANARY_TOKEN}),
    httpx.Response(429, headers={"Retry-After": CANARY_SECRET}),
]


@pytest.mark.parametrize("answer", HOSTILE)
async def test_no_secret_in_token_errors_or_logs(clock, caplog, answer: httpx.Response) -> None:
    caplog.set_level("DEBUG")
    endpoint = TokenEndpoint(answers=[answer])
    gw = gateway(endpoint, clock)
    async with gw:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - each answer raises its own kind
            await gw.get("Property")
    assert leaks(*everything_about(raised.value), caplog.text, repr(gw)) == []


async def test_no_token_in_errors_after_the_api_refuses_it(clock, caplog) -> None:
    caplog.set_level("DEBUG")
    endpoint = TokenEndpoint(api=lambda r: httpx.Response(401, text=r.headers["Authorization"]))
    async with gateway(endpoint, clock) as gw:
        with pytest.raises(VendorAuthRefused) as raised:
            await gw.get("Property")
    assert leaks(*everything_about(raised.value), caplog.text) == []


async def test_reprs_hold_no_secret(clock) -> None:
    endpoint = TokenEndpoint()
    authenticator = oauth(endpoint, clock)
    await authenticator.apply(httpx.Request("GET", "https://vendor.test/x"))
    assert leaks(repr(authenticator), str(authenticator), repr(vars(authenticator))) == []
    assert "env:DEMO_MLS" in repr(authenticator)


async def test_the_token_response_is_parsed_from_json_numbers_and_strings(clock) -> None:
    def endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=orjson.dumps({"access_token": "t", "expires_in": "90"}))

    authenticator = OAuth2ClientCredentials(
        "https://vendor.test/oauth/token", "env:DEMO_MLS", FakeProvider(), clock,
        httpx.MockTransport(endpoint),
    )  # fmt: skip
    request = httpx.Request("GET", "https://vendor.test/x")
    await authenticator.apply(request)
    assert request.headers["Authorization"] == "Bearer t"
