"""The authorization-server simulator: OAuth2 code + PKCE, client credentials, refresh rotation
(single_use, sometimes, none), admin controls, faults on the token endpoint, API keys with an
overlap, RETS Basic and Digest through httpx's own auth classes, and session cookies, all on a
fake clock."""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cadastre.simulators import FaultProfile, InjectedLostResponse
from cadastre.simulators.__main__ import build_parser, build_simulator
from cadastre.simulators.auth import AuthSettings, AuthSimulator, s256
from cadastre.testing import FakeClock

BASE = "http://auth.test"
REDIRECT = "http://127.0.0.1/callback"
CLIENT = ("demo-client", "demo-secret")
USER = ("demo-user", "demo-password")


def client_for(sim: AuthSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=BASE)


@pytest.fixture
def sim(clock: FakeClock) -> AuthSimulator:
    return AuthSimulator(clock=clock, api_keys=["key-one"])


@pytest.fixture
async def client(sim: AuthSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim) as client:
        yield client


def verifier() -> str:
    return secrets.token_urlsafe(48)


async def authorize(client: httpx.AsyncClient, code_verifier: str, **extra: str) -> dict[str, Any]:
    params = {"response_type": "code", "client_id": "demo-client", "redirect_uri": REDIRECT,
              "state": "st-1", "code_challenge": s256(code_verifier),
              "code_challenge_method": "S256", "scope": "accounting.read offline_access",
              **extra}  # fmt: skip
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def exchange(
    client: httpx.AsyncClient, code: str, code_verifier: str, **extra: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": code_verifier, **extra}  # fmt: skip
    return await client.post("/oauth/token", data=data, auth=CLIENT)


async def refresh(client: httpx.AsyncClient, token: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return await client.post("/oauth/token", data=data, auth=CLIENT)


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/api/me", headers={"Authorization": f"Bearer {access_token}"})


# ----------------------------------------------------------------- authorization code + PKCE


async def test_code_with_pkce_gives_tokens_that_open_the_api(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    pkce = verifier()
    answer = await authorize(client, pkce)
    assert answer["state"] == "st-1"
    response = await exchange(client, answer["code"], pkce)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 1800)
    assert body["scope"] == "accounting.read offline_access"
    assert response.headers["cache-control"] == "no-store"
    api = await me(client, body["access_token"])
    assert api.status_code == 200
    assert api.json() == {"client_id": "demo-client", "scope": body["scope"], "ok": True}
    stats = sim.stats
    assert (stats.codes_issued, stats.tokens_issued, stats.token_endpoint_calls) == (1, 1, 1)
    assert (stats.api_calls, stats.api_refused) == (1, 0)


async def test_client_credentials_in_the_form_and_an_omitted_redirect_uri(
    client: httpx.AsyncClient,
) -> None:
    pkce = verifier()
    params = {"response_type": "code", "client_id": "demo-client",
              "code_challenge": s256(pkce), "code_challenge_method": "S256"}  # fmt: skip
    location = (await client.get("/oauth/authorize", params=params)).headers["location"]
    assert "state=" not in location  # none was sent
    code = parse_qs(urlsplit(location).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": pkce,
            "client_id": "demo-client", "client_secret": "demo-secret"}  # fmt: skip
    response = await client.post("/oauth/token", data=data)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == ""


async def test_a_wrong_verifier_is_refused_and_spends_the_code(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    pkce = verifier()
    code = (await authorize(client, pkce))["code"]
    wrong = await exchange(client, code, verifier())
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    again = await exchange(client, code, pkce)
    assert again.json()["error"] == "invalid_grant"
    assert sim.stats.invalid_grants == {"authorization_code": 2}
    assert sim.stats.families_revoked == 0
    missing = await exchange(client, (await authorize(client, pkce))["code"], "")
    assert missing.json()["error"] == "invalid_grant"


async def test_a_code_used_twice_is_refused_and_revokes_its_grant(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    pkce = verifier()
    code = (await authorize(client, pkce))["code"]
    tokens = (await exchange(client, code, pkce)).json()
    again = await exchange(client, code, pkce)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert (sim.stats.code_reuse, sim.stats.families_revoked) == (1, 1)
    assert (await me(client, tokens["access_token"])).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_codes_expire_after_sixty_seconds(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    pkce = verifier()
    early, late = (await authorize(client, pkce))["code"], (await authorize(client, pkce))["code"]
    clock.advance(59.9)
    assert (await exchange(client, early, pkce)).status_code == 200
    clock.advance(0.1)
    expired = await exchange(client, late, pkce)
    assert expired.json() == {"error": "invalid_grant", "error_description": "the code has expired"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_authorization_problems_are_redirected_with_the_state(
    client: httpx.AsyncClient, change: dict[str, str], error: str
) -> None:
    answer = await authorize(client, verifier(), **change)
    assert (answer["error"], answer["state"]) == (error, "st-1")
    assert "code" not in answer


async def test_no_code_challenge_is_refused(client: httpx.AsyncClient) -> None:
    params = {"response_type": "code", "client_id": "demo-client", "redirect_uri": REDIRECT}
    location = (await client.get("/oauth/authorize", params=params)).headers["location"]
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "demo-client", "redirect_uri": "http://evil.test/callback"},
        {"client_id": "demo-client", "redirect_uri": REDIRECT + "/"},
        {"client_id": "nobody", "redirect_uri": REDIRECT},
        {"redirect_uri": REDIRECT},
    ],
)
async def test_a_bad_client_or_redirect_uri_gets_400_without_a_redirect(
    sim: AuthSimulator, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    pkce = verifier()
    query = {"response_type": "code", "code_challenge": s256(pkce),
             "code_challenge_method": "S256", **params}  # fmt: skip
    response = await client.get("/oauth/authorize", params=query)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] in ("invalid_request", "invalid_client")
    assert sim.stats.codes_issued == 0


async def test_the_exchange_repeats_the_redirect_uri_and_uses_the_right_client(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.register_client("other", "other-secret", [REDIRECT])
    pkce = verifier()
    code = (await authorize(client, pkce))["code"]
    stolen = await client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "code_verifier": pkce},
        auth=("other", "other-secret"),
    )  # fmt: skip
    assert stolen.json()["error"] == "invalid_grant"
    moved = await exchange(client, code, pkce, redirect_uri="http://127.0.0.1/elsewhere")
    assert moved.json()["error"] == "invalid_grant"


async def test_the_user_can_deny_consent_and_a_registered_query_is_kept(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.register_client("q", "q-secret", ["https://app.test/cb?tenant=7"])
    params = {"response_type": "code", "client_id": "q", "state": "s",
              "code_challenge": s256(verifier()), "code_challenge_method": "S256"}  # fmt: skip
    allowed = (await client.get("/oauth/authorize", params=params)).headers["location"]
    assert parse_qs(urlsplit(allowed).query)["tenant"] == ["7"]
    sim.configure(consent="deny")
    denied = (await client.get("/oauth/authorize", params=params)).headers["location"]
    assert parse_qs(urlsplit(denied).query)["error"] == ["access_denied"]


# ------------------------------------------------------------------------ client credentials


async def test_client_credentials_give_an_access_token_without_refresh(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    data = {"grant_type": "client_credentials", "scope": "read"}
    response = await client.post("/oauth/token", data=data, auth=CLIENT)
    body = response.json()
    assert "refresh_token" not in body
    assert (body["scope"], body["token_type"]) == ("read", "Bearer")
    assert (await me(client, body["access_token"])).status_code == 200
    bad = await client.post("/oauth/token", data=data, auth=("demo-client", "nope"))
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    assert bad.headers["www-authenticate"].startswith("Basic")
    assert "demo-secret" not in bad.text
    unknown = await client.post(
        "/oauth/token", data={**data, "grant_type": "password"}, auth=CLIENT
    )
    assert unknown.json()["error"] == "unsupported_grant_type"
    twice = await client.post(
        "/oauth/token", content="grant_type=client_credentials&scope=a&scope=b", auth=CLIENT,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    as_json = await client.post("/oauth/token", json=data, auth=CLIENT)
    assert twice.json()["error"] == as_json.json()["error"] == "invalid_request"
    assert sim.stats.token_endpoint_calls == 5
    assert sim.stats.tokens_issued == 1


# --------------------------------------------------------------------------------- refresh


async def test_single_use_rotation_gives_a_new_refresh_token_each_time(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    first = sim.grant("demo-client", "a b")
    second = (await refresh(client, first["refresh_token"])).json()
    third = (await refresh(client, second["refresh_token"])).json()
    tokens = {first["refresh_token"], second["refresh_token"], third["refresh_token"]}
    assert len(tokens) == 3
    assert third["scope"] == "a b"
    assert (sim.stats.refreshes, sim.stats.refresh_token_reuse) == (2, 0)
    assert (await me(client, first["access_token"])).status_code == 200  # still in its ttl


async def test_reuse_revokes_the_whole_family_once(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    family = sim.grant("demo-client", "a")
    bystander = sim.grant("demo-client", "a")
    newer = (await refresh(client, family["refresh_token"])).json()
    newest = (await refresh(client, newer["refresh_token"])).json()
    reused = await refresh(client, family["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert (sim.stats.refresh_token_reuse, sim.stats.families_revoked) == (1, 1)
    # The newest token of the family dies too, and every access token descended from it.
    after = await refresh(client, newest["refresh_token"])
    assert after.json()["error"] == "invalid_grant"
    for tokens in (family, newer, newest):
        refused = await me(client, tokens["access_token"])
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert (sim.stats.refresh_token_reuse, sim.stats.families_revoked) == (1, 1)
    assert sim.stats.invalid_grants == {"refresh_token": 2}
    assert (await refresh(client, bystander["refresh_token"])).status_code == 200
    stats = (await client.get("/admin/stats")).json()
    assert stats["refresh_token_reuse"] == stats["families_revoked"] == 1


async def test_sometimes_rotation_keeps_the_old_token_until_the_new_one_is_used(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.configure(rotation="sometimes", rotate_every=2)
    old = sim.grant("demo-client")["refresh_token"]
    assert (await refresh(client, old)).json()["refresh_token"] == old  # refresh 1: no rotation
    new = (await refresh(client, old)).json()["refresh_token"]  # refresh 2: rotation
    assert new != old
    assert (await refresh(client, old)).json()["refresh_token"] == new  # old still good
    assert (await refresh(client, new)).json()["refresh_token"] != new  # refresh 4 rotates
    dead = await refresh(client, old)  # the new one was used: the old one is gone
    assert dead.json()["error"] == "invalid_grant"
    assert (sim.stats.refresh_token_reuse, sim.stats.families_revoked) == (0, 0)
    assert (await refresh(client, new)).status_code == 200  # nothing revoked


async def test_no_rotation_keeps_one_refresh_token(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.configure(rotation="none")
    token = sim.grant("demo-client")["refresh_token"]
    answers = [(await refresh(client, token)).json() for _ in range(4)]
    assert {answer["refresh_token"] for answer in answers} == {token}
    assert len({answer["access_token"] for answer in answers}) == 4
    assert sim.stats.refreshes == 4


async def test_access_tokens_expire_on_the_simulator_clock(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(token_ttl=600)
    tokens = sim.grant("demo-client")
    assert tokens["expires_in"] == 600
    clock.advance(599.9)
    assert (await me(client, tokens["access_token"])).status_code == 200
    clock.advance(0.1)
    expired = await me(client, tokens["access_token"])
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    fresh = (await refresh(client, tokens["refresh_token"])).json()
    assert (await me(client, fresh["access_token"])).status_code == 200
    missing = await client.get("/api/me")
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    assert (await me(client, "made-up")).status_code == 401
    assert (sim.stats.api_calls, sim.stats.api_refused) == (5, 3)


async def test_refresh_tokens_can_expire_and_belong_to_their_client(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(refresh_token_ttl=100)
    sim.register_client("other", "other-secret")
    token = sim.grant("demo-client", "a b")["refresh_token"]
    foreign = await client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token},
        auth=("other", "other-secret"),
    )  # fmt: skip
    assert foreign.json()["error"] == "invalid_grant"
    wider = await refresh(client, token, scope="a b c")
    assert wider.json()["error"] == "invalid_scope"
    narrower = (await refresh(client, token, scope="a")).json()
    assert narrower["scope"] == "a"
    clock.advance(100)
    expired = await refresh(client, narrower["refresh_token"])
    assert expired.json()["error_description"] == "the refresh token has expired"


async def test_token_revocation_ends_a_grant(sim: AuthSimulator, client: httpx.AsyncClient) -> None:
    tokens = sim.grant("demo-client")
    data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    response = await client.post("/oauth/revoke", data=data, auth=CLIENT)
    assert response.status_code == 200
    assert (await me(client, tokens["access_token"])).status_code == 401
    unknown = await client.post("/oauth/revoke", data={"token": "nothing"}, auth=CLIENT)
    assert unknown.status_code == 200
    assert sim.stats.token_revocations == 2


# ----------------------------------------------------------------------------------- admin


async def test_admin_registers_clients_and_lists_them_without_secrets(
    client: httpx.AsyncClient,
) -> None:
    body = {"client_id": "xero-app", "client_secret": "s3cret-value",
            "redirect_uris": ["https://hub.test/oauth/callback"]}  # fmt: skip
    created = await client.post("/admin/oauth/clients", json=body)
    assert created.status_code == 201
    assert created.json() == {"client_id": "xero-app",
                              "redirect_uris": ["https://hub.test/oauth/callback"]}  # fmt: skip
    listed = await client.get("/admin/oauth/clients")
    assert "s3cret-value" not in listed.text
    assert [c["client_id"] for c in listed.json()["clients"]] == ["demo-client", "xero-app"]
    for bad in ({"client_id": "x"}, {**body, "redirect_uris": ["/relative"]}, {**body, "x": 1}):
        refused = await client.post("/admin/oauth/clients", json=bad)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")


async def test_admin_settings_change_rotation_and_ttl(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    current = (await client.get("/admin/settings")).json()
    assert current["rotation"] == "single_use"
    assert current["token_ttl"] == 1800.0
    changed = await client.post("/admin/settings", json={"rotation": "none", "token_ttl": 60})
    assert changed.json()["rotation"] == "none"
    assert sim.settings.token_ttl == 60.0
    assert sim.grant("demo-client")["expires_in"] == 60
    for bad in ({"rotation": "often"}, {"token_ttl": 0}, {"ttl": 1}, {"rotate_every": 1.5},
                {"http_auth": ["ntlm"]}, {"refresh_token_ttl": "soon"}):  # fmt: skip
        refused = await client.post("/admin/settings", json=bad)
        assert refused.status_code == 400, bad
    assert sim.settings.rotation == "none"
    with pytest.raises(ValueError, match="rotation"):
        AuthSettings(rotation="often")  # type: ignore[arg-type]


async def test_admin_grant_mints_tokens_as_if_consented(client: httpx.AsyncClient) -> None:
    minted = await client.post("/admin/oauth/grant", json={"client_id": "demo-client",
                                                           "scope": "read write"})  # fmt: skip
    body = minted.json()
    assert {"refresh_token", "access_token", "expires_in"} <= set(body)
    assert (await me(client, body["access_token"])).json()["scope"] == "read write"
    assert (await refresh(client, body["refresh_token"])).status_code == 200
    unknown = await client.post("/admin/oauth/grant", json={"client_id": "nobody"})
    assert unknown.status_code == 400


async def test_revoke_all_disconnects_one_client(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.register_client("other", "other-secret")
    mine = [sim.grant("demo-client") for _ in range(2)]
    theirs = sim.grant("other")
    answer = await client.post("/admin/oauth/revoke-all", json={"client_id": "demo-client"})
    assert answer.json() == {"client_id": "demo-client", "revoked": 2}
    for tokens in mine:
        assert (await refresh(client, tokens["refresh_token"])).json()["error"] == "invalid_grant"
        assert (await me(client, tokens["access_token"])).status_code == 401
    assert sim.stats.families_revoked == 0  # the user did it, not the vendor's reuse detection
    other = await client.post(
        "/oauth/token", data={"grant_type": "refresh_token",
                              "refresh_token": theirs["refresh_token"]},
        auth=("other", "other-secret"),
    )  # fmt: skip
    assert other.status_code == 200
    reconnected = sim.grant("demo-client")  # a new consent works again
    assert (await refresh(client, reconnected["refresh_token"])).status_code == 200
    everyone = await client.post("/admin/oauth/revoke-all")
    assert everyone.json() == {"client_id": None, "revoked": 2}


@pytest.mark.parametrize(
    ("status", "error"), [(400, "invalid_grant"), (500, "server_error"),
                          (503, "temporarily_unavailable")],
)  # fmt: skip
async def test_refuse_refresh_answers_the_next_n_refreshes(
    sim: AuthSimulator, client: httpx.AsyncClient, status: int, error: str
) -> None:
    token = sim.grant("demo-client")["refresh_token"]
    answer = await client.post("/admin/oauth/refuse-refresh", json={"status": status, "count": 2})
    assert answer.json() == {"status": status, "error": error, "count": 2}
    for _ in range(2):
        refused = await refresh(client, token)
        assert (refused.status_code, refused.json()["error"]) == (status, error)
    assert (await refresh(client, token)).status_code == 200  # the token was left alone
    assert sim.stats.refreshes_refused == 2
    assert sim.stats.invalid_grants["refresh_token"] == (2 if status == 400 else 0)
    assert (await client.post("/admin/oauth/refuse-refresh", json={"status": 418, "count": 1})
            ).status_code == 400  # fmt: skip


async def test_a_lost_token_response_after_rotation_makes_the_retry_a_reuse(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    token = sim.grant("demo-client")["refresh_token"]
    sim.faults = FaultProfile(lost_response_rate=1.0, paths=("/oauth/token",))
    with pytest.raises(InjectedLostResponse):
        await refresh(client, token)
    assert sim.stats.refreshes == 1  # the vendor rotated; the client never heard
    sim.faults = FaultProfile()
    retry = await refresh(client, token)
    assert retry.json()["error"] == "invalid_grant"
    assert (sim.stats.refresh_token_reuse, sim.stats.families_revoked) == (1, 1)


async def test_an_injected_5xx_on_the_token_endpoint_rotates_nothing(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    token = sim.grant("demo-client")["refresh_token"]
    sim.faults = FaultProfile(error_rate=1.0, paths=("/oauth/token",))
    assert (await refresh(client, token)).status_code in (500, 502, 503)
    sim.faults = FaultProfile()
    assert (await refresh(client, token)).status_code == 200
    assert sim.stats.faults_injected == {"error": 1}


async def test_stats_name_every_counter_and_reset_clears_them(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    sim.grant("demo-client")
    await client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                      auth=CLIENT)  # fmt: skip
    stats = (await client.get("/admin/stats")).json()
    names = {"token_endpoint_calls", "refreshes", "refresh_token_reuse", "families_revoked",
             "invalid_grants", "refreshes_refused", "codes_issued", "code_reuse",
             "token_revocations", "api_calls", "api_refused", "api_key_calls", "api_key_refused",
             "api_key_rotations", "rets_logins", "rets_challenges", "rets_refused",
             "digest_stale", "session_logins", "session_login_failures", "session_calls",
             "session_refused", "requests", "tokens_issued"}  # fmt: skip
    assert names <= set(stats)
    assert stats["invalid_grants"] == {"refresh_token": 1}
    assert stats["token_endpoint_calls"] == 1
    cleared = (await client.post("/admin/reset-stats")).json()
    assert cleared["invalid_grants"] == {}
    assert cleared["token_endpoint_calls"] == cleared["requests"] == 0


# -------------------------------------------------------------------------------- API keys


async def test_api_keys_in_the_header_or_the_query(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/admin/api-keys", json={"key": "key-two"})).status_code == 201
    by_header = await client.get("/api/keyed", headers={"X-Api-Key": "key-two"})
    assert by_header.json() == {"ok": True, "key_valid_until": None}
    assert (await client.get("/api/keyed", params={"api_key": "key-one"})).status_code == 200
    assert (await client.get("/api/keyed", params={"api_key": "nope"})).status_code == 401
    assert (await client.get("/api/keyed")).status_code == 401
    assert (sim.stats.api_key_calls, sim.stats.api_key_refused) == (4, 2)


async def test_a_rotated_key_works_for_the_overlap_and_not_a_moment_longer(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rotated = await client.post("/keys/rotate", headers={"X-Api-Key": "key-one"})
    assert rotated.status_code == 200
    body = rotated.json()
    until = (clock.now() + timedelta(seconds=3600)).isoformat().replace("+00:00", "Z")
    assert body["previous_valid_until"] == until
    new = {"X-Api-Key": body["key"]}
    old = {"X-Api-Key": "key-one"}
    assert (await client.get("/api/keyed", headers=new)).status_code == 200
    again = await client.post("/keys/rotate", headers=old)
    assert (again.status_code, again.json()["error"]) == (409, "key_already_rotated")
    clock.advance(3599.9)
    in_overlap = await client.get("/api/keyed", headers=old)
    assert in_overlap.json() == {"ok": True, "key_valid_until": until}
    clock.advance(0.1)
    expired = await client.get("/api/keyed", headers=old)
    assert (expired.status_code, expired.json()["error"]) == (401, "invalid_key")
    assert (await client.get("/api/keyed", headers=new)).status_code == 200
    assert (await client.post("/keys/rotate", headers=old)).status_code == 401
    assert (await client.post("/keys/rotate", params={"api_key": body["key"]})).status_code == 401
    assert (sim.stats.api_key_rotations, sim.stats.api_key_refused) == (1, 3)


async def test_the_overlap_is_configurable_down_to_nothing(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(key_overlap=10)
    first = (await client.post("/keys/rotate", headers={"X-Api-Key": "key-one"})).json()["key"]
    clock.advance(9.999)
    assert (await client.get("/api/keyed", headers={"X-Api-Key": "key-one"})).status_code == 200
    sim.configure(key_overlap=0)
    await client.post("/keys/rotate", headers={"X-Api-Key": first})
    assert (await client.get("/api/keyed", headers={"X-Api-Key": first})).status_code == 401


# ------------------------------------------------------------------------- Basic and Digest


async def test_httpx_basic_auth_logs_in(sim: AuthSimulator, client: httpx.AsyncClient) -> None:
    response = await client.get("/rets/login", auth=httpx.BasicAuth(*USER))
    assert response.status_code == 200
    assert 'ReplyCode="0"' in response.text
    assert "MemberName=demo-user" in response.text
    wrong = await client.get("/rets/login", auth=httpx.BasicAuth("demo-user", "nope"))
    assert wrong.status_code == 401
    assert sim.stats.rets_logins == {"basic": 1}
    assert sim.stats.rets_refused == 1


async def test_the_challenge_offers_sha256_md5_and_basic(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    response = await client.get("/rets/login")
    assert response.status_code == 401
    challenges = response.headers.get_list("www-authenticate")
    assert [c.split(",")[0] for c in challenges] == [
        'Digest realm="rets@sim"', 'Digest realm="rets@sim"', 'Basic realm="rets@sim"',
    ]  # fmt: skip
    assert "algorithm=SHA-256" in challenges[0]
    assert "algorithm=MD5" in challenges[1]
    assert all('qop="auth"' in c for c in challenges[:2])
    assert "stale" not in challenges[0]
    assert sim.stats.rets_challenges == 1


@pytest.mark.parametrize("algorithms", [["SHA-256", "MD5"], ["MD5"], ["SHA-256"]])
async def test_httpx_digest_auth_logs_in(
    sim: AuthSimulator, client: httpx.AsyncClient, algorithms: list[str]
) -> None:
    sim.configure(digest_algorithms=tuple(algorithms))
    auth = httpx.DigestAuth(*USER)
    first = await client.get("/rets/login", auth=auth)
    assert first.status_code == 200, first.text
    # The next request answers the same nonce with nc=2 at once, without a new challenge.
    assert (await client.get("/rets/login", params={"x": "1"}, auth=auth)).status_code == 200
    assert sim.stats.rets_logins == {f"digest:{algorithms[0]}": 2}
    assert sim.stats.rets_challenges == 1
    wrong = await client.get("/rets/login", auth=httpx.DigestAuth("demo-user", "nope"))
    assert wrong.status_code == 401
    assert sim.stats.rets_refused == 1


async def test_a_stale_nonce_is_answered_stale_and_httpx_retries(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(nonce_ttl=300)
    auth = httpx.DigestAuth(*USER)
    assert (await client.get("/rets/login", auth=auth)).status_code == 200
    clock.advance(299.9)
    assert (await client.get("/rets/login", auth=auth)).status_code == 200
    clock.advance(0.1)
    assert (await client.get("/rets/login", auth=auth)).status_code == 200  # after a stale 401
    assert sim.stats.digest_stale == 1
    assert sim.stats.rets_logins == {"digest:SHA-256": 3}
    assert sim.stats.rets_refused == 0


async def test_the_stale_challenge_and_a_replayed_nonce_count(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    challenge = (await client.get("/rets/login")).headers.get_list("www-authenticate")[1]
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    header = digest_header(fields, "MD5", "00000001")
    assert (await client.get("/rets/login", headers={"Authorization": header})).status_code == 200
    replayed = await client.get("/rets/login", headers={"Authorization": header})
    assert replayed.status_code == 401
    assert "stale=true" in replayed.headers["www-authenticate"]
    clock.advance(300)
    later = digest_header(fields, "MD5", "00000002")
    stale = await client.get("/rets/login", headers={"Authorization": later})
    assert all("stale=true" in c for c in stale.headers.get_list("www-authenticate")[:2])
    assert sim.stats.digest_stale == 2
    wrong = digest_header(fields, "MD5", "00000003", password="nope")
    refused = await client.get("/rets/login", headers={"Authorization": wrong})
    assert "stale" not in refused.headers["www-authenticate"]


def digest_header(fields: dict[str, str], algorithm: str, nc: str, password: str = USER[1]) -> str:
    def h(text: str) -> str:
        return hashlib.new(algorithm.replace("-", "").lower(), text.encode()).hexdigest()

    ha1 = h(f"{USER[0]}:{fields['realm']}:{password}")
    ha2 = h("GET:/rets/login")
    response = h(f"{ha1}:{fields['nonce']}:{nc}:abc123:auth:{ha2}")
    return (f'Digest username="{USER[0]}", realm="{fields["realm"]}", nonce="{fields["nonce"]}", '
            f'uri="/rets/login", response="{response}", algorithm={algorithm}, qop=auth, '
            f'nc={nc}, cnonce="abc123", opaque="{fields["opaque"]}"')  # fmt: skip


# -------------------------------------------------------------------------- session cookies


async def test_a_session_login_sets_an_http_only_cookie(
    sim: AuthSimulator, client: httpx.AsyncClient
) -> None:
    login = await client.post("/session/login", data={"username": USER[0], "password": USER[1]})
    assert login.status_code == 200
    assert re.fullmatch(r"SIMSESSION=[\w-]+; HttpOnly; Path=/", login.headers["set-cookie"])
    data = await client.get("/session/data")  # the client's cookie jar sends it
    assert data.json() == {"ok": True, "username": "demo-user"}
    as_json = await client.post("/session/login", json={"username": USER[0], "password": "x"})
    assert (as_json.status_code, as_json.json()["error"]) == (401, "invalid_credentials")
    assert (sim.stats.session_logins, sim.stats.session_login_failures) == (1, 1)
    await client.post("/session/logout")
    client.cookies.clear()
    missing = await client.get("/session/data")
    assert (missing.status_code, missing.json()["error"]) == (401, "no_session")


async def test_sessions_expire_after_idle_time(
    sim: AuthSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(session_idle=600)
    login = await client.post("/session/login", json={"username": USER[0], "password": USER[1]})
    cookie = {"Cookie": login.headers["set-cookie"].split(";")[0]}
    client.cookies.clear()
    clock.advance(599.9)
    assert (await client.get("/session/data", headers=cookie)).status_code == 200
    clock.advance(599.9)  # each use keeps it alive
    assert (await client.get("/session/data", headers=cookie)).status_code == 200
    clock.advance(600)
    expired = await client.get("/session/data", headers=cookie)
    assert (expired.status_code, expired.json()["error"]) == (401, "session_expired")
    assert (sim.stats.session_calls, sim.stats.session_refused) == (3, 1)


# ------------------------------------------------------------------ secrets, surface, CLI


async def test_no_secret_in_reprs_or_logs(
    sim: AuthSimulator, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = sim.grant("demo-client")
    key = (await client.post("/keys/rotate", headers={"X-Api-Key": "key-one"})).json()["key"]
    await client.post("/session/login", json={"username": USER[0], "password": USER[1]})
    await client.get("/rets/login", auth=httpx.DigestAuth(*USER))
    secret_values = ["demo-secret", "demo-password", "key-one", key, tokens["access_token"],
                     tokens["refresh_token"], *client.cookies.values()]  # fmt: skip
    shown = [repr(sim), *(repr(part) for part in vars(sim).values()), caplog.text]
    for text in shown:
        for secret in secret_values:
            assert secret not in text


def test_the_auth_package_lists_exactly_its_public_names() -> None:
    module = importlib.import_module("cadastre.simulators.auth")
    public = {n for n, v in vars(module).items() if not n.startswith("_")
              and not isinstance(v, ModuleType)}  # fmt: skip
    public.discard("annotations")
    assert set(module.__all__) == public


def test_the_cli_builds_an_auth_simulator_from_its_flags() -> None:
    args = build_parser().parse_args(
        ["auth", "--rotation", "sometimes", "--rotate-every", "4", "--token-ttl", "90",
         "--key-overlap", "5", "--redirect-uri", "https://a.test/cb", "--api-key", "k1",
         "--rate-limit", "5/2"]
    )  # fmt: skip
    sim = build_simulator(args)
    assert isinstance(sim, AuthSimulator)
    assert (sim.settings.rotation, sim.settings.rotate_every) == ("sometimes", 4)
    assert (sim.settings.token_ttl, sim.settings.key_overlap) == (90.0, 5.0)
    assert sim.rate_limit is not None
    assert sim.rate_limit.requests == 5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["auth", "--rotation", "often"])
