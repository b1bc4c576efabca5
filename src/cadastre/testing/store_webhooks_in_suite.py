"""``WebhooksInStoreSuite``: the conformance tests of the webhooks-in repository
(``uow.webhooks_in``): a message stored once per connection, received order, due entries and
retries, settlement, listing, counts, pruning, and the refusal tally.

``StoreSuite`` inherits it, so every adapter runs these too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from cadastre.ports import (
    InboxSettlement,
    InboxStatus,
    ReceivedWebhook,
    RefusalTally,
    StoresWebhooksAtOnce,
)
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.ports import Store
    from cadastre.testing.clock import FakeClock

A, B = "acme", "globex"
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


def _hook(message_id: str, connection: str = "hooks", body: bytes = b'{"n": 1}',
          at: timedelta = timedelta()) -> ReceivedWebhook:  # fmt: skip
    return ReceivedWebhook(connection, message_id, EPOCH + at, HEADERS, body)


class WebhooksInStoreSuite:
    async def test_a_message_is_stored_once_per_connection(self, store: Store) -> None:
        body = bytes(range(256))  # any bytes: the body is what the signature covered
        async with store.unit_of_work(A) as uow:
            first = await uow.webhooks_in.add_many(
                [_hook("m1", body=body), _hook("m2"), _hook("m1", body=b"twin"),
                 _hook("m1", connection="other")]
            )  # fmt: skip
            await uow.commit()
        assert first == [True, True, False, True]
        async with store.unit_of_work(A) as uow:
            again = await uow.webhooks_in.add_many([_hook("m2"), _hook("m3")])
            await uow.commit()
        assert again == [False, True]
        async with store.unit_of_work(A, read_only=True) as uow:
            held = await uow.webhooks_in.get("hooks", "m1")
            missing = await uow.webhooks_in.get("hooks", "nope")
        assert held is not None
        assert (held.body, held.headers, held.status, held.attempts) == (
            body,
            HEADERS,
            InboxStatus.PENDING,
            0,
        )
        assert held.received_at == EPOCH
        assert (held.next_attempt_at, held.processed_at, held.error) == (None, None, "")
        assert missing is None

    async def test_tenants_do_not_share_an_inbox(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([_hook("m1")])
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            assert await uow.webhooks_in.add_many([_hook("m1")]) == [True]
            await uow.commit()
        async with store.unit_of_work(B, read_only=True) as uow:
            assert [e.message_id for e in await uow.webhooks_in.entries()] == ["m1"]
            assert await uow.webhooks_in.due_connections(now=EPOCH) == ["hooks"]

    async def test_a_rolled_back_add_leaves_nothing(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([_hook("m1")])
        async with store.unit_of_work(A) as uow:
            assert await uow.webhooks_in.add_many([_hook("m1")]) == [True]

    async def test_due_entries_come_in_received_order(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([_hook(f"m{i}") for i in range(5)])
            await uow.webhooks_in.add_many([_hook("x1", connection="other")])
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            due = await uow.webhooks_in.due("hooks", now=EPOCH, limit=3)
            names = await uow.webhooks_in.due_connections(now=EPOCH)
        assert [e.message_id for e in due] == ["m0", "m1", "m2"]
        assert due[0].position < due[1].position < due[2].position
        assert names == ["hooks", "other"]

    async def test_settled_entries_leave_and_retries_wait(self, store: Store,
                                                         clock: FakeClock) -> None:  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([_hook(f"m{i}") for i in range(4)])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            m0, m1, m2, m3 = await uow.webhooks_in.due("hooks", now=EPOCH)
            later = EPOCH + timedelta(minutes=5)
            await uow.webhooks_in.settle([
                InboxSettlement(m0.position, InboxStatus.PROCESSED, 0),
                InboxSettlement(m1.position, InboxStatus.PENDING, 1, "vendor down", later),
                InboxSettlement(m2.position, InboxStatus.FAILED, 8, "gave up"),
                InboxSettlement(m3.position, InboxStatus.QUARANTINED, 0, "not JSON"),
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.webhooks_in.due("hooks", now=EPOCH) == []
            assert await uow.webhooks_in.due_connections(now=EPOCH) == []
            (retry,) = await uow.webhooks_in.due("hooks", now=later)
            failed = await uow.webhooks_in.get("hooks", "m2")
            done = await uow.webhooks_in.get("hooks", "m0")
        assert (retry.message_id, retry.attempts, retry.error) == ("m1", 1, "vendor down")
        assert (retry.next_attempt_at, retry.processed_at) == (later, None)
        assert failed is not None
        assert done is not None
        assert (failed.status, failed.attempts, failed.error) == (InboxStatus.FAILED, 8, "gave up")
        assert failed.processed_at == clock.now() == done.processed_at

    async def test_entries_newest_first_and_counts(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([_hook(f"m{i}") for i in range(4)])
            await uow.webhooks_in.add_many([_hook("x", connection="other")])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            first = (await uow.webhooks_in.due("hooks", now=EPOCH))[0]
            await uow.webhooks_in.settle(
                [InboxSettlement(first.position, InboxStatus.FAILED, 3, "broken")]
            )
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            newest = await uow.webhooks_in.entries("hooks", limit=2)
            older = await uow.webhooks_in.entries("hooks", before=newest[-1].position)
            failed = await uow.webhooks_in.entries(status=InboxStatus.FAILED)
            counts = await uow.webhooks_in.counts()
        assert [e.message_id for e in newest] == ["m3", "m2"]
        assert [e.message_id for e in older] == ["m1", "m0"]
        assert [e.message_id for e in failed] == ["m0"]
        assert counts == {
            ("hooks", InboxStatus.PENDING): 3, ("hooks", InboxStatus.FAILED): 1,
            ("other", InboxStatus.PENDING): 1,
        }  # fmt: skip

    async def test_prune_keeps_pending_and_recent_entries(self, store: Store) -> None:
        day = timedelta(days=1)
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.add_many([
                _hook("old-done"), _hook("old-failed"), _hook("old-pending"),
                _hook("new-done", at=10 * day),
            ])  # fmt: skip
            rows = {e.message_id: e.position for e in await uow.webhooks_in.entries()}
            await uow.webhooks_in.settle([
                InboxSettlement(rows["old-done"], InboxStatus.PROCESSED, 0),
                InboxSettlement(rows["old-failed"], InboxStatus.FAILED, 8, "gave up"),
                InboxSettlement(rows["new-done"], InboxStatus.QUARANTINED, 0),
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(B) as uow:  # another tenant's old entry is not touched
            await uow.webhooks_in.add_many([_hook("old-done")])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            gone = await uow.webhooks_in.prune(settled_before=EPOCH + day,
                                               failed_before=EPOCH)  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            left = {e.message_id for e in await uow.webhooks_in.entries()}
            assert await uow.webhooks_in.add_many([_hook("old-done")]) == [True]
            gone_too = await uow.webhooks_in.prune(settled_before=EPOCH + day,
                                                   failed_before=EPOCH + day)  # fmt: skip
        assert gone == 1
        assert left == {"old-failed", "old-pending", "new-done"}
        assert gone_too == 1  # old-failed; old-done came back pending
        async with store.unit_of_work(B, read_only=True) as uow:
            assert len(await uow.webhooks_in.entries()) == 1

    async def test_refusals_add_up_per_minute(self, store: Store) -> None:
        minute = EPOCH.replace(second=0, microsecond=0)
        later = minute + timedelta(minutes=1)

        def tally(reason: str, count: int, at: timedelta, example: str,
                  start: datetime = minute) -> RefusalTally:  # fmt: skip
            return RefusalTally("hooks", reason, start, count, EPOCH + at, {"user-agent": example})

        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.count_refusals([
                tally("bad_signature", 2, timedelta(seconds=5), "first"),
                tally("stale_timestamp", 1, timedelta(seconds=6), "stale"),
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.webhooks_in.count_refusals([
                tally("bad_signature", 3, timedelta(seconds=9), "last"),
                tally("bad_signature", 1, timedelta(seconds=7), "not the last"),
                tally("bad_signature", 1, timedelta(seconds=61), "next minute", later),
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.webhooks_in.refusals()
            recent = await uow.webhooks_in.refusals(since=later)
            none = await uow.webhooks_in.refusals("other")
        assert [(r.reason, r.minute, r.count, r.example["user-agent"]) for r in found] == [
            ("bad_signature", later, 1, "next minute"),
            ("bad_signature", minute, 6, "last"),
            ("stale_timestamp", minute, 1, "stale"),
        ]
        assert found[1].last_at == EPOCH + timedelta(seconds=9)
        assert [r.minute for r in recent] == [later]
        assert none == []
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.webhooks_in.refusals() == []
        async with store.unit_of_work(A) as uow:
            assert await uow.webhooks_in.prune_refusals(before=later) == 2
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [r.minute for r in await uow.webhooks_in.refusals()] == [later]


async def check_batched_inbox_write(store: Store) -> None:
    """What a store that writes inbox batches at once (``StoresWebhooksAtOnce``: SQLite) must
    keep of the unit of work's rules; run by the SQLite store's own tests, since the other
    stores have no such path."""
    assert isinstance(store, StoresWebhooksAtOnce)
    minute = EPOCH.replace(second=0, microsecond=0)
    tally = RefusalTally("hooks", "bad_signature", minute, 2, EPOCH, {"user-agent": "x"})
    body = bytes(range(256))
    first = await store.store_webhooks(
        A, [_hook("m1", body=body), _hook("m2"), _hook("m1")], [tally]
    )
    again = await store.store_webhooks(A, [_hook("m2"), _hook("m3")], [tally])
    assert (first, again) == ([True, True, False], [False, True])
    assert await store.store_webhooks(B, [_hook("m1")], []) == [True]
    assert await store.store_webhooks(A, [], [tally]) == []
    async with store.unit_of_work(A, read_only=True) as uow:
        held = await uow.webhooks_in.get("hooks", "m1")
        found = await uow.webhooks_in.entries()
        (counted,) = await uow.webhooks_in.refusals()
    assert held is not None
    assert (held.body, held.headers, held.status, held.received_at) == (
        body, HEADERS, InboxStatus.PENDING, EPOCH
    )  # fmt: skip
    assert [e.message_id for e in found] == ["m3", "m2", "m1"]
    assert counted.count == 6
