"""``IdempotencyStoreSuite``: the conformance tests of ``uow.idempotency`` (the unified API's
Idempotency-Key): begin inserts or finds, exactly one of concurrent begins starts, a dead
request's key is taken over once its lock runs out (same fingerprint only), finish and release
write only for the holder, reap keeps what is young or held, and tenants never see each other's
keys. Run against FakeStore, SQLite and PostgreSQL (``tests/conformance/test_store.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.ports import IdempotencyState, StoredResponse
from cadastre.testing.clock import EPOCH, FakeClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cadastre.ports import IdempotencyBegun, Store

    Begin = Callable[..., Awaitable[IdempotencyBegun]]

A, B = "acme", "globex"
FP = "f" * 64
LOCK = timedelta(seconds=60)
CREATED = StoredResponse(
    201, {"content-type": "application/json", "location": "/v1/things/1"}, b'{"id": "1"}\x00\xff'
)


class IdempotencyStoreSuite:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def begin(self, store: Store, clock: FakeClock) -> Begin:
        async def begin(
            key: str = "k1", *, tenant: str = A, holder: str = "r1", fingerprint: str = FP,
            lock: timedelta = LOCK,
        ) -> IdempotencyBegun:  # fmt: skip
            async with store.unit_of_work(tenant) as uow:
                begun = await uow.idempotency.begin(
                    key, method="POST", path="/v1/things", fingerprint=fingerprint,
                    holder=holder, locked_until=clock.now() + lock,
                )  # fmt: skip
                await uow.commit()
            return begun

        return begin

    async def test_begin_inserts_then_finds(self, store: Store, begin: Begin) -> None:
        first = await begin()
        assert first.started
        assert first.record.state is IdempotencyState.IN_FLIGHT
        assert (first.record.key, first.record.holder, first.record.created_at) == (
            "k1",
            "r1",
            EPOCH,
        )
        assert first.record.locked_until == EPOCH + LOCK
        again = await begin(holder="r2")
        assert not again.started
        assert again.record.holder == "r1"  # held by the first, untouched

    async def test_finish_stores_the_response_for_its_holder_only(
        self, store: Store, begin: Begin
    ) -> None:
        await begin()
        async with store.unit_of_work(A) as uow:
            assert not await uow.idempotency.finish("k1", holder="r2", response=CREATED)
            assert await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            assert not await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.idempotency.get("k1")
        assert found is not None
        assert found.state is IdempotencyState.DONE
        assert found.response is not None
        assert (found.response.status, dict(found.response.headers), found.response.body) == (
            201, dict(CREATED.headers), CREATED.body,
        )  # fmt: skip
        assert found.response.key_id is None
        later = await begin(holder="r3")
        assert not later.started
        assert later.record.response is not None

    async def test_a_sealed_body_keeps_its_key(self, store: Store, begin: Begin) -> None:
        await begin()
        sealed = StoredResponse(201, {}, b"\x01cipher", key_id="k-2026", wrapped_key=b"\x02wrap")
        async with store.unit_of_work(A) as uow:
            assert await uow.idempotency.finish("k1", holder="r1", response=sealed)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.idempotency.get("k1")
        assert found is not None
        assert found.response is not None
        assert (found.response.key_id, found.response.wrapped_key) == ("k-2026", b"\x02wrap")
        assert found.response.body == b"\x01cipher"
        assert "cipher" not in repr(found.response)

    async def test_release_forgets_a_held_key(self, store: Store, begin: Begin) -> None:
        await begin()
        async with store.unit_of_work(A) as uow:
            assert not await uow.idempotency.release("k1", holder="r2")
            assert await uow.idempotency.release("k1", holder="r1")
            await uow.commit()
        assert (await begin(holder="r2")).started

    async def test_release_never_forgets_a_stored_response(
        self, store: Store, begin: Begin
    ) -> None:
        await begin()
        async with store.unit_of_work(A) as uow:
            await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            assert not await uow.idempotency.release("k1", holder="r1")
            await uow.commit()
        assert not (await begin(holder="r2")).started

    async def test_an_expired_lock_is_taken_over_once(
        self, store: Store, begin: Begin, clock: FakeClock
    ) -> None:
        await begin()
        clock.advance(59)
        assert not (await begin(holder="r2")).started  # still held
        clock.advance(1)
        assert not (await begin(holder="r2", fingerprint="0" * 64)).started  # other body
        taken = await begin(holder="r2")
        assert taken.started
        assert (taken.record.holder, taken.record.locked_until) == ("r2", EPOCH + 2 * LOCK)
        assert taken.record.created_at == EPOCH
        assert not (await begin(holder="r3")).started
        async with store.unit_of_work(A) as uow:  # the dead holder can no longer store
            assert not await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            assert await uow.idempotency.finish("k1", holder="r2", response=CREATED)
            await uow.commit()

    async def test_concurrent_begins_start_exactly_one(self, store: Store, begin: Begin) -> None:
        results = await asyncio.gather(*(begin(holder=f"r{i}") for i in range(20)))
        started = [r for r in results if r.started]
        assert len(started) == 1
        winner = started[0].record.holder
        assert all(r.record.holder == winner for r in results)

    async def test_concurrent_takeovers_start_exactly_one(
        self, store: Store, begin: Begin, clock: FakeClock
    ) -> None:
        await begin(holder="dead")
        clock.advance(61)
        results = await asyncio.gather(*(begin(holder=f"r{i}") for i in range(10)))
        assert sum(r.started for r in results) == 1

    async def test_keys_are_per_tenant(self, store: Store, begin: Begin) -> None:
        await begin()
        async with store.unit_of_work(A) as uow:
            await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            await uow.commit()
        other = await begin(tenant=B, holder="b1")
        assert other.started
        assert other.record.response is None
        async with store.unit_of_work(B) as uow:
            assert not await uow.idempotency.finish("k1", holder="r1", response=CREATED)
            assert await uow.idempotency.reap(before=EPOCH + timedelta(days=9)) == 0  # held
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.idempotency.get("k1")
        assert found is not None
        assert found.state is IdempotencyState.DONE

    async def test_reap_keeps_young_and_held_keys(
        self, store: Store, begin: Begin, clock: FakeClock
    ) -> None:
        await begin("done-old")
        await begin("held-old", lock=timedelta(days=3))
        await begin("dead-old")
        async with store.unit_of_work(A) as uow:
            await uow.idempotency.finish("done-old", holder="r1", response=CREATED)
            await uow.commit()
        clock.advance(timedelta(hours=24).total_seconds())
        await begin("young")
        async with store.unit_of_work(A) as uow:
            assert await uow.idempotency.reap(before=EPOCH) == 0  # nothing older than that
            gone = await uow.idempotency.reap(before=clock.now() - timedelta(hours=1))
            await uow.commit()
        assert gone == 2  # done-old and dead-old (its lock ran out); held-old is still running
        async with store.unit_of_work(A, read_only=True) as uow:
            left = {k for k in ("done-old", "held-old", "dead-old", "young")
                    if await uow.idempotency.get(k) is not None}  # fmt: skip
        assert left == {"held-old", "young"}

    async def test_reap_takes_at_most_limit(
        self, store: Store, begin: Begin, clock: FakeClock
    ) -> None:
        for i in range(5):
            await begin(f"k{i}", lock=timedelta(0))
        clock.advance(10)
        async with store.unit_of_work(A) as uow:
            assert await uow.idempotency.reap(before=clock.now(), limit=3) == 3
            assert await uow.idempotency.reap(before=clock.now(), limit=3) == 2
            await uow.commit()
