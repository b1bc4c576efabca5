"""The outbox (events written in the transaction of the change they announce, then published by
the relay and numbered for the change feed) and bus consumers' de-duplication marks."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, text, update

from cadastre.contract.events import EventEnvelope
from cadastre.contract.wire import check_json
from cadastre.errors import AlreadyExists
from cadastre.ports import OutboxMessage
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncConnection

_FEED_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def feed_lock_key(tenant: str) -> int:
    """A stable signed 64-bit advisory-lock key for numbering a tenant's change feed."""
    digest = hashlib.sha256(b"cadastre.outbox.feed:" + tenant.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _event_json(event: EventEnvelope) -> dict[str, Any]:
    # An event's data is plain JSON (field values the contract validated, ids, counts); checking
    # it is cheaper than dumping it through pydantic, which walked every field of the record.
    check_json(event.data, "event.data")
    body = event.model_dump(mode="json", exclude={"data"})
    body["data"] = event.data
    return body


def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        EventEnvelope.model_validate(row.event), row.position, row.published_at, row.feed_seq
    )


class SqlOutbox(SqlRepository):
    async def add(self, event: EventEnvelope) -> OutboxMessage:
        return (await self.add_many([event]))[0]

    async def add_many(self, events: Sequence[EventEnvelope]) -> list[OutboxMessage]:
        """One multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``; the rows are inserted
        in list order, so their positions increase in list order."""
        if not events:
            return []
        for event in events:
            self.own(event.tenant, "the event")
        now = self.now()
        rows = [
            {"event_id": e.id, "tenant": self.tenant, "event": _event_json(e), "created_at": now,
             "event_type": e.type}
            for e in events
        ]  # fmt: skip
        c = t.outbox.c
        statement = self.insert(t.outbox).on_conflict_do_nothing().returning(c.event_id, c.position)
        positions = {r.event_id: int(r.position) for r in await self.execute(statement, rows)}
        messages = []
        for event in events:
            position = positions.pop(event.id, None)  # pop: a repeat in the list is refused too
            if position is None:
                raise AlreadyExists(f"event {event.id!r} is already in the outbox")
            messages.append(OutboxMessage(event, position, None))
        # The relay in this process hears of it once the transaction commits, not at its poll.
        self._uow.after_commit(self._uow.store.outbox_committed, self.tenant)
        return messages

    async def pending(self, limit: int = 100) -> list[OutboxMessage]:
        c = t.outbox.c
        rows = await self.execute(
            select(c.position, c.event, c.published_at, c.feed_seq)
            .where(c.tenant == self.tenant, c.published_at.is_(None))
            .order_by(c.position)
            .limit(limit)
        )
        return [_message(r) for r in rows]

    async def count_pending(self) -> int:
        c = t.outbox.c
        query = select(func.count()).where(c.tenant == self.tenant, c.published_at.is_(None))
        return int((await self.execute(query)).scalar_one())

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        c = t.outbox.c
        if self._uow.connection.dialect.name == "postgresql":
            # Numbering reads the tenant's highest feed_seq: two numberers at once would both read
            # it. The lock queues them until commit, so feed_seq also commits in order and a
            # feed reader never sees 8 before 7. (SQLite writers queue at BEGIN IMMEDIATE.)
            await self.execute(_FEED_LOCK.bindparams(key=feed_lock_key(self.tenant)))
        waiting: set[str] = set()
        for chunk in chunked(event_ids):
            found = await self.execute(
                select(c.event_id).where(
                    c.tenant == self.tenant, c.event_id.in_(chunk), c.published_at.is_(None)
                )
            )
            waiting.update(r.event_id for r in found)
        if not waiting:
            return
        top = await self.execute(select(func.max(c.feed_seq)).where(c.tenant == self.tenant))
        seq, now = int(top.scalar() or 0), self.now()
        rows = []
        for event_id in dict.fromkeys(event_ids):  # in the order given, once each
            if event_id in waiting:
                seq += 1
                rows.append({"b_id": event_id, "b_seq": seq, "b_at": now})
        await self.execute(
            update(t.outbox)
            .where(c.tenant == self.tenant, c.event_id == bindparam("b_id"))
            .values(published_at=bindparam("b_at"), feed_seq=bindparam("b_seq")),
            rows,
        )

    async def feed(self, *, after: int = 0, limit: int = 100) -> list[OutboxMessage]:
        c = t.outbox.c
        rows = await self.execute(
            select(c.position, c.event, c.published_at, c.feed_seq)
            .where(c.tenant == self.tenant, c.feed_seq > after)
            .order_by(c.feed_seq)
            .limit(limit)
        )
        return [_message(r) for r in rows]

    async def recent(
        self, types: Collection[str], *, since: datetime, limit: int = 100
    ) -> list[EventEnvelope]:
        wanted = list(dict.fromkeys(types))
        if not wanted or limit <= 0:
            return []
        c = t.outbox.c
        rows = await self.execute(
            select(c.event)
            .where(c.tenant == self.tenant, c.event_type.in_(wanted), c.created_at >= since)
            .order_by(c.created_at.desc(), c.position.desc())
            .limit(limit)
        )
        return [EventEnvelope.model_validate(r.event) for r in rows]


class SqlConsumed(SqlRepository):
    async def first_seen(self, consumer: str, event_ids: Sequence[str]) -> list[str]:
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return []
        now = self.now()
        c = t.consumed_events.c
        statement = self.insert(t.consumed_events).on_conflict_do_nothing().returning(c.event_id)
        rows = [
            {"tenant": self.tenant, "consumer": consumer, "event_id": e, "seen_at": now}
            for e in unique
        ]
        new = {r.event_id for r in await self.execute(statement, rows)}
        return [e for e in unique if e in new]

    async def prune(self, *, before: datetime) -> int:
        c = t.consumed_events.c
        gone = await self.execute(
            delete(t.consumed_events).where(c.tenant == self.tenant, c.seen_at < before)
        )
        return int(getattr(gone, "rowcount", 0) or 0)


async def pending_tenants(conn: AsyncConnection) -> list[str]:
    """Tenants with unpublished outbox events (through the partial index of those)."""
    c = t.outbox.c
    rows = await conn.execute(
        select(c.tenant).where(c.published_at.is_(None)).distinct().order_by(c.tenant)
    )
    return [r.tenant for r in rows]
