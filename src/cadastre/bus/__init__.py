"""The event bus: ``InProcessBus`` (the embedded default) and ``NatsJetStreamBus`` (distributed)
behind the ``EventBus`` port, the ``OutboxRelay`` that feeds it from the store's outbox, and
``pinned`` for consumers that read one major of an event type. See ``docs/events.md``.

``nats`` is imported by the NATS adapter only when it connects, so importing this package needs
nothing beyond the core.
"""

from __future__ import annotations

import typing as _typing

from cadastre.bus.memory import InProcessBus
from cadastre.bus.nats import NatsJetStreamBus
from cadastre.bus.pinned import pinned
from cadastre.bus.relay import OutboxRelay
from cadastre.bus.subjects import matches

if _typing.TYPE_CHECKING:
    from cadastre.config import Settings
    from cadastre.ports import Clock, EventBus

__all__ = ["InProcessBus", "NatsJetStreamBus", "OutboxRelay", "matches", "open_bus", "pinned"]


def open_bus(settings: Settings, clock: Clock | None = None) -> EventBus:
    """The bus ``settings.bus`` names. The NATS one connects on first use, so a hub starts while
    NATS is down (its relay backs off until NATS answers)."""
    if settings.bus == "nats":
        return NatsJetStreamBus(
            settings.nats_url.get_secret_value(), stream=settings.nats_stream, clock=clock
        )
    return InProcessBus(clock)
