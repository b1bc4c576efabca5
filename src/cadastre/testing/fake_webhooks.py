"""The webhooks-out repositories of ``FakeStore``: the same rules as
``cadastre.store.repositories.webhooks``, over the fake's copy-on-write state (rows are frozen and
replaced, never changed in place). Units of work of the fake run one at a time, so a claim is
atomic without anything more."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cadastre.errors import AlreadyExists, StoreError
from cadastre.ports import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.testing.fakes import FakeUnitOfWork, _State


@dataclass(frozen=True)
class DeliveryRow:
    tenant: str
    position: int
    delivery: Delivery
    claim: str | None = None
    claimed_until: datetime | None = None


def _aware(*moments: datetime | None) -> None:
    if any(m is not None and m.tzinfo is None for m in moments):
        raise StoreError("database statement: the store keeps timezone-aware datetimes only")


class _WebhookRepo:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> _State:
        return self._uow.state

    @property
    def _t(self) -> str:
        return self._uow.tenant

    def _now(self) -> datetime:
        return self._uow._clock.now()


class FakeSubscriptions(_WebhookRepo):
    async def add(self, subscription: Subscription) -> None:
        _aware(subscription.created_at, subscription.updated_at, subscription.failing_since)
        key = (self._t, subscription.id)
        if key in self._s.subscriptions:
            raise AlreadyExists(f"subscription {subscription.id!r} already exists")
        stored = replace(subscription, event_types=tuple(subscription.event_types))
        self._s.subscriptions[key] = stored

    async def get(self, id: str) -> Subscription | None:
        return self._s.subscriptions.get((self._t, id))

    async def all(self) -> list[Subscription]:
        mine = [s for (t, _), s in self._s.subscriptions.items() if t == self._t]
        return sorted(mine, key=lambda s: (s.created_at, s.id))

    async def delete(self, id: str) -> bool:
        return self._s.subscriptions.pop((self._t, id), None) is not None

    async def set_status(
        self, id: str, status: SubscriptionStatus, reason: str = ""
    ) -> Subscription | None:
        found = self._s.subscriptions.get((self._t, id))
        if found is None or found.status is status:
            return None
        changed = replace(found, status=status, status_reason=reason, updated_at=self._now())
        if status is SubscriptionStatus.ACTIVE:
            changed = replace(changed, failing_since=None)
        self._s.subscriptions[(self._t, id)] = changed
        return changed

    async def note_failure(self, id: str, at: datetime) -> datetime | None:
        _aware(at)
        found = self._s.subscriptions.get((self._t, id))
        if found is None:
            return None
        if found.failing_since is None:
            found = self._s.subscriptions[(self._t, id)] = replace(found, failing_since=at)
        return found.failing_since

    async def note_success(self, id: str) -> None:
        found = self._s.subscriptions.get((self._t, id))
        if found is not None and found.failing_since is not None:
            self._s.subscriptions[(self._t, id)] = replace(found, failing_since=None)


class FakeDeliveries(_WebhookRepo):
    def _mine(self) -> list[DeliveryRow]:
        rows = [r for r in self._s.deliveries.values() if r.tenant == self._t]
        return sorted(rows, key=lambda r: r.position)

    def _row(self, id: str) -> DeliveryRow | None:
        row = self._s.deliveries.get(id)
        return row if row is not None and row.tenant == self._t else None

    def _put(self, row: DeliveryRow) -> None:
        self._s.deliveries[row.delivery.id] = row

    async def add_many(self, deliveries: Sequence[Delivery]) -> int:
        added = 0
        for delivery in deliveries:
            _aware(delivery.created_at, delivery.updated_at, delivery.next_attempt_at)
            key = (self._t, delivery.subscription, delivery.event_id)
            if key in self._s.delivery_keys:
                continue
            if delivery.id in self._s.deliveries:
                raise StoreError(f"database statement: delivery id {delivery.id!r} is taken")
            self._s.delivery_keys[key] = delivery.id
            self._put(DeliveryRow(self._t, self._s.next_delivery_position, delivery))
            self._s.next_delivery_position += 1
            added += 1
        return added

    async def count_pending(self) -> int:
        return sum(1 for r in self._mine() if r.delivery.status is DeliveryStatus.PENDING)

    async def any_due(self) -> bool:
        return bool(self._due(self._now()))

    async def claim(self, *, holder: str, until: datetime, limit: int = 50) -> list[Delivery]:
        _aware(until)
        due = self._due(self._now())
        for row in due[:limit]:
            self._put(replace(row, claim=holder, claimed_until=until))
        return [r.delivery for r in due[:limit]]

    def _due(self, now: datetime) -> list[DeliveryRow]:
        active = {
            s.id for (t, _), s in self._s.subscriptions.items()
            if t == self._t and s.status is SubscriptionStatus.ACTIVE
        }  # fmt: skip
        due = [
            r for r in self._mine()
            if r.delivery.status is DeliveryStatus.PENDING and r.delivery.subscription in active
            and r.delivery.next_attempt_at is not None and r.delivery.next_attempt_at <= now
            and (r.claimed_until is None or r.claimed_until < now)
        ]  # fmt: skip
        due.sort(key=lambda r: (r.delivery.next_attempt_at, r.position))
        return due

    async def finish(
        self,
        id: str,
        *,
        holder: str,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> bool:
        _aware(attempt.at, next_attempt_at)
        row = self._row(id)
        if row is None or row.claim != holder:
            return False
        now, current = self._now(), row.delivery
        delivered_at = attempt.at if status is DeliveryStatus.DELIVERED else current.delivered_at
        delivery = replace(
            current, status=status, attempts=attempt.number, next_attempt_at=next_attempt_at,
            last_status=attempt.status, last_error=attempt.error, updated_at=now,
            delivered_at=delivered_at,
        )  # fmt: skip
        self._put(replace(row, delivery=delivery, claim=None, claimed_until=None))
        self._s.delivery_attempts[id] = (*self._s.delivery_attempts.get(id, ()), attempt)
        return True

    async def get(self, id: str) -> Delivery | None:
        row = self._row(id)
        return None if row is None else row.delivery

    async def attempts(self, id: str) -> list[DeliveryAttempt]:
        if self._row(id) is None:
            return []
        return list(self._s.delivery_attempts.get(id, ()))

    async def find(
        self,
        *,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        rows = self._mine()
        if after is not None:
            start = self._row(after)
            rows = [r for r in rows if start is not None and r.position > start.position]
        found = [
            r.delivery for r in rows
            if (status is None or r.delivery.status is status)
            and (subscription is None or r.delivery.subscription == subscription)
        ]  # fmt: skip
        return found[:limit]

    async def redeliver(self, id: str) -> Delivery | None:
        row = self._row(id)
        sent = (DeliveryStatus.DEAD, DeliveryStatus.DELIVERED)
        if row is None or row.delivery.status not in sent:
            return None
        if (self._t, row.delivery.subscription) not in self._s.subscriptions:
            return None
        now = self._now()
        delivery = replace(
            row.delivery, status=DeliveryStatus.PENDING, attempts=0,
            redeliveries=row.delivery.redeliveries + 1, next_attempt_at=now, last_status=None,
            last_error="", delivered_at=None, updated_at=now,
        )  # fmt: skip
        self._put(replace(row, delivery=delivery, claim=None, claimed_until=None))
        return delivery

    async def prune(self, *, before: datetime, limit: int = 1000) -> int:
        _aware(before)
        live = {id for (t, id) in self._s.subscriptions if t == self._t}
        settled = (DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED)
        gone = [
            r for r in self._mine()
            if r.delivery.updated_at < before
            and (r.delivery.status in settled or r.delivery.subscription not in live)
        ][:limit]  # fmt: skip
        for row in gone:
            d = row.delivery
            del self._s.deliveries[d.id]
            self._s.delivery_keys.pop((self._t, d.subscription, d.event_id), None)
            self._s.delivery_attempts.pop(d.id, None)
        return len(gone)

    async def resume(self, subscription: str) -> int:
        return self._change_pending(subscription, cancel=False)

    async def cancel(self, subscription: str) -> int:
        return self._change_pending(subscription, cancel=True)

    def _change_pending(self, subscription: str, *, cancel: bool) -> int:
        now, changed = self._now(), 0
        for row in self._mine():
            d = row.delivery
            if d.subscription != subscription or d.status is not DeliveryStatus.PENDING:
                continue
            if cancel:
                d = replace(d, status=DeliveryStatus.CANCELLED, next_attempt_at=None)
                row = replace(row, claim=None, claimed_until=None)
            else:
                d = replace(d, next_attempt_at=now)
            self._put(replace(row, delivery=replace(d, updated_at=now)))
            changed += 1
        return changed
