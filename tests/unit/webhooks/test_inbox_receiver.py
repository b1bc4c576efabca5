"""``WebhookReceiver`` over ``FakeStore`` and the real vault: what a request costs (one vault
decryption per credential version, no look-up per request, batches of inserts under load),
what it is refused on before its body is read, and that an answer always follows its row's
commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cadastre.connectors import connector_spec
from cadastre.directory import ConnectionService, ConnectionSpec
from cadastre.errors import ConfigurationError, StoreUnavailable, WebhookRefused
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.webhooks.inbox import Accepted, WebhookReceiver
from tests.webhook_signers import SECRET, lower, standard

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
KEY = SECRET["standard_webhooks"]
BODY = b'{"value": []}'
BLOCK = {"scheme": "standard_webhooks", "credential": "hooks", "max_body_bytes": 2048}


class Chunks:
    """A request body that counts how much of it was read."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.pulled += 1
            yield chunk


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def kit(clock: FakeClock) -> VaultKit:
    kit = VaultKit(clock)
    await kit.vault.add("acme", "hooks", "webhook_secret", {"secret": KEY})
    await connect(kit, BLOCK)
    return kit


async def connect(kit: VaultKit, block: dict[str, Any] | None, name: str = "crm") -> None:
    config = {"base_url": "https://mls.invalid/odata", **({"webhook": block} if block else {})}
    await ConnectionService(kit.store, kit.clock).put("acme", ConnectionSpec(
        name=name, system="mls", connector="mls/reso", config=config,
    ))  # fmt: skip


@pytest.fixture
def receiver(kit: VaultKit, clock: FakeClock) -> WebhookReceiver:
    return WebhookReceiver(kit.store, kit.vault, clock, public_url="https://hub.example")


async def receive(receiver: WebhookReceiver, clock: FakeClock, msg_id: str = "m1",
                  body: Chunks | None = None, headers: dict[str, str] | None = None,
                  connection: str = "crm") -> Accepted:  # fmt: skip
    if headers is None:
        headers = lower(standard([KEY], BODY, clock.now(), msg_id))
    return await receiver.receive(
        "acme", connection, method="POST", path=f"/webhooks/acme/{connection}", query="",
        headers=headers, body=body or Chunks(BODY),
    )  # fmt: skip


async def held(kit: VaultKit) -> list[str]:
    async with kit.store.unit_of_work("acme") as uow:
        return sorted(e.message_id for e in await uow.webhooks_in.entries(limit=10_000))


