"""``WritesStoreSuite``: the conformance tests of the write-back repository (``uow.writes``): a
write and its targets stored together, claims two workers cannot share, a ``sending`` target
taken over only once its worker's claim ran out, settles only the holder can write, the kill
switch's held targets released, switches, echo records, and tenants that never see each other's.

A class gives it a ``store`` fixture (FakeStore, SQLite, PostgreSQL: see
``tests/conformance/test_store.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.errors import AlreadyExists
from cadastre.ports import (
    StoredWrite,
    WritebackMode,
    WriteEcho,
    WriteOperation,
    WriteState,
    WriteTarget,
)
from cadastre.testing.clock import EPOCH, FakeClock

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"


def write(id: str = "w1", canonical_id: str = "C1") -> StoredWrite:
    return StoredWrite(
        id=id, entity="Contact", canonical_id=canonical_id, operation=WriteOperation.UPDATE,
        patch={"Email": "ann@example.com", "Notes": None}, actor="cad_k1", causation_id=None,
        created_at=EPOCH,
    )  # fmt: skip


def target(write_id: str = "w1", connection: str = "hubspot", **extra: object) -> WriteTarget:
    values: dict[str, object] = {
        "write_id": write_id, "connection": connection, "system": "crm", "entity": "Contact",
        "canonical_id": "C1", "operation": WriteOperation.UPDATE,
        "fields": {"Email": "ann@example.com", "Notes": None}, "key": f"k-{write_id}",
        "state": WriteState.PENDING, "external_id": "501",
    }  # fmt: skip
    return WriteTarget(**(values | extra))  # type: ignore[arg-type]


class WritesStoreSuite:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    async def _add(self, store: Store, *writes: tuple[StoredWrite, list[WriteTarget]],
                   tenant: str = A) -> None:  # fmt: skip
        async with store.unit_of_work(tenant) as uow:
            for w, targets in writes:
                await uow.writes.add(w, targets)
            await uow.commit()

    async def test_a_write_and_its_targets_are_stored_together(self, store: Store) -> None:
        await self._add(store, (write(), [target(connection="b"), target(connection="a")]))
        async with store.unit_of_work(A) as uow:
            stored = await uow.writes.get("w1")
            targets = await uow.writes.targets("w1")
            with pytest.raises(AlreadyExists):
                await uow.writes.add(write(), [])
        assert stored == write()
        assert [x.connection for x in targets] == ["a", "b"]
        assert targets[0].fields == {"Email": "ann@example.com", "Notes": None}
        assert targets[0].state is WriteState.PENDING
        assert targets[0].updated_at == EPOCH

    async def test_a_rolled_back_write_leaves_nothing(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.writes.add(write(), [target()])
            await uow.writes.set_stopped("", True, by="ops", reason="drill")
            await uow.rollback()
        async with store.unit_of_work(A) as uow:
            assert await uow.writes.get("w1") is None
            assert await uow.writes.targets("w1") == []
            assert await uow.writes.switches() == {}

    async def test_tenants_never_see_each_others(self, store: Store) -> None:
        await self._add(store, (write(), [target()]))
        await self._add(store, (write("w2"), [target("w2")]), tenant=B)
        async with store.unit_of_work(B) as uow:
            assert await uow.writes.get("w1") is None
            assert await uow.writes.targets("w1") == []
            assert [x.write_id for x in await uow.writes.find_targets()] == ["w2"]
            claimed = await uow.writes.claim(holder="h", until=EPOCH + timedelta(minutes=5))
            assert [x.write_id for x in claimed] == ["w2"]
            assert await uow.writes.settle("w1", "hubspot", holder="h",
                                           state=WriteState.APPLIED) is False  # fmt: skip
            await uow.commit()

    async def test_claims_are_exclusive_until_settled_or_run_out(
        self, store: Store, clock: FakeClock
    ) -> None:
        await self._add(store, (write(), [target()]), (write("w2"), [target("w2")]))
        until = clock.now() + timedelta(minutes=5)
        async with store.unit_of_work(A) as uow:
            first = await uow.writes.claim(holder="h1", until=until, limit=1)
            second = await uow.writes.claim(holder="h2", until=until)
            nothing = await uow.writes.claim(holder="h3", until=until)
            await uow.commit()
        assert [x.write_id for x in first] == ["w1"]
        assert [x.write_id for x in second] == ["w2"]
        assert nothing == []
        async with store.unit_of_work(A) as uow:
            assert not await uow.writes.any_due()
            # the wrong holder writes nothing; the right one keeps its claim while sending
            assert not await uow.writes.settle("w1", "hubspot", holder="h2",
                                               state=WriteState.APPLIED)  # fmt: skip
            assert await uow.writes.settle("w1", "hubspot", holder="h1",
                                           state=WriteState.SENDING, release=False)  # fmt: skip
            assert await uow.writes.settle("w2", "hubspot", holder="h2",
                                           state=WriteState.APPLIED, external_id="9",
                                           receipt={"external_id": "9"})  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.writes.claim(holder="h4", until=until) == []  # held while sending
            (applied,) = await uow.writes.targets("w2")
            assert (applied.state, applied.external_id) == (WriteState.APPLIED, "9")
            assert applied.receipt == {"external_id": "9"}
        clock.advance(360)  # h1 died: its claim ran out, recovery takes over
        async with store.unit_of_work(A) as uow:
            assert await uow.writes.any_due()
            (orphan,) = await uow.writes.claim(holder="h5", until=clock.now() + timedelta(1))
            await uow.commit()
        assert (orphan.write_id, orphan.state) == ("w1", WriteState.SENDING)

    async def test_a_retry_waits_for_its_time(self, store: Store, clock: FakeClock) -> None:
        await self._add(store, (write(), [target()]))
        until = clock.now() + timedelta(minutes=5)
        async with store.unit_of_work(A) as uow:
            (_claimed,) = await uow.writes.claim(holder="h1", until=until)
            later = clock.now() + timedelta(seconds=30)
            await uow.writes.settle("w1", "hubspot", holder="h1", state=WriteState.PENDING,
                                    attempts=1, error="503", next_attempt_at=later)  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.writes.claim(holder="h2", until=until) == []
        clock.advance(30)
        async with store.unit_of_work(A) as uow:
            (again,) = await uow.writes.claim(holder="h2", until=until)
        assert (again.attempts, again.error) == (1, "503")

    async def test_concurrent_claims_never_share(self, store: Store, clock: FakeClock) -> None:
        await self._add(store, *((write(f"w{i}"), [target(f"w{i}")]) for i in range(10)))

        async def claim(holder: str) -> list[str]:
            async with store.unit_of_work(A) as uow:
                got = await uow.writes.claim(
                    holder=holder, until=clock.now() + timedelta(minutes=5), limit=4
                )
                await uow.commit()
            return [x.write_id for x in got]

        taken = await asyncio.gather(*(claim(f"h{i}") for i in range(4)))
        flat = [w for part in taken for w in part]
        assert sorted(flat) == sorted(f"w{i}" for i in range(10))

    async def test_held_targets_are_released(self, store: Store, clock: FakeClock) -> None:
        await self._add(store, (write(), [target(connection="a"), target(connection="b")]))
        async with store.unit_of_work(A) as uow:
            for x in await uow.writes.claim(holder="h", until=clock.now() + timedelta(1)):
                await uow.writes.settle(x.write_id, x.connection, holder="h",
                                        state=WriteState.HELD)  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert not await uow.writes.any_due()
            held = await uow.writes.find_targets(state=WriteState.HELD)
            assert [x.connection for x in held] == ["a", "b"]
            assert await uow.writes.release_held("a") == 1
            assert await uow.writes.release_held() == 1
            assert await uow.writes.release_held() == 0
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            pending = await uow.writes.find_targets(state=WriteState.PENDING)
            assert len(pending) == 2
            page = await uow.writes.find_targets(after=("w1", "a"))
            assert [x.connection for x in page] == ["b"]

    async def test_switches(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.writes.set_mode("qbo", WritebackMode.SHADOW, by="ops")
            stopped = await uow.writes.set_stopped("qbo", True, by="ops", reason="bad totals")
            await uow.writes.set_stopped("", True, by="oncall", reason="incident 7")
            await uow.commit()
        assert (stopped.mode, stopped.stopped, stopped.reason) == (
            WritebackMode.SHADOW, True, "bad totals"
        )  # fmt: skip
        assert stopped.stopped_at == clock.now()
        async with store.unit_of_work(A) as uow:
            switches = await uow.writes.switches()
            assert sorted(switches) == ["", "qbo"]
            assert switches[""].mode is None
            assert switches[""].stopped_by == "oncall"
            resumed = await uow.writes.set_stopped("qbo", False, by="ops")
            await uow.commit()
        assert (resumed.stopped, resumed.reason, resumed.mode) == (False, "", WritebackMode.SHADOW)
        async with store.unit_of_work(B) as uow:
            assert await uow.writes.switches() == {}

    async def test_echoes(self, store: Store, clock: FakeClock) -> None:
        echo = WriteEcho("hubspot", "Contact", "501", "7", "h" * 64, ("Email",), clock.now())
        async with store.unit_of_work(A) as uow:
            await uow.writes.add_echoes([echo])
            await uow.commit()
        clock.advance(2 * 86400)
        later = WriteEcho("hubspot", "Contact", "501", None, "g" * 64, ("Notes",), clock.now())
        async with store.unit_of_work(A) as uow:
            await uow.writes.add_echoes([later])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            found = await uow.writes.echoes("hubspot", "Contact", ["501", "502"])
            assert found == [echo, later]
            assert await uow.writes.echoes("other", "Contact", ["501"]) == []
            assert await uow.writes.prune_echoes(before=clock.now() - timedelta(days=1)) == 1
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            assert await uow.writes.echoes("hubspot", "Contact", ["501"]) == []
        async with store.unit_of_work(A) as uow:
            assert await uow.writes.echoes("hubspot", "Contact", ["501"]) == [later]
