"""Webhooks out: a tenant's subscriptions (``webhook_subscriptions``), the deliveries the
dispatcher makes of each event (``webhook_deliveries``) and every attempt at one
(``webhook_attempts``).

Two senders never attempt one delivery: ``claim`` selects due rows ``FOR UPDATE SKIP LOCKED``
(on PostgreSQL, rows another sender is claiming are skipped, and the ones taken stay locked until
the claim commits), then marks them as one sender's with an ``UPDATE ... RETURNING`` that repeats
the conditions. SQLite renders no FOR UPDATE and needs none: a writing unit of work holds the
database's write lock from its first statement. ``finish`` writes only while that sender still
holds the claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update

from cadastre.errors import AlreadyExists
from cadastre.ports import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
    SubscriptionFormat,
    SubscriptionStatus,
)
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Row

PENDING = DeliveryStatus.PENDING.value
_SENT_ONCE = (DeliveryStatus.DEAD.value, DeliveryStatus.DELIVERED.value)
_SETTLED = (DeliveryStatus.DELIVERED.value, DeliveryStatus.CANCELLED.value)


def _subscription(row: Row[Any]) -> Subscription:
    return Subscription(
        id=row.id, url=row.url, event_types=tuple(row.event_types), description=row.description,
        status=SubscriptionStatus(row.status), status_reason=row.status_reason,
        failing_since=row.failing_since, credential=row.credential, created_at=row.created_at,
        updated_at=row.updated_at, format=SubscriptionFormat(row.format),
    )  # fmt: skip


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        id=row.id, subscription=row.subscription, event_id=row.event_id,
        event_type=row.event_type, body=row.body, status=DeliveryStatus(row.status),
        attempts=row.attempts, redeliveries=row.redeliveries,
        next_attempt_at=row.next_attempt_at, created_at=row.created_at,
        updated_at=row.updated_at, last_status=row.last_status, last_error=row.last_error,
        delivered_at=row.delivered_at,
    )  # fmt: skip


class SqlSubscriptions(SqlRepository):
    async def add(self, subscription: Subscription) -> None:
        s = t.webhook_subscriptions.c
        inserted = await self.wrote(
            self.insert(t.webhook_subscriptions)
            .values(
                tenant=self.tenant,
                id=subscription.id,
                url=subscription.url,
                event_types=list(subscription.event_types),
                description=subscription.description,
                status=subscription.status.value,
                status_reason=subscription.status_reason,
                failing_since=subscription.failing_since,
                credential=subscription.credential,
                created_at=subscription.created_at,
                updated_at=subscription.updated_at,
                format=subscription.format.value,
            )
            .on_conflict_do_nothing()
            .returning(s.id)
        )
        if not inserted:
            raise AlreadyExists(f"subscription {subscription.id!r} already exists")

    async def get(self, id: str) -> Subscription | None:
        s = t.webhook_subscriptions.c
        query = select(t.webhook_subscriptions).where(s.tenant == self.tenant, s.id == id)
        row = (await self.execute(query)).first()
        return None if row is None else _subscription(row)

    async def all(self) -> list[Subscription]:
        s = t.webhook_subscriptions.c
        rows = await self.execute(
            select(t.webhook_subscriptions)
            .where(s.tenant == self.tenant)
            .order_by(s.created_at, s.id)
        )
        return [_subscription(r) for r in rows]

    async def delete(self, id: str) -> bool:
        s = t.webhook_subscriptions.c
        return await self.wrote(
            delete(t.webhook_subscriptions)
            .where(s.tenant == self.tenant, s.id == id)
            .returning(s.id)
        )

    async def set_status(
        self, id: str, status: SubscriptionStatus, reason: str = ""
    ) -> Subscription | None:
        s = t.webhook_subscriptions.c
        values: dict[str, Any] = {
            "status": status.value,
            "status_reason": reason,
            "updated_at": self.now(),
        }
        if status is SubscriptionStatus.ACTIVE:
            values["failing_since"] = None
        row = (
            await self.execute(
                update(t.webhook_subscriptions)
                .where(s.tenant == self.tenant, s.id == id, s.status != status.value)
                .values(**values)
                .returning(*t.webhook_subscriptions.c)
            )
        ).first()
        return None if row is None else _subscription(row)

    async def note_failure(self, id: str, at: datetime) -> datetime | None:
        s = t.webhook_subscriptions.c
        mine = (s.tenant == self.tenant) & (s.id == id)
        await self.execute(
            update(t.webhook_subscriptions)
            .where(mine, s.failing_since.is_(None))
            .values(failing_since=at)
        )
        row = (await self.execute(select(s.failing_since).where(mine))).first()
        return None if row is None else row.failing_since

    async def note_success(self, id: str) -> None:
        s = t.webhook_subscriptions.c
        await self.execute(
            update(t.webhook_subscriptions)
            .where(s.tenant == self.tenant, s.id == id, s.failing_since.is_not(None))
            .values(failing_since=None)
        )


class SqlDeliveries(SqlRepository):
    async def add_many(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        rows = [
            {"id": d.id, "tenant": self.tenant, "subscription": d.subscription,
             "event_id": d.event_id, "event_type": d.event_type, "body": d.body,
             "status": d.status.value, "attempts": d.attempts, "redeliveries": d.redeliveries,
             "next_attempt_at": d.next_attempt_at, "last_status": d.last_status,
             "last_error": d.last_error, "created_at": d.created_at, "updated_at": d.updated_at,
             "delivered_at": d.delivered_at}
            for d in deliveries
        ]  # fmt: skip
        c = t.webhook_deliveries.c
        statement = self.insert(t.webhook_deliveries).on_conflict_do_nothing().returning(c.id)
        return len(list(await self.execute(statement, rows)))

    def _claimable(self, now: datetime) -> tuple[Any, Any]:
        c, s = t.webhook_deliveries.c, t.webhook_subscriptions.c
        active = select(s.id).where(
            s.tenant == self.tenant, s.status == SubscriptionStatus.ACTIVE.value
        )
        claimable = (
            (c.tenant == self.tenant)
            & (c.status == PENDING)
            & (c.next_attempt_at <= now)
            & or_(c.claimed_until.is_(None), c.claimed_until < now)
        )
        return claimable, active

    async def count_pending(self) -> int:
        c = t.webhook_deliveries.c
        query = select(func.count()).where(
            c.tenant == self.tenant, c.status == DeliveryStatus.PENDING.value
        )
        return int((await self.execute(query)).scalar_one())

    async def any_due(self) -> bool:
        c = t.webhook_deliveries.c
        claimable, active = self._claimable(self.now())
        found = await self.execute(
            select(c.position).where(claimable, c.subscription.in_(active)).limit(1)
        )
        return found.first() is not None

    async def claim(self, *, holder: str, until: datetime, limit: int = 50) -> list[Delivery]:
        now = self.now()
        c = t.webhook_deliveries.c
        claimable, active = self._claimable(now)
        due = (
            select(c.position)
            .where(claimable, c.subscription.in_(active))
            .order_by(c.next_attempt_at, c.position)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # Two statements, not UPDATE ... WHERE position IN (that select): PostgreSQL may run
        # such a sub-select once per row it scans, and then takes more rows than ``limit``.
        positions = [r.position for r in await self.execute(due)]
        if not positions:
            return []
        rows = await self.execute(
            update(t.webhook_deliveries)
            .where(claimable, c.position.in_(positions))
            .values(claim=holder, claimed_until=until)
            .returning(*t.webhook_deliveries.c)
        )
        ordered = sorted(rows, key=lambda r: (r.next_attempt_at, r.position))
        return [_delivery(r) for r in ordered]

    async def finish(
        self,
        id: str,
        *,
        holder: str,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> bool:
        c = t.webhook_deliveries.c
        now = self.now()
        delivered = status is DeliveryStatus.DELIVERED
        held = await self.wrote(
            update(t.webhook_deliveries)
            .where(c.tenant == self.tenant, c.id == id, c.claim == holder)
            .values(
                status=status.value,
                attempts=attempt.number,
                next_attempt_at=next_attempt_at,
                claim=None,
                claimed_until=None,
                last_status=attempt.status,
                last_error=attempt.error,
                updated_at=now,
                delivered_at=attempt.at if delivered else c.delivered_at,
            )
            .returning(c.id)
        )
        if held:
            await self.execute(
                t.webhook_attempts.insert().values(
                    tenant=self.tenant,
                    delivery=id,
                    redelivery=attempt.redelivery,
                    number=attempt.number,
                    at=attempt.at,
                    status=attempt.status,
                    error=attempt.error,
                    seconds=attempt.seconds,
                )
            )
        return held

    async def get(self, id: str) -> Delivery | None:
        c = t.webhook_deliveries.c
        query = select(t.webhook_deliveries).where(c.tenant == self.tenant, c.id == id)
        row = (await self.execute(query)).first()
        return None if row is None else _delivery(row)

    async def attempts(self, id: str) -> list[DeliveryAttempt]:
        a = t.webhook_attempts.c
        rows = await self.execute(
            select(t.webhook_attempts)
            .where(a.tenant == self.tenant, a.delivery == id)
            .order_by(a.position)
        )
        return [
            DeliveryAttempt(r.delivery, r.redelivery, r.number, r.at, r.status, r.error,
                            r.seconds)
            for r in rows
        ]  # fmt: skip

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
        c = t.webhook_deliveries.c
        query = select(t.webhook_deliveries).where(c.tenant == self.tenant)
        if status is not None:
            query = query.where(c.status == status.value)
        if subscription is not None:
            query = query.where(c.subscription == subscription)
        if after is not None:
            start = select(c.position).where(c.tenant == self.tenant, c.id == after)
            query = query.where(c.position > start.scalar_subquery())
        rows = await self.execute(query.order_by(c.position).limit(limit))
        return [_delivery(r) for r in rows]

    async def redeliver(self, id: str) -> Delivery | None:
        c, s = t.webhook_deliveries.c, t.webhook_subscriptions.c
        exists = select(s.id).where(s.tenant == self.tenant)
        now = self.now()
        row = (
            await self.execute(
                update(t.webhook_deliveries)
                .where(
                    c.tenant == self.tenant,
                    c.id == id,
                    c.status.in_(_SENT_ONCE),
                    c.subscription.in_(exists),
                )
                .values(
                    status=PENDING,
                    attempts=0,
                    redeliveries=c.redeliveries + 1,
                    next_attempt_at=now,
                    claim=None,
                    claimed_until=None,
                    last_status=None,
                    last_error="",
                    delivered_at=None,
                    updated_at=now,
                )
                .returning(*t.webhook_deliveries.c)
            )
        ).first()
        return None if row is None else _delivery(row)

    async def resume(self, subscription: str) -> int:
        c = t.webhook_deliveries.c
        rows = await self.execute(
            update(t.webhook_deliveries)
            .where(c.tenant == self.tenant, c.subscription == subscription, c.status == PENDING)
            .values(next_attempt_at=self.now(), updated_at=self.now())
            .returning(c.id)
        )
        return len(list(rows))

    async def cancel(self, subscription: str) -> int:
        c = t.webhook_deliveries.c
        rows = await self.execute(
            update(t.webhook_deliveries)
            .where(c.tenant == self.tenant, c.subscription == subscription, c.status == PENDING)
            .values(
                status=DeliveryStatus.CANCELLED.value,
                claim=None,
                claimed_until=None,
                next_attempt_at=None,
                updated_at=self.now(),
            )
            .returning(c.id)
        )
        return len(list(rows))

    async def prune(self, *, before: datetime, limit: int = 1000) -> int:
        c, s, a = t.webhook_deliveries.c, t.webhook_subscriptions.c, t.webhook_attempts.c
        live = select(s.id).where(s.tenant == self.tenant)
        # A removed subscription's deliveries are never claimed or redelivered, whatever their
        # status (one the dispatcher added as the subscription was removed stays pending).
        settled = (
            (c.tenant == self.tenant)
            & (c.updated_at < before)
            & (c.status.in_(_SETTLED) | c.subscription.not_in(live))
        )
        found = select(c.position).where(settled).order_by(c.position).limit(limit)
        positions = [r.position for r in await self.execute(found)]
        if not positions:
            return 0
        # The conditions again: a delivery redelivered since the select is pending, and stays.
        ids = [
            r.id
            for r in await self.execute(
                delete(t.webhook_deliveries)
                .where(settled, c.position.in_(positions))
                .returning(c.id)
            )
        ]
        for chunk in chunked(ids):
            await self.execute(
                delete(t.webhook_attempts).where(a.tenant == self.tenant, a.delivery.in_(chunk))
            )
        return len(ids)
