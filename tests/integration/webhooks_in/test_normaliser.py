"""The webhook normaliser on a real hub (SQLite and PostgreSQL) with the test connector: stored
webhooks become records through the sync engine as a polled page would, in received order;
what cannot be read is quarantined (``malformed_webhook``), never lost; a connector failure is
retried on its schedule and finally marked failed without holding up later webhooks."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from cadastre.api import create_app
from cadastre.bootstrap import Hub
from cadastre.cli.serve import serve_app
from cadastre.directory import ConnectionSpec
from cadastre.errors import StoreError
from cadastre.ports import ConnectionStatus, InboxSettlement, InboxStatus, StoredRecord
from cadastre.store.sqlite import SqliteStore
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock
from cadastre.webhooks.inbox import Accepted
from cadastre.webhooks.normalise import RETRY_AFTER, WebhookNormaliser
from cadastre.webhooks.reading import PAGE_STREAM
from tests import webhook_connector as hooks
from tests.integration.webhooks_in.conftest import CRM_SECRET, TENANT
from tests.webhook_signers import lower, standard


async def deliver(hub: Hub, clock: FakeClock, body: bytes, msg_id: str) -> Accepted:
    headers = lower(standard([CRM_SECRET], body, clock.now(), msg_id))

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return await hub.webhooks_in.receive(
        TENANT, "crm", method="POST", path=f"/webhooks/{TENANT}/crm", query="", headers=headers,
        body=chunks(),
    )  # fmt: skip


@pytest.fixture
def normaliser(hub: Hub) -> WebhookNormaliser:
    return hub.webhooks_in.normaliser(hub)


async def listing(hub: Hub, key: str) -> StoredRecord | None:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        canonical = await uow.xref.resolve("mls", "crm", "Listing", key)
        return None if canonical is None else await uow.records.get("Listing", canonical)


async def entries(hub: Hub) -> dict[str, Any]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return {e.message_id: e for e in await uow.webhooks_in.entries("crm", limit=1000)}


async def quarantined(hub: Hub) -> list[Any]:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        return await uow.quarantine.open_items("crm")


async def test_webhooks_become_records_in_received_order(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    await deliver(hub, clock, hooks.body(hooks.listing("L1", ListPrice=1)), "m1")
    await deliver(hub, clock, hooks.body(hooks.listing("L2", ListPrice=2)), "m2")
    # L1 again, newer: the same page cannot hold both versions, so it starts another
    later = "2026-11-27T08:30:00Z"
    await deliver(hub, clock, hooks.body(hooks.listing("L1", later, ListPrice=3)), "m3")
    assert await normaliser.run_once() == 3
    first, second = await listing(hub, "L1"), await listing(hub, "L2")
    assert first is not None
    assert second is not None
    assert (first.data["ListPrice"], first.version) == ("3", 2)  # decimals are kept as text
    assert second.data["ListPrice"] == "2"
    assert {e.status for e in (await entries(hub)).values()} == {InboxStatus.PROCESSED}
    assert await quarantined(hub) == []  # no duplicate_in_page for the two versions of L1
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        cursor = await uow.cursors.get("crm", PAGE_STREAM)
        polling = await uow.cursors.get("crm", "Property")
    assert cursor is not None
    assert polling is None  # the polling cursor is not touched
    assert await normaliser.run_once() == 0


async def test_what_cannot_be_read_is_quarantined_never_lost(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    await deliver(hub, clock, b"this is not JSON", "garbage")
    await deliver(hub, clock, hooks.body(42, hooks.listing("L1")), "half")
    await deliver(hub, clock, hooks.body(hooks.listing("L2", ListPrice="N/A")), "rejected")
    await normaliser.run_once()
    found = await entries(hub)
    assert found["garbage"].status is InboxStatus.QUARANTINED
    assert found["half"].status is InboxStatus.PROCESSED  # L1 applied, the 42 set aside
    assert found["rejected"].status is InboxStatus.PROCESSED  # applied: the engine refused it
    assert await listing(hub, "L1") is not None
    assert await listing(hub, "L2") is None
    by_code: dict[str, list[Any]] = {}
    for item in await quarantined(hub):
        by_code.setdefault(item.code, []).append(item)
    assert sorted(by_code) == ["invalid_value", "malformed_webhook"]
    bodies = {q.payload.get("message_id"): q.payload for q in by_code["malformed_webhook"]}
    assert bodies["garbage"]["body"] == "this is not JSON"
    assert "webhook-signature" not in bodies["garbage"]["headers"]
    assert bodies["half"]["data"] == {"value": 42}
    assert by_code["invalid_value"][0].external_id == "L2"


async def test_a_nul_character_never_stops_an_entry_from_being_settled(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    # PostgreSQL keeps no NUL character in text or jsonb: a quarantine entry or an error holding
    # one would fail the transaction that settles the batch, at every round, for ever.
    hooks.FAILING.add("down\x00")
    await deliver(hub, clock, b"\x00 not JSON", "body")  # quarantined whole
    await deliver(hub, clock, hooks.body("a\x00b", hooks.listing("L1")), "record")  # one bad item
    await deliver(hub, clock, hooks.body(fail="down\x00"), "error")  # retried, with its reason
    await deliver(hub, clock, hooks.body(hooks.listing("L2")), "fine")
    # and a key longer than the quarantine's column, which PostgreSQL would refuse
    await deliver(hub, clock, orjson.dumps({"unreadable": "K" * 300}), "long")
    assert await normaliser.run_once() == 4
    found = await entries(hub)
    assert found["body"].status is InboxStatus.QUARANTINED
    assert found["record"].status is InboxStatus.PROCESSED
    assert found["fine"].status is InboxStatus.PROCESSED
    assert found["long"].status is InboxStatus.QUARANTINED
    assert (found["error"].status, found["error"].attempts) == (InboxStatus.PENDING, 1)
    assert "vendor down" in found["error"].error
    assert await listing(hub, "L1") is not None
    by_id = {q.payload["message_id"]: q.payload for q in await quarantined(hub)}
    assert base64.b64decode(by_id["body"]["body_base64"]) == b"\x00 not JSON"  # kept exactly
    assert by_id["record"]["data"] == {"value": "a\ufffdb"}
    assert by_id["long"]["data"] == {"key": "K" * 300}  # the whole key kept in the payload


async def test_a_failing_webhook_is_retried_then_failed_without_holding_up_later_ones(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    hooks.FAILING.update({"down", "blip"})
    await deliver(hub, clock, hooks.body(hooks.listing("L1"), fail="down"), "down")
    await deliver(hub, clock, hooks.body(hooks.listing("L2"), fail="blip"), "blip")
    await deliver(hub, clock, hooks.body(hooks.listing("L3")), "fine")
    assert await normaliser.run_once() == 1
    found = await entries(hub)
    assert found["fine"].status is InboxStatus.PROCESSED
    assert await listing(hub, "L3") is not None  # not held up by the two before it
    down = found["down"]
    assert (down.status, down.attempts) == (InboxStatus.PENDING, 1)
    assert down.next_attempt_at == clock.now() + timedelta(seconds=RETRY_AFTER[0])
    assert "vendor down: down" in down.error
    assert await normaliser.run_once() == 0  # not due yet: nothing is read again
    hooks.FAILING.discard("blip")  # the vendor is back for one of them
    for wait in RETRY_AFTER:
        clock.advance(wait)
        await normaliser.run_once()
    found = await entries(hub)
    assert found["blip"].status is InboxStatus.PROCESSED
    assert await listing(hub, "L2") is not None
    down = found["down"]
    assert (down.status, down.attempts) == (InboxStatus.FAILED, len(RETRY_AFTER) + 1)
    assert "vendor down: down" in down.error
    assert await listing(hub, "L1") is None


async def test_a_webhook_the_store_refuses_is_retried_alone_and_never_takes_others_with_it(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL refuses a NUL character in text (jsonb): the page holding that record fails
    # whole, and not for a passing reason. SQLite takes it, so there the engine is made to
    # refuse it the same way.
    if isinstance(hub.store, SqliteStore):
        real = SyncEngine.apply_batch

        async def apply_batch(self: SyncEngine, changes: Any, **kwargs: Any) -> Any:
            if any("\x00" in str(v) for c in changes for v in c.fields.values()):
                raise StoreError("database: a NUL character cannot be stored")
            return await real(self, changes, **kwargs)

        monkeypatch.setattr(SyncEngine, "apply_batch", apply_batch)
    await deliver(hub, clock, hooks.body(hooks.listing("L1", ListPrice=1)), "before")
    poison = hooks.listing("L2", ListPrice=2, PublicRemarks="a\x00b")
    await deliver(hub, clock, hooks.body(poison), "poison")
    await deliver(hub, clock, hooks.body(hooks.listing("L3", ListPrice=3)), "after")
    for wait in (0.0, *RETRY_AFTER):
        clock.advance(wait)
        await normaliser.run_once()
        # the entries beside it in its page go through at once, and never fail with it
        found = await entries(hub)
        assert found["before"].status is InboxStatus.PROCESSED
        assert found["after"].status is InboxStatus.PROCESSED
    assert await listing(hub, "L1") is not None
    assert await listing(hub, "L3") is not None
    assert await listing(hub, "L2") is None
    poisoned = (await entries(hub))["poison"]
    assert (poisoned.status, poisoned.attempts) == (InboxStatus.FAILED, len(RETRY_AFTER) + 1)
    assert "StoreError" in poisoned.error


async def test_applying_again_after_a_lost_settlement_has_no_second_effect(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    await deliver(hub, clock, hooks.body(hooks.listing("L1", ListPrice=7)), "m1")
    await normaliser.run_once()
    before = await listing(hub, "L1")
    async with hub.store.unit_of_work(TENANT) as uow:  # as if the process died before settling
        entry = (await uow.webhooks_in.entries("crm"))[0]
        await uow.webhooks_in.settle([InboxSettlement(entry.position, InboxStatus.PENDING, 0)])
        events = len(await uow.outbox.pending(limit=1000))
        await uow.commit()
    assert await normaliser.run_once() == 1
    assert await listing(hub, "L1") == before  # same version: the engine saw a duplicate
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        assert len(await uow.outbox.pending(limit=1000)) == events  # and announced nothing new


async def test_a_paused_connection_keeps_its_webhooks_until_resumed(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    current = await hub.connections.get(TENANT, "crm")
    spec = ConnectionSpec(name="crm", system="mls", connector=hooks.NAME,
                          config=dict(current.config), status=ConnectionStatus.PAUSED)  # fmt: skip
    await hub.connections.put(TENANT, spec)
    await deliver(hub, clock, hooks.body(hooks.listing("L1")), "m1")  # still taken in
    assert await normaliser.run_once() == 0
    assert (await entries(hub))["m1"].status is InboxStatus.PENDING
    await hub.connections.put(TENANT, spec.model_copy(update={"status": ConnectionStatus.ACTIVE}))
    assert await normaliser.run_once() == 1


async def test_settled_webhooks_are_pruned_after_the_replay_window(
    hub: Hub, clock: FakeClock, normaliser: WebhookNormaliser
) -> None:
    await deliver(hub, clock, hooks.body(hooks.listing("L1")), "m1")
    await normaliser.run_once()
    clock.advance(6 * 86_400)
    assert await normaliser.prune() == 0  # kept for the replay window
    assert (await deliver(hub, clock, hooks.body(hooks.listing("L1")), "m1")).stored is False
    clock.advance(2 * 86_400)
    assert await normaliser.prune() == 1


async def test_the_running_hub_normalises_what_arrives_over_http(
    hub: Hub, clock: FakeClock
) -> None:
    body = hooks.body(hooks.listing("L9", ListPrice=9))
    async with (
        hub.running(),
        serve_app(create_app(hub)) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        answer = await client.post(
            f"/webhooks/{TENANT}/crm",
            content=body,
            headers=standard([CRM_SECRET], body, clock.now(), "m9"),
        )
        assert answer.status_code == 200
        for _ in range(500):  # the receiver nudges the worker: no poll interval to wait out
            if await listing(hub, "L9") is not None:
                break
            await asyncio.sleep(0.01)
    found = await listing(hub, "L9")
    assert found is not None
    assert found.data["ListPrice"] == "9"
