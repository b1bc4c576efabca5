"""The inbox of verified vendor webhooks (``uow.webhooks_in``) and the tally of refused ones.

A webhook is stored, and committed, before the vendor gets its 2xx; ``ON CONFLICT DO NOTHING`` on
(tenant, connection, message id) makes a replay a no-op. On PostgreSQL the transaction that
stores webhooks asks for ``synchronous_commit = on`` itself, so a server configured otherwise
still never acknowledges a webhook it could lose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, text, update

from cadastre.ports import InboxEntry, InboxStatus, RefusalTally
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from sqlalchemy import Connection, Row, Table

    from cadastre.ports import InboxSettlement, ReceivedWebhook

_SYNCHRONOUS = text("SET LOCAL synchronous_commit TO on")
_SETTLED = (InboxStatus.PROCESSED.value, InboxStatus.QUARANTINED.value)


def _entry(r: Row[Any]) -> InboxEntry:
    return InboxEntry(
        int(r.position), r.connection, r.message_id, r.received_at, r.headers, bytes(r.body),
        InboxStatus(r.status), r.attempts, r.next_attempt_at, r.processed_at, r.error,
    )  # fmt: skip


def _inbox_rows(
    tenant: str, items: Sequence[ReceivedWebhook]
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """The rows to insert, and the index of each (connection, message id)'s first item: a twin
    later in the list is a replay of it."""
    first: dict[tuple[str, str], int] = {}
    rows = []
    for i, item in enumerate(items):
        key = (item.connection, item.message_id)
        if key in first:
            continue
        first[key] = i
        rows.append({
            "tenant": tenant, "connection": item.connection, "message_id": item.message_id,
            "received_at": item.received_at, "headers": dict(item.headers), "body": item.body,
            "status": InboxStatus.PENDING.value, "attempts": 0, "error": "",
        })  # fmt: skip
    return rows, first


def _inbox_insert(insert: Callable[[Table], Any]) -> Any:
    c = t.webhooks_in.c
    return (
        insert(t.webhooks_in)
        .on_conflict_do_nothing(index_elements=["tenant", "connection", "message_id"])
        .returning(c.connection, c.message_id)
    )


def _stored_now(
    items: Sequence[ReceivedWebhook], first: dict[tuple[str, str], int], stored: set[Any]
) -> list[bool]:
    return [
        first[(item.connection, item.message_id)] == i
        and (item.connection, item.message_id) in stored
        for i, item in enumerate(items)
    ]


def _refusal_rows(tenant: str, tallies: Sequence[RefusalTally]) -> list[dict[str, Any]]:
    return [
        {
            "tenant": tenant, "connection": r.connection, "reason": r.reason,
            "minute": r.minute, "count": r.count, "last_at": r.last_at,
            "example": dict(r.example),
        }
        for r in tallies
    ]  # fmt: skip


def _refusal_upsert(insert: Callable[[Table], Any]) -> Any:
    statement = insert(t.webhook_refusals)
    new, held = statement.excluded, t.webhook_refusals.c
    later = new.last_at >= held.last_at
    return statement.on_conflict_do_update(
        index_elements=["tenant", "connection", "reason", "minute"],
        set_={
            "count": held.count + new.count,
            "last_at": case((later, new.last_at), else_=held.last_at),
            "example": case((later, new.example), else_=held.example),
        },
    )


def store_webhooks_now(
    conn: Connection, insert: Callable[[Table], Any], tenant: str,
    items: Sequence[ReceivedWebhook], tallies: Sequence[RefusalTally],
) -> list[bool]:  # fmt: skip
    """``add_many`` and ``count_refusals`` on a synchronous connection, in its transaction (the
    caller commits): the SQLite store writes the inbox's batches this way, in one hop to a worker
    thread (``SqliteStore.store_webhooks``)."""
    now: list[bool] = []
    if items:
        rows, first = _inbox_rows(tenant, items)
        stored = {(r.connection, r.message_id) for r in conn.execute(_inbox_insert(insert), rows)}
        now = _stored_now(items, first, stored)
    if tallies:
        conn.execute(_refusal_upsert(insert), _refusal_rows(tenant, tallies))
    return now


class SqlWebhooksIn(SqlRepository):
    async def add_many(self, items: Sequence[ReceivedWebhook]) -> list[bool]:
        if not items:
            return []
        if self._uow.connection.dialect.name == "postgresql":
            # A 2xx follows this commit: it must be on disk whatever the server's default.
            await self.execute(_SYNCHRONOUS)
        rows, first = _inbox_rows(self.tenant, items)
        result = await self.execute(_inbox_insert(self.insert), rows)
        return _stored_now(items, first, {(r.connection, r.message_id) for r in result})

    async def get(self, connection: str, message_id: str) -> InboxEntry | None:
        c = t.webhooks_in.c
        row = (
            await self.execute(
                select(t.webhooks_in).where(
                    c.tenant == self.tenant,
                    c.connection == connection,
                    c.message_id == message_id,
                )
            )
        ).first()
        return None if row is None else _entry(row)

    def _due(self, now: datetime) -> Any:
        c = t.webhooks_in.c
        return and_(
            c.tenant == self.tenant,
            c.status == InboxStatus.PENDING.value,
            or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
        )

    async def due(self, connection: str, *, now: datetime, limit: int = 100) -> list[InboxEntry]:
        c = t.webhooks_in.c
        rows = await self.execute(
            select(t.webhooks_in)
            .where(self._due(now), c.connection == connection)
            .order_by(c.position)
            .limit(limit)
        )
        return [_entry(r) for r in rows]

    async def due_connections(self, *, now: datetime) -> list[str]:
        c = t.webhooks_in.c
        rows = await self.execute(
            select(c.connection).where(self._due(now)).distinct().order_by(c.connection)
        )
        return [r.connection for r in rows]

    async def settle(self, settlements: Sequence[InboxSettlement]) -> None:
        if not settlements:
            return
        now = self.now()
        rows = [
            {
                "b_position": s.position, "b_status": s.status.value, "b_attempts": s.attempts,
                "b_error": s.error, "b_next": s.next_attempt_at,
                "b_at": None if s.status is InboxStatus.PENDING else now,
            }
            for s in settlements
        ]  # fmt: skip
        c = t.webhooks_in.c
        await self.execute(
            update(t.webhooks_in)
            .where(c.tenant == self.tenant, c.position == bindparam("b_position"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                error=bindparam("b_error"),
                next_attempt_at=bindparam("b_next"),
                processed_at=bindparam("b_at"),
            ),
            rows,
        )

    async def entries(
        self,
        connection: str | None = None,
        *,
        status: InboxStatus | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[InboxEntry]:
        c = t.webhooks_in.c
        query = select(t.webhooks_in).where(c.tenant == self.tenant)
        if connection is not None:
            query = query.where(c.connection == connection)
        if status is not None:
            query = query.where(c.status == status.value)
        if before is not None:
            query = query.where(c.position < before)
        rows = await self.execute(query.order_by(c.position.desc()).limit(limit))
        return [_entry(r) for r in rows]

    async def counts(self) -> dict[tuple[str, InboxStatus], int]:
        c = t.webhooks_in.c
        rows = await self.execute(
            select(c.connection, c.status, func.count().label("n"))
            .where(c.tenant == self.tenant)
            .group_by(c.connection, c.status)
        )
        return {(r.connection, InboxStatus(r.status)): int(r.n) for r in rows}

    async def prune(self, *, settled_before: datetime, failed_before: datetime) -> int:
        c = t.webhooks_in.c
        gone = await self.execute(
            delete(t.webhooks_in)
            .where(
                c.tenant == self.tenant,
                or_(
                    and_(c.status.in_(_SETTLED), c.received_at < settled_before),
                    and_(c.status == InboxStatus.FAILED.value, c.received_at < failed_before),
                ),
            )
            .returning(c.position)
        )
        return len(gone.all())

    async def count_refusals(self, tallies: Sequence[RefusalTally]) -> None:
        if tallies:
            await self.execute(_refusal_upsert(self.insert), _refusal_rows(self.tenant, tallies))

    async def refusals(
        self, connection: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> list[RefusalTally]:
        c = t.webhook_refusals.c
        query = select(t.webhook_refusals).where(c.tenant == self.tenant)
        if connection is not None:
            query = query.where(c.connection == connection)
        if since is not None:
            query = query.where(c.minute >= since)
        rows = await self.execute(
            query.order_by(c.minute.desc(), c.connection, c.reason).limit(limit)
        )
        return [
            # r.count would be the Row's tuple method, not the column
            RefusalTally(
                r.connection, r.reason, r.minute, r._mapping["count"], r.last_at, r.example
            )
            for r in rows
        ]

    async def prune_refusals(self, *, before: datetime) -> int:
        c = t.webhook_refusals.c
        gone = await self.execute(
            delete(t.webhook_refusals)
            .where(c.tenant == self.tenant, c.minute < before)
            .returning(c.minute)
        )
        return len(gone.all())
