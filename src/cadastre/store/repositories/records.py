"""Canonical records and what hangs off them: field provenance, the external-id cross reference
and the per-connection sync cursors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from cadastre.errors import AlreadyExists, ConcurrentUpdate
from cadastre.ports import ExternalRef, FieldProvenance, StoredRecord, SyncCursor
from cadastre.store import tables as t
from cadastre.store.canonical import content_hash, json_copy
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from sqlalchemy import Row


def _record(row: Row[Any]) -> StoredRecord:
    return StoredRecord(
        row.entity, row.id, row.version, row.data, row.content_hash, row.deleted, row.updated_at
    )


class SqlRecords(SqlRepository):
    def _key(self, entity: str, id: str) -> Any:
        c = t.records.c
        return (c.tenant == self.tenant) & (c.entity == entity) & (c.id == id)

    async def get(self, entity: str, id: str, *, for_update: bool = False) -> StoredRecord | None:
        query = select(t.records).where(self._key(entity, id))
        if for_update:
            query = query.with_for_update()  # SQLite renders nothing: BEGIN IMMEDIATE holds it
        row = (await self.execute(query)).first()
        return None if row is None else _record(row)

    async def put(
        self,
        entity: str,
        id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        deleted: bool = False,
    ) -> StoredRecord:
        copied = json_copy(data)
        stored = StoredRecord(
            entity, id, expected_version + 1, copied, content_hash(copied), deleted, self.now()
        )
        values = {
            "version": stored.version, "data": copied, "content_hash": stored.content_hash,
            "deleted": deleted, "updated_at": stored.updated_at,
        }  # fmt: skip
        if expected_version == 0:
            statement = (
                self.insert(t.records)
                .values(tenant=self.tenant, entity=entity, id=id, **values)
                .on_conflict_do_nothing()
            )
        else:
            statement = (
                update(t.records)
                .where(self._key(entity, id), t.records.c.version == expected_version)
                .values(**values)
            )
        if not await self.wrote(statement.returning(t.records.c.version)):
            current = await self.get(entity, id)
            raise ConcurrentUpdate(
                f"{entity} {id!r} is at version {current.version if current else 0}, "
                f"not {expected_version}"
            )
        return stored

    async def scan(
        self,
        entity: str,
        *,
        after_id: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> AsyncIterator[StoredRecord]:
        c = t.records.c
        query = select(t.records).where(c.tenant == self.tenant, c.entity == entity)
        if after_id is not None:
            query = query.where(c.id > after_id)
        if not include_deleted:
            query = query.where(c.deleted.is_(False))
        for row in await self.execute(query.order_by(c.id).limit(limit)):
            yield _record(row)

    async def count(self, entity: str | None = None) -> int:
        c = t.records.c
        query = select(func.count()).where(c.tenant == self.tenant, c.deleted.is_(False))
        if entity is not None:
            query = query.where(c.entity == entity)
        return int((await self.execute(query)).scalar_one())


class SqlProvenance(SqlRepository):
    async def for_record(self, entity: str, id: str) -> dict[str, FieldProvenance]:
        c = t.field_provenance.c
        rows = await self.execute(
            select(t.field_provenance).where(
                c.tenant == self.tenant, c.entity == entity, c.id == id
            )
        )
        return {
            r.field: FieldProvenance(
                r.entity,
                r.id,
                r.field,
                r.system,
                r.connection,
                r.source_time,
                r.source_version,
                r.confidence,
                r.recorded_at,
            )
            for r in rows
        }

    async def record(self, items: Sequence[FieldProvenance]) -> None:
        if not items:
            return
        rows = [
            {
                "tenant": self.tenant,
                "entity": p.entity,
                "id": p.id,
                "field": p.field,
                "system": p.system,
                "connection": p.connection,
                "source_time": p.source_time,
                "source_version": p.source_version,
                "confidence": p.confidence,
                "recorded_at": p.recorded_at,
            }
            for p in items
        ]
        statement = self.insert(t.field_provenance).values(rows)
        changing = ("system", "connection", "source_time", "source_version", "confidence",
                    "recorded_at")  # fmt: skip
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "entity", "id", "field"],
                set_={name: statement.excluded[name] for name in changing},
            )
        )


class SqlXref(SqlRepository):
    async def resolve(
        self, system: str, connection: str, entity: str, external_id: str
    ) -> str | None:
        c = t.external_refs.c
        query = select(c.canonical_id).where(
            c.tenant == self.tenant, c.system == system, c.connection == connection,
            c.entity == entity, c.external_id == external_id,
        )  # fmt: skip
        found: str | None = (await self.execute(query)).scalar_one_or_none()
        return found

    async def link(self, ref: ExternalRef) -> None:
        await self.execute(
            self.insert(t.external_refs)
            .values(
                tenant=self.tenant,
                system=ref.system,
                connection=ref.connection,
                entity=ref.entity,
                external_id=ref.external_id,
                canonical_id=ref.canonical_id,
            )
            .on_conflict_do_nothing()
        )
        current = await self.resolve(ref.system, ref.connection, ref.entity, ref.external_id)
        if current != ref.canonical_id:
            raise AlreadyExists(
                f"{ref.system}/{ref.connection} {ref.entity} {ref.external_id!r} is already "
                f"linked to {current!r}"
            )

    async def for_record(self, entity: str, canonical_id: str) -> list[ExternalRef]:
        c = t.external_refs.c
        rows = await self.execute(
            select(t.external_refs)
            .where(c.tenant == self.tenant, c.entity == entity, c.canonical_id == canonical_id)
            .order_by(c.system, c.connection, c.external_id)
        )
        return [
            ExternalRef(r.system, r.connection, r.entity, r.external_id, r.canonical_id)
            for r in rows
        ]


class SqlCursors(SqlRepository):
    async def get(self, connection: str, stream: str) -> SyncCursor | None:
        c = t.sync_cursors.c
        query = select(t.sync_cursors).where(
            c.tenant == self.tenant, c.connection == connection, c.stream == stream
        )
        row = (await self.execute(query)).first()
        return (
            None
            if row is None
            else SyncCursor(row.connection, row.stream, row.value, row.updated_at)
        )

    async def put(self, connection: str, stream: str, value: Mapping[str, Any]) -> SyncCursor:
        cursor = SyncCursor(connection, stream, json_copy(value), self.now())
        statement = self.insert(t.sync_cursors).values(
            tenant=self.tenant, connection=connection, stream=stream, value=cursor.value,
            updated_at=cursor.updated_at,
        )  # fmt: skip
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "connection", "stream"],
                set_={
                    "value": statement.excluded.value,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
        return cursor
