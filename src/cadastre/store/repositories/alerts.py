"""``uow.alerts``: every alert episode of a tenant (``alerts``).

``put`` updates the row of the alert's id, or inserts it with ``ON CONFLICT DO NOTHING``: the
partial unique index on (tenant, rule, key) of the rows not resolved turns an evaluator that lost
a race (both saw no current alert, both insert) into ``AlreadyExists`` for the second, never a
second row and never an aborted transaction. On PostgreSQL the second insert waits for the
first's transaction and then finds the conflict; SQLite's writers queue at ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from cadastre.errors import AlreadyExists
from cadastre.ports import Alert, AlertState
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from sqlalchemy import Row, Select

_RESOLVED = AlertState.RESOLVED.value


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=row.id, tenant=row.tenant, rule=row.rule, key=row.key, state=AlertState(row.state),
        severity=row.severity, owner=row.owner, vendor=row.vendor, connection=row.connection,
        summary=row.summary, changed=row.changed, since=row.since, action=row.action,
        rollback=row.rollback, facts=row.facts, occurrences=row.occurrences,
        raised_at=row.raised_at, last_seen_at=row.last_seen_at, resolved_at=row.resolved_at,
        source=row.source,
    )  # fmt: skip


def _values(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule, "key": alert.key, "state": alert.state.value,
        "severity": alert.severity, "owner": alert.owner, "vendor": alert.vendor,
        "connection": alert.connection, "summary": alert.summary, "changed": alert.changed,
        "since": alert.since, "action": alert.action, "rollback": alert.rollback,
        "facts": dict(alert.facts), "occurrences": alert.occurrences,
        "raised_at": alert.raised_at, "last_seen_at": alert.last_seen_at,
        "resolved_at": alert.resolved_at, "source": alert.source,
    }  # fmt: skip


class SqlAlerts(SqlRepository):
    async def put(self, alert: Alert) -> None:
        self.own(alert.tenant, "the alert")
        c = t.alerts.c
        values = _values(alert)
        updated = await self.wrote(
            update(t.alerts)
            .where(c.tenant == self.tenant, c.id == alert.id)
            .values(**values)
            .returning(c.id)
        )
        if updated:
            return
        inserted = await self.wrote(
            self.insert(t.alerts)
            .values(id=alert.id, tenant=self.tenant, **values)
            .on_conflict_do_nothing()
            .returning(c.id)
        )
        if not inserted:
            raise AlreadyExists(
                f"alert {alert.id!r} not added: an alert of rule {alert.rule!r} and key "
                f"{alert.key!r} is open already (or the id is taken)"
            )

    async def get(self, id: str) -> Alert | None:
        c = t.alerts.c
        row = (await self.execute(self._select().where(c.id == id))).first()
        return None if row is None else _alert(row)

    async def current(self, rule: str, key: str, *, for_update: bool = False) -> Alert | None:
        c = t.alerts.c
        query = self._select().where(c.rule == rule, c.key == key, c.state != _RESOLVED)
        if for_update:  # SQLite renders nothing: its writers queue at BEGIN IMMEDIATE
            query = query.with_for_update()
        row = (await self.execute(query)).first()
        return None if row is None else _alert(row)

    async def open(self, *, connection: str | None = None) -> list[Alert]:
        c = t.alerts.c
        query = self._select().where(
            c.state.in_([AlertState.PENDING.value, AlertState.FIRING.value])
        )
        if connection is not None:
            query = query.where(c.connection == connection)
        return [_alert(r) for r in await self.execute(query.order_by(c.position.desc()))]

    async def history(
        self, *, rule: str | None = None, connection: str | None = None, limit: int = 100
    ) -> list[Alert]:
        c = t.alerts.c
        query = self._select()
        if rule is not None:
            query = query.where(c.rule == rule)
        if connection is not None:
            query = query.where(c.connection == connection)
        rows = await self.execute(query.order_by(c.position.desc()).limit(max(limit, 0)))
        return [_alert(r) for r in rows]

    def _select(self) -> Select[Any]:
        return select(t.alerts).where(t.alerts.c.tenant == self.tenant)
