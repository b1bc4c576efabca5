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

import orjson

from cadastre.contract.events import CATALOGUE, EventEnvelope, family
from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

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
