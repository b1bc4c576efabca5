"""``WebhooksStoreSuite``: the conformance tests of the webhooks-out repositories
(``uow.subscriptions``, ``uow.deliveries``): one delivery per (subscription, event id), claims
that two senders cannot share, a finish that only the claim's holder can write, redelivery that
is never doubled, and tenants that never see each other's.

``StoreSuite`` inherits it, so FakeStore, SQLite and PostgreSQL all run these.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.errors import AlreadyExists
from cadastre.ports import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store
    from cadastre.testing.clock import FakeClock

A, B = "acme", "globex"


def subscription(id: str = "sub_1", status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
                 ) -> Subscription:  # fmt: skip
    return Subscription(
        id=id, url="https://hooks.example.com/in", event_types=("cadastre.listing.*",),
        description="crm", status=status, status_reason="", failing_since=None,
        credential=f"subscription-{id}", created_at=EPOCH, updated_at=EPOCH,
    )  # fmt: skip


def delivery(id: str, event_id: str, sub: str = "sub_1", due: timedelta = timedelta(0)) -> Delivery:
    return Delivery(
        id=id, subscription=sub, event_id=event_id, event_type="cadastre.listing.updated.v1",
        body=f'{{"id": "{event_id}"}}', status=DeliveryStatus.PENDING, attempts=0,
        redeliveries=0, next_attempt_at=EPOCH + due, created_at=EPOCH, updated_at=EPOCH,
    )  # fmt: skip


def attempt(id: str, number: int = 1, status: int | None = 500) -> DeliveryAttempt:
    return DeliveryAttempt(id, 0, number, EPOCH, status, "" if status else "timeout", 0.25)


class WebhooksStoreSuite:
    async def _subscribed(self, store: Store, *ids: str) -> None:
        async with store.unit_of_work(A) as uow:
            for id in ids or ("sub_1",):
                await uow.subscriptions.add(subscription(id))
            await uow.commit()

    async def test_subscriptions_round_trip_per_tenant(self, store: Store) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(A) as uow:
            with pytest.raises(AlreadyExists):
                await uow.subscriptions.add(subscription("sub_1"))
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.subscriptions.get("sub_1") == subscription("sub_1")
            assert [s.id for s in await uow.subscriptions.all()] == ["sub_1", "sub_2"]
        async with store.unit_of_work(B) as uow:
            assert await uow.subscriptions.get("sub_1") is None
            assert await uow.subscriptions.all() == []
            assert not await uow.subscriptions.delete("sub_1")
        async with store.unit_of_work(A) as uow:
            assert await uow.subscriptions.delete("sub_2")
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [s.id for s in await uow.subscriptions.all()] == ["sub_1"]

    async def test_status_changes_once_and_enabling_stops_the_failure_clock(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._subscribed(store)
        later = EPOCH + timedelta(hours=1)
        async with store.unit_of_work(A) as uow:
            assert await uow.subscriptions.note_failure("sub_1", EPOCH) == EPOCH
            assert await uow.subscriptions.note_failure("sub_1", later) == EPOCH  # still running
            assert await uow.subscriptions.note_failure("nope", later) is None
            clock.advance(60)
            off = await uow.subscriptions.set_status("sub_1", SubscriptionStatus.DISABLED, "410")
            assert off is not None
            assert (off.status, off.status_reason, off.failing_since) == (
                SubscriptionStatus.DISABLED, "410", EPOCH,
            )  # fmt: skip
            assert off.updated_at == EPOCH + timedelta(seconds=60)
            # disabling again changes nothing, so a second sender raises no second alert
            assert await uow.subscriptions.set_status("sub_1", SubscriptionStatus.DISABLED) is None
            on = await uow.subscriptions.set_status("sub_1", SubscriptionStatus.ACTIVE)
            assert on is not None
            assert (on.status, on.status_reason, on.failing_since) == (
                SubscriptionStatus.ACTIVE, "", None,
            )  # fmt: skip
            assert await uow.subscriptions.note_failure("sub_1", later) == later
            await uow.subscriptions.note_success("sub_1")
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.subscriptions.get("sub_1")
        assert found is not None
        assert found.failing_since is None

    async def test_one_delivery_per_subscription_and_event(self, store: Store) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(A) as uow:
            added = await uow.deliveries.add_many(
                [delivery("d1", "e1"), delivery("d2", "e1", sub="sub_2"), delivery("d3", "e2")]
            )
            again = await uow.deliveries.add_many([delivery("d4", "e1"), delivery("d5", "e3")])
            await uow.commit()
        assert (added, again) == (3, 1)  # e1 for sub_1 is there already: d4 adds nothing
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [d.id for d in await uow.deliveries.find()] == ["d1", "d2", "d3", "d5"]
            assert [d.id for d in await uow.deliveries.find(subscription="sub_2")] == ["d2"]
            assert [d.id for d in await uow.deliveries.find(after="d2", limit=1)] == ["d3"]
            assert await uow.deliveries.get("d4") is None
            assert await uow.deliveries.get("d1") == delivery("d1", "e1")
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.deliveries.find() == []
            assert await uow.deliveries.get("d1") is None

    async def test_claim_takes_due_deliveries_of_active_subscriptions_once(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([
                delivery("d1", "e1", due=timedelta(seconds=5)), delivery("d2", "e2"),
                delivery("d3", "e3", due=timedelta(hours=1)), delivery("d4", "e4", sub="sub_2"),
            ])  # fmt: skip
            await uow.subscriptions.set_status("sub_2", SubscriptionStatus.DISABLED, "gone")
            await uow.commit()
        clock.advance(10)
        until = clock.now() + timedelta(minutes=1)
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.deliveries.any_due()
        async with store.unit_of_work(B, read_only=True) as uow:
            assert not await uow.deliveries.any_due()  # A's are not B's
        async with store.unit_of_work(A) as uow:
            first = await uow.deliveries.claim(holder="w1", until=until)
            second = await uow.deliveries.claim(holder="w2", until=until)
            await uow.commit()
        # oldest due first; d3 is not due; d4 waits for its subscription to be enabled
        assert [d.id for d in first] == ["d2", "d1"]
        assert second == []
        async with store.unit_of_work(A, read_only=True) as uow:
            assert not await uow.deliveries.any_due()  # d3 is not due, d4's is disabled
        async with store.unit_of_work(B) as uow:
            assert await uow.deliveries.claim(holder="w3", until=until) == []
        clock.advance(61)  # the claims ran out: their holder is presumed dead
        async with store.unit_of_work(A) as uow:
            taken = await uow.deliveries.claim(holder="w2", until=clock.now(), limit=1)
            await uow.commit()
        assert [d.id for d in taken] == ["d2"]

    async def test_a_claim_takes_no_more_than_its_limit(self, store: Store) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many(
                [delivery(f"d{i}", f"e{i}", sub=f"sub_{1 + i % 2}") for i in range(60)]
            )
            taken = await uow.deliveries.claim(holder="w", until=EPOCH + timedelta(hours=1),
                                               limit=7)  # fmt: skip
            await uow.commit()
        assert [d.id for d in taken] == [f"d{i}" for i in range(7)]  # the oldest due first

    async def test_concurrent_claims_never_share_a_delivery(self, store: Store) -> None:
        await self._subscribed(store)
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([delivery(f"d{i}", f"e{i}") for i in range(40)])
            await uow.commit()

        async def claim(holder: str) -> list[str]:
            taken: list[str] = []
            while True:
                async with store.unit_of_work(A) as uow:
                    got = await uow.deliveries.claim(
                        holder=holder, until=EPOCH + timedelta(hours=1), limit=3
                    )
                    await uow.commit()
                if not got:
                    return taken
                assert len(got) <= 3  # never more than asked for
                taken += [d.id for d in got]

        claimed = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
        every = [id for ids in claimed for id in ids]
        assert sorted(every) == sorted(f"d{i}" for i in range(40))  # each one, once

    async def test_finish_needs_the_claim_and_records_the_attempt(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._subscribed(store)
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([delivery("d1", "e1")])
            await uow.deliveries.claim(holder="w1", until=EPOCH + timedelta(minutes=1))
            await uow.commit()
        retry_at = EPOCH + timedelta(seconds=5)
        async with store.unit_of_work(A) as uow:
            lost = await uow.deliveries.finish(
                "d1", holder="w2", attempt=attempt("d1"), status=DeliveryStatus.PENDING,
                next_attempt_at=retry_at,
            )  # fmt: skip
            kept = await uow.deliveries.finish(
                "d1", holder="w1", attempt=attempt("d1", status=None),
                status=DeliveryStatus.PENDING, next_attempt_at=retry_at,
            )  # fmt: skip
            # finished: the claim is released, so the holder cannot write twice
            twice = await uow.deliveries.finish(
                "d1", holder="w1", attempt=attempt("d1"), status=DeliveryStatus.DEAD,
                next_attempt_at=None,
            )  # fmt: skip
            await uow.commit()
        assert (lost, kept, twice) == (False, True, False)
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.deliveries.get("d1")
            attempts = await uow.deliveries.attempts("d1")
        assert found is not None
        assert (found.status, found.attempts, found.next_attempt_at) == (
            DeliveryStatus.PENDING, 1, retry_at,
        )  # fmt: skip
        assert (found.last_status, found.last_error) == (None, "timeout")
        assert attempts == [attempt("d1", status=None)]
        clock.advance(5)
        async with store.unit_of_work(A) as uow:
            assert [d.id for d in await uow.deliveries.claim(holder="w3", until=clock.now())]
            ok = replace(attempt("d1", number=2, status=204), at=clock.now())
            assert await uow.deliveries.finish(
                "d1", holder="w3", attempt=ok, status=DeliveryStatus.DELIVERED, next_attempt_at=None
            )
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            done = await uow.deliveries.get("d1")
            assert len(await uow.deliveries.attempts("d1")) == 2
        assert done is not None
        assert (done.status, done.delivered_at, done.last_status) == (
            DeliveryStatus.DELIVERED, clock.now(), 204,
        )  # fmt: skip

    async def test_redelivery_starts_over_once(self, store: Store, clock: FakeClock) -> None:
        await self._subscribed(store)
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([delivery("d1", "e1"), delivery("d2", "e2")])
            await uow.deliveries.claim(holder="w", until=EPOCH + timedelta(minutes=1))
            await uow.deliveries.finish(
                "d1", holder="w", attempt=attempt("d1", number=8), status=DeliveryStatus.DEAD,
                next_attempt_at=None,
            )  # fmt: skip
            await uow.commit()
        clock.advance(3600)
        async with store.unit_of_work(A) as uow:
            assert await uow.deliveries.redeliver("d2") is None  # pending: already on its way
            again = await uow.deliveries.redeliver("d1")
            assert await uow.deliveries.redeliver("d1") is None  # not doubled
            await uow.commit()
        assert again is not None
        assert (again.status, again.attempts, again.redeliveries, again.next_attempt_at) == (
            DeliveryStatus.PENDING, 0, 1, clock.now(),
        )  # fmt: skip
        async with store.unit_of_work(B) as uow:
            assert await uow.deliveries.redeliver("d1") is None
        async with store.unit_of_work(A) as uow:
            # d2's claim ran out long ago; d1 is due again from now
            taken = await uow.deliveries.claim(holder="w", until=clock.now())
            assert [d.id for d in taken] == ["d2", "d1"]

    async def test_cancel_and_resume_touch_pending_deliveries_only(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([
                delivery("d1", "e1", due=timedelta(hours=5)), delivery("d2", "e2"),
                delivery("d3", "e1", sub="sub_2"),
            ])  # fmt: skip
            await uow.deliveries.claim(holder="w", until=EPOCH + timedelta(minutes=1), limit=1)
            await uow.deliveries.finish(
                "d2", holder="w", attempt=attempt("d2", status=200),
                status=DeliveryStatus.DELIVERED, next_attempt_at=None,
            )  # fmt: skip
            await uow.commit()
        clock.advance(60)
        async with store.unit_of_work(A) as uow:
            assert await uow.deliveries.resume("sub_1") == 1
            found = await uow.deliveries.get("d1")
            assert found is not None
            assert found.next_attempt_at == clock.now()
            assert await uow.deliveries.cancel("sub_1") == 1
            await uow.subscriptions.delete("sub_1")
            # a delivery of a removed subscription cannot be sent again
            assert await uow.deliveries.redeliver("d2") is None
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            statuses = {d.id: d.status for d in await uow.deliveries.find()}
        assert statuses == {
            "d1": DeliveryStatus.CANCELLED, "d2": DeliveryStatus.DELIVERED,
            "d3": DeliveryStatus.PENDING,
        }  # fmt: skip

    async def test_prune_deletes_only_what_nothing_sends_again(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._subscribed(store, "sub_1", "sub_2")
        async with store.unit_of_work(B) as uow:
            await uow.subscriptions.add(subscription("sub_1"))
            await uow.deliveries.add_many([delivery("b1", "e1")])
            await uow.deliveries.claim(holder="w", until=EPOCH + timedelta(minutes=1))
            await uow.deliveries.finish(
                "b1", holder="w", attempt=attempt("b1", status=200),
                status=DeliveryStatus.DELIVERED, next_attempt_at=None,
            )  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.deliveries.add_many([
                delivery("d1", "e1"), delivery("d2", "e2"), delivery("d3", "e3"),
                delivery("d4", "e4", sub="sub_2"), delivery("d5", "e5", sub="sub_2"),
                delivery("d6", "e6"),
                # added as its subscription was removed (a race): pending, never to be sent
                delivery("d7", "e7", sub="sub_gone", due=timedelta(days=5)),
            ])  # fmt: skip
            await uow.deliveries.claim(holder="w", until=EPOCH + timedelta(minutes=1), limit=4)
            for id, status, answered in (
                ("d1", DeliveryStatus.DELIVERED, 200),
                ("d2", DeliveryStatus.DEAD, 500),
                ("d3", DeliveryStatus.PENDING, 500),
                ("d4", DeliveryStatus.DEAD, 500),
            ):
                later = EPOCH + timedelta(hours=1) if status is DeliveryStatus.PENDING else None
                assert await uow.deliveries.finish(
                    id, holder="w", attempt=attempt(id, status=answered), status=status,
                    next_attempt_at=later,
                )  # fmt: skip
            await uow.deliveries.cancel("sub_2")  # d5; d4 stays dead
            await uow.subscriptions.delete("sub_2")
            await uow.commit()
        clock.advance(2 * 86_400)
        async with store.unit_of_work(A) as uow:  # d6 delivered now: too recent to go
            taken = await uow.deliveries.claim(holder="v", until=clock.now() + timedelta(hours=1))
            assert "d6" in {d.id for d in taken}
            assert await uow.deliveries.finish(
                "d6", holder="v", attempt=attempt("d6", status=204),
                status=DeliveryStatus.DELIVERED, next_attempt_at=None,
            )  # fmt: skip
            await uow.commit()

        cutoff = EPOCH + timedelta(days=1)
        async with store.unit_of_work(A) as uow:
            first = await uow.deliveries.prune(before=cutoff, limit=1)
            rest = await uow.deliveries.prune(before=cutoff)
            again = await uow.deliveries.prune(before=cutoff)
            await uow.commit()
        # d1 delivered, d4 dead of a removed subscription, d5 cancelled, d7 of no subscription;
        # d2 is sub_1's dead-letter queue, d3 still pending, d6 delivered after the cutoff
        assert (first, rest, again) == (1, 3, 0)
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [d.id for d in await uow.deliveries.find()] == ["d2", "d3", "d6"]
            assert await uow.deliveries.attempts("d1") == []
            assert len(await uow.deliveries.attempts("d2")) == 1
        async with store.unit_of_work(B, read_only=True) as uow:  # another tenant's: untouched
            assert [d.id for d in await uow.deliveries.find()] == ["b1"]
            assert len(await uow.deliveries.attempts("b1")) == 1
