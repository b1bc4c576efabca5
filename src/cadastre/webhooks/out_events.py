"""What a subscription takes, and what it is sent.

A subscription lists event types: an exact versioned type (``cadastre.listing.updated.v1``)
pins that major, and events of the same family in another major are converted to it
(``cadastre.contract.upcast.read_as``) before they are sent; a family wildcard
(``cadastre.listing.*``) takes every type of that subject as it was emitted. When both match an
event, the pin wins: it is the more specific wish. A delivery's body is the event as CloudEvents
structured-mode JSON (attributes that are not set are left out), sent as ``application/json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from cadastre.contract.events import CATALOGUE, EventEnvelope, family
from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from cadastre.ports import Delivery, DeliveryAttempt, Subscription

ALERT = "cadastre.alert.raised.v1"
SOURCE = "/cadastre/webhooks"
MAX_TYPES = 50
_WILDCARD = ".*"


def check_event_types(types: Iterable[str]) -> tuple[str, ...]:
    """The types a subscription asks for, each known to the catalogue (a wildcard must cover at
    least one type); repeats dropped, order kept. ``ConfigurationError`` naming what is wrong."""
    wanted = tuple(dict.fromkeys(t.strip() for t in types))
    if not wanted:
        raise ConfigurationError("a subscription needs at least one event type")
    if len(wanted) > MAX_TYPES:
        raise ConfigurationError(f"a subscription takes at most {MAX_TYPES} event types")
    unknown = [t for t in wanted if not _known(t)]
    if unknown:
        raise ConfigurationError(
            f"unknown event type(s) {', '.join(repr(t) for t in unknown)}: give a type of the "
            "catalogue (cadastre.listing.updated.v1) or a family (cadastre.listing.*)"
        )
    return wanted


def _known(pattern: str) -> bool:
    if pattern.endswith(_WILDCARD):
        prefix = pattern.removesuffix("*")
        return prefix.count(".") >= 2 and any(name.startswith(prefix) for name in CATALOGUE)
    return pattern in CATALOGUE


def wanted_type(patterns: Sequence[str], event_type: str) -> str | None:
    """The type a subscription with ``patterns`` is sent an event of ``event_type`` as (a pinned
    major, or the event's own), or None when it does not take it."""
    name = family(event_type)
    for pattern in patterns:
        if not pattern.endswith(_WILDCARD) and family(pattern) == name:
            return pattern
    for pattern in patterns:
        if pattern.endswith(_WILDCARD) and event_type.startswith(pattern.removesuffix("*")):
            return event_type
    return None


def render(event: EventEnvelope) -> str:
    """The delivery body: one JSON text, kept and sent byte for byte on every attempt."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True)).decode()


def endpoint_origin(url: str) -> str:
    """What an alert says of a subscriber's URL: its origin only. The path of an incoming-webhook
    URL (Slack's, say) is itself the credential, and alerts go to the console, to other
    subscriptions and to chat channels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..." if parts.scheme else "(unreadable URL)"


def alert(tenant: str, subject: str, at: datetime, data: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        source=SOURCE, type=ALERT, subject=subject, time=at, tenant=tenant, data=data
    )


def about_subscription(event: EventEnvelope) -> str | None:
    """The subscription an alert of ours is about: it is not sent to that subscription, or an
    endpoint that fails would be sent the alerts of its own failures, which fail in turn."""
    if event.type != ALERT or event.source != SOURCE:
        return None
    subscription = event.data.get("subscription")
    return subscription if isinstance(subscription, str) else None


def disabled_alert(
    tenant: str, off: Subscription, at: datetime, last_status: int | None, last_error: str
) -> EventEnvelope:
    """The alert of a subscription the sender disabled (410 Gone, or days of failure)."""
    where = f"--tenant {tenant}"
    return alert(tenant, off.id, at, {
        "alert": "webhook_subscription_disabled", "severity": "critical",
        "subscription": off.id, "url": endpoint_origin(off.url), "reason": off.status_reason,
        "failing_since": off.failing_since.isoformat() if off.failing_since else None,
        "last_status": last_status, "last_error": last_error,
        "summary": f"webhook subscription {off.id} ({endpoint_origin(off.url)}) was disabled: "
        f"{off.status_reason}; its new events are not delivered",
        "action": f"mend the endpoint, then `cadastre subscriptions enable {off.id} {where}` "
        "(its waiting deliveries resume); `cadastre deliveries redeliver --subscription "
        f"{off.id} --dead {where}` sends its dead-lettered ones again",
    })  # fmt: skip


def dead_alert(
    tenant: str, subscription: Subscription, delivery: Delivery, attempt: DeliveryAttempt,
    since: datetime | None, at: datetime,
) -> EventEnvelope:  # fmt: skip
    """The alert of a delivery whose every attempt failed: it is in the dead-letter queue."""
    return alert(tenant, subscription.id, at, {
        "alert": "webhook_delivery_dead", "severity": "warning",
        "subscription": subscription.id, "url": endpoint_origin(subscription.url),
        "delivery": delivery.id,
        "event_id": delivery.event_id, "event_type": delivery.event_type,
        "attempts": attempt.number, "last_status": attempt.status,
        "last_error": attempt.error, "first_attempt_at": delivery.created_at.isoformat(),
        "failing_since": since.isoformat() if since else None,
        "summary": f"delivery {delivery.id} ({delivery.event_type}) to subscription "
        f"{subscription.id} failed all {attempt.number} attempts since "
        f"{delivery.created_at.isoformat()} and is dead-lettered",
        "action": f"once the endpoint answers 2xx: `cadastre deliveries redeliver "
        f"{delivery.id} --tenant {tenant}`, or every dead one of the subscription: "
        f"`cadastre deliveries redeliver --subscription {subscription.id} --dead "
        f"--tenant {tenant}`",
    })  # fmt: skip
