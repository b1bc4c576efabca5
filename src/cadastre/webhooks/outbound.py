"""Webhooks out: ``WebhooksOut`` (what the hub holds: the subscription and delivery services and
the two workers) and ``DeliveryDispatcher``, the bus consumer that turns events into deliveries.

    outbox -> relay -> bus --(consumer "webhooks-out")--> DeliveryDispatcher
        -> webhook_deliveries (one per matching active subscription) --nudge--> DeliverySender
        -> POST, signed, through the subscription's gateway -> the subscriber

The dispatcher writes one delivery per (subscription, event id) in one transaction per batch and
tenant, with the consumer's mark of the events it has seen (``uow.consumed``): an event the bus
delivers again adds nothing, and a batch that fails half way is delivered again whole. The store
keeps (subscription, event id) unique as well, so even a mark pruned long ago cannot double one.
A subscription that pins a major is sent the event converted to it
(``cadastre.contract.upcast.read_as``). Subscriptions disabled when an event passes are not sent
it later: they resume with the events that follow their enabling, as Svix's endpoints do.
A ``slack`` subscription's body is the Slack message of the alert (``webhooks.slack``).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from cadastre.contract.upcast import read_as
from cadastre.errors import UpcastUnavailable
from cadastre.ports import Delivery, DeliveryStatus, SubscriptionFormat, SubscriptionStatus
from cadastre.webhooks.deliveries import DeliveryService
from cadastre.webhooks.delivery_sender import DeliverySender
from cadastre.webhooks.out_events import about_subscription, render, wanted_type
from cadastre.webhooks.out_gateways import SubscriberGateways
from cadastre.webhooks.out_signing import SigningKeys
from cadastre.webhooks.slack import render_slack
from cadastre.webhooks.subscriptions import SubscriptionService

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from cadastre.config import Settings
    from cadastre.contract.events import EventEnvelope
    from cadastre.gateway.address import Resolver
    from cadastre.observe import Metrics
    from cadastre.ports import BusMessage, BusSubscription, Clock, EventBus, Store, Subscription
    from cadastre.vault import Vault

log = logging.getLogger(__name__)

CONSUMER = "webhooks-out"


class DeliveryDispatcher:
    def __init__(
        self, bus: EventBus, store: Store, clock: Clock, *,
        nudge: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self._bus = bus
        self._store = store
        self._clock = clock
        self._nudge = nudge
        self._subscription: BusSubscription | None = None

    async def __aenter__(self) -> Self:
        self._subscription = await self._bus.subscribe(CONSUMER, self.handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def handle(self, messages: Sequence[BusMessage]) -> None:
        """One bus batch: its deliveries, a transaction per tenant. Raising (the store is away)
        has the bus deliver the batch again, which the unique (subscription, event id) makes
        harmless."""
        by_tenant: dict[str, list[EventEnvelope]] = defaultdict(list)
        for message in messages:
            by_tenant[message.event.tenant].append(message.event)
        for tenant, events in by_tenant.items():
            async with self._store.unit_of_work(tenant) as uow:
                new = set(await uow.consumed.first_seen(CONSUMER, [e.id for e in events]))
                active = [
                    s for s in await uow.subscriptions.all()
                    if s.status is SubscriptionStatus.ACTIVE
                ]  # fmt: skip
                fresh = [e for e in events if e.id in new]
                added = 0
                if active and fresh:
                    added = await uow.deliveries.add_many(self._deliveries(active, fresh))
                await uow.commit()
            if added and self._nudge is not None:
                self._nudge(tenant)

    def _deliveries(
        self, subscriptions: Sequence[Subscription], events: Sequence[EventEnvelope]
    ) -> list[Delivery]:
        now = self._clock.now()
        made: list[Delivery] = []
        for event in events:
            about = about_subscription(event)
            # (wanted type, format) -> body: shared by the subscriptions
            bodies: dict[tuple[str, SubscriptionFormat], str] = {}
            for subscription in subscriptions:
                wanted = wanted_type(subscription.event_types, event.type)
                if wanted is None or subscription.id == about:
                    continue
                shape = (wanted, subscription.format)
                if shape not in bodies:
                    try:
                        bodies[shape] = _body(read_as(event, wanted), subscription.format)
                    except UpcastUnavailable as exc:
                        # Not sent rather than sent as a major it did not ask for; a converter
                        # is a code change, and the event stays in the outbox for a replay.
                        log.warning("event %s not sent to subscription %s: %s", event.id,
                                    subscription.id, exc)  # fmt: skip
                        continue
                made.append(Delivery(
                    id=f"dlv_{secrets.token_hex(10)}", subscription=subscription.id,
                    event_id=event.id, event_type=wanted, body=bodies[shape],
                    status=DeliveryStatus.PENDING, attempts=0, redeliveries=0,
                    next_attempt_at=now, created_at=now, updated_at=now,
                ))  # fmt: skip
        return made


def _body(event: EventEnvelope, format: SubscriptionFormat) -> str:
    """The CloudEvents JSON of the event, or the Slack message of an alert event."""
    if format is SubscriptionFormat.SLACK:
        return render_slack(event)
    return render(event)


class WebhooksOut:
    """The hub's webhooks out: ``subscriptions`` and ``deliveries`` for the API and the CLI, and
    the workers ``Hub.running`` holds: ``dispatcher(bus)`` and ``sender()``."""

    def __init__(
        self, store: Store, vault: Vault, clock: Clock, settings: Settings, *,
        metrics: Metrics | None = None, resolver: Resolver | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self.keys = SigningKeys(vault, clock)
        self._senders: set[DeliverySender] = set()
        self.subscriptions = SubscriptionService(
            store, vault, clock, allow_hosts=settings.gateway_allow_hosts, resolver=resolver,
            resumed=self.nudge,
        )  # fmt: skip
        self.deliveries = DeliveryService(store, clock, redelivered=self.nudge)

    def nudge(self, tenant: str) -> None:
        """Deliveries of ``tenant`` are due now: wake this process's senders."""
        for sender in list(self._senders):
            sender.nudge(tenant)

    def dispatcher(self, bus: EventBus) -> DeliveryDispatcher:
        return DeliveryDispatcher(bus, self._store, self._clock, nudge=self.nudge)

    def sender(self, *, resolver: Resolver | None = None, **options: Any) -> DeliverySender:
        """A sender on the settings (``options`` override ``DeliverySender``'s, for tests:
        ``schedule``, ``rng``, ``poll``...). ``resolver`` replaces the system's in its address
        guard."""
        settings = self._settings
        gateways = SubscriberGateways(
            self._clock, allow_hosts=settings.gateway_allow_hosts,
            timeout=settings.webhooks_timeout_seconds, metrics=self._metrics, resolver=resolver,
        )  # fmt: skip
        defaults: dict[str, Any] = {
            "disable_after": timedelta(days=settings.webhooks_disable_after_days),
            "keep": timedelta(days=settings.webhooks_keep_days),
            "poll": settings.webhooks_poll_seconds, "metrics": self._metrics,
        }  # fmt: skip
        return DeliverySender(
            self._store, self._clock, self.keys, gateways, senders=self._senders,
            **(defaults | options),
        )  # fmt: skip
