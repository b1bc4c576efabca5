"""``NatsJetStreamBus``: the distributed mode's event bus, on NATS JetStream.

- One stream (``CADASTRE_NATS_STREAM``, default ``CADASTRE``) takes ``cadastre.>``, file storage,
  created or brought up to date on first use (every worker does it; the calls are idempotent).
- ``publish`` sends each event as CloudEvents structured JSON to ``cadastre.<tenant>.<entity>.
  <verb>`` with ``Nats-Msg-Id`` = event id, so a batch the relay sends again within the stream's
  duplicate window is stored once. One call at a time, in the order they were made; within a
  call sends are pipelined (every PubAck awaited before returning) but
  an event waits for the PubAck of the previous event of its record before it is sent: a broken
  connection can lose a prefix of what was in flight and deliver the rest after reconnecting,
  and that must never put one record's events out of order.
- Consumers are durable pull consumers, explicit acks, unlimited redelivery, ``max_ack_pending`` =
  the batch, new ones starting with new events. One fetch at a time per subscription; a handler
  that raises gets the same batch again after a backoff (the messages are kept, marked in
  progress, so nothing newer is fetched meanwhile). A subscription stopped mid-batch naks it for
  prompt redelivery. A consumer process that dies mid-batch has that batch redelivered after
  ``ack_wait``; another worker of the same consumer may meanwhile have fetched newer events.
- The connection reconnects forever; while it is down, publish and fetch fail at once (no
  buffer to replay out of order) and the relay and consumers back off.

``nats`` (nats-py) is imported inside, so ``import cadastre.bus`` needs it only when it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cadastre.bus.subjects import check_consumer, check_patterns, matches_any
from cadastre.clock import SystemClock
from cadastre.contract.events import CLOUDEVENTS_JSON, bus_subject, from_json, to_json
from cadastre.errors import BusUnavailable, ConfigurationError
from cadastre.ports import BusMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from cadastre.contract.events import EventEnvelope
    from cadastre.ports import Clock

    Handler = Callable[[Sequence[BusMessage]], Awaitable[None]]

_log = logging.getLogger("cadastre.bus")
SUBJECTS = "cadastre.>"


class NatsJetStreamBus:
    def __init__(
        self,
        url: str,
        *,
        stream: str = "CADASTRE",
        clock: Clock | None = None,
        publish_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        ack_wait: float = 60.0,
        fetch_wait: float = 1.0,
        retry_first: float = 0.1,
        retry_most: float = 30.0,
        max_age_days: float = 7.0,
        duplicate_window: float = 120.0,
    ) -> None:
        self._url = url  # may hold a password: never logged
        self._stream = stream
        self._clock: Clock = clock or SystemClock()
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._ack_wait = ack_wait
        self._fetch_wait = fetch_wait
        self._retry = (retry_first, retry_most)
        self._max_age = max_age_days * 86400
        self._duplicate_window = duplicate_window
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._connecting = asyncio.Lock()
        self._publishing = asyncio.Lock()
        self._subscriptions: set[_NatsSubscription] = set()
        self._closed = False

    # -- the port ------------------------------------------------------------------------

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        import nats.errors

        js = await self._jetstream()
        sent: list[asyncio.Future[Any]] = []
        last: dict[tuple[str, str], asyncio.Future[Any]] = {}  # record -> its latest send
        try:
            # One batch at a time: two calls are stored in the order they were made.
            async with self._publishing, asyncio.timeout(self._publish_timeout):
                for event in events:
                    record = (event.tenant, event.subject) if event.subject else None
                    if record is not None and record in last:
                        await last[record]  # its previous event is stored first
                    headers = {"Nats-Msg-Id": event.id, "Content-Type": CLOUDEVENTS_JSON}
                    future = await js.publish_async(
                        bus_subject(event), to_json(event), stream=self._stream, headers=headers
                    )
                    sent.append(future)
                    if record is not None:
                        last[record] = future
                await asyncio.gather(*sent)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            for future in sent:
                future.cancel()
            self._stream_ready = False  # a deleted stream is made again on the next try
            raise BusUnavailable(
                f"NATS JetStream did not take {len(events)} events ({type(exc).__name__})"
            ) from None

    async def subscribe(
        self,
        consumer: str,
        handler: Handler,
        *,
        subjects: Sequence[str] = (SUBJECTS,),
        batch: int = 100,
    ) -> _NatsSubscription:
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        check_consumer(consumer)
        patterns = check_patterns(subjects)
        if batch < 1:
            raise ConfigurationError("a consumer's batch must be at least 1")
        # NATS before 2.10 filters a consumer on one subject: several patterns share the whole
        # stream and the rest is filtered (and acknowledged) here.
        single = patterns[0] if len(patterns) == 1 else SUBJECTS
        config = ConsumerConfig(
            durable_name=consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=self._ack_wait,
            max_deliver=-1, max_ack_pending=batch, deliver_policy=DeliverPolicy.NEW,
            filter_subject=single,
        )  # fmt: skip
        js = await self._jetstream()
        try:
            pull = await js.pull_subscribe(single, durable=consumer, stream=self._stream,
                                           config=config)  # fmt: skip
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"NATS JetStream refused consumer {consumer!r} "
                                 f"({type(exc).__name__}: {exc})") from None  # fmt: skip
        subscription = _NatsSubscription(self, consumer, pull, patterns, handler, batch)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.stop()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    # -- operations ----------------------------------------------------------------------

    async def delete_consumer(self, consumer: str) -> bool:
        """Remove a durable consumer and its position (it starts anew if subscribed again)."""
        import nats.js.errors

        js = await self._jetstream()
        try:
            return bool(await js.delete_consumer(self._stream, check_consumer(consumer)))
        except nats.js.errors.NotFoundError:
            return False

    # -- plumbing ------------------------------------------------------------------------

    async def _jetstream(self) -> JetStreamContext:
        if self._closed:
            raise BusUnavailable("the NATS bus is closed")
        async with self._connecting:
            if self._js is None:
                self._nc = await self._connect()
                self._js = self._nc.jetstream(timeout=self._publish_timeout)
            if not self._stream_ready:
                await self._ensure_stream(self._js)
                self._stream_ready = True
            return self._js

    async def _connect(self) -> Client:
        import nats.errors
        from nats.aio.client import Client

        async def on_error(exc: Exception) -> None:
            _log.warning("NATS connection: %s", type(exc).__name__)

        async def on_disconnected() -> None:
            if not self._closed:
                _log.warning("NATS disconnected; reconnecting")

        async def on_reconnected() -> None:
            _log.info("NATS reconnected")

        # Reconnect forever once connected; the first connection gets connect_timeout, so a hub
        # whose NATS is down starts and its relay backs off instead of hanging here.
        client = Client()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await client.connect(
                    self._url, name="cadastre", max_reconnect_attempts=-1,
                    reconnect_time_wait=1, connect_timeout=max(1, int(self._connect_timeout)),
                    pending_size=0, error_cb=on_error, disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                )  # fmt: skip
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise BusUnavailable(f"NATS is not reachable ({type(exc).__name__})") from None
        return client

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        import nats.errors
        import nats.js.errors
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        config = StreamConfig(
            name=self._stream, subjects=[SUBJECTS], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, max_age=self._max_age,
            duplicate_window=self._duplicate_window,
        )  # fmt: skip
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # it exists, configured otherwise
                await js.update_stream(config)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BusUnavailable(
                f"NATS JetStream stream {self._stream!r} cannot be set up ({type(exc).__name__}: "
                f"{exc})"
            ) from None

    def _forget(self, subscription: _NatsSubscription) -> None:
        self._subscriptions.discard(subscription)


class _NatsSubscription:
    def __init__(
        self, bus: NatsJetStreamBus, name: str, pull: JetStreamContext.PullSubscription,
        patterns: tuple[str, ...], handler: Handler, batch: int,
    ) -> None:  # fmt: skip
        self._bus = bus
        self._name = name
        self._pull = pull
        self._patterns = patterns
        self._handler = handler
        self._batch = batch
        self._held: list[Msg] = []  # fetched, not acknowledged yet
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._bus._forget(self)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held, self._held = self._held, []
        for msg in held:  # delivered again at once rather than after ack_wait
            with contextlib.suppress(Exception):
                await msg.nak()
        with contextlib.suppress(Exception):
            await self._pull.unsubscribe()

    async def _run(self) -> None:
        import nats.errors

        first, most = self._bus._retry
        delay = first
        while True:
            try:
                fetched = await self._pull.fetch(self._batch, timeout=self._bus._fetch_wait)
            except nats.errors.TimeoutError:
                delay = first
                continue
            except (nats.errors.Error, OSError) as exc:
                # the connection is down (it reconnects on its own) or the server refused
                _log.warning("bus consumer %r cannot fetch (%s); again in %.3g s", self._name,
                             type(exc).__name__, delay)  # fmt: skip
                await self._bus._clock.sleep(delay)
                delay = min(delay * 2, most)
                continue
            delay = first
            self._held = fetched
            await self._handle(await self._read(fetched))
            for msg in fetched:
                with contextlib.suppress(nats.errors.Error, OSError):
                    await msg.ack()  # a lost ack means a redelivery, which consumers de-duplicate
            self._held = []

    async def _read(self, fetched: list[Msg]) -> list[BusMessage]:
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
                messages.append(BusMessage(event, msg.subject, msg.metadata.num_delivered))
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
            for msg in self._held:  # still ours: not redelivered elsewhere meanwhile
                with contextlib.suppress(Exception):
                    await msg.in_progress()
            await self._bus._clock.sleep(delay)
            delay = min(delay * 2, most)
            messages = [BusMessage(m.event, m.subject, m.delivery + 1) for m in messages]
