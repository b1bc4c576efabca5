"""The observations repository of ``FakeStore`` (``uow.observations``): the same merge as
``cadastre.store.repositories.observations`` (``merge_rollups``) over the fake's copy-on-write
state - rows are frozen ``MinuteRollup`` values, replaced on every merge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadastre.observe.signals import combine_rollups, merge_rollups
from cadastre.testing.fake_webhooks import _aware, _WebhookRepo

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cadastre.ports import MinuteRollup


class FakeObservations(_WebhookRepo):
    async def add(self, rollups: Sequence[MinuteRollup]) -> None:
        for rollup in combine_rollups(rollups):  # checked (and refused) as the SQL store does
            key = (self._t, rollup.connection, rollup.minute)
            held = self._s.vendor_minutes.get(key)
            self._s.vendor_minutes[key] = rollup if held is None else merge_rollups(held, rollup)

    async def window(
        self, *, since: datetime, until: datetime | None = None, connection: str | None = None
    ) -> list[MinuteRollup]:
        _aware(since, until)
        found = [
            r for (t, c, m), r in self._s.vendor_minutes.items()
            if t == self._t and m >= since and (until is None or m < until)
            and (connection is None or c == connection)
        ]  # fmt: skip
        return sorted(found, key=lambda r: (r.minute, r.connection))

    async def last_seen(self) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        for (t, c, m), r in self._s.vendor_minutes.items():
            if t == self._t and r.counts.get("sync_ok", 0) > 0 and (c not in found or m > found[c]):
                found[c] = m
        return found

    async def prune(self, before: datetime) -> int:
        _aware(before)
        gone = [k for k in self._s.vendor_minutes if k[0] == self._t and k[2] < before]
        for key in gone:
            del self._s.vendor_minutes[key]
        return len(gone)
