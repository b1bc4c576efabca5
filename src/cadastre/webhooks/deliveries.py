"""``DeliveryService``: the deliveries of a tenant as people see them (``cadastre deliveries``,
``/v1/deliveries``), and redelivery by hand.

A redelivery resets a dead (or delivered) delivery to pending with its attempts starting over,
writes an audit entry, and wakes the sender. It is delivered once: the reset is one conditional
update, so of two requests for one delivery only the first resets it (the second finds it
pending, already on its way), and the sender's claim lets one worker attempt it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadastre.errors import NotFound
from cadastre.ports import AuditDraft, Delivery, DeliveryStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from cadastre.ports import Clock, DeliveryAttempt, Store, UnitOfWork

PAGE = 200


@dataclass(frozen=True)
class Redelivered:
    redelivered: list[Delivery] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why


class DeliveryService:
    def __init__(
        self, store: Store, clock: Clock, *, redelivered: Callable[[str], None] | None = None
    ) -> None:
        """``redelivered`` hears of a tenant with deliveries due now: the sender's nudge."""
        self._store = store
        self._clock = clock
        self._redelivered = redelivered

    async def find(
        self,
        tenant: str,
        *,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.deliveries.find(
                status=status, subscription=subscription, after=after, limit=limit
            )

    async def get(self, tenant: str, id: str) -> tuple[Delivery, list[DeliveryAttempt]]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.deliveries.get(id)
            attempts = await uow.deliveries.attempts(id) if found is not None else []
        if found is None:
            raise NotFound(f"delivery {id!r} does not exist")
        return found, attempts

    async def redeliver(
        self, tenant: str, ids: Sequence[str], *, actor: str = "api"
    ) -> Redelivered:
        """Send each delivery again (one transaction for all). Ids that do not exist are
        ``NotFound`` (nothing is redelivered); pending and cancelled ones are skipped."""
        report = Redelivered()
        async with self._store.unit_of_work(tenant) as uow:
            for id in dict.fromkeys(ids):
                done = await uow.deliveries.redeliver(id)
                if done is not None:
                    report.redelivered.append(done)
                    continue
                found = await uow.deliveries.get(id)
                if found is None:
                    raise NotFound(f"delivery {id!r} does not exist")
                report.skipped[id] = _why_not(found)
            await self._audit(uow, actor, report.redelivered)
            await uow.commit()
        if report.redelivered and self._redelivered is not None:
            self._redelivered(tenant)
        return report

    async def redeliver_dead(
        self, tenant: str, subscription: str, *, actor: str = "cli",
        progress: Callable[[int], None] | None = None,
    ) -> int:  # fmt: skip
        """Send every dead delivery of ``subscription`` again, a page per transaction; how many.
        ``progress`` hears how many each page redelivered."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            if await uow.subscriptions.get(subscription) is None:
                raise NotFound(f"subscription {subscription!r} does not exist")
        total = 0
        while True:
            # Always the first page: the ones redelivered are pending now, so they drop out.
            async with self._store.unit_of_work(tenant) as uow:
                dead = await uow.deliveries.find(
                    status=DeliveryStatus.DEAD, subscription=subscription, limit=PAGE
                )
                done = [d for d in [await uow.deliveries.redeliver(x.id) for x in dead] if d]
                await self._audit(uow, actor, done)
                await uow.commit()
            total += len(done)
            if done and self._redelivered is not None:
                self._redelivered(tenant)
            if progress is not None and done:
                progress(len(done))
            if len(dead) < PAGE or not done:
                return total

    async def _audit(self, uow: UnitOfWork, actor: str, done: Sequence[Delivery]) -> None:
        drafts = [
            AuditDraft(actor, "delivery.redelivered", "Delivery", d.id,
                       {"subscription": d.subscription, "event_id": d.event_id,
                        "redeliveries": d.redeliveries})
            for d in done
        ]  # fmt: skip
        await uow.audit.append_many(drafts)


def _why_not(delivery: Delivery) -> str:
    if delivery.status is DeliveryStatus.PENDING:
        return "pending: already on its way"
    if delivery.status is DeliveryStatus.CANCELLED:
        return "cancelled: its subscription was removed"
    return "its subscription was removed"
