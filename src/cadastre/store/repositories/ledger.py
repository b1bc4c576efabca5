"""What a unit of work appends: quarantined vendor records, outbox events (in the same transaction
as the change they announce), the hash-chained audit log and the idempotency ledger."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope
from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import AuditEntry, AuditReport, OutboxMessage, QuarantinedRecord
from cadastre.store import tables as t
from cadastre.store.audit import GENESIS_HASH, seal, verify_chain
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from sqlalchemy import Row

AUDIT_PAGE = 500


class SqlQuarantine(SqlRepository):
    async def add(
        self,
        *,
        connection: str,
        entity: str,
        external_id: str | None,
        reason: str,
        payload: Mapping[str, Any],
    ) -> QuarantinedRecord:
        item = QuarantinedRecord(
            uuid.uuid4().hex, connection, entity, external_id, reason, json_copy(payload),
            self.now(),
        )  # fmt: skip
        await self.execute(
            t.quarantine.insert().values(
                id=item.id,
                tenant=self.tenant,
                connection=connection,
                entity=entity,
                external_id=external_id,
                reason=reason,
                payload=item.payload,
                created_at=item.created_at,
            )
        )
        return item

    async def open_items(self, connection: str | None = None) -> list[QuarantinedRecord]:
        c = t.quarantine.c
        query = select(t.quarantine).where(c.tenant == self.tenant, c.resolved_at.is_(None))
        if connection is not None:
            query = query.where(c.connection == connection)
        rows = await self.execute(query.order_by(c.position))
        return [
            QuarantinedRecord(
                r.id,
                r.connection,
                r.entity,
                r.external_id,
                r.reason,
                r.payload,
                r.created_at,
                r.resolved_at,
            )
            for r in rows
        ]

    async def resolve(self, id: str) -> None:
        c = t.quarantine.c
        mine = (c.tenant == self.tenant) & (c.id == id)
        found = (await self.execute(select(c.resolved_at).where(mine))).first()
        if found is None:
            raise NotFound(f"quarantined record {id!r} does not exist")
        if found.resolved_at is None:
            await self.execute(update(t.quarantine).where(mine).values(resolved_at=self.now()))


class SqlOutbox(SqlRepository):
    async def add(self, event: EventEnvelope) -> OutboxMessage:
        self.own(event.tenant, "the event")
        result = await self.execute(
            self.insert(t.outbox)
            .values(
                event_id=event.id,
                tenant=self.tenant,
                event=event.model_dump(mode="json"),
                created_at=self.now(),
            )
            .on_conflict_do_nothing()
            .returning(t.outbox.c.position)
        )
        position = result.scalar_one_or_none()
        if position is None:
            raise AlreadyExists(f"event {event.id!r} is already in the outbox")
        return OutboxMessage(event, int(position), None)

    async def pending(self, limit: int = 100) -> list[OutboxMessage]:
        c = t.outbox.c
        rows = await self.execute(
            select(c.position, c.event)
            .where(c.tenant == self.tenant, c.published_at.is_(None))
            .order_by(c.position)
            .limit(limit)
        )
        return [
            OutboxMessage(EventEnvelope.model_validate(r.event), r.position, None) for r in rows
        ]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        c = t.outbox.c
        await self.execute(
            update(t.outbox)
            .where(
                c.tenant == self.tenant, c.event_id.in_(list(event_ids)), c.published_at.is_(None)
            )
            .values(published_at=self.now())
        )


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        row.tenant, row.seq, row.at, row.actor, row.action, row.entity, row.entity_id, row.detail,
        row.prev_hash, row.hash,
    )  # fmt: skip


class SqlAudit(SqlRepository):
    async def append(
        self,
        *,
        actor: str,
        action: str,
        entity: str | None = None,
        entity_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        # Serialise appends per tenant first, then read the head: two writers must never both
        # see seq N as the head and both write N + 1.
        await self._uow.store.lock_audit_chain(self._uow)
        c = t.audit_log.c
        head = (
            await self.execute(
                select(c.seq, c.hash).where(c.tenant == self.tenant).order_by(c.seq.desc()).limit(1)
            )
        ).first()
        entry = seal(
            tenant=self.tenant, seq=head.seq + 1 if head else 1,
            prev_hash=head.hash if head else GENESIS_HASH, at=self.now(), actor=actor,
            action=action, entity=entity, entity_id=entity_id, detail=json_copy(detail or {}),
        )  # fmt: skip
        await self.execute(
            t.audit_log.insert().values(
                tenant=entry.tenant,
                seq=entry.seq,
                at=entry.at,
                actor=actor,
                action=action,
                entity=entity,
                entity_id=entity_id,
                detail=entry.detail,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
            )
        )
        return entry

    async def entries(self, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        c = t.audit_log.c
        while True:
            rows = list(
                await self.execute(
                    select(t.audit_log)
                    .where(c.tenant == self.tenant, c.seq > after_seq)
                    .order_by(c.seq)
                    .limit(AUDIT_PAGE)
                )
            )
            for row in rows:
                yield _entry(row)
            if len(rows) < AUDIT_PAGE:
                return
            after_seq = rows[-1].seq

    async def verify(self) -> AuditReport:
        return await verify_chain(self.tenant, self.entries())


class SqlApplied(SqlRepository):
    async def get(self, idempotency_key: str) -> ApplyResult | None:
        c = t.applied_changes.c
        query = select(c.result).where(
            c.tenant == self.tenant, c.idempotency_key == idempotency_key
        )
        found = (await self.execute(query)).scalar_one_or_none()
        return None if found is None else ApplyResult.model_validate(found)

    async def put(self, result: ApplyResult) -> None:
        self.own(result.tenant, "the result")
        inserted = await self.wrote(
            self.insert(t.applied_changes)
            .values(
                tenant=self.tenant,
                idempotency_key=result.idempotency_key,
                result=result.model_dump(mode="json"),
                created_at=self.now(),
            )
            .on_conflict_do_nothing()
            .returning(t.applied_changes.c.tenant)
        )
        if not inserted:
            # Another transaction applied the same key first: retrying finds its stored result.
            raise ConcurrentUpdate(f"idempotency key {result.idempotency_key!r} already recorded")
