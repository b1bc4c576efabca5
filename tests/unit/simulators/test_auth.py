"""OAuth2 client credentials and bearer tokens, with expiry on a fake clock."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cadastre.simulators import RateLimit, ResoSimulator
from cadastre.testing import FakeClock

from .conftest import client_for

GOOD = {"grant_type": "client_credentials", "client_id": "demo-client",
        "client_secret": "demo-secret"}  # fmt: skip


@pytest.fixture
def short_lived(clock: FakeClock) -> ResoSimulator:
    return ResoSimulator(records=5, clock=clock, rate_limit=None, token_ttl=600)


async def test_credentials_in_the_body_give_a_bearer_token(short_lived: ResoSimulator) -> None:
    async with client_for(short_lived) as client:
        response = await client.post("/oauth/token", data={**GOOD, "scope": "odata"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "odata"
    assert len(body["access_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    assert short_lived.stats.tokens_issued == 1


async def test_basic_auth_works_and_is_form_decoded(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, client_id="a b", client_secret="s:+/%")
    async with client_for(sim) as client:
        # RFC 6749 2.3.1: each part form-encoded, then joined with ':'
        raw = base64.b64encode(b"a+b:s%3A%2B%2F%25").decode()
        response = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {raw}"},
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        ({**GOOD, "client_secret": "wrong"}, None, 401, "invalid_client"),
        ({**GOOD, "client_id": "someone"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, ("demo-client", "nope"), 401, "invalid_client"),
        ({**GOOD, "grant_type": "password"}, None, 400, "unsupported_grant_type"),
        ({"client_id": "demo-client", "client_secret": "demo-secret"}, None, 400,
         "invalid_request"),
        (GOOD, ("demo-client", "demo-secret"), 400, "invalid_request"),  # two methods at once
    ],
)  # fmt: skip
async def test_token_errors_follow_rfc_6749(
    short_lived: ResoSimulator,
    data: dict[str, str],
    auth: Any,
    status: int,
    error: str,
) -> None:
    async with client_for(short_lived) as client:
        response = await client.post("/oauth/token", data=data, auth=auth)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert short_lived.stats.tokens_issued == 0
    assert "demo-secret" not in response.text


async def test_a_failed_basic_login_is_challenged(short_lived: ResoSimulator) -> None:
    async with client_for(short_lived) as client:
        response = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-client", "x")
        )
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_json_body_or_a_repeated_parameter_is_an_invalid_request(
    short_lived: ResoSimulator,
) -> None:
    async with client_for(short_lived) as client:
        as_json = await client.post("/oauth/token", json=GOOD)
        twice = await client.post(
            "/oauth/token",
            content="grant_type=client_credentials&grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        broken_basic = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic !!!"},
        )
    for response in (as_json, twice, broken_basic):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


async def test_tokens_expire_on_the_simulator_clock(
    short_lived: ResoSimulator, clock: FakeClock
) -> None:
    async with client_for(short_lived) as client:
        token = (await client.post("/oauth/token", data=GOOD)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        clock.advance(599.9)
        assert (await client.get("/odata/Property", headers=headers)).status_code == 200
        clock.advance(0.1)
        expired = await client.get("/odata/Property", headers=headers)
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert expired.json()["error"]["code"] == "Unauthorized"
        fresh = (await client.post("/oauth/token", data=GOOD)).json()["access_token"]
        again = await client.get("/odata/Property", headers={"Authorization": f"Bearer {fresh}"})
        assert again.status_code == 200
    assert short_lived.stats.tokens_issued == 2


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="odata"'),
        ("Basic abc", 'Bearer realm="odata"'),
        ("Bearer ", 'Bearer realm="odata"'),
        ("Bearer made-up", 'Bearer error="invalid_token"'),
    ],
)
async def test_data_needs_a_known_bearer_token(
    short_lived: ResoSimulator, authorization: str | None, challenge: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with client_for(short_lived) as client:
        for path in ("/odata/Property", "/odata/Property('ACT00000001')"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == challenge


def test_no_secret_in_reprs(short_lived: ResoSimulator) -> None:
    assert "demo-secret" not in repr(short_lived)
    assert "demo-secret" not in repr(short_lived._tokens)
    assert "demo-secret" not in repr(vars(short_lived).get("_tokens"))


async def test_the_token_endpoint_is_outside_the_rate_limit(clock: FakeClock) -> None:
    sim = ResoSimulator(records=1, clock=clock, rate_limit=RateLimit(1, per=60))
    async with client_for(sim) as client:
        for _ in range(5):
            assert (await client.post("/oauth/token", data=GOOD)).status_code == 200
    assert sim.stats.rate_limit_violations == 0
