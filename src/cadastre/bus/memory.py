"""``InProcessBus``: the embedded default's event bus, in memory, in one process.

Semantics (the ``EventBus`` port's, kept in memory):

- Durable consumers by name: a consumer that stops keeps its queue; events published while it is
  stopped wait for it to subscribe again *in this process*. A consumer name seen for the first
  time starts with the events published after it subscribed (JetStream's "new" policy).
- ``publish`` returns once every subscribed consumer the events go to has *handled* them (its
  handler returned). So the relay marks an outbox event published only after every running
  consumer acted on it, and a crash in between leaves it pending: the outbox is the durable log
  and the relay publishes it again after a restart (consumers de-duplicate by event id). Events
  queued for a stopped consumer live only in memory.
- One batch at a time per consumer, in publish order; a handler that raises gets the same first
  messages again (``delivery`` + 1) after a backoff on the bus's clock, before anything newer. A
  consumer that keeps failing holds up ``publish``, hence the relay: it is logged at each retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from cadastre.bus.subjects import check_consumer, check_patterns, matches_any
from cadastre.clock import SystemClock
from cadastre.contract.events import EventEnvelope, bus_subject
from cadastre.errors import BusUnavailable, ConfigurationError
from cadastre.ports import BusMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from cadastre.ports import Clock

    Handler = Callable[[Sequence[BusMessage]], Awaitable[None]]

_log = logging.getLogger("cadastre.bus")


@dataclass
class _Held:
    event: EventEnvelope
    subject: str
    deliveries: int = 0


@dataclass
class _Consumer:
    name: str
    subjects: tuple[str, ...]
    queue: deque[_Held] = field(default_factory=deque)
    offered: int = 0  # events ever queued for it
    handled: int = 0  # of those, handled (taken off the queue)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class InProcessBus:
    def __init__(
        self, clock: Clock | None = None, *, retry_first: float = 0.1, retry_most: float = 30.0
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._retry = (retry_first, retry_most)
        self._consumers: dict[str, _Consumer] = {}
        self._progress = asyncio.Condition()
        self._closed = False

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")
        targets: dict[str, int] = {}
        for event in events:
            subject = bus_subject(event)
            for consumer in self._consumers.values():
                if matches_any(consumer.subjects, subject):
                    consumer.queue.append(_Held(event, subject))
                    consumer.offered += 1
                    targets[consumer.name] = consumer.offered
        for name in targets:
            self._consumers[name].arrived.set()

        def handled() -> bool:
            return all(
                c.handled >= n or c.task is None
                for c, n in ((self._consumers[name], n) for name, n in targets.items())
            )

        async with self._progress:
            await self._progress.wait_for(handled)

    async def subscribe(
        self,
        consumer: str,
        handler: Handler,
        *,
        subjects: Sequence[str] = ("cadastre.>",),
        batch: int = 100,
    ) -> _Subscription:
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")
        check_consumer(consumer)
        patterns = check_patterns(subjects)
        if batch < 1:
            raise ConfigurationError("a consumer's batch must be at least 1")
        found = self._consumers.get(consumer)
        if found is None:
            found = self._consumers[consumer] = _Consumer(consumer, patterns)
        elif found.task is not None:
            raise ConfigurationError(f"bus consumer {consumer!r} is subscribed already")
        found.subjects = patterns
        found.task = asyncio.create_task(self._consume(found, handler, batch))
        return _Subscription(self, found, found.task)

    async def close(self) -> None:
        self._closed = True
        for consumer in list(self._consumers.values()):
            await self._stop(consumer)

    async def _consume(self, consumer: _Consumer, handler: Handler, batch: int) -> None:
        first, most = self._retry
        delay = first
        while True:
            if not consumer.queue:
                consumer.arrived.clear()
                await consumer.arrived.wait()
                continue
            taken = list(islice(consumer.queue, batch))
            for held in taken:
                held.deliveries += 1
            try:
                await handler([BusMessage(h.event, h.subject, h.deliveries) for h in taken])
            except Exception as exc:  # noqa: BLE001 - any handler failure means "deliver again"
                _log.warning(
                    "bus consumer %r failed on %d events (%s); delivering them again in %.3g s",
                    consumer.name, len(taken), type(exc).__name__, delay,
                )  # fmt: skip
                await self._clock.sleep(delay)
                delay = min(delay * 2, most)
                continue
            delay = first
            for _ in taken:
                consumer.queue.popleft()
            consumer.handled += len(taken)
            async with self._progress:
                self._progress.notify_all()

    async def _stop(self, consumer: _Consumer) -> None:
        task, consumer.task = consumer.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._progress:  # publishers stop waiting for a consumer that left
            self._progress.notify_all()


class _Subscription:
    def __init__(self, bus: InProcessBus, consumer: _Consumer, task: asyncio.Task[None]) -> None:
        self._bus = bus
        self._consumer = consumer
        self._task = task

    async def stop(self) -> None:
        if self._consumer.task is self._task:  # not a later subscription of the same name
            await self._bus._stop(self._consumer)
