"""``NatsJetStreamBus``: the distributed mode's event bus, on NATS JetStream.

- One stream (``CADASTRE_NATS_STREAM``, default ``CADASTRE``) takes ``cadastre.>``, file storage,
  created or brought up to date on first use (every worker does it; the calls are idempotent).
- ``publish`` sends each event as CloudEvents structured JSON to ``cadastre.<tenant>.<entity>.
  <verb>`` with ``Nats-Msg-Id`` = event id, so a batch the relay sends again within the stream's
  duplicate window is stored once. One call at a time, in the order they were made; within a
  call sends are pipelined (every PubAck awaited before returning, each wait with its deadline) but
  an event waits for the PubAck of the previous event of its record before it is sent: a broken
  connection can lose a prefix of what was in flight and deliver the rest after reconnecting,
  and that must never put one record's events out of order.
- Consumers are durable pull consumers, explicit acks, unlimited redelivery, ``max_ack_pending`` =
  the batch, new ones starting with new events. One fetch at a time per subscription; a handler
  that raises gets the same batch again after a backoff (the messages are kept, marked in
  progress, so nothing newer is fetched meanwhile). A subscription stopped mid-batch naks it for
  prompt redelivery. Several workers of one consumer, and a worker that died holding a batch,
  keep a record's order: see ``cadastre.bus.nats_consumer``.
- The connection reconnects forever; while it is down, publish and fetch fail at once (no
  buffer to replay out of order) and the relay and consumers back off.

``nats`` (nats-py) is imported inside, so ``import cadastre.bus`` needs it only when it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cadastre.bus.nats_consumer import NatsSubscription
from cadastre.bus.subjects import check_consumer, check_patterns
from cadastre.clock import SystemClock
from cadastre.contract.events import CLOUDEVENTS_JSON, bus_subject, to_json
from cadastre.errors import BusUnavailable, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from cadastre.contract.events import EventEnvelope
    from cadastre.ports import BusMessage, Clock

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
        self._subscriptions: set[NatsSubscription] = set()
        self._closed = False

    # -- the port ------------------------------------------------------------------------

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        import nats.errors

        js = await self._jetstream()
        sent: list[asyncio.Future[Any]] = []
        last: dict[tuple[str, str], asyncio.Future[Any]] = {}  # record -> its latest send
        wait = self._publish_timeout
        try:
            # One batch at a time: two calls are stored in the order they were made. Each wait
            # has its deadline, not the batch: a batch with many events of one record waits a
            # round trip for each, and a deadline for all of them would, on a slower link, fail
            # the same batch again and again for ever.
            async with self._publishing:
                for event in events:
                    record = (event.tenant, event.subject) if event.subject else None
                    if record is not None and record in last:
                        async with asyncio.timeout(wait):
                            await last[record]  # its previous event is stored first
                    headers = {"Nats-Msg-Id": event.id, "Content-Type": CLOUDEVENTS_JSON}
                    async with asyncio.timeout(wait):
                        future = await js.publish_async(
                            bus_subject(event), to_json(event), stream=self._stream,
                            headers=headers,
                        )  # fmt: skip
                    sent.append(future)
                    if record is not None:
                        last[record] = future
                async with asyncio.timeout(wait):
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
    ) -> NatsSubscription:
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
            info = await pull.consumer_info()
            stream = await js.stream_info(self._stream)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"NATS JetStream refused consumer {consumer!r} "
                                 f"({type(exc).__name__}: {exc})") from None  # fmt: skip
        # Nothing unacknowledged: every message delivered so far is settled for good.
        settled = info.delivered if not info.num_ack_pending else info.ack_floor
        if self._nc is None:  # closed meanwhile
            raise BusUnavailable("the NATS bus is closed")
        subscription = NatsSubscription(
            self, consumer, self._nc, js, pull, config, stream=self._stream,
            patterns=patterns, handler=handler, batch=batch,
            base=settled.stream_seq if settled is not None else 0, stream_created=stream.created,
        )  # fmt: skip
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

    def _forget(self, subscription: NatsSubscription) -> None:
        self._subscriptions.discard(subscription)
