"""``uow.observations``: vendor minutes (``vendor_minutes``), one JSON row per connection and
minute.

Merging is a read-merge-write, made safe for several workers flushing the same minute at once:
each rollup is first offered as a new row (``INSERT ... ON CONFLICT DO NOTHING RETURNING``); the
ones that met a row already there are then read ``FOR UPDATE``, merged in Python
(``merge_rollups``: counters add, gauges last-wins) and written back. On PostgreSQL (READ
COMMITTED) a second flusher's INSERT waits on the first one's uncommitted row and then sees the
conflict; its SELECT ... FOR UPDATE reads the committed row and holds it, so neither update is
lost. Rows are handled in key order, so two flushers lock in the same order and cannot deadlock
each other. SQLite takes its write lock at BEGIN, which serialises flushers anyway. (An SQL
upsert would have to add nested JSON maps and histogram arrays in each dialect's JSON dialect;
merging in Python keeps one definition of "merge", shared with the fake and the accumulator.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, tuple_, update

from cadastre.observe.signals import combine_rollups, merge_rollups
from cadastre.ports import MinuteRollup
from cadastre.store import tables as t
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Row

# key tuples per statement; PostgreSQL and SQLite both take row-value IN lists
_KEYS_PER_STATEMENT = 200
_MERGED_COLUMNS = (
    "vendor", "calls", "statuses", "latency", "latency_sum", "errors", "shapes", "counts",
    "gauges", "sync_ok",
)  # fmt: skip


def _rollup(r: Row[Any]) -> MinuteRollup:
    return MinuteRollup(
        connection=r.connection, minute=r.minute, vendor=r.vendor, calls=r.calls,
        statuses=r.statuses, latency=tuple(r.latency), latency_sum=float(r.latency_sum),
        errors=r.errors, shapes=r.shapes, counts=r.counts, gauges=r.gauges,
    )  # fmt: skip


class SqlObservations(SqlRepository):
    def _row(self, rollup: MinuteRollup) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "connection": rollup.connection, "minute": rollup.minute,
            "vendor": rollup.vendor, "calls": json_copy(dict(rollup.calls)),
            "statuses": json_copy(dict(rollup.statuses)),
            "latency": [int(n) for n in rollup.latency], "latency_sum": rollup.latency_sum,
            "errors": json_copy(dict(rollup.errors)), "shapes": json_copy(dict(rollup.shapes)),
            "counts": json_copy(dict(rollup.counts)),
            "gauges": {k: float(v) for k, v in rollup.gauges.items()},
            "sync_ok": int(rollup.counts.get("sync_ok", 0)),
        }  # fmt: skip

    async def add(self, rollups: Sequence[MinuteRollup]) -> None:
        todo = combine_rollups(rollups)
        if not todo:
            return
        c = t.vendor_minutes.c
        inserted = {
            (r.connection, r.minute)
            for r in await self.execute(
                self.insert(t.vendor_minutes)
                .on_conflict_do_nothing()
                .returning(c.connection, c.minute),
                [self._row(x) for x in todo],
            )
        }
        held = [x for x in todo if (x.connection, x.minute) not in inserted]
        for start in range(0, len(held), _KEYS_PER_STATEMENT):
            await self._merge(held[start : start + _KEYS_PER_STATEMENT])

    async def _merge(self, rollups: Sequence[MinuteRollup]) -> None:
        c = t.vendor_minutes.c
        keys = [(x.connection, x.minute) for x in rollups]
        rows = await self.execute(
            select(t.vendor_minutes)
            .where(c.tenant == self.tenant, tuple_(c.connection, c.minute).in_(keys))
            .order_by(c.connection, c.minute)
            .with_for_update()
        )
        stored = {(r.connection, r.minute): _rollup(r) for r in rows}
        merged, gone = [], []
        for rollup in rollups:
            old = stored.get((rollup.connection, rollup.minute))
            if old is None:  # pruned since the INSERT met it (a minute past retention): anew
                gone.append(rollup)
            else:
                merged.append(merge_rollups(old, rollup))
        if gone:
            await self.execute(self.insert(t.vendor_minutes), [self._row(x) for x in gone])
        if not merged:
            return
        values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in _MERGED_COLUMNS}
        await self.execute(
            update(t.vendor_minutes)
            .where(
                c.tenant == self.tenant,
                c.connection == bindparam("k_connection"),
                c.minute == bindparam("k_minute"),
            )
            .values(values),
            [
                {
                    "k_connection": row["connection"],
                    "k_minute": row["minute"],
                    **{f"v_{name}": row[name] for name in values},
                }
                for row in (self._row(x) for x in merged)
            ],
        )

    async def window(
        self, *, since: datetime, until: datetime | None = None, connection: str | None = None
    ) -> list[MinuteRollup]:
        c = t.vendor_minutes.c
        query = select(t.vendor_minutes).where(c.tenant == self.tenant, c.minute >= since)
        if until is not None:
            query = query.where(c.minute < until)
        if connection is not None:
            query = query.where(c.connection == connection)
        rows = await self.execute(query.order_by(c.minute, c.connection))
        return [_rollup(r) for r in rows]

    async def last_seen(self) -> dict[str, datetime]:
        c = t.vendor_minutes.c
        rows = await self.execute(
            select(c.connection, func.max(c.minute).label("at"))
            .where(c.tenant == self.tenant, c.sync_ok > 0)
            .group_by(c.connection)
        )
        return {r.connection: r.at for r in rows}

    async def prune(self, before: datetime) -> int:
        c = t.vendor_minutes.c
        gone = await self.execute(
            delete(t.vendor_minutes).where(c.tenant == self.tenant, c.minute < before)
        )
        return int(getattr(gone, "rowcount", 0) or 0)
