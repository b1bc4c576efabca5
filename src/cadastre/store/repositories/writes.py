"""Write-back: platform writes (``writes``), their targets per connection (``write_targets``), the
per-connection modes and kill switches (``writeback_switches``) and the echo records of
acknowledged vendor writes (``writeback_echoes``).

Two workers never hold one target: ``claim`` selects claimable rows ``FOR UPDATE SKIP LOCKED``
(PostgreSQL) and marks them with an ``UPDATE ... RETURNING`` that repeats the conditions, as
``webhooks.SqlDeliveries.claim`` does; SQLite's writing unit of work holds the write lock
already. ``settle`` writes only while the caller still holds the claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select, tuple_, update

from cadastre.errors import AlreadyExists
from cadastre.ports import (
    StoredWrite,
    WritebackMode,
    WritebackSwitch,
    WriteEcho,
    WriteOperation,
    WriteState,
    WriteTarget,
)
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import ColumnElement, Row


def _write(row: Row[Any]) -> StoredWrite:
    return StoredWrite(
        id=row.id, entity=row.entity, canonical_id=row.canonical_id,
        operation=WriteOperation(row.operation), patch=row.patch, actor=row.actor,
        causation_id=row.causation_id, created_at=row.created_at,
    )  # fmt: skip


def _target(row: Row[Any]) -> WriteTarget:
    return WriteTarget(
        write_id=row.write_id, connection=row.connection, system=row.system, entity=row.entity,
        canonical_id=row.canonical_id, operation=WriteOperation(row.operation),
        fields=row.fields, key=row.key, state=WriteState(row.state), attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, external_id=row.external_id,
        base_version=row.base_version, receipt=row.receipt, error=row.error,
        updated_at=row.updated_at,
    )  # fmt: skip


def _switch(row: Row[Any]) -> WritebackSwitch:
    return WritebackSwitch(
        connection=row.connection, mode=WritebackMode(row.mode) if row.mode else None,
        stopped=row.stopped, stopped_by=row.stopped_by, reason=row.reason,
        stopped_at=row.stopped_at, updated_by=row.updated_by, updated_at=row.updated_at,
    )  # fmt: skip


class SqlWrites(SqlRepository):
    async def add(self, write: StoredWrite, targets: Sequence[WriteTarget]) -> None:
        inserted = await self.wrote(
            self.insert(t.writes)
            .values(
                tenant=self.tenant,
                id=write.id,
                entity=write.entity,
                canonical_id=write.canonical_id,
                operation=write.operation.value,
                patch=dict(write.patch),
                actor=write.actor,
                causation_id=write.causation_id,
                created_at=write.created_at,
            )
            .on_conflict_do_nothing()
            .returning(t.writes.c.id)
        )
        if not inserted:
            raise AlreadyExists(f"write {write.id!r} already exists")
        if not targets:
            return
        now = self.now()
        await self.execute(
            t.write_targets.insert(),
            [
                {
                    "tenant": self.tenant,
                    "write_id": write.id,
                    "connection": x.connection,
                    "system": x.system,
                    "entity": x.entity,
                    "canonical_id": x.canonical_id,
                    "operation": x.operation.value,
                    "fields": dict(x.fields),
                    "key": x.key,
                    "state": x.state.value,
                    "attempts": x.attempts,
                    "next_attempt_at": x.next_attempt_at,
                    "external_id": x.external_id,
                    "base_version": x.base_version,
                    "receipt": dict(x.receipt) if x.receipt is not None else None,
                    "error": x.error,
                    "claim": None,
                    "claimed_until": None,
                    "updated_at": x.updated_at or now,
                }
                for x in targets
            ],
        )

    async def get(self, id: str) -> StoredWrite | None:
        c = t.writes.c
        row = (
            await self.execute(select(t.writes).where(c.tenant == self.tenant, c.id == id))
        ).first()
        return _write(row) if row is not None else None

    async def targets(self, write_id: str) -> list[WriteTarget]:
        c = t.write_targets.c
        rows = await self.execute(
            select(t.write_targets)
            .where(c.tenant == self.tenant, c.write_id == write_id)
            .order_by(c.connection)
        )
        return [_target(r) for r in rows]

    async def find_targets(
        self,
        *,
        state: WriteState | None = None,
        connection: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[WriteTarget]:
        c = t.write_targets.c
        query = select(t.write_targets).where(c.tenant == self.tenant)
        if state is not None:
            query = query.where(c.state == state.value)
        if connection is not None:
            query = query.where(c.connection == connection)
        if after is not None:
            query = query.where(tuple_(c.write_id, c.connection) > tuple_(*after))
        rows = await self.execute(query.order_by(c.write_id, c.connection).limit(limit))
        return [_target(r) for r in rows]

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        c = t.write_targets.c
        free = or_(c.claimed_until.is_(None), c.claimed_until <= now)
        pending = and_(
            c.state == WriteState.PENDING.value,
            or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
        )
        # A sending target whose claim ran out lost its worker: recovery takes it over.
        orphaned = and_(c.state == WriteState.SENDING.value, c.claimed_until.is_not(None))
        return and_(c.tenant == self.tenant, free, or_(pending, orphaned))

    async def pending_counts(self) -> dict[str, int]:
        c = t.write_targets.c
        unsettled = [s.value for s in (WriteState.PENDING, WriteState.SENDING, WriteState.HELD)]
        rows = await self.execute(
            select(c.connection, func.count().label("n"))
            .where(c.tenant == self.tenant, c.state.in_(unsettled))
            .group_by(c.connection)
        )
        return {r.connection: int(r.n) for r in rows}

    async def any_due(self) -> bool:
        c = t.write_targets.c
        query = select(c.write_id).where(self._claimable(self.now())).limit(1)
        return (await self.execute(query)).first() is not None

    async def claim(self, *, holder: str, until: datetime, limit: int = 20) -> list[WriteTarget]:
        c = t.write_targets.c
        claimable = self._claimable(self.now())
        due = (
            select(c.write_id, c.connection)
            .where(claimable)
            .order_by(c.next_attempt_at, c.write_id, c.connection)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        keys = [(r.write_id, r.connection) for r in await self.execute(due)]
        if not keys:
            return []
        rows = await self.execute(
            update(t.write_targets)
            .where(claimable, tuple_(c.write_id, c.connection).in_(keys))
            .values(claim=holder, claimed_until=until)
            .returning(*t.write_targets.c)
        )
        return sorted((_target(r) for r in rows), key=lambda x: (x.write_id, x.connection))

    async def settle(
        self,
        write_id: str,
        connection: str,
        *,
        holder: str,
        state: WriteState,
        attempts: int | None = None,
        next_attempt_at: datetime | None = None,
        external_id: str | None = None,
        receipt: Mapping[str, Any] | None = None,
        error: str | None = None,
        release: bool = True,
    ) -> bool:
        c = t.write_targets.c
        values: dict[str, Any] = {
            "state": state.value, "next_attempt_at": next_attempt_at, "updated_at": self.now(),
        }  # fmt: skip
        if attempts is not None:
            values["attempts"] = attempts
        if external_id is not None:
            values["external_id"] = external_id
        if receipt is not None:
            values["receipt"] = dict(receipt)
        if error is not None:
            values["error"] = error
        if release:
            values |= {"claim": None, "claimed_until": None}
        return await self.wrote(
            update(t.write_targets)
            .where(
                c.tenant == self.tenant,
                c.write_id == write_id,
                c.connection == connection,
                c.claim == holder,
            )
            .values(**values)
            .returning(c.write_id)
        )

    async def release_held(self, connection: str | None = None) -> int:
        c = t.write_targets.c
        query = update(t.write_targets).where(
            c.tenant == self.tenant, c.state == WriteState.HELD.value
        )
        if connection is not None:
            query = query.where(c.connection == connection)
        rows = await self.execute(
            query.values(
                state=WriteState.PENDING.value, next_attempt_at=None, updated_at=self.now()
            ).returning(c.write_id)
        )
        return len(rows.all())

    async def switches(self) -> dict[str, WritebackSwitch]:
        c = t.writeback_switches.c
        rows = await self.execute(select(t.writeback_switches).where(c.tenant == self.tenant))
        return {r.connection: _switch(r) for r in rows}

    async def _upsert_switch(self, connection: str, values: dict[str, Any]) -> WritebackSwitch:
        c = t.writeback_switches.c
        now = self.now()
        base = {
            "tenant": self.tenant, "connection": connection, "mode": None, "stopped": False,
            "stopped_by": "", "reason": "", "stopped_at": None, "updated_by": "",
            "updated_at": now,
        }  # fmt: skip
        await self.execute(
            self.insert(t.writeback_switches)
            .values(**(base | values))
            .on_conflict_do_update(index_elements=[c.tenant, c.connection], set_=values)
        )
        row = (
            await self.execute(
                select(t.writeback_switches).where(
                    c.tenant == self.tenant, c.connection == connection
                )
            )
        ).one()
        return _switch(row)

    async def set_mode(self, connection: str, mode: WritebackMode, *, by: str) -> WritebackSwitch:
        values = {"mode": mode.value, "updated_by": by, "updated_at": self.now()}
        return await self._upsert_switch(connection, values)

    async def set_stopped(
        self, connection: str, stopped: bool, *, by: str, reason: str = ""
    ) -> WritebackSwitch:
        now = self.now()
        values: dict[str, Any] = {"stopped": stopped, "updated_by": by, "updated_at": now}
        if stopped:
            values |= {"stopped_by": by, "reason": reason, "stopped_at": now}
        else:
            values |= {"stopped_by": "", "reason": "", "stopped_at": None}
        return await self._upsert_switch(connection, values)

    async def add_echoes(self, echoes: Sequence[WriteEcho]) -> None:
        if not echoes:
            return
        await self.execute(
            t.writeback_echoes.insert(),
            [
                {
                    "tenant": self.tenant,
                    "connection": e.connection,
                    "entity": e.entity,
                    "external_id": e.external_id,
                    "source_version": e.source_version,
                    "values_hash": e.values_hash,
                    "fields": list(e.fields),
                    "recorded_at": e.recorded_at,
                }
                for e in echoes
            ],
        )

    async def echoes(
        self, connection: str, entity: str, external_ids: Sequence[str]
    ) -> list[WriteEcho]:
        c = t.writeback_echoes.c
        found: list[WriteEcho] = []
        for chunk in chunked(external_ids):
            rows = await self.execute(
                select(t.writeback_echoes)
                .where(
                    c.tenant == self.tenant,
                    c.connection == connection,
                    c.entity == entity,
                    c.external_id.in_(chunk),
                )
                .order_by(c.position)
            )
            found += [
                WriteEcho(
                    r.connection,
                    r.entity,
                    r.external_id,
                    r.source_version,
                    r.values_hash,
                    tuple(r.fields),
                    r.recorded_at,
                )
                for r in rows
            ]
        return sorted(found, key=lambda e: e.recorded_at)

    async def prune_echoes(self, *, before: datetime) -> int:
        c = t.writeback_echoes.c
        rows = await self.execute(
            delete(t.writeback_echoes)
            .where(c.tenant == self.tenant, c.recorded_at < before)
            .returning(c.position)
        )
        return len(rows.all())
