"""The write-back repository of ``FakeStore`` (``uow.writes``): the same rules as
``cadastre.store.repositories.writes``. Its tables live in one ``WriteTables`` value of the fake's
state, copied before every change (copy-on-write, as the fake's other tables), so a unit of work
that rolls back leaves nothing behind. Units of work of the fake run one at a time, so a claim is
atomic without anything more."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadastre.errors import AlreadyExists, StoreError
from cadastre.ports import (
    StoredWrite,
    WritebackMode,
    WritebackSwitch,
    WriteEcho,
    WriteState,
    WriteTarget,
)
from cadastre.store.canonical import json_copy

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.testing.fakes import FakeUnitOfWork


@dataclass(frozen=True)
class TargetRow:
    tenant: str
    target: WriteTarget
    claim: str | None = None
    claimed_until: datetime | None = None


@dataclass
class WriteTables:
    writes: dict[tuple[str, str], StoredWrite] = field(default_factory=dict)
    targets: dict[tuple[str, str, str], TargetRow] = field(default_factory=dict)
    switches: dict[tuple[str, str], WritebackSwitch] = field(default_factory=dict)
    echoes: list[tuple[str, WriteEcho]] = field(default_factory=list)

    def copy(self) -> WriteTables:
        return WriteTables(
            dict(self.writes), dict(self.targets), dict(self.switches), list(self.echoes)
        )


def _aware(*moments: datetime | None) -> None:
    if any(m is not None and m.tzinfo is None for m in moments):
        raise StoreError("database statement: the store keeps timezone-aware datetimes only")


class FakeWrites:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _t(self) -> str:
        return self._uow.tenant

    def _read(self) -> WriteTables:
        tables: WriteTables = self._uow.state.writeback
        return tables

    def _write(self) -> WriteTables:
        """The tables to change: a copy, put in the unit of work's state."""
        tables = self._read().copy()
        self._uow.state.writeback = tables
        return tables

    def _now(self) -> datetime:
        return self._uow._clock.now()

    async def add(self, write: StoredWrite, targets: Sequence[WriteTarget]) -> None:
        _aware(write.created_at, *(x.next_attempt_at for x in targets))
        if (self._t, write.id) in self._read().writes:
            raise AlreadyExists(f"write {write.id!r} already exists")
        tables = self._write()
        tables.writes[(self._t, write.id)] = replace(write, patch=json_copy(dict(write.patch)))
        now = self._now()
        for x in targets:
            stored = replace(
                x, write_id=write.id, fields=json_copy(dict(x.fields)),
                receipt=json_copy(dict(x.receipt)) if x.receipt is not None else None,
                updated_at=x.updated_at or now,
            )  # fmt: skip
            tables.targets[(self._t, write.id, x.connection)] = TargetRow(self._t, stored)

    async def get(self, id: str) -> StoredWrite | None:
        return self._read().writes.get((self._t, id))

    async def targets(self, write_id: str) -> list[WriteTarget]:
        rows = [
            r.target for (t, w, _), r in self._read().targets.items()
            if t == self._t and w == write_id
        ]  # fmt: skip
        return sorted(rows, key=lambda x: x.connection)

    async def find_targets(
        self,
        *,
        state: WriteState | None = None,
        connection: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[WriteTarget]:
        found = [
            r.target for (t, _, _), r in self._read().targets.items()
            if t == self._t
            and (state is None or r.target.state is state)
            and (connection is None or r.target.connection == connection)
            and (after is None or (r.target.write_id, r.target.connection) > after)
        ]  # fmt: skip
        found.sort(key=lambda x: (x.write_id, x.connection))
        return found[:limit]

    def _claimable(self, row: TargetRow, now: datetime) -> bool:
        if row.tenant != self._t:
            return False
        if row.claimed_until is not None and row.claimed_until > now:
            return False
        target = row.target
        if target.state is WriteState.PENDING:
            return target.next_attempt_at is None or target.next_attempt_at <= now
        return target.state is WriteState.SENDING and row.claimed_until is not None

    async def pending_counts(self) -> dict[str, int]:
        unsettled = (WriteState.PENDING, WriteState.SENDING, WriteState.HELD)
        found: dict[str, int] = {}
        for row in self._read().targets.values():
            if row.tenant == self._t and row.target.state in unsettled:
                found[row.target.connection] = found.get(row.target.connection, 0) + 1
        return found

    async def any_due(self) -> bool:
        now = self._now()
        return any(self._claimable(r, now) for r in self._read().targets.values())

    async def claim(self, *, holder: str, until: datetime, limit: int = 20) -> list[WriteTarget]:
        _aware(until)
        now = self._now()
        due = [(k, r) for k, r in self._read().targets.items() if self._claimable(r, now)]
        # Python's sort cannot compare None with datetimes: None sorts first (SQL's NULLS FIRST
        # on SQLite, a due row either way)
        due.sort(key=lambda kr: (kr[1].target.next_attempt_at is not None,
                                 kr[1].target.next_attempt_at or now, kr[0]))  # fmt: skip
        taken = due[:limit]
        if not taken:
            return []
        tables = self._write()
        for key, row in taken:
            tables.targets[key] = replace(row, claim=holder, claimed_until=until)
        return sorted((r.target for _, r in taken), key=lambda x: (x.write_id, x.connection))

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
        _aware(next_attempt_at)
        key = (self._t, write_id, connection)
        row = self._read().targets.get(key)
        if row is None or row.claim != holder:
            return False
        target = replace(
            row.target, state=state, next_attempt_at=next_attempt_at, updated_at=self._now(),
            attempts=row.target.attempts if attempts is None else attempts,
            external_id=row.target.external_id if external_id is None else external_id,
            receipt=row.target.receipt if receipt is None else json_copy(dict(receipt)),
            error=row.target.error if error is None else error,
        )  # fmt: skip
        if release:
            row = replace(row, claim=None, claimed_until=None)
        self._write().targets[key] = replace(row, target=target)
        return True

    async def release_held(self, connection: str | None = None) -> int:
        held = [
            (k, r) for k, r in self._read().targets.items()
            if r.tenant == self._t and r.target.state is WriteState.HELD
            and (connection is None or r.target.connection == connection)
        ]  # fmt: skip
        if not held:
            return 0
        tables, now = self._write(), self._now()
        for key, row in held:
            target = replace(
                row.target, state=WriteState.PENDING, next_attempt_at=None, updated_at=now
            )
            tables.targets[key] = replace(row, target=target)
        return len(held)

    async def switches(self) -> dict[str, WritebackSwitch]:
        return {c: s for (t, c), s in self._read().switches.items() if t == self._t}

    def _switch(self, connection: str) -> WritebackSwitch:
        found = self._read().switches.get((self._t, connection))
        return found or WritebackSwitch(connection, None, updated_at=self._now())

    async def set_mode(self, connection: str, mode: WritebackMode, *, by: str) -> WritebackSwitch:
        switch = replace(self._switch(connection), mode=mode, updated_by=by,
                         updated_at=self._now())  # fmt: skip
        self._write().switches[(self._t, connection)] = switch
        return switch

    async def set_stopped(
        self, connection: str, stopped: bool, *, by: str, reason: str = ""
    ) -> WritebackSwitch:
        now = self._now()
        switch = replace(
            self._switch(connection), stopped=stopped, updated_by=by, updated_at=now,
            stopped_by=by if stopped else "", reason=reason if stopped else "",
            stopped_at=now if stopped else None,
        )  # fmt: skip
        self._write().switches[(self._t, connection)] = switch
        return switch

    async def add_echoes(self, echoes: Sequence[WriteEcho]) -> None:
        _aware(*(e.recorded_at for e in echoes))
        if echoes:
            self._write().echoes.extend((self._t, replace(e, fields=tuple(e.fields)))
                                        for e in echoes)  # fmt: skip

    async def echoes(
        self, connection: str, entity: str, external_ids: Sequence[str]
    ) -> list[WriteEcho]:
        wanted = set(external_ids)
        found = [
            e for t, e in self._read().echoes
            if t == self._t and e.connection == connection and e.entity == entity
            and e.external_id in wanted
        ]  # fmt: skip
        return sorted(found, key=lambda e: e.recorded_at)

    async def prune_echoes(self, *, before: datetime) -> int:
        _aware(before)
        mine = [(t, e) for t, e in self._read().echoes if t == self._t and e.recorded_at < before]
        if not mine:
            return 0
        tables = self._write()
        tables.echoes = [
            (t, e) for t, e in tables.echoes if not (t == self._t and e.recorded_at < before)
        ]
        return len(mine)
