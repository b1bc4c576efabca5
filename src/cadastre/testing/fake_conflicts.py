"""The conflicts repository of ``FakeStore`` (``uow.conflicts``): the same rules as
``cadastre.store.repositories.conflicts`` over the fake's copy-on-write state (rows are frozen
and replaced, never changed in place)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import Conflict, ConflictResolution, ConflictState, FieldVector
from cadastre.store.canonical import json_copy
from cadastre.testing.fake_webhooks import _aware, _WebhookRepo

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime


class FakeConflicts(_WebhookRepo):
    async def versions(self, entity: str, ids: Sequence[str]) -> dict[str, dict[str, FieldVector]]:
        found: dict[str, dict[str, FieldVector]] = {}
        for id in ids:
            held = self._s.field_versions.get((self._t, entity, id))
            if held is not None:
                found[id] = {f: FieldVector.from_json(v) for f, v in held.items()}
        return found

    async def put_versions(
        self, entity: str, vectors: Mapping[str, Mapping[str, FieldVector]]
    ) -> None:
        for id, fields in vectors.items():
            self._s.field_versions[(self._t, entity, id)] = {
                f: v.to_json() for f, v in sorted(fields.items())
            }

    async def add_many(self, conflicts: Sequence[Conflict]) -> None:
        for x in conflicts:
            _aware(x.created_at)
            if x.id in self._s.conflicts or any(x.id == y.id for y in conflicts if y is not x):
                raise AlreadyExists(f"conflict {x.id!r} already exists")
        for x in conflicts:
            stored = replace(
                x, current=json_copy(x.current), incoming=json_copy(x.incoming),
                vector=json_copy(x.vector),
            )  # fmt: skip
            self._s.conflicts[x.id] = (self._t, stored)

    async def get(self, id: str) -> Conflict | None:
        found = self._s.conflicts.get(id)
        return found[1] if found is not None and found[0] == self._t else None

    async def find(
        self,
        *,
        entity: str | None = None,
        state: ConflictState | None = None,
        record_id: str | None = None,
        limit: int = 100,
    ) -> list[Conflict]:
        out = [
            c for t, c in self._s.conflicts.values()  # dicts keep insert order: oldest first
            if t == self._t and (state is None or c.state is state)
            and (entity is None or c.entity == entity)
            and (record_id is None or c.record_id == record_id)
        ]  # fmt: skip
        return out[:limit]

    async def resolve(
        self,
        id: str,
        *,
        resolution: ConflictResolution,
        value: Any,
        by: str,
        at: datetime,
    ) -> Conflict:
        _aware(at)
        found = await self.get(id)
        if found is None:
            raise NotFound(f"conflict {id!r} does not exist")
        if found.state is not ConflictState.OPEN:
            raise ConcurrentUpdate(f"conflict {id!r} is resolved already")
        done = replace(
            found, state=ConflictState.RESOLVED, resolution=resolution,
            resolved_value=json_copy({"v": value})["v"], resolved_by=by, resolved_at=at,
        )  # fmt: skip
        self._s.conflicts[id] = (self._t, done)
        return done
