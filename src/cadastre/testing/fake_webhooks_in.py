"""The webhooks-in repository of ``FakeStore``: the same rules as
``cadastre.store.repositories.webhooks_in``, over the fake's copy-on-write state (entries are
frozen and replaced, never changed in place)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.ports import InboxEntry, InboxStatus, RefusalTally
from cadastre.testing.fake_webhooks import _aware, _WebhookRepo

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cadastre.ports import InboxSettlement, ReceivedWebhook

_SETTLED = (InboxStatus.PROCESSED, InboxStatus.QUARANTINED)


class FakeWebhooksIn(_WebhookRepo):
    def _mine(self) -> list[InboxEntry]:
        return [e for t, e in self._s.inbox.values() if t == self._t]

    async def add_many(self, items: Sequence[ReceivedWebhook]) -> list[bool]:
        stored = []
        for item in items:
            _aware(item.received_at)
            key = (self._t, item.connection, item.message_id)
            if key in self._s.inbox_keys:
                stored.append(False)
                continue
            position = self._s.next_inbox_position
            self._s.next_inbox_position += 1
            entry = InboxEntry(
                position, item.connection, item.message_id, item.received_at,
                dict(item.headers), bytes(item.body), InboxStatus.PENDING,
            )  # fmt: skip
            self._s.inbox[position] = (self._t, entry)
            self._s.inbox_keys[key] = position
            stored.append(True)
        return stored

    async def get(self, connection: str, message_id: str) -> InboxEntry | None:
        position = self._s.inbox_keys.get((self._t, connection, message_id))
        return None if position is None else self._s.inbox[position][1]

    def _is_due(self, entry: InboxEntry, now: datetime) -> bool:
        return entry.status is InboxStatus.PENDING and (
            entry.next_attempt_at is None or entry.next_attempt_at <= now
        )

    async def due(self, connection: str, *, now: datetime, limit: int = 100) -> list[InboxEntry]:
        _aware(now)
        found = [e for e in self._mine() if e.connection == connection and self._is_due(e, now)]
        return sorted(found, key=lambda e: e.position)[:limit]

    async def due_connections(self, *, now: datetime) -> list[str]:
        _aware(now)
        return sorted({e.connection for e in self._mine() if self._is_due(e, now)})

    async def settle(self, settlements: Sequence[InboxSettlement]) -> None:
        now = self._uow._clock.now()
        for s in settlements:
            _aware(s.next_attempt_at)
            found = self._s.inbox.get(s.position)
            if found is None or found[0] != self._t:
                continue  # as an UPDATE that matches no row
            self._s.inbox[s.position] = (self._t, replace(
                found[1], status=s.status, attempts=s.attempts, error=s.error,
                next_attempt_at=s.next_attempt_at,
                processed_at=None if s.status is InboxStatus.PENDING else now,
            ))  # fmt: skip

    async def entries(
        self,
        connection: str | None = None,
        *,
        status: InboxStatus | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[InboxEntry]:
        found = [
            e for e in self._mine()
            if (connection is None or e.connection == connection)
            and (status is None or e.status is status)
            and (before is None or e.position < before)
        ]  # fmt: skip
        return sorted(found, key=lambda e: -e.position)[:limit]

    async def counts(self) -> dict[tuple[str, InboxStatus], int]:
        counts: dict[tuple[str, InboxStatus], int] = {}
        for e in self._mine():
            counts[(e.connection, e.status)] = counts.get((e.connection, e.status), 0) + 1
        return counts

    async def prune(self, *, settled_before: datetime, failed_before: datetime) -> int:
        _aware(settled_before, failed_before)
        gone = [
            e for e in self._mine()
            if (e.status in _SETTLED and e.received_at < settled_before)
            or (e.status is InboxStatus.FAILED and e.received_at < failed_before)
        ]  # fmt: skip
        for e in gone:
            del self._s.inbox[e.position]
            del self._s.inbox_keys[(self._t, e.connection, e.message_id)]
        return len(gone)

    async def count_refusals(self, tallies: Sequence[RefusalTally]) -> None:
        for tally in tallies:
            _aware(tally.minute, tally.last_at)
            key = (self._t, tally.connection, tally.reason, tally.minute)
            held = self._s.refusals.get(key)
            if held is None:
                self._s.refusals[key] = replace(tally, example=dict(tally.example))
                continue
            later = tally.last_at >= held.last_at
            self._s.refusals[key] = replace(
                held, count=held.count + tally.count,
                last_at=tally.last_at if later else held.last_at,
                example=dict(tally.example) if later else held.example,
            )  # fmt: skip

    async def refusals(
        self, connection: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> list[RefusalTally]:
        _aware(since)
        found = [
            r for (t, *_), r in self._s.refusals.items()
            if t == self._t and (connection is None or r.connection == connection)
            and (since is None or r.minute >= since)
        ]  # fmt: skip
        found.sort(key=lambda r: (r.connection, r.reason))
        found.sort(key=lambda r: r.minute, reverse=True)
        return [RefusalTally(r.connection, r.reason, r.minute, r.count, r.last_at, r.example)
                for r in found[:limit]]  # fmt: skip

    async def prune_refusals(self, *, before: datetime) -> int:
        _aware(before)
        gone = [k for k, r in self._s.refusals.items() if k[0] == self._t and r.minute < before]
        for key in gone:
            del self._s.refusals[key]
        return len(gone)
