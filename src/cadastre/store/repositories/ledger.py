"""What a unit of work appends: quarantined vendor records, the hash-chained audit log and the
idempotency ledger. (The outbox, which it also appends to, is in ``outbox.py``.)"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from cadastre.contract.changes import ApplyResult
from cadastre.errors import ConcurrentUpdate, NotFound
from cadastre.ports import AuditDraft, AuditEntry, AuditReport, QuarantinedRecord
from cadastre.store import tables as t
from cadastre.store.audit import GENESIS_HASH, seal, verify_chain
from cadastre.store.canonical import canonical_copy, json_copy
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from sqlalchemy import Row

AUDIT_PAGE = 500


def _quarantined(r: Row[Any]) -> QuarantinedRecord:
    return QuarantinedRecord(
        r.id, r.connection, r.entity, r.external_id, r.reason, r.payload, r.created_at,
        r.resolved_at, r.stream, r.code, r.attempts, r.sightings, r.last_seen_at,
    )  # fmt: skip


class SqlQuarantine(SqlRepository):
    async def add(
        self,
        *,
        connection: str,
        entity: str,
        external_id: str | None,
        reason: str,
        payload: Mapping[str, Any],
        stream: str = "",
        code: str = "",
    ) -> QuarantinedRecord:
        copied, digest = canonical_copy(payload)
        c = t.quarantine.c
        # The same version of the record, still held: the cursor met it again. A look before
        # the insert, not a unique index: the scheduler runs one sync of a connection at a
        # time, and should two writers race, the two entries they leave hold one payload and
        # one replay resolves both (existing rows were open copies too, folded by 0016).
        same_key = c.external_id.is_(None) if external_id is None else c.external_id == external_id
        same = (
            select(t.quarantine)
            .where(c.tenant == self.tenant, c.digest == digest, c.resolved_at.is_(None))
            .where(c.connection == connection, c.stream == stream, c.entity == entity, same_key)
            .order_by(c.position)
            .limit(1)
        )
        held = (await self.execute(same)).first()
        now = self.now()
        if held is not None:
            await self.execute(
                update(t.quarantine)
                .where(c.position == held.position)
                .values(sightings=c.sightings + 1, last_seen_at=now)
            )
            return replace(_quarantined(held), sightings=held.sightings + 1, last_seen_at=now)
        item = QuarantinedRecord(
            uuid.uuid4().hex, connection, entity, external_id, reason, copied, now, None,
            stream, code,
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
                stream=stream,
                code=code,
                attempts=0,
                digest=digest,
                sightings=1,
            )
        )
        return item

    async def open_items(
        self,
        connection: str | None = None,
        *,
        code: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[QuarantinedRecord]:
        c = t.quarantine.c
        query = select(t.quarantine).where(c.tenant == self.tenant, c.resolved_at.is_(None))
        if connection is not None:
            query = query.where(c.connection == connection)
        if code is not None:
            query = query.where(c.code == code)
        if after is not None:
            start = select(c.position).where(c.tenant == self.tenant, c.id == after)
            query = query.where(c.position > start.scalar_subquery())
        query = query.order_by(c.position)
        if limit is not None:
            query = query.limit(limit)
        return [_quarantined(r) for r in await self.execute(query)]

    async def get(self, id: str) -> QuarantinedRecord | None:
        c = t.quarantine.c
        row = (
            await self.execute(select(t.quarantine).where(c.tenant == self.tenant, c.id == id))
        ).first()
        return None if row is None else _quarantined(row)

    async def open_counts(self, *, code: str | None = None) -> dict[str, int]:
        c = t.quarantine.c
        query = select(c.connection, func.count().label("n")).where(
            c.tenant == self.tenant, c.resolved_at.is_(None)
        )
        if code is not None:
            query = query.where(c.code == code)
        rows = await self.execute(query.group_by(c.connection).order_by(c.connection))
        return {row.connection: int(row.n) for row in rows}

    async def note_failed_replay(self, id: str, *, reason: str, code: str) -> None:
        c = t.quarantine.c
        updated = await self.execute(
            update(t.quarantine)
            .where(c.tenant == self.tenant, c.id == id)
            .values(reason=reason, code=code, attempts=c.attempts + 1)
            .returning(c.id)
        )
        if updated.first() is None:
            raise NotFound(f"quarantined record {id!r} does not exist")

    async def resolve(self, id: str) -> None:
        c = t.quarantine.c
        mine = (c.tenant == self.tenant) & (c.id == id)
        found = (await self.execute(select(c.resolved_at).where(mine))).first()
        if found is None:
            raise NotFound(f"quarantined record {id!r} does not exist")
        if found.resolved_at is None:
            await self.execute(update(t.quarantine).where(mine).values(resolved_at=self.now()))


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
        draft = AuditDraft(actor, action, entity, entity_id, detail or {})
        return (await self.append_many([draft]))[0]

    async def append_many(self, drafts: Sequence[AuditDraft]) -> list[AuditEntry]:
        """Lock the chain, read its head, seal the entries in order, insert them in one
        statement: two (PostgreSQL: three) statements however many drafts."""
        if not drafts:
            return []
        details = [json_copy(d.detail) for d in drafts]  # refuse non-JSON before taking the lock
        # Serialise appends per tenant first, then read the head: two writers must never both
        # see seq N as the head and both write N + 1.
        await self._uow.store.lock_audit_chain(self._uow)
        c = t.audit_log.c
        head = (
            await self.execute(
                select(c.seq, c.hash).where(c.tenant == self.tenant).order_by(c.seq.desc()).limit(1)
            )
        ).first()
        seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        at = self.now()
        entries = []
        for draft, detail in zip(drafts, details, strict=True):
            seq += 1
            entry = seal(
                tenant=self.tenant, seq=seq, prev_hash=prev_hash, at=at, actor=draft.actor,
                action=draft.action, entity=draft.entity, entity_id=draft.entity_id, detail=detail,
            )  # fmt: skip
            entries.append(entry)
            prev_hash = entry.hash
        rows = [
            {"tenant": e.tenant, "seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
             "entity": e.entity, "entity_id": e.entity_id, "detail": e.detail,
             "prev_hash": e.prev_hash, "hash": e.hash}
            for e in entries
        ]  # fmt: skip
        # RETURNING makes SQLAlchemy send one multi-row INSERT rather than an executemany.
        await self.execute(t.audit_log.insert().returning(c.seq), rows)
        self._uow.audited(len(entries))
        return entries

    async def entries(self, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        async for entry in self._pages(after_seq):
            yield entry

    async def entries_for(
        self, entity: str, entity_id: str, after_seq: int = 0
    ) -> AsyncIterator[AuditEntry]:
        c = t.audit_log.c
        async for entry in self._pages(after_seq, c.entity == entity, c.entity_id == entity_id):
            yield entry

    async def _pages(self, after_seq: int, *where: Any) -> AsyncIterator[AuditEntry]:
        c = t.audit_log.c
        while True:
            rows = list(
                await self.execute(
                    select(t.audit_log)
                    .where(c.tenant == self.tenant, c.seq > after_seq, *where)
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
        return (await self.get_many([idempotency_key])).get(idempotency_key)

    async def get_many(self, idempotency_keys: Sequence[str]) -> dict[str, ApplyResult]:
        c = t.applied_changes.c
        found: dict[str, ApplyResult] = {}
        for chunk in chunked(idempotency_keys):
            query = select(c.idempotency_key, c.result).where(
                c.tenant == self.tenant, c.idempotency_key.in_(chunk)
            )
            for r in await self.execute(query):
                found[r.idempotency_key] = ApplyResult.model_validate(r.result)
        return found

    async def put(self, result: ApplyResult) -> None:
        await self.put_many([result])

    async def put_many(self, results: Sequence[ApplyResult]) -> None:
        if not results:
            return
        for result in results:
            self.own(result.tenant, "the result")
        now = self.now()
        rows = [
            {"tenant": self.tenant, "idempotency_key": r.idempotency_key,
             "result": r.model_dump(mode="json"), "created_at": now}
            for r in results
        ]  # fmt: skip
        c = t.applied_changes.c
        statement = self.insert(t.applied_changes).on_conflict_do_nothing()
        inserted = {
            r.idempotency_key
            for r in await self.execute(statement.returning(c.idempotency_key), rows)
        }
        for result in results:
            if result.idempotency_key not in inserted:
                # Another transaction applied the same key first: a retry finds its stored result.
                raise ConcurrentUpdate(
                    f"idempotency key {result.idempotency_key!r} already recorded"
                )
            inserted.discard(result.idempotency_key)  # a repeat in the list is refused too
