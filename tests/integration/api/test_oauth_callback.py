"""The OAuth2 authorization-code flow end to end: ``start_consent`` (what ``cadastre credentials
connect`` runs) -> the auth simulator's consent page, followed by hand -> the hub's
``/v1/oauth/callback`` through the FastAPI app -> tokens exchanged (PKCE) over real HTTP through the
credential's gateway. Plus ``GET /v1/credentials``, which shows status and never a secret."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli import credentials as credentials_cli
from cadastre.cli.credentials import _wait_for_consent, callback_url
from cadastre.config import Settings
from cadastre.ports import ApiKeyScope, CredentialStatus
from cadastre.simulators.auth import AuthSimulator
from cadastre.simulators.server import serve
from cadastre.testing import FakeClock
from cadastre.vault.tokens import CONSENT_SECONDS, encode_state

PUBLIC_URL = "http://hub.test"
CALLBACK = callback_url(PUBLIC_URL)


@dataclass
class World:
    hub: Hub
    clock: FakeClock
    sim: AuthSimulator
    vendor: str  # the simulator's URL
    api: httpx.AsyncClient  # the hub's API, in-process
    browser: httpx.AsyncClient  # follows nothing by itself

    async def consent(self, name: str = "xero") -> httpx.URL:
        """Start a consent and play the person at the vendor's page: where it sends them."""
        url = await self.hub.tokens.start_consent("acme", name, redirect_uri=CALLBACK)
        answer = await self.browser.get(url)
        assert answer.status_code == 302
        location = httpx.URL(answer.headers["location"])
        assert str(location.copy_with(query=None)) == CALLBACK
        return location

    async def callback(self, location: httpx.URL) -> httpx.Response:
        return await self.api.get(location.path, params=location.params)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock(autojump=True)  # the gateway paces token requests on this clock
    settings = Settings(data_dir=tmp_path, public_url=PUBLIC_URL,
                        gateway_allow_hosts=("127.0.0.1",))  # fmt: skip
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    await hub.tenants.create("acme", "Acme")
    await hub.tenants.create("globex", "Globex")
    sim = AuthSimulator(redirect_uris=(CALLBACK,))
    async with (
        serve(sim.app) as running,
        httpx.AsyncClient(follow_redirects=False) as browser,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(hub)), base_url=PUBLIC_URL
        ) as api,  # fmt: skip
    ):
        await hub.vault.add(
            "acme", "xero", "oauth2_authorization_code",
            {"client_id": "demo-client", "client_secret": "demo-secret"},
            {"authorize_url": f"{running.url}/oauth/authorize",
             "token_url": f"{running.url}/oauth/token", "egress_ips": ["203.0.113.7"]},
            status=CredentialStatus.PENDING,
        )  # fmt: skip
        yield World(hub, clock, sim, running.url, api, browser)
    await hub.close()


