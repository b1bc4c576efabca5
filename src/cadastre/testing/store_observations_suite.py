"""``ObservationsStoreSuite``: the conformance tests of ``uow.observations`` - a minute stored
whole and read back equal, minutes of one connection merging (counters add, gauges last-wins)
within a batch, across batches and across concurrent flushers, windows, ``last_seen``,
retention, refused input that writes nothing, and tenants that never see each other's.

``StoreSuite`` inherits it, so FakeStore, SQLite and PostgreSQL all run these.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.contract.events import EventEnvelope
from cadastre.observe.signals import BUCKETS, MAX_DISTINCT, OTHER
from cadastre.ports import MinuteRollup, WriteState
from cadastre.testing.clock import EPOCH
from cadastre.testing.store_webhooks_suite import delivery
from cadastre.testing.store_writes_suite import target, write

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"
M0 = EPOCH.replace(second=0, microsecond=0)


def minute(n: int) -> Any:
    return M0 + timedelta(minutes=n)


def rollup(connection: str = "austin-mls", at: int = 0, **fields: Any) -> MinuteRollup:
    return MinuteRollup(connection=connection, minute=minute(at), **fields)


def calls_rollup(connection: str = "austin-mls", at: int = 0, n: int = 1) -> MinuteRollup:
    latency = [0] * BUCKETS
    latency[10] = n
    return rollup(
        connection, at, vendor="reso", calls={"success": n, "retry": 2 * n},
        statuses={"200": n, "503": 2 * n}, latency=tuple(latency), latency_sum=0.25 * n,
        errors={"e1": {"count": n, "status": "503", "sample": "busy"}},
        shapes={"s1": {"count": n, "endpoint": "GET /odata/Property", "keys": ["value:array"]}},
        counts={"records_synced": 10 * n, "sync_ok": n}, gauges={"sync_lag_seconds": float(n)},
    )  # fmt: skip


class ObservationsStoreSuite:
    async def test_minutes_round_trip_and_merge(self, store: Store) -> None:
        """Stored whole; merged: counters add, gauges last-wins, fingerprints bounded."""
        first = calls_rollup(n=1)
        later = rollup(
            vendor="reso", calls={"success": 4, "fail": 1}, statuses={"200": 4, "404": 1},
            latency=(1, 0, 2), latency_sum=1.5,
            errors={"e1": {"count": 2, "status": "503", "sample": "other words"},
                    "e2": {"count": 1, "status": "404", "sample": "gone"}},
            shapes={"s1": {"count": 3, "endpoint": "GET /odata/Property", "keys": ["value:array"]}},
            counts={"records_synced": 5, "sync_failed": 1},
            gauges={"quarantine_open": 7.0},
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.observations.add([first])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.observations.add([calls_rollup(at=1)])  # rolled back: never committed
        async with store.unit_of_work(A) as uow:  # a minute round-trips whole
            assert await uow.observations.window(since=minute(0)) == [first]
            # one batch's repeats of a minute merge in order, beside other connections
            await uow.observations.add(
                [later, calls_rollup("other", n=5), rollup(gauges={"sync_lag_seconds": 42.0})]
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            found, other = await uow.observations.window(since=minute(0))
        assert other == calls_rollup("other", n=5)
        assert found.calls == {"success": 5, "retry": 2, "fail": 1}
        assert found.statuses == {"200": 5, "503": 2, "404": 1}
        assert found.latency[:3] == (1, 0, 2)
        assert found.latency[10] == 1
        assert sum(found.latency) == 4
        assert found.latency_sum == pytest.approx(1.75)
        # the first sample of a fingerprint is kept; its count adds
        assert found.errors == {
            "e1": {"count": 3, "status": "503", "sample": "busy"},
            "e2": {"count": 1, "status": "404", "sample": "gone"},
        }
        assert found.shapes["s1"]["count"] == 4
        assert found.counts == {"records_synced": 15, "sync_ok": 1, "sync_failed": 1}
        assert found.gauges == {"sync_lag_seconds": 42.0, "quarantine_open": 7.0}
        assert found.vendor == "reso"

        # a row keeps a bounded number of fingerprints; the rest count as OTHER
        def errors(start: int) -> MinuteRollup:
            return rollup("noisy", errors={
                f"fp{i:03}": {"count": 1, "status": "500", "sample": "x"}
                for i in range(start, start + MAX_DISTINCT)
            })  # fmt: skip

        async with store.unit_of_work(A) as uow:
            await uow.observations.add([errors(0)])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.observations.add([errors(MAX_DISTINCT - 2)])  # 2 known, the rest new
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            (found,) = await uow.observations.window(since=minute(0), connection="noisy")
        assert len(found.errors) == MAX_DISTINCT + 1
        assert found.errors[OTHER]["count"] == MAX_DISTINCT - 2
        assert sum(e["count"] for e in found.errors.values()) == 2 * MAX_DISTINCT

    async def test_concurrent_flushes_of_one_minute_lose_nothing(self, store: Store) -> None:
        """Two workers flush the same minutes at once - one of them new to both, one stored
        already: every count adds up, whichever commits first."""
        async with store.unit_of_work(A) as uow:
            await uow.observations.add([calls_rollup(at=0, n=1)])
            await uow.commit()
        first_added = asyncio.Event()

        async def flush(n: int, *, hold: bool) -> None:
            async with store.unit_of_work(A) as uow:
                await uow.observations.add([calls_rollup(at=0, n=n), calls_rollup(at=1, n=n)])
                if hold:  # keep the rows locked while the other flusher runs into them
                    first_added.set()
                    await asyncio.sleep(0.2)
                await uow.commit()

        async def second() -> None:
            await first_added.wait()
            await flush(10, hold=False)

        await asyncio.wait_for(asyncio.gather(flush(100, hold=True), second()), timeout=30)
        more = [flush(1000, hold=False) for _ in range(4)]
        await asyncio.wait_for(asyncio.gather(*more), timeout=30)
        async with store.unit_of_work(A) as uow:
            found = await uow.observations.window(since=minute(0))
        assert [(r.minute, r.calls["success"], r.counts["sync_ok"]) for r in found] == [
            (minute(0), 4111, 4111),
            (minute(1), 4110, 4110),
        ]
        assert [r.errors["e1"]["count"] for r in found] == [4111, 4110]

    async def test_windows_and_refused_input(self, store: Store) -> None:
        """Windows are half-open, oldest first, per connection and per tenant; bad rollups are
        refused, naming what is wrong, and their batch writes nothing."""
        refused = [
            (MinuteRollup("a", M0 + timedelta(seconds=30)), "whole UTC minute"),
            (MinuteRollup("a", M0.replace(tzinfo=None)), "aware"),
            (rollup(gauges={"sync_lag_seconds": float("nan")}), "sync_lag_seconds"),
            (rollup("x" * 65), "too long"),
        ]
        for bad, message in refused:
            async with store.unit_of_work(A) as uow:
                with pytest.raises(ValueError, match=message):
                    await uow.observations.add([calls_rollup(), bad])
                await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.observations.window(since=minute(-1)) == []
        async with store.unit_of_work(A) as uow:
            await uow.observations.add(
                [rollup("b", 2), rollup("a", 2), rollup("a", 0), rollup("", 1), rollup("a", 3)]
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            every = await uow.observations.window(since=minute(0))
            assert [(r.minute, r.connection) for r in every] == [
                (minute(0), "a"), (minute(1), ""), (minute(2), "a"), (minute(2), "b"),
                (minute(3), "a"),
            ]  # fmt: skip
            middle = await uow.observations.window(since=minute(1), until=minute(3))
            assert [(r.minute, r.connection) for r in middle] == [
                (minute(1), ""), (minute(2), "a"), (minute(2), "b"),
            ]  # fmt: skip
            only_a = await uow.observations.window(since=minute(1), connection="a")
            assert [r.minute for r in only_a] == [minute(2), minute(3)]
            tenant_wide = await uow.observations.window(since=minute(0), connection="")
            assert [r.minute for r in tenant_wide] == [minute(1)]
        async with store.unit_of_work(B) as uow:
            assert await uow.observations.window(since=minute(0)) == []

    async def test_last_seen_and_retention(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.observations.add([
                rollup("a", 0, counts={"sync_ok": 1}), rollup("a", 5, counts={"sync_ok": 2}),
                rollup("a", 9, counts={"sync_failed": 1}), rollup("b", 3, counts={"sync_ok": 1}),
                rollup("c", 4, gauges={"sync_lag_seconds": 1.0}),
            ])  # fmt: skip
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.observations.last_seen() == {"a": minute(5), "b": minute(3)}
        async with store.unit_of_work(B) as uow:
            assert await uow.observations.last_seen() == {}
            await uow.observations.add([rollup("a", n) for n in range(4)] + [rollup("", 0)])
            await uow.commit()
        # retention: prune forgets the minutes before its cut, of its own tenant only
        async with store.unit_of_work(A) as uow:
            assert await uow.observations.prune(minute(4)) == 2
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            kept = await uow.observations.window(since=minute(0))
            assert [(r.minute, r.connection) for r in kept] == [
                (minute(4), "c"), (minute(5), "a"), (minute(9), "a"),
            ]  # fmt: skip
            assert await uow.observations.prune(minute(4)) == 0
            assert await uow.observations.last_seen() == {"a": minute(5)}
        async with store.unit_of_work(B) as uow:
            assert len(await uow.observations.window(since=minute(0))) == 5

    async def test_the_backlogs_the_sampler_reads_are_counted(self, store: Store) -> None:
        """The counts behind the tenant-wide gauges (outbox and delivery backlog) and the
        per-connection ``writeback_pending``: what waits, of this tenant only."""
        events = [
            EventEnvelope(source="/mls", type="cadastre.listing.updated.v1", subject=f"L{i}",
                          time=EPOCH, tenant=A, data={})
            for i in range(3)
        ]  # fmt: skip
        async with store.unit_of_work(A) as uow:
            assert await uow.outbox.count_pending() == 0
            assert await uow.deliveries.count_pending() == 0
            assert await uow.writes.pending_counts() == {}
            await uow.outbox.add_many(events)
            await uow.outbox.mark_published([events[0].id])
            await uow.deliveries.add_many(
                [delivery("d1", "e1"), delivery("d2", "e2"), delivery("d3", "e3", sub="sub_2")]
            )
            await uow.deliveries.cancel("sub_2")
            await uow.writes.add(
                write("w1"), [target("w1"), target("w1", "books", state=WriteState.APPLIED)]
            )
            await uow.writes.add(write("w2"), [target("w2", state=WriteState.HELD)])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.outbox.count_pending() == 2
            assert await uow.deliveries.count_pending() == 2
            assert await uow.writes.pending_counts() == {"hubspot": 2}
        async with store.unit_of_work(B) as uow:
            assert await uow.outbox.count_pending() == 0
            assert await uow.deliveries.count_pending() == 0
            assert await uow.writes.pending_counts() == {}
