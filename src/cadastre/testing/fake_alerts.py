"""The alerts repository of ``FakeStore`` (``uow.alerts``): the same rules as
``cadastre.store.repositories.alerts`` over the fake's copy-on-write state. Rows are kept by id in
the order they were made (a dict keeps its insertion order when a value is replaced), which is
the SQL stores' ``position``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.errors import AlreadyExists, StoreError
from cadastre.ports import Alert, AlertState
from cadastre.store.canonical import json_copy
from cadastre.testing.fake_webhooks import _aware, _WebhookRepo

if TYPE_CHECKING:
    from collections.abc import Iterator

_OPEN = (AlertState.PENDING, AlertState.FIRING)


class FakeAlerts(_WebhookRepo):
    async def put(self, alert: Alert) -> None:
        if alert.tenant != self._t:
            raise ValueError(
                f"the alert belongs to tenant {alert.tenant!r}, not to this unit of work's "
                f"{self._t!r}"
            )
        _aware(alert.since, alert.raised_at, alert.last_seen_at, alert.resolved_at)
        held = self._s.alerts.get(alert.id)
        if held is not None and held[0] != self._t:
            raise AlreadyExists(f"alert {alert.id!r} not added: the id is taken")
        if alert.state is not AlertState.RESOLVED:
            twin = next(
                (a for a in self._mine() if a.id != alert.id and a.rule == alert.rule
                 and a.key == alert.key and a.state is not AlertState.RESOLVED),
                None,
            )  # fmt: skip
            if twin is not None and held is None:
                raise AlreadyExists(
                    f"alert {alert.id!r} not added: an alert of rule {alert.rule!r} and key "
                    f"{alert.key!r} is open already (or the id is taken)"
                )
            if twin is not None:  # the SQL stores' unique index refuses the update
                raise StoreError("database: IntegrityError: uq_alerts_current")
        self._s.alerts[alert.id] = (self._t, replace(alert, facts=json_copy(alert.facts)))

    async def get(self, id: str) -> Alert | None:
        held = self._s.alerts.get(id)
        return None if held is None or held[0] != self._t else held[1]

    async def current(self, rule: str, key: str, *, for_update: bool = False) -> Alert | None:
        return next(
            (a for a in self._mine()
             if a.rule == rule and a.key == key and a.state is not AlertState.RESOLVED),
            None,
        )  # fmt: skip

    async def open(self, *, connection: str | None = None) -> list[Alert]:
        found = [
            a for a in self._mine()
            if a.state in _OPEN and (connection is None or a.connection == connection)
        ]  # fmt: skip
        return found[::-1]

    async def history(
        self, *, rule: str | None = None, connection: str | None = None, limit: int = 100
    ) -> list[Alert]:
        found = [
            a for a in self._mine()
            if (rule is None or a.rule == rule)
            and (connection is None or a.connection == connection)
        ]  # fmt: skip
        return found[::-1][: max(limit, 0)]

    def _mine(self) -> Iterator[Alert]:
        return (a for t, a in self._s.alerts.values() if t == self._t)
