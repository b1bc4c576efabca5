"""``EventStoreSuite``: the conformance tests of what the events issue added to the store port: the
change feed's numbering (``outbox.mark_published`` / ``outbox.feed``), the relay's round
(``pending_outbox_tenants``, ``watch_outbox``), the audit metric's hook (``watch_audit``) and
bus consumers' de-duplication (``uow.consumed``).

``StoreSuite`` inherits it, so every adapter runs these too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from cadastre.contract.events import EventEnvelope
from cadastre.ports import AuditDraft
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store
    from cadastre.testing.clock import FakeClock

A, B = "acme", "globex"


def _event(tenant: str, subject: str) -> EventEnvelope:
    return EventEnvelope(
        source="/mls/austin", type="cadastre.listing.updated.v1", subject=subject, time=EPOCH,
        tenant=tenant, data={"n": subject},
    )  # fmt: skip


async def _add(store: Store, tenant: str, n: int, prefix: str = "L") -> list[EventEnvelope]:
    events = [_event(tenant, f"{prefix}{i}") for i in range(n)]
    async with store.unit_of_work(tenant) as uow:
        await uow.outbox.add_many(events)
        await uow.commit()
    return events


async def _publish(store: Store, tenant: str, ids: list[str]) -> None:
    async with store.unit_of_work(tenant) as uow:
        await uow.outbox.mark_published(ids)
        await uow.commit()


class EventStoreSuite:
    async def test_the_feed_numbers_events_in_the_order_they_were_published(
        self, store: Store, clock: FakeClock
    ) -> None:
        a = await _add(store, A, 4)
        b = await _add(store, B, 2)
        # published out of position order: the feed follows the publishing, not the positions
        await _publish(store, A, [a[1].id, a[0].id])
        clock.advance(5)
        await _publish(store, A, [a[0].id, a[3].id, a[1].id, "no-such-event", b[0].id])
        await _publish(store, B, [b[1].id])
        async with store.unit_of_work(A, read_only=True) as uow:
            feed = await uow.outbox.feed()
            pending = await uow.outbox.pending()
            page = await uow.outbox.feed(after=1, limit=1)
        assert [(m.event.id, m.feed_seq) for m in feed] == [(a[1].id, 1), (a[0].id, 2),
                                                            (a[3].id, 3)]  # fmt: skip
        assert [m.published_at for m in feed] == [EPOCH, EPOCH, EPOCH + timedelta(seconds=5)]
        assert [m.event for m in feed] == [a[1], a[0], a[3]]
        assert [m.event.id for m in page] == [a[0].id]
        assert [(m.event.id, m.feed_seq, m.published_at) for m in pending] == [(a[2].id, None,
                                                                                None)]  # fmt: skip
        async with store.unit_of_work(B, read_only=True) as uow:
            # another tenant's id marks nothing here, and each tenant's feed counts from 1
            assert [(m.event.id, m.feed_seq) for m in await uow.outbox.feed()] == [(b[1].id, 1)]
            assert [m.event.id for m in await uow.outbox.pending()] == [b[0].id]

    async def test_marking_nothing_new_numbers_nothing(self, store: Store) -> None:
        a = await _add(store, A, 2)
        await _publish(store, A, [])
        await _publish(store, A, [a[0].id, a[0].id])  # a repeat counts once
        await _publish(store, A, [a[0].id])
        await _publish(store, A, [a[1].id])
        async with store.unit_of_work(A, read_only=True) as uow:
            assert [m.feed_seq for m in await uow.outbox.feed()] == [1, 2]

    async def test_a_numbering_waits_for_the_one_before_it_to_commit(self, store: Store) -> None:
        # Two relays at once (a lease ran out): the second reads the tenant's highest feed_seq
        # only once the first has committed, so numbers are neither repeated nor skipped, and
        # they commit in increasing order (a feed reader never sees 21 before 20).
        events = await _add(store, A, 40)
        first, second = [e.id for e in events[:20]], [e.id for e in events[20:]]
        async with store.unit_of_work(A) as uow:
            await uow.outbox.mark_published(first)
            later = asyncio.create_task(_publish(store, A, second))
            await asyncio.sleep(0.2)  # the second is in mark_published, waiting, by now
            await uow.commit()
        await asyncio.wait_for(later, 30)
        async with store.unit_of_work(A, read_only=True) as uow:
            feed = await uow.outbox.feed(limit=100)
        assert [m.feed_seq for m in feed] == list(range(1, 41))
        assert [m.event.id for m in feed] == first + second

    async def test_pending_outbox_tenants(self, store: Store) -> None:
        assert await store.pending_outbox_tenants() == []
        b = await _add(store, B, 1)
        a = await _add(store, A, 2)
        assert await store.pending_outbox_tenants() == [A, B]
        await _publish(store, B, [b[0].id])
        await _publish(store, A, [a[0].id])
        assert await store.pending_outbox_tenants() == [A]
        await _publish(store, A, [a[1].id])
        assert await store.pending_outbox_tenants() == []

    async def test_watch_outbox_hears_commits_that_wrote_events(self, store: Store) -> None:
        heard: list[str] = []
        stop = store.watch_outbox(heard.append)
        async with store.unit_of_work(A) as uow:
            await uow.outbox.add(_event(A, "L1"))
            await uow.outbox.add_many([_event(A, "L2"), _event(A, "L3")])
            assert heard == []  # not before the commit
            await uow.commit()
        assert heard == [A]  # once per commit
        async with store.unit_of_work(B) as uow:
            await uow.outbox.add(_event(B, "L1"))
            await uow.rollback()
            await uow.records.put("Listing", "L1", {}, expected_version=0)
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            await uow.outbox.add(_event(B, "L2"))  # left without commit: rolled back
        assert heard == [A]
        stop()
        await _add(store, A, 1, prefix="M")
        assert heard == [A]

    async def test_watch_audit_hears_how_many_entries_each_commit_appended(
        self, store: Store
    ) -> None:
        heard: list[tuple[str, int]] = []
        stop = store.watch_audit(lambda tenant, n: heard.append((tenant, n)))
        async with store.unit_of_work(A) as uow:
            await uow.audit.append(actor="t", action="one")
            await uow.audit.append_many([AuditDraft("t", "two"), AuditDraft("t", "three")])
            assert heard == []  # not before the commit
            await uow.commit()
            await uow.audit.append(actor="t", action="four")
            await uow.commit()
        assert heard == [(A, 3), (A, 1)]  # once per commit, with its count
        async with store.unit_of_work(B) as uow:
            await uow.audit.append(actor="t", action="rolled back")
            await uow.rollback()
            await uow.records.put("Listing", "L1", {}, expected_version=0)
            await uow.commit()  # appended nothing (what it had was rolled back)
        async with store.unit_of_work(B) as uow:
            await uow.audit.append(actor="t", action="left")  # left without commit
        assert heard == [(A, 3), (A, 1)]
        stop()
        async with store.unit_of_work(A) as uow:
            await uow.audit.append(actor="t", action="unheard")
            await uow.commit()
        assert heard == [(A, 3), (A, 1)]

    async def test_first_seen_marks_and_answers_what_is_new(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.consumed.first_seen("webhooks", ["e1", "e2", "e1"]) == ["e1", "e2"]
            assert await uow.consumed.first_seen("webhooks", ["e3", "e2", "e1"]) == ["e3"]
            assert await uow.consumed.first_seen("webhooks", []) == []
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            # per consumer and per tenant
            assert await uow.consumed.first_seen("detectors", ["e2", "e1"]) == ["e2", "e1"]
            assert await uow.consumed.first_seen("webhooks", ["e1", "e4"]) == ["e4"]
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            assert await uow.consumed.first_seen("webhooks", ["e1"]) == ["e1"]
            await uow.commit()

    async def test_a_mark_commits_with_the_effect_or_not_at_all(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.consumed.first_seen("audit", ["e1"]) == ["e1"]
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.rollback()
        async with store.unit_of_work(A) as uow:
            assert await uow.consumed.first_seen("audit", ["e1"]) == ["e1"]
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.consumed.first_seen("audit", ["e1"]) == []

    async def test_concurrent_consumers_of_one_event_act_once(self, store: Store) -> None:
        async def consume() -> list[str]:
            async with store.unit_of_work(A) as uow:
                new = await uow.consumed.first_seen("audit", ["e1", "e2"])
                await uow.commit()
                return new

        results = await asyncio.gather(*(consume() for _ in range(4)))
        assert sorted(id for new in results for id in new) == ["e1", "e2"]

    async def test_prune_forgets_old_marks_only(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.consumed.first_seen("audit", ["old1", "old2"])
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            await uow.consumed.first_seen("audit", ["old1"])
            await uow.commit()
        clock.advance(8 * 86400)
        async with store.unit_of_work(A) as uow:
            await uow.consumed.first_seen("audit", ["new1"])
            assert await uow.consumed.prune(before=clock.now() - timedelta(days=7)) == 2
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.consumed.first_seen("audit", ["old1", "new1"]) == ["old1"]
        async with store.unit_of_work(B) as uow:
            assert await uow.consumed.first_seen("audit", ["old1"]) == []
