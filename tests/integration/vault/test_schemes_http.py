"""Every auth scheme end to end over real HTTP on loopback, against the auth simulator: a real
``Gateway`` whose authenticator takes its secrets from the vault. And API-key rotation under load:
a key rotated while 20 callers in two "processes" keep calling, with the vendor's overlap window,
fails no call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cadastre.clock import SystemClock
from cadastre.errors import CredentialNeedsReauth
from cadastre.gateway import Gateway, VaultAuth, VendorPolicy
from cadastre.ports import CredentialStatus
from cadastre.simulators import serve
from cadastre.simulators.auth import AuthSettings, AuthSimulator
from cadastre.testing.vault import VaultKit
from cadastre.vault import TokenManager

TENANT = "acme"
LOOPBACK = ("127.0.0.0/8", "::1")
POLICY = VendorPolicy(vendor="auth-sim", max_attempts=3, backoff_base=0.01, backoff_cap=0.05)


def gateway(url: str, auth: VaultAuth) -> Gateway:
    return Gateway(url, POLICY, clock=SystemClock(), auth=auth, allow_hosts=LOOPBACK)


@pytest.mark.parametrize(
    ("scheme", "secrets", "meta", "path"),
    [
        ("basic", {"username": "demo-user", "password": "demo-password"}, {}, "/rets/login"),
        ("digest", {"username": "demo-user", "password": "demo-password"}, {}, "/rets/login"),
        ("api_key", {"api_key": "seeded-key-0000000001"}, {"header": "X-Api-Key"}, "/api/keyed"),
        ("api_key", {"api_key": "seeded-key-0000000001"}, {"header": None, "query": "api_key"},
         "/api/keyed"),
        ("session", {"username": "demo-user", "password": "demo-password"},
         {"login_url": "{url}/session/login"}, "/session/data"),
        ("session", {"username": "demo-user", "password": "demo-password"},
         {"login_url": "{url}/session/login", "login_format": "json",
          "cookie": "SIMSESSION"}, "/session/data"),
    ],
    ids=["basic", "digest", "api-key-header", "api-key-query", "session-form", "session-json"],
)  # fmt: skip
async def test_each_scheme_calls_the_vendor(
    scheme: str, secrets: dict[str, str], meta: dict[str, Any], path: str
) -> None:
    sim = AuthSimulator(api_keys=["seeded-key-0000000001"])
    sim.configure(http_auth=("digest",) if scheme == "digest" else ("basic",))
    kit = VaultKit(SystemClock())
    async with serve(sim.app) as running:
        meta = {k: v.format(url=running.url) if isinstance(v, str) else v for k, v in meta.items()}
        auth = await kit.add(TENANT, "vendor", scheme, secrets, **meta)
        async with gateway(running.url, auth) as gw:
            for _ in range(5):
                answer = await gw.get(path)
                assert answer.status_code == 200
    stats = sim.stats
    if scheme == "digest":
        assert sum(v for k, v in stats.rets_logins.items() if k.startswith("digest")) == 5
        assert stats.rets_challenges == 1  # the challenge is answered once, then reused
    if scheme == "session":
        assert stats.session_logins == 1
        assert stats.session_calls == 5
    reads = await kit.vault.reads(TENANT, "vendor")
    assert len(reads) == 1  # decrypted once, then held


async def test_an_authorization_code_credential_refreshes_and_rotates() -> None:
    sim = AuthSimulator(settings=AuthSettings(rotation="single_use", token_ttl=3600))
    kit = VaultKit(SystemClock())
    async with serve(sim.app) as running:
        grant = sim.grant("demo-client")
        auth = await kit.add(
            TENANT, "xero", "oauth2_authorization_code",
            {"client_id": "demo-client", "client_secret": "demo-secret",
             "refresh_token": grant["refresh_token"]},
            token_url=f"{running.url}/oauth/token",
        )  # fmt: skip
        async with gateway(running.url, auth) as gw:
            for _ in range(3):
                assert (await gw.get("/api/me")).json()["ok"] is True
            sim.revoke_all("demo-client")  # the user disconnected the app at the vendor
            stored = await kit.vault.stored(TENANT, "xero")
            await kit.tokens.refused(TENANT, "xero", None)  # as a 401 would
            with pytest.raises(CredentialNeedsReauth):
                await gw.get("/api/me")
    assert sim.stats.refreshes == 1
    assert sim.stats.refresh_token_reuse == 0
    assert stored.status is CredentialStatus.ACTIVE
    assert (await kit.vault.stored(TENANT, "xero")).status is CredentialStatus.NEEDS_REAUTH


@pytest.mark.timeout(60)
async def test_a_key_rotated_under_load_fails_no_call() -> None:
    sim = AuthSimulator(api_keys=["first-key-000000000001"])
    sim.configure(key_overlap=3.0)  # the vendor keeps the old key working for 3 s
    kit = VaultKit(SystemClock(), recheck=0.5)
    # a second worker process: its own token manager on the same vault, which learns of the
    # rotation only when it re-checks the stored version
    other = TokenManager(kit.vault, kit.tokens._locks, SystemClock(), recheck=0.5)
    failures: list[str] = []
    calls = 0
    async with serve(sim.app) as running:
        mine = await kit.add(TENANT, "pms", "api_key", {"api_key": "first-key-000000000001"},
                             rotate_url=f"{running.url}/keys/rotate")  # fmt: skip
        theirs = VaultAuth(other, TENANT, "pms", mine.scheme, mine.meta, actor="worker-2")
        stop = asyncio.Event()

        async def caller(gw: Gateway) -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    await gw.get("/api/keyed")
                    calls += 1
                except Exception as error:  # noqa: BLE001 - every failed call is the finding
                    failures.append(repr(error))
                await asyncio.sleep(0.005)

        async with gateway(running.url, mine) as a, gateway(running.url, theirs) as b:
            tasks = [asyncio.create_task(caller(gw)) for gw in (a, b) for _ in range(10)]
            await asyncio.sleep(0.5)
            await kit.tokens.rotate_api_key(TENANT, "pms", a.token_endpoint, actor="scheduler")
            await asyncio.sleep(4.0)  # past the overlap: the old key is dead by now
            before = calls
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
    assert failures == []
    assert calls - before > 0  # calls went on after the old key died
    assert sim.stats.api_key_rotations == 1
    assert sim.stats.api_key_refused == 0
    opened = await kit.vault.open(TENANT, "pms", actor="test", purpose="test")
    assert opened.field("api_key").reveal() != "first-key-000000000001"
    assert opened.field("previous_api_key").reveal() == "first-key-000000000001"
