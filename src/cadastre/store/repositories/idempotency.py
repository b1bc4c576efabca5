"""The unified API's idempotency keys (``api_idempotency``, ``uow.idempotency``).

Exactly one of concurrent ``begin`` calls for a key starts: the first INSERT wins (``ON CONFLICT
DO NOTHING``: on PostgreSQL a second insert of the same key waits for the first transaction and
then does nothing; SQLite's ``BEGIN IMMEDIATE`` queues writers). Taking over a key whose request
died is an UPDATE that repeats its conditions (in flight, lock run out, same fingerprint), so of
two takers the second finds the row changed and writes nothing. ``finish`` and ``release`` write
only while their holder still holds the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, update

from cadastre.ports import (
    IdempotencyBegun,
    IdempotencyRecord,
    IdempotencyState,
    StoredResponse,
)
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Row

IN_FLIGHT = IdempotencyState.IN_FLIGHT.value
DONE = IdempotencyState.DONE.value


def _record(row: Row[Any]) -> IdempotencyRecord:
    response = None
    if row.state == DONE:
        response = StoredResponse(
            status=row.status,
            headers=dict(row.headers or {}),
            body=bytes(row.body or b""),
            key_id=row.body_key_id,
            wrapped_key=None if row.body_wrapped_key is None else bytes(row.body_wrapped_key),
        )
    return IdempotencyRecord(
        key=row.key,
        method=row.method,
        path=row.path,
        fingerprint=row.fingerprint,
        state=IdempotencyState(row.state),
        holder=row.holder,
        locked_until=row.locked_until,
        created_at=row.created_at,
        response=response,
    )


class SqlIdempotency(SqlRepository):
    def _mine(self, key: str) -> Any:
        c = t.api_idempotency.c
        return (c.tenant == self.tenant) & (c.key == key)

    async def begin(
        self,
        key: str,
        *,
        method: str,
        path: str,
        fingerprint: str,
        holder: str,
        locked_until: datetime,
    ) -> IdempotencyBegun:
        c = t.api_idempotency.c
        now = self.now()
        # Three tries: a reaper may delete the row between our conflicting insert and the read.
        for _ in range(3):
            inserted = (
                await self.execute(
                    self.insert(t.api_idempotency)
                    .values(
                        tenant=self.tenant,
                        key=key,
                        method=method,
                        path=path,
                        fingerprint=fingerprint,
                        state=IN_FLIGHT,
                        holder=holder,
                        locked_until=locked_until,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(*t.api_idempotency.c)
                )
            ).first()
            if inserted is not None:
                return IdempotencyBegun(True, _record(inserted))
            taken = (
                await self.execute(
                    update(t.api_idempotency)
                    .where(
                        self._mine(key),
                        c.state == IN_FLIGHT,
                        c.locked_until <= now,
                        c.fingerprint == fingerprint,
                    )
                    .values(holder=holder, locked_until=locked_until)
                    .returning(*t.api_idempotency.c)
                )
            ).first()
            if taken is not None:
                return IdempotencyBegun(True, _record(taken))
            found = await self.get(key)
            if found is not None:
                return IdempotencyBegun(False, found)
        raise RuntimeError(f"idempotency key {key!r} kept vanishing while it was begun")

    async def finish(self, key: str, *, holder: str, response: StoredResponse) -> bool:
        c = t.api_idempotency.c
        return await self.wrote(
            update(t.api_idempotency)
            .where(self._mine(key), c.state == IN_FLIGHT, c.holder == holder)
            .values(
                state=DONE,
                status=response.status,
                headers=dict(response.headers),
                body=response.body,
                body_key_id=response.key_id,
                body_wrapped_key=response.wrapped_key,
            )
            .returning(c.key)
        )

    async def release(self, key: str, *, holder: str) -> bool:
        c = t.api_idempotency.c
        return await self.wrote(
            delete(t.api_idempotency)
            .where(self._mine(key), c.state == IN_FLIGHT, c.holder == holder)
            .returning(c.key)
        )

    async def get(self, key: str) -> IdempotencyRecord | None:
        row = (await self.execute(select(t.api_idempotency).where(self._mine(key)))).first()
        return None if row is None else _record(row)

    async def reap(self, *, before: datetime, limit: int = 1000) -> int:
        c = t.api_idempotency.c
        now = self.now()
        due = (
            select(c.key)
            .where(
                c.tenant == self.tenant,
                c.created_at < before,
                or_(c.state == DONE, c.locked_until <= now),
            )
            .order_by(c.created_at)
            .limit(limit)
        )
        keys = [r.key for r in await self.execute(due)]
        if not keys:
            return 0
        gone = await self.execute(
            delete(t.api_idempotency)
            .where(
                c.tenant == self.tenant,
                c.key.in_(keys),
                or_(c.state == DONE, c.locked_until <= now),
            )
            .returning(c.key)
        )
        return len(list(gone))
