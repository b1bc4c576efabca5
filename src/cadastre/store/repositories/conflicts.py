"""Conflict resolution's tables: the version vectors of shared fields (``field_versions``, one
JSON row per record, read in bulk per page like provenance) and the review queue
(``conflicts``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import Conflict, ConflictResolution, ConflictState, FieldVector
from cadastre.store import tables as t
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Row


def _conflict(r: Row[Any]) -> Conflict:
    return Conflict(
        id=r.id, entity=r.entity, record_id=r.record_id, field=r.field, current=r.current,
        incoming=r.incoming, vector=r.vector, rule=r.rule, created_at=r.created_at,
        state=ConflictState(r.state),
        resolution=ConflictResolution(r.resolution) if r.resolution else None,
        resolved_value=r.resolved_value if r.resolution else None,
        resolved_by=r.resolved_by, resolved_at=r.resolved_at,
    )  # fmt: skip


class SqlConflicts(SqlRepository):
    async def versions(self, entity: str, ids: Sequence[str]) -> dict[str, dict[str, FieldVector]]:
        c = t.field_versions.c
        found: dict[str, dict[str, FieldVector]] = {}
        for chunk in chunked(ids):
            rows = await self.execute(
                select(c.id, c.fields).where(
                    c.tenant == self.tenant, c.entity == entity, c.id.in_(chunk)
                )
            )
            for r in rows:
                found[r.id] = {f: FieldVector.from_json(v) for f, v in r.fields.items()}
        return found

    async def put_versions(
        self, entity: str, vectors: Mapping[str, Mapping[str, FieldVector]]
    ) -> None:
        if not vectors:
            return
        rows = [
            {"tenant": self.tenant, "entity": entity, "id": id,
             "fields": {f: v.to_json() for f, v in sorted(fields.items())}}
            for id, fields in vectors.items()
        ]  # fmt: skip
        statement = self.insert(t.field_versions)
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "entity", "id"],
                set_={"fields": statement.excluded.fields},
            ),
            rows,
        )

    async def add_many(self, conflicts: Sequence[Conflict]) -> None:
        if not conflicts:
            return
        rows = [
            {"id": x.id, "tenant": self.tenant, "entity": x.entity, "record_id": x.record_id,
             "field": x.field, "current": json_copy(x.current), "incoming": json_copy(x.incoming),
             "vector": json_copy(x.vector), "rule": x.rule, "state": x.state.value,
             "created_at": x.created_at, "resolution": None, "resolved_value": None,
             "resolved_by": None, "resolved_at": None}
            for x in conflicts
        ]  # fmt: skip
        c = t.conflicts.c
        statement = self.insert(t.conflicts).on_conflict_do_nothing().returning(c.id)
        inserted = {r.id for r in await self.execute(statement, rows)}
        for x in conflicts:
            if x.id not in inserted:
                raise AlreadyExists(f"conflict {x.id!r} already exists")

    async def get(self, id: str) -> Conflict | None:
        c = t.conflicts.c
        row = (
            await self.execute(select(t.conflicts).where(c.tenant == self.tenant, c.id == id))
        ).first()
        return None if row is None else _conflict(row)

    async def find(
        self,
        *,
        entity: str | None = None,
        state: ConflictState | None = None,
        record_id: str | None = None,
        limit: int = 100,
    ) -> list[Conflict]:
        c = t.conflicts.c
        query = select(t.conflicts).where(c.tenant == self.tenant)
        if state is not None:
            query = query.where(c.state == state.value)
        if entity is not None:
            query = query.where(c.entity == entity)
        if record_id is not None:
            query = query.where(c.record_id == record_id)
        rows = await self.execute(query.order_by(c.position).limit(limit))
        return [_conflict(r) for r in rows]

    async def resolve(
        self,
        id: str,
        *,
        resolution: ConflictResolution,
        value: Any,
        by: str,
        at: datetime,
    ) -> Conflict:
        c = t.conflicts.c
        mine = (c.tenant == self.tenant) & (c.id == id)
        done = await self.execute(
            update(t.conflicts)
            .where(mine, c.state == ConflictState.OPEN.value)
            .values(
                state=ConflictState.RESOLVED.value,
                resolution=resolution.value,
                resolved_value=json_copy({"v": value})["v"],
                resolved_by=by,
                resolved_at=at,
            )
            .returning(c.id)
        )
        if done.first() is None:
            if await self.get(id) is None:
                raise NotFound(f"conflict {id!r} does not exist")
            raise ConcurrentUpdate(f"conflict {id!r} is resolved already")
        found = await self.get(id)
        assert found is not None  # noqa: S101 - just updated in this transaction
        return found
