"""One ``NatsJetStreamBus`` subscription: its pull loop, and how it keeps a record's events in
order when its durable consumer is shared or was left holding messages.

JetStream hands a durable consumer's next messages to whichever fetch asks first, and what a
fetch took comes back to the consumer only after ``ack_wait`` when its process died (or its acks
were lost). Left alone, a second worker of the consumer handles newer events of a record while
the first still handles older ones, and a restarted worker handles newer events before the batch
its predecessor died with. So a fetched batch is handled only when it is *first in line*: nothing
older of this consumer is unacknowledged anywhere else. That is known

- without asking, when the batch follows our last one directly: our last batch was first in line
  and its acknowledgements were confirmed (a flush), and the consumer sequences of this batch
  continue ours without a gap, first deliveries all - no one got anything in between;
- otherwise from the consumer's state: nothing unacknowledged but what we hold, or its ack floor
  (below the lowest unacknowledged message) leaves nothing the consumer takes before our first.

A batch that is not first in line is held (kept in progress) while the loop fetches again, briefly:
meanwhile the worker that holds older messages acknowledges them, or what a dead one held comes
back - to this worker, merged into the held batch in stream order, or to another. A wait longer
than ``GATE_LIMIT`` x ``ack_wait`` is logged as an error and the batch is handled anyway: a
consumer stuck elsewhere must not stall this one for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.bus.subjects import matches_any
from cadastre.contract.events import from_json
from cadastre.ports import BusMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from datetime import datetime

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import ConsumerConfig

    from cadastre.bus.nats import NatsJetStreamBus

    Handler = Callable[[Sequence[BusMessage]], Awaitable[None]]

_log = logging.getLogger("cadastre.bus")
GATE_POLL = (0.005, 0.05)  # seconds between looks while a batch waits its turn (doubling)
GATE_LIMIT = 2.0  # x ack_wait: how long a batch waits its turn at most
CHECK_EVERY = 10.0  # seconds of nothing fetched between checks that the consumer still exists
ACK, NAK, WORKING = b"+ACK", b"-NAK", b"+WPI"


def _seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


class NatsSubscription:
    def __init__(
        self, bus: NatsJetStreamBus, name: str, nc: Client, js: JetStreamContext,
        pull: JetStreamContext.PullSubscription, config: ConsumerConfig, *, stream: str,
        patterns: tuple[str, ...], handler: Handler, batch: int, base: int,
        stream_created: datetime | None,
    ) -> None:  # fmt: skip
        self._bus = bus
        self._name = name
        self._nc = nc
        self._js = js
        self._pull = pull
        self._stream = stream
        self._stream_created = stream_created  # tells a stream made anew under the same name
        self._config = config
        self._filter = config.filter_subject or ""
        self._patterns = patterns
        self._handler = handler
        self._batch = batch
        # Stream sequences at or below it hold nothing this consumer waits for (what the
        # consumer had settled when we subscribed): the ack floor of a consumer that never
        # acknowledged anything is 0, however many older messages the stream holds.
        self._base = base
        self._held: dict[int, Msg] = {}  # stream seq -> its latest delivery, not acknowledged
        self._unconfirmed: list[Msg] = []  # handled; their acks not known to have arrived
        self._last: int | None = None  # consumer seq of our last batch handled in line
        self._seen = base  # the highest stream seq handled
        self._checked = time.monotonic()  # when the consumer was last found to exist
        self._fetching: asyncio.Future[list[Msg]] | None = None
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._bus._forget(self)
        self._stopping = True
        # Until it is done: nats-py waits with asyncio.wait_for, which on Python 3.11 can swallow
        # a cancel that arrives as its wait ends.
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.5)
        if not self._task.cancelled() and self._task.exception() is not None:
            _log.error("bus consumer %r failed: %r", self._name, self._task.exception())
        with contextlib.suppress(Exception):
            await self._confirm_acks()  # handled: acknowledged rather than delivered again
        fetching, self._fetching = self._fetching, None
        if fetching is not None:  # what a fetch in flight brings is ours to give back
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._bus._fetch_wait + 1.0):
                    for msg in await fetching:
                        self._held.setdefault(_seq(msg), msg)
        held, self._held = sorted(self._held.items()), {}
        for _, msg in held:  # delivered again at once rather than after ack_wait
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, NAK)
        with contextlib.suppress(Exception):
            await self._pull.unsubscribe()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        import nats.errors

        first, most = self._bus._retry
        delay = first
        poll = GATE_POLL[0]
        waiting_since = touched = 0.0
        while not self._stopping:
            try:
                await self._confirm_acks()
                fetched = await self._fetch(self._bus._fetch_wait if not self._held else poll)
            except TimeoutError:  # nothing to fetch (nats' TimeoutError is one)
                fetched = []
                if not self._held and time.monotonic() - self._checked > CHECK_EVERY:
                    await self._check_consumer()
            except (nats.errors.Error, OSError) as exc:
                # the connection is down (it reconnects on its own) or the server refused
                _log.warning("bus consumer %r cannot fetch (%s); again in %.3g s", self._name,
                             type(exc).__name__, delay)  # fmt: skip
                await self._bus._clock.sleep(delay)
                delay = min(delay * 2, most)
                continue
            delay = first
            for msg in fetched:
                self._held[_seq(msg)] = msg  # a redelivery of one we hold replaces it
            if not self._held:
                continue
            now = time.monotonic()
            if not waiting_since:
                waiting_since = touched = now
            ready = await self._in_line()
            if not ready and now - waiting_since > GATE_LIMIT * self._bus._ack_wait:
                _log.error("bus consumer %r: older messages stayed unacknowledged elsewhere for "
                           "%.0f s; handling %d newer ones out of turn", self._name,
                           now - waiting_since, len(self._held))  # fmt: skip
                ready, in_turn = len(self._held), False
            else:
                in_turn = True
            if ready:
                waiting_since, poll = 0.0, GATE_POLL[0]
                await self._handle_held(ready, in_turn=in_turn)
            if self._held:  # (the rest of) what we hold waits its turn
                if now - touched > self._bus._ack_wait / 3:  # not redelivered meanwhile
                    touched = now
                    await self._tell(self._held.values(), WORKING)
                poll = min(poll * 2, GATE_POLL[1])

    async def _fetch(self, seconds: float) -> list[Msg]:
        fetch = asyncio.ensure_future(self._pull.fetch(self._batch, timeout=seconds))
        self._fetching = fetch
        fetched = await asyncio.shield(fetch)  # cancelled by stop(): it takes what this brings
        self._fetching = None
        return fetched

    async def _check_consumer(self) -> None:
        """A fetch from a consumer that is gone (deleted, or the broker lost its store and the
        stream was made anew) just times out, for ever. So when nothing comes for a while, ask;
        a missing consumer is made again from where this one got to (or from the start of a
        stream made anew), not from new messages only, which would skip what came meanwhile."""
        import nats.errors
        import nats.js.errors
        from nats.js.api import DeliverPolicy

        self._checked = time.monotonic()
        try:
            await self._pull.consumer_info()
            return
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.Error, OSError, TimeoutError):
            return  # the connection's problem: the fetches say so
        try:
            stream = await self._js.stream_info(self._stream)
            if stream.created != self._stream_created or stream.state.first_seq > self._seen + 1:
                # a stream made anew (or aged past where we were): all it holds is new to us
                config = replace(self._config, deliver_policy=DeliverPolicy.ALL)
                self._base, self._stream_created = 0, stream.created
            else:
                config = replace(self._config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                 opt_start_seq=self._seen + 1)  # fmt: skip
                self._base = self._seen
            await self._js.add_consumer(self._stream, config)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            _log.error("bus consumer %r is gone from NATS and cannot be made again (%s)",
                       self._name, type(exc).__name__)  # fmt: skip
            return
        self._last = None
        _log.error("bus consumer %r was gone from NATS; made again from stream seq %s",
                   self._name, config.opt_start_seq or "1")  # fmt: skip

    async def _in_line(self) -> int:
        """How many of the messages we hold (in stream order) are first in line: nothing older
        than each is unacknowledged elsewhere."""
        import nats.errors

        ordered = [self._held[s] for s in sorted(self._held)]
        if self._last is not None and all(m.metadata.num_delivered == 1 for m in ordered):
            consumer_seqs = [int(m.metadata.sequence.consumer) for m in ordered]
            if consumer_seqs == list(range(self._last + 1, self._last + 1 + len(ordered))):
                return len(ordered)
        try:
            info = await self._pull.consumer_info()
            if (info.num_ack_pending or 0) <= len(ordered):
                return len(ordered)  # all that is unacknowledged is ours
            floor = max(info.ack_floor.stream_seq if info.ack_floor else 0, self._base)
            # Our first is first in line when the consumer takes nothing between the floor and
            # it; each next one when the consumer takes nothing between it and the one before
            # (another worker holds what it takes there, unless the floor passed it).
            count, after = 0, floor
            for msg in ordered:
                if _seq(msg) > after + 1 and await self._takes_between(after, _seq(msg)):
                    break
                count, after = count + 1, max(after, _seq(msg))
        except (nats.errors.Error, OSError, TimeoutError):
            return 0
        return count

    async def _takes_between(self, after: int, before: int) -> bool:
        """Whether the stream holds a message this consumer takes after ``after`` and before
        ``before``."""
        import nats.js.errors

        try:
            found = await self._js.get_msg(self._stream, seq=after + 1, subject=self._filter,
                                           next=True)  # fmt: skip
        except nats.js.errors.NotFoundError:
            return False
        return int(found.seq or 0) < before

    async def _handle_held(self, count: int, *, in_turn: bool) -> None:
        ordered = [self._held[s] for s in sorted(self._held)][:count]
        for start in range(0, len(ordered), self._batch):
            chunk = ordered[start : start + self._batch]
            await self._handle(self._read(chunk))
            self._unconfirmed.extend(chunk)
            for msg in chunk:
                del self._held[_seq(msg)]
        self._seen = max(self._seen, _seq(ordered[-1]))
        # The quick check holds only while all we took was handled in line.
        last = max(int(m.metadata.sequence.consumer) for m in ordered)
        self._last = last if in_turn and not self._held else None
        with contextlib.suppress(Exception):
            await self._confirm_acks()  # failing: sent again before the next fetch

    async def _confirm_acks(self) -> None:
        """Acknowledge what was handled, then ask the server something: it reads a connection
        in order, so its answer means it has the acks. (Not ``flush()``: nats-py's read loop dies
        when a PONG arrives for a flush that was cancelled or timed out.) A failure keeps them
        for the next try (an ack twice is harmless), and our next batch is then checked against
        the consumer's state."""
        if not self._unconfirmed:
            return
        try:
            for msg in self._unconfirmed:
                await self._nc.publish(msg.reply, ACK)
            await self._pull.consumer_info()
        except BaseException:
            self._last = None
            raise
        self._unconfirmed = []

    async def _tell(self, messages: Iterable[Msg], what: bytes) -> None:
        for msg in list(messages):
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, what)

    def _read(self, fetched: Sequence[Msg]) -> list[BusMessage]:
        messages = []
        for msg in fetched:
            try:
                event = from_json(msg.data)
            except ValueError as exc:  # pydantic's ValidationError is one
                # Not ours, or of a type this version does not know: delivering it again would
                # block the consumer for ever. Dropped loudly.
                _log.error("bus consumer %r dropped an unreadable message on %s (%s)",
                           self._name, msg.subject, type(exc).__name__)  # fmt: skip
                continue
            if matches_any(self._patterns, msg.subject):
                messages.append(BusMessage(event, msg.subject, msg.metadata.num_delivered or 1))
        return messages

    async def _handle(self, messages: list[BusMessage]) -> None:
        if not messages:
            return
        first, most = self._bus._retry
        delay = first
        while True:
            try:
                await self._handler(messages)
                return
            except Exception as exc:  # noqa: BLE001 - any handler failure means "deliver again"
                _log.warning(
                    "bus consumer %r failed on %d events (%s); delivering them again in %.3g s",
                    self._name, len(messages), type(exc).__name__, delay,
                )  # fmt: skip
            await self._tell(self._held.values(), WORKING)  # still ours meanwhile
            await self._bus._clock.sleep(delay)
            delay = min(delay * 2, most)
            messages = [BusMessage(m.event, m.subject, m.delivery + 1) for m in messages]