def assert_problem(response: httpx.Response, status: int, *hidden: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["instance"] == "/v1/oauth/callback"
    for value in hidden:
        assert value not in response.text
    return str(body["detail"])


async def test_the_consent_round_trip_connects_the_credential(world: World) -> None:
    location = await world.consent()
    code, state = location.params["code"], location.params["state"]
    answer = await world.callback(location)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "Connected <strong>xero</strong>; you can close this tab" in answer.text
    assert code not in answer.text
    assert state not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"

    stored = await world.hub.vault.stored("acme", "xero")
    assert stored.status is CredentialStatus.ACTIVE
    assert {"access_token", "refresh_token"} <= set(stored.secrets)
    assert "code_verifier" not in stored.secrets
    assert stored.meta["pending_state"] is None
    assert stored.expires_at is not None
    assert world.sim.stats.codes_issued == 1

    # the stored access token is the one the vendor answers to
    endpoint, defaults = await world.hub.token_endpoint("acme", "xero")
    token = await world.hub.tokens.access_token("acme", "xero", endpoint, actor="test",
                                                defaults=defaults)  # fmt: skip
    me = await world.browser.get(
        f"{world.vendor}/api/me", headers={"Authorization": f"Bearer {token.reveal()}"}
    )
    assert me.status_code == 200

    # a state is good once
    again = await world.callback(location)
    detail = assert_problem(again, 400, code, state)
    assert "unknown" in detail


async def test_refusals_are_400_problems_that_echo_nothing(world: World) -> None:
    location = await world.consent()
    code, state = location.params["code"], location.params["state"]

    denied = await world.api.get(
        "/v1/oauth/callback", params={"error": "access_denied", "state": state}
    )
    assert "access was not granted" in assert_problem(denied, 400, state)
    odd = await world.api.get("/v1/oauth/callback", params={"error": "<script>", "state": state})
    assert "<script>" not in assert_problem(odd, 400, state)
    assert_problem(await world.api.get("/v1/oauth/callback", params={"code": code}), 400, code)
    for forged in ("garbage", "x.y", encode_state("acme", "other"), encode_state("globex", "xero"),
                   encode_state("acme", "xero")):  # fmt: skip
        response = await world.api.get("/v1/oauth/callback", params={"code": code, "state": forged})
        assert "unknown" in assert_problem(response, 400, code, forged)
    assert world.sim.stats.token_endpoint_calls == 0  # nothing forged reached the vendor

    # the genuine state still works after all that
    assert (await world.callback(location)).status_code == 200


async def test_a_consent_older_than_ten_minutes_is_refused(world: World) -> None:
    location = await world.consent()
    world.clock.advance(CONSENT_SECONDS + 1)
    response = await world.callback(location)
    assert "took too long" in assert_problem(response, 400, location.params["code"])
    assert (await world.hub.vault.stored("acme", "xero")).status is CredentialStatus.PENDING


async def test_a_code_the_vendor_refuses_is_a_502(world: World) -> None:
    location = await world.consent()
    forged = location.copy_set_param("code", "not-a-code-the-vendor-issued")
    response = await world.callback(forged)
    assert response.status_code == 502
    assert "invalid_grant" in response.json()["detail"]
    assert "not-a-code-the-vendor-issued" not in response.text
    assert (await world.hub.vault.stored("acme", "xero")).status is CredentialStatus.PENDING


async def test_the_credentials_route_shows_status_never_secrets(world: World) -> None:
    assert (await world.callback(await world.consent())).status_code == 200
    opened = await world.hub.vault.open("acme", "xero", actor="test", purpose="test")
    secrets = [value.reveal() for value in opened.fields.values()]
    acme = (await world.hub.keys.create("acme", ApiKeyScope.READ)).plaintext
    globex = (await world.hub.keys.create("globex", ApiKeyScope.READ)).plaintext

    mine = await world.api.get("/v1/credentials", headers={"Authorization": f"Bearer {acme}"})
    assert mine.status_code == 200
    [row] = mine.json()
    assert row["name"] == "xero"
    assert row["scheme"] == "oauth2_authorization_code"
    assert row["status"] == "active"
    assert row["egress_ips"] == ["203.0.113.7"]
    assert row["expires_at"] is not None
    assert set(row) == {"name", "scheme", "status", "status_reason", "expires_at", "updated_at",
                        "egress_ips"}  # fmt: skip
    for secret in secrets:
        assert secret not in mine.text

    theirs = await world.api.get("/v1/credentials", headers={"Authorization": f"Bearer {globex}"})
    assert (theirs.status_code, theirs.json()) == (200, [])
    anonymous = await world.api.get("/v1/credentials")
    assert anonymous.status_code == 401


async def test_connect_wait_returns_once_fresh_tokens_are_stored(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``credentials connect --wait`` polls for: tokens newer than those it started with,
    so reconnecting a credential that is already active does not end the wait early."""
    monkeypatch.setattr(credentials_cli, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(credentials_cli, "SPENT_GRACE_SECONDS", 0.2)
    for _ in range(2):  # a first connection, then a reconnection of the active credential
        location = await world.consent()
        before = await world.hub.vault.stored("acme", "xero")
        waiting = asyncio.create_task(_wait_for_consent(world.hub, "acme", "xero", before))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        assert (await world.callback(location)).status_code == 200
        assert await asyncio.wait_for(waiting, 5) == ""

    location = await world.consent()
    before = await world.hub.vault.stored("acme", "xero")
    waiting = asyncio.create_task(_wait_for_consent(world.hub, "acme", "xero", before))
    refused = await world.callback(location.copy_set_param("code", "not-issued"))
    assert refused.status_code == 502
    assert "no tokens were stored" in await asyncio.wait_for(waiting, 5)


async def test_connect_wait_is_not_ended_by_a_routine_refresh(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that rotates the refresh token while a reconnect waits is not its consent."""
    monkeypatch.setattr(credentials_cli, "POLL_SECONDS", 0.01)
    assert (await world.callback(await world.consent())).status_code == 200  # connected once
    location = await world.consent()  # reconnecting
    before = await world.hub.vault.stored("acme", "xero")
    waiting = asyncio.create_task(_wait_for_consent(world.hub, "acme", "xero", before))
    # another process refreshes meanwhile and stores the vendor's rotated refresh token
    await world.hub.vault.update(before, secrets={"refresh_token": "rotated-by-a-refresh"})
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert (await world.callback(location)).status_code == 200
    assert await asyncio.wait_for(waiting, 5) == ""


def test_the_callback_url_is_under_the_public_url() -> None:
    assert callback_url("https://hub.example/") == "https://hub.example/v1/oauth/callback"
    assert parse_qs(urlsplit(CALLBACK).query) == {}
