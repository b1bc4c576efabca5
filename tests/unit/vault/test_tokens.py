"""The token lifecycle (RELIABILITY.md #17, #18) on a fake clock against a scripted token endpoint:
single flight, proactive refresh, refresh-token rotation stored before use, refusals that stop,
cooldowns, audited reads, API-key rotation and the consent flow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from cadastre.errors import (
    CredentialError,
    CredentialNeedsReauth,
    RequestNotSent,
    StoreUnavailable,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.ports import CredentialStatus, EndpointReply, Secret
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.vault import Defaults, TokenManager

TENANT = "acme"
TOKEN_URL = "https://vendor.test/oauth/token"
DEFAULTS = Defaults(TOKEN_URL)


def ok(body: dict[str, Any], status: int = 200) -> EndpointReply:
    return EndpointReply(status, {"content-type": "application/json"}, orjson.dumps(body))


class Endpoint:
    """A token endpoint that answers with ``answer(form)``; it records every form it got."""

    def __init__(self, answer: Callable[[dict[str, str]], EndpointReply], delay: float = 0.0):
        self.answer = answer
        self.forms: list[dict[str, str]] = []
        self.delay = delay
        self.hook: Callable[[], Any] | None = None

    async def send(
        self, method: str, url: str, *, form: Mapping[str, str] | None = None, json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> EndpointReply:  # fmt: skip
        self.forms.append(dict(form or {}))
        if self.hook is not None:
            await self.hook()
        await asyncio.sleep(self.delay)
        return self.answer(dict(form or {}))


class RotatingVendor:
    """Single-use refresh tokens, as Xero issues them: each refresh answers a new pair; a used
    refresh token is refused and revokes the family."""

    def __init__(self, ttl: int = 1800) -> None:
        self.n = 0
        self.live = "r0"
        self.used: set[str] = set()
        self.reuse = 0
        self.ttl = ttl

    def __call__(self, form: dict[str, str]) -> EndpointReply:
        token = form.get("refresh_token", "")
        if token in self.used or token != self.live:
            self.reuse += token in self.used
            self.live = ""
            return ok({"error": "invalid_grant"}, 400)
        self.used.add(token)
        self.n += 1
        self.live = f"r{self.n}"
        return ok({"access_token": f"a{self.n}", "token_type": "Bearer",
                   "expires_in": self.ttl, "refresh_token": self.live})  # fmt: skip


def counting_issuer(ttl: int = 3600) -> Callable[[dict[str, str]], EndpointReply]:
    issued = iter(range(1, 10_000))
    return lambda form: ok(
        {"access_token": f"t{next(issued)}", "token_type": "Bearer", "expires_in": ttl}
    )


async def client_credentials(kit: VaultKit, name: str = "mls") -> None:
    await kit.vault.add(TENANT, name, "oauth2_client_credentials",
                        {"client_id": "id", "client_secret": "s3cret-client-value"})  # fmt: skip


async def authorization_code(kit: VaultKit, name: str = "xero", **meta: Any) -> None:
    await kit.vault.add(
        TENANT, name, "oauth2_authorization_code",
        {"client_id": "id", "client_secret": "s3cret-client-value", "refresh_token": "r0"}, meta,
    )  # fmt: skip


async def token(kit: VaultKit | TokenManager, endpoint: Endpoint, name: str = "mls") -> str:
    tokens = kit.tokens if isinstance(kit, VaultKit) else kit
    got = await tokens.access_token(TENANT, name, endpoint, actor="test", defaults=DEFAULTS)
    return got.reveal()


async def test_fifty_concurrent_callers_cause_one_token_request() -> None:
    kit = VaultKit(FakeClock())
    await client_credentials(kit)
    endpoint = Endpoint(counting_issuer(), delay=0.01)
    got = await asyncio.gather(*(token(kit, endpoint) for _ in range(50)))
    assert set(got) == {"t1"}
    assert len(endpoint.forms) == 1
    assert endpoint.forms[0] == {"grant_type": "client_credentials"}  # the secret is in Basic


async def test_two_processes_sharing_a_store_and_a_lock_refresh_once() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    other = TokenManager(kit.vault, kit.tokens._locks, clock)  # a second process' manager
    await client_credentials(kit)
    endpoint = Endpoint(counting_issuer(), delay=0.01)
    got = await asyncio.gather(
        *(token(kit, endpoint) for _ in range(50)), *(token(other, endpoint) for _ in range(50))
    )
    assert set(got) == {"t1"}
    assert len(endpoint.forms) == 1
    # the one that waited re-read the stored token: a decryption, audited
    reads = await kit.vault.reads(TENANT, "mls")
    assert [r.purpose for r in reads].count("call") == 1
    assert [r.purpose for r in reads].count("refresh") == 1


async def test_a_held_token_is_not_a_read_and_is_refreshed_before_it_expires() -> None:
    clock = FakeClock()
    kit = VaultKit(clock, skew=60.0)
    await client_credentials(kit)
    endpoint = Endpoint(counting_issuer(ttl=600))
    assert await token(kit, endpoint) == "t1"
    reads = len(await kit.vault.reads(TENANT, "mls"))
    clock.advance(539)
    for _ in range(20):
        assert await token(kit, endpoint) == "t1"
    assert len(await kit.vault.reads(TENANT, "mls")) == reads  # using a held token is no read
    clock.advance(2)  # 541 s: inside the 60 s skew before the 600 s expiry
    assert await token(kit, endpoint) == "t2"
    assert len(endpoint.forms) == 2


async def test_a_refused_token_is_replaced_once() -> None:
    kit = VaultKit(FakeClock())
    await client_credentials(kit)
    endpoint = Endpoint(counting_issuer())
    first = await token(kit, endpoint)
    await kit.tokens.refused(TENANT, "mls", Secret("some-older-token"))  # not the held one
    assert await token(kit, endpoint) == first
    await kit.tokens.refused(TENANT, "mls", Secret(first))
    assert await token(kit, endpoint) == "t2"
    assert len(endpoint.forms) == 2


async def test_a_rotated_refresh_token_is_stored_before_its_access_token_is_used() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit)
    vendor = RotatingVendor()
    endpoint = Endpoint(vendor)
    seen: list[tuple[object, object]] = []

    async def look() -> None:
        stored = await kit.vault.stored(TENANT, "xero")
        seen.append((stored.refresh_started_at, stored.status))

    endpoint.hook = look
    assert await token(kit, endpoint, "xero") == "a1"
    assert seen[0][0] is not None  # "about to send" was durable before the request went out
    stored = await kit.vault.stored(TENANT, "xero")
    assert stored.refresh_started_at is None
    opened = await kit.vault.open(TENANT, "xero", actor="test", purpose="test")
    assert opened.field("refresh_token").reveal() == "r1"
    await kit.tokens.refused(TENANT, "xero", Secret("a1"))
    assert await token(kit, endpoint, "xero") == "a2"
    assert [f["refresh_token"] for f in endpoint.forms] == ["r0", "r1"]
    assert vendor.reuse == 0


async def test_when_the_new_tokens_cannot_be_stored_no_caller_gets_the_access_token() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit)
    endpoint = Endpoint(RotatingVendor())
    real_update = kit.vault.update
    calls = 0

    async def failing_update(current: Any, **changes: Any) -> Any:
        nonlocal calls
        calls += 1
        if "secrets" in changes:  # the write of the new tokens
            raise StoreUnavailable("database: gone")
        return await real_update(current, **changes)

    kit.vault.update = failing_update  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await token(kit, endpoint, "xero")
    kit.vault.update = real_update  # type: ignore[method-assign]
    # The marker is still set: the next refresher will not resend r0 (it was consumed).
    with pytest.raises(CredentialNeedsReauth, match="interrupted"):
        await token(kit, endpoint, "xero")
    assert len(endpoint.forms) == 1


async def test_an_interrupted_refresh_is_never_resent() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit)
    stored = await kit.vault.stored(TENANT, "xero")
    await kit.vault.update(stored, refresh_started_at=kit.clock.now())  # a refresher died here
    endpoint = Endpoint(RotatingVendor())
    with pytest.raises(CredentialNeedsReauth):
        await token(kit, endpoint, "xero")
    assert endpoint.forms == []
    assert (await kit.vault.stored(TENANT, "xero")).status is CredentialStatus.NEEDS_REAUTH


async def test_a_lost_answer_marks_needs_reauth_unless_the_vendor_allows_reuse() -> None:
    def lost(form: dict[str, str]) -> EndpointReply:
        raise VendorUnavailable("POST https://vendor.test/oauth/token: no answer")

    strict = VaultKit(FakeClock())
    await authorization_code(strict)
    with pytest.raises(CredentialNeedsReauth, match="lost"):
        await token(strict, Endpoint(lost), "xero")

    clock = FakeClock()
    lenient = VaultKit(clock)
    await authorization_code(lenient, refresh_token_reuse="allowed")
    endpoint = Endpoint(lost)
    with pytest.raises(VendorUnavailable):
        await token(lenient, endpoint, "xero")
    clock.advance(6)  # past the first cooldown
    endpoint.answer = RotatingVendor()
    assert await token(lenient, endpoint, "xero") == "a1"
    assert [f["refresh_token"] for f in endpoint.forms] == ["r0", "r0"]


async def test_a_refused_refresh_stops_with_one_alert_and_no_more_requests() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit)
    endpoint = Endpoint(lambda form: ok({"error": "invalid_grant"}, 400))
    results = await asyncio.gather(
        *(token(kit, endpoint, "xero") for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, CredentialNeedsReauth) for r in results)
    for _ in range(10):
        with pytest.raises(CredentialNeedsReauth):
            await token(kit, endpoint, "xero")
    assert len(endpoint.forms) == 1
    async with kit.store.unit_of_work(TENANT, read_only=True) as uow:
        alerts = [
            m for m in await uow.outbox.pending() if m.event.type == "cadastre.alert.raised.v1"
        ]
    assert len(alerts) == 1
    assert alerts[0].event.data["alert"] == "credential_needs_reauth"
    assert "credentials connect xero" in alerts[0].event.data["action"]
    stored = await kit.vault.stored(TENANT, "xero")
    assert stored.status is CredentialStatus.NEEDS_REAUTH
    assert "invalid_grant" in stored.status_reason


@pytest.mark.parametrize("status", ["BAD_REFRESH_TOKEN", "BAD_CLIENT_ID", "BAD_CLIENT_SECRET"])
async def test_hubspots_dead_refresh_token_is_a_refused_grant_too(status: str) -> None:
    # HubSpot answers a dead refresh token (app uninstalled, token revoked) 400 with its own body,
    # not RFC 6749's {"error": "invalid_grant"}: it must stop too, not be retried for ever.
    clock = FakeClock()
    kit = VaultKit(clock)
    await authorization_code(kit, name="hubspot")
    body = {"status": status, "message": "missing or invalid refresh token",
            "correlationId": "0b1f7a52-1c57-4bd4-9a2a-0c4f2e6d1f00"}  # fmt: skip
    endpoint = Endpoint(lambda form: ok(body, 400))
    for _ in range(5):
        with pytest.raises(CredentialNeedsReauth):
            await token(kit, endpoint, "hubspot")
        clock.advance(3600)
    assert len(endpoint.forms) == 1
    stored = await kit.vault.stored(TENANT, "hubspot")
    assert stored.status is CredentialStatus.NEEDS_REAUTH
    assert status in stored.status_reason
    assert "missing or invalid" not in stored.status_reason  # vendor free text is not kept


async def test_a_vendor_status_that_is_no_refusal_still_cools_down() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit, name="hubspot")
    endpoint = Endpoint(lambda form: ok({"status": "BAD_REQUEST", "message": "?"}, 400))
    with pytest.raises(VendorRejected, match="BAD_REQUEST"):
        await token(kit, endpoint, "hubspot")
    assert (await kit.vault.stored(TENANT, "hubspot")).status is CredentialStatus.ACTIVE


async def test_a_failing_token_endpoint_is_not_stormed() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await client_credentials(kit)
    endpoint = Endpoint(lambda form: ok({"error": "server_error"}, 503))
    # An hour of callers trying every second: requests follow the cooldown (5, 10, 20 ... 600 s).
    for _ in range(3600):
        with pytest.raises(VendorUnavailable):
            await token(kit, endpoint)
        clock.advance(1)
    assert 8 <= len(endpoint.forms) <= 12
    endpoint.answer = counting_issuer()
    clock.advance(600)
    assert await token(kit, endpoint) == "t1"


async def test_a_request_that_was_never_sent_keeps_the_refresh_token_usable() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await authorization_code(kit)
    vendor = RotatingVendor()

    def not_sent(form: dict[str, str]) -> EndpointReply:
        raise RequestNotSent("rate limited", 2.0)

    endpoint = Endpoint(not_sent)
    with pytest.raises(RequestNotSent):
        await token(kit, endpoint, "xero")
    assert (await kit.vault.stored(TENANT, "xero")).refresh_started_at is None
    clock.advance(10)
    endpoint.answer = vendor
    assert await token(kit, endpoint, "xero") == "a1"


async def test_static_secrets_follow_a_change_made_elsewhere_after_the_recheck() -> None:
    clock = FakeClock()
    kit = VaultKit(clock, recheck=30.0)
    await kit.vault.add(TENANT, "pms", "api_key", {"api_key": "key-one-aaaaaaaaaaaa"})
    first = await kit.tokens.secrets(TENANT, "pms", actor="test")
    assert first["api_key"].reveal() == "key-one-aaaaaaaaaaaa"
    stored = await kit.vault.stored(TENANT, "pms")
    await kit.vault.update(stored, secrets={"api_key": "key-two-bbbbbbbbbbbb"})  # another process
    clock.advance(29)
    assert (await kit.tokens.secrets(TENANT, "pms", actor="t"))["api_key"] == first["api_key"]
    clock.advance(2)
    got = await kit.tokens.secrets(TENANT, "pms", actor="t")
    assert got["api_key"].reveal() == "key-two-bbbbbbbbbbbb"


async def test_api_key_rotation_keeps_the_old_key_for_the_overlap() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await kit.vault.add(TENANT, "pms", "api_key", {"api_key": "old-key-aaaaaaaaaaaa"},
                        {"rotate_url": "https://vendor.test/keys/rotate",
                         "rotate_every_days": 30})  # fmt: skip
    assert await kit.tokens.due_for_rotation(TENANT) == []
    clock.advance(30 * 86400)
    assert [c.name for c in await kit.tokens.due_for_rotation(TENANT)] == ["pms"]
    sent: list[Mapping[str, str]] = []

    class Rotator:
        async def send(self, method: str, url: str, **kw: Any) -> EndpointReply:
            sent.append(kw["headers"])
            return ok(
                {"key": "new-key-bbbbbbbbbbbb", "previous_valid_until": "2030-01-01T00:00:00Z"}
            )

    await kit.tokens.rotate_api_key(TENANT, "pms", Rotator(), actor="test")
    assert sent[0]["X-Api-Key"] == "old-key-aaaaaaaaaaaa"
    opened = await kit.vault.open(TENANT, "pms", actor="test", purpose="test")
    assert opened.field("api_key").reveal() == "new-key-bbbbbbbbbbbb"
    assert opened.field("previous_api_key").reveal() == "old-key-aaaaaaaaaaaa"
    assert await kit.tokens.due_for_rotation(TENANT) == []


async def test_consent_uses_pkce_and_its_state_works_once() -> None:
    kit = VaultKit(FakeClock())
    await kit.vault.add(TENANT, "xero", "oauth2_authorization_code", {"client_id": "the-client"},
                        {"authorize_url": "https://vendor.test/authorize",
                         "token_url": TOKEN_URL})  # fmt: skip
    url = await kit.tokens.start_consent(TENANT, "xero", redirect_uri="https://hub.test/cb")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["client_id"] == "the-client"
    assert (await kit.vault.stored(TENANT, "xero")).status is CredentialStatus.PENDING
    endpoint = Endpoint(lambda form: ok({"access_token": "a1", "token_type": "bearer",
                                         "expires_in": 60, "refresh_token": "r1"}))  # fmt: skip
    with pytest.raises(CredentialError, match="unknown"):
        await kit.tokens.complete_consent(query["state"] + "x", "code-1", endpoint)
    stored = await kit.tokens.complete_consent(query["state"], "code-1", endpoint)
    assert stored.status is CredentialStatus.ACTIVE
    form = endpoint.forms[0]
    assert form["grant_type"] == "authorization_code"
    assert 43 <= len(form["code_verifier"]) <= 128
    assert form["client_id"] == "the-client"  # a public client names itself
    with pytest.raises(CredentialError, match="unknown or was already used"):
        await kit.tokens.complete_consent(query["state"], "code-1", endpoint)
    assert await token(kit, endpoint, "xero") == "a1"


async def test_two_schedulers_that_found_a_key_due_rotate_it_once() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await kit.vault.add(TENANT, "pms", "api_key", {"api_key": "old-key-aaaaaaaaaaaa"},
                        {"rotate_url": "https://vendor.test/keys/rotate",
                         "rotate_every_days": 30})  # fmt: skip
    clock.advance(31 * 86400)
    seen = [c.version for c in await kit.tokens.due_for_rotation(TENANT)]  # both saw it due
    issued = iter(range(1, 100))

    class Rotator:
        async def send(self, method: str, url: str, **kw: Any) -> EndpointReply:
            return ok({"key": f"new-key-{next(issued):012d}"})

    other = TokenManager(kit.vault, kit.tokens._locks, clock)
    for tokens in (kit.tokens, other):
        await tokens.rotate_api_key(TENANT, "pms", Rotator(), actor="scheduler",
                                    if_version=seen[0])  # fmt: skip
    opened = await kit.vault.open(TENANT, "pms", actor="test", purpose="test")
    assert opened.field("api_key").reveal() == "new-key-000000000001"
    assert opened.field("previous_api_key").reveal() == "old-key-aaaaaaaaaaaa"


async def test_a_lost_rotation_answer_raises_an_alert() -> None:
    kit = VaultKit(FakeClock())
    await kit.vault.add(TENANT, "pms", "api_key", {"api_key": "old-key-aaaaaaaaaaaa"},
                        {"rotate_url": "https://vendor.test/keys/rotate"})  # fmt: skip

    class Lost:
        async def send(self, method: str, url: str, **kw: Any) -> EndpointReply:
            raise VendorUnavailable("POST https://vendor.test/keys/rotate: no answer")

    with pytest.raises(VendorUnavailable):
        await kit.tokens.rotate_api_key(TENANT, "pms", Lost(), actor="scheduler")
    async with kit.store.unit_of_work(TENANT, read_only=True) as uow:
        alerts = [m.event.data for m in await uow.outbox.pending()]
    assert [a["alert"] for a in alerts] == ["credential_rotation_lost"]


async def test_a_client_credentials_vendor_that_also_sends_a_refresh_token_is_asked_once() -> None:
    kit = VaultKit(FakeClock())
    await client_credentials(kit)
    endpoint = Endpoint(
        lambda form: ok(
            {
                "access_token": "t1",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "ignored-r1",
            }
        )
    )
    for _ in range(5):
        assert await token(kit, endpoint) == "t1"
    assert len(endpoint.forms) == 1
    assert "refresh_token" not in (await kit.vault.stored(TENANT, "mls")).secrets


async def test_tokens_refused_as_soon_as_issued_are_not_refreshed_per_call() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await client_credentials(kit)
    endpoint = Endpoint(counting_issuer())
    for _ in range(100):  # a resource server that refuses every token (a missing scope, say)
        held = await token(kit, endpoint)
        await kit.tokens.refused(TENANT, "mls", Secret(held))
        clock.advance(1)
    assert len(endpoint.forms) <= 100 // 30 + 2  # at most one refresh per 30 s, not per call


async def test_an_expires_in_of_forever_is_read_as_a_year() -> None:
    kit = VaultKit(FakeClock())
    await client_credentials(kit)
    endpoint = Endpoint(
        lambda form: ok({"access_token": "t1", "token_type": "Bearer", "expires_in": 10**12})
    )
    assert await token(kit, endpoint) == "t1"
    stored = await kit.vault.stored(TENANT, "mls")
    assert stored.expires_at is not None
    assert (stored.expires_at - kit.clock.now()).days == 366


async def test_a_proxys_504_to_a_refresh_is_treated_as_a_lost_answer() -> None:
    kit = VaultKit(FakeClock())
    await authorization_code(kit)
    endpoint = Endpoint(lambda form: ok({"error": "gateway_timeout"}, 504))
    with pytest.raises(CredentialNeedsReauth, match="504"):
        await token(kit, endpoint, "xero")
    with pytest.raises(CredentialNeedsReauth):
        await token(kit, endpoint, "xero")
    assert len(endpoint.forms) == 1  # r0 was never sent again