async def test_concurrent_requests_share_commits(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    results = await asyncio.gather(*[receive(receiver, clock, f"m{i:03}") for i in range(200)])
    assert all(r.stored for r in results)
    assert len(await held(kit)) == 200
    # the first request is written alone; the ones that queued meanwhile share the next commits
    assert receiver.writer.commits < 20


async def test_no_answer_before_the_commit_and_none_if_it_fails(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cadastre.testing.fakes import FakeUnitOfWork

    real_commit = FakeUnitOfWork.commit
    failing = True

    async def commit(self: FakeUnitOfWork) -> None:
        if failing:
            raise StoreUnavailable("database: disk I/O error")
        await real_commit(self)

    monkeypatch.setattr(FakeUnitOfWork, "commit", commit)
    outcomes = await asyncio.gather(*[receive(receiver, clock, f"m{i}") for i in range(30)],
                                    return_exceptions=True)  # fmt: skip
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    failing = False
    assert await held(kit) == []  # nothing the vendors were not told was kept
    assert (await receive(receiver, clock, "m1")).stored


async def test_the_secret_is_decrypted_once_per_version(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    for i in range(100):
        await receive(receiver, clock, f"m{i}")
    assert len(await kit.vault.reads("acme", "hooks")) == 1
    clock.advance(60)  # the version is looked at again (no decryption: it did not change)
    await receive(receiver, clock, "later")
    assert len(await kit.vault.reads("acme", "hooks")) == 1
    current = await kit.vault.stored("acme", "hooks")
    await kit.vault.update(current, secrets={"secret": SECRET["standard_webhooks"]})
    clock.advance(60)
    await receive(receiver, clock, "rotated")
    assert len(await kit.vault.reads("acme", "hooks")) == 2
    assert receiver.credentials.opened == 2


async def test_forged_requests_cost_at_most_one_version_look_up_a_second(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await receive(receiver, clock, "warm")
    looked = 0
    real = kit.vault.stored

    async def stored(tenant: str, name: str) -> Any:
        nonlocal looked
        looked += 1
        return await real(tenant, name)

    monkeypatch.setattr(kit.vault, "stored", stored)
    forged = lower(standard([SECRET["standard_webhooks"][:-4] + "AAA="], BODY, clock.now(), "x"))
    for _ in range(50):
        with pytest.raises(WebhookRefused, match="does not match"):
            await receive(receiver, clock, headers=forged)
    assert looked == 1
    clock.advance(1)
    with pytest.raises(WebhookRefused):
        await receive(receiver, clock, headers=forged)
    assert looked == 2


async def test_an_edited_endpoint_is_picked_up_within_its_ttl(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    await receive(receiver, clock, "m1")
    await connect(kit, None)  # it stops receiving webhooks
    assert (await receive(receiver, clock, "m2")).stored  # held for endpoint_ttl
    clock.advance(2)
    with pytest.raises(WebhookRefused) as caught:
        await receive(receiver, clock, "m3")
    assert (caught.value.status, caught.value.reason) == (404, "unknown_connection")
    await connect(kit, BLOCK)
    receiver.forget("acme", "crm")
    assert (await receive(receiver, clock, "m4")).stored


async def test_unknown_names_do_not_grow_the_endpoint_cache(
    kit: VaultKit, clock: FakeClock
) -> None:
    receiver = WebhookReceiver(kit.store, kit.vault, clock, public_url="https://hub.example",
                               max_endpoints=3)  # fmt: skip
    for i in range(20):
        with pytest.raises(WebhookRefused):
            await receive(receiver, clock, connection=f"nope-{i}")
    assert len(receiver._endpoints) <= 3
    await receiver.writer.flush()
    async with kit.store.unit_of_work("acme") as uow:
        assert await uow.webhooks_in.refusals() == []  # names the sender chose: not stored


async def test_a_body_past_the_limit_is_not_read_further(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    headers = lower(standard([KEY], BODY, clock.now(), "big"))
    body = Chunks(*[b"x" * 1024] * 100)
    with pytest.raises(WebhookRefused) as caught:
        await receive(receiver, clock, body=body, headers=headers)
    assert (caught.value.status, caught.value.reason) == (413, "too_large")
    assert body.pulled == 3  # 3 KiB read of 100: over 2 KiB at the third chunk
    declared = Chunks(b"x")
    with pytest.raises(WebhookRefused, match="larger than"):
        await receive(receiver, clock, body=declared,
                      headers={**headers, "content-length": "4096"})  # fmt: skip
    assert declared.pulled == 0


async def test_a_request_without_a_signature_is_refused_before_its_body_is_read(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    headers = lower(standard([KEY], BODY, clock.now(), "m1"))
    for gone in ("webhook-signature", "webhook-id", "webhook-timestamp"):
        body = Chunks(BODY)
        with pytest.raises(WebhookRefused):
            await receive(receiver, clock, body=body,
                          headers={k: v for k, v in headers.items() if k != gone})  # fmt: skip
        assert body.pulled == 0
    stale = lower(standard([KEY], BODY, datetime(2026, 11, 27, 8, 0, tzinfo=UTC), "old"))
    body = Chunks(BODY)
    with pytest.raises(WebhookRefused, match="tolerance"):
        await receive(receiver, clock, body=body, headers=stale)
    assert body.pulled == 0


async def test_a_flood_of_refusals_is_a_few_counted_rows(
    kit: VaultKit, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    forged = lower(standard([SECRET["standard_webhooks"][:-4] + "AAA="], BODY, clock.now(), "x"))
    for _ in range(1000):
        with pytest.raises(WebhookRefused):
            await receive(receiver, clock, headers={**forged, "user-agent": "flood"})
    await receiver.writer.flush()
    async with kit.store.unit_of_work("acme") as uow:
        (tally,) = await uow.webhooks_in.refusals()
    assert (tally.reason, tally.count, tally.connection) == ("bad_signature", 1000, "crm")
    assert tally.example["user-agent"] == "flood"
    assert "webhook-signature" not in tally.example
    assert receiver.writer.commits == 0  # counts are not webhooks: no inbox commit was made


async def test_only_new_webhooks_are_announced(receiver: WebhookReceiver, clock: FakeClock) -> None:
    heard: list[tuple[str, str]] = []
    stop = receiver.on_stored(lambda tenant, connection: heard.append((tenant, connection)))
    await receive(receiver, clock, "m1")
    await receive(receiver, clock, "m1")
    stop()
    await receive(receiver, clock, "m2")
    assert heard == [("acme", "crm")]


async def test_a_webhook_block_names_its_credential_by_reference(kit: VaultKit) -> None:
    service = ConnectionService(kit.store, kit.clock)
    base = {"base_url": "https://mls.invalid/odata"}
    added = await service.put("acme", ConnectionSpec(
        name="ok", system="mls", connector="mls/reso", config={**base, "webhook": BLOCK}
    ))  # fmt: skip
    assert added.config["webhook"]["credential"] == "hooks"
    for leaked in ("Bearer abc.def", "a secret with spaces"):
        with pytest.raises(ConfigurationError, match="never store secrets"):
            await service.put("acme", ConnectionSpec(
                name="leak", system="mls", connector="mls/reso",
                config={**base, "webhook": {**BLOCK, "credential": leaked}},
            ))  # fmt: skip
    spec = connector_spec("mls/reso")  # the connector's settings take the block too
    settings = spec.settings("ok", added.config)
    assert settings.webhook is not None  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="webhook"):
        spec.settings("bad", {**base, "webhook": {"scheme": "nope", "credential": "x"}})
