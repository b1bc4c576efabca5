"""HubSpot's webhooks: events batched into JSON arrays (at most 100 a request), signed with
signature v3, retried on the simulator clock, dropped, duplicated or held on purpose.

An event::

    {"eventId": 17, "subscriptionId": 101, "portalId": 62515, "appId": 4711,
     "occurredAt": 1795000000000, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
     "objectId": 1001, "propertyName": "email", "propertyValue": "a@example.com",
     "changeSource": "CRM_UI", "sourceId": "userId:501"}

``contact.merge`` carries ``primaryObjectId``, ``mergedObjectIds``, ``newObjectId`` and
``numberOfPropertiesMoved`` instead of a property. Signing (written out here: the simulators
import nothing of Cadastre): ``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256(the app's client
secret, ``POST`` + the URL called + body + timestamp), ``X-HubSpot-Request-Timestamp`` in
milliseconds of the attempt; the legacy ``X-HubSpot-Signature`` (v1: hex SHA-256 of secret +
body) is sent beside it. Every attempt's body says its ``attemptNumber`` (0 first), so a retry
is a new body with new signatures and the same ``eventId``s.

Retries: an attempt answered anything but 2xx (or not answered) is tried again after each wait of
``retry_schedule`` (default 10 waits doubling from 60 s), except 400, 401, 403, 404 and 405, which
HubSpot does not retry; a 429's ``Retry-After`` is a floor on the next wait.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.simulators.clock import Clock

DEFAULT_SCHEDULE: tuple[float, ...] = tuple(60.0 * 2**n for n in range(10))
NOT_RETRIED = frozenset({400, 401, 403, 404, 405})
MAX_BATCH = 100
ORDERS = ("fifo", "reverse", "shuffle")
SUBSCRIPTION_TYPES = (
    "contact.creation", "contact.propertyChange", "contact.deletion", "contact.restore",
    "contact.merge", "deal.creation", "deal.propertyChange", "deal.deletion", "deal.restore",
)  # fmt: skip
Outcome = Literal["pending", "held", "dropped", "sent", "failed", "refused", "cancelled"]


@dataclass
class WebhookStats:
    sent: int = 0  # requests a receiver answered 2xx
    dropped: int = 0  # never sent, on purpose (drop_rate)
    failed: int = 0  # retries ran out
    refused: int = 0  # answered 400/401/403/404/405: HubSpot gives up at once
    retried: int = 0  # attempts after a request's first
    duplicated: int = 0  # requests sent twice (duplicate_rate)
    attempts: int = 0
    events: int = 0  # events made


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str = field(repr=False)  # the app's client secret: HubSpot signs with it
    subscriptions: tuple[str, ...] = SUBSCRIPTION_TYPES
    batch: int = MAX_BATCH  # events per request, at most 100
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    hold: bool = False
    seed: int = 0
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    timeout: float = 5.0  # seconds an attempt waits for its answer (real time: it is I/O)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError("url is an http:// or https:// URL")
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("secret is the app's client secret, a non-empty string")
        unknown = set(self.subscriptions) - set(SUBSCRIPTION_TYPES)
        if unknown or not isinstance(self.subscriptions, tuple):
            raise ValueError(f"subscriptions are among {list(SUBSCRIPTION_TYPES)}")
        if (
            isinstance(self.batch, bool)
            or not isinstance(self.batch, int)
            or not (1 <= self.batch <= MAX_BATCH)
        ):
            raise ValueError(f"batch is a whole number from 1 to {MAX_BATCH}")
        for name in ("drop_rate", "duplicate_rate"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0.0 <= value <= 1.0)
            ):
                raise ValueError(f"{name} is between 0 and 1")
        if not isinstance(self.hold, bool):
            raise ValueError("hold is true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed is a whole number")
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and s >= 0
                   for s in self.retry_schedule):  # fmt: skip
            raise ValueError("retry_schedule is a list of seconds >= 0")
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or (self.timeout <= 0)
        ):
            raise ValueError("timeout is seconds > 0")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        if "url" not in body or "secret" not in body:
            raise ValueError("url and secret are required")
        values = dict(body)
        for name in ("subscriptions", "retry_schedule"):
            if name in values:
                if not isinstance(values[name], list | tuple):
                    raise ValueError(f"{name} is a list")
                values[name] = tuple(values[name])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {n: getattr(self, n) for n in self.__dataclass_fields__}
        shown["secret"] = "***"  # noqa: S105 - a mask
        shown["subscriptions"] = list(self.subscriptions)
        shown["retry_schedule"] = list(self.retry_schedule)
        return shown


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    content = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha256).digest()).decode()


def sign_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


@dataclass
class Delivery:
    """One request of events (and its retries)."""

    number: int
    events: list[dict[str, Any]] = field(repr=False)
    settings: WebhookSettings = field(repr=False)
    outcome: Outcome = "pending"
    attempts: int = 0
    copy_of: int | None = None
    attempted_at: float = 0.0  # the clock's monotonic time the last attempt was made

    @property
    def object_ids(self) -> set[str]:
        return {str(e["objectId"]) for e in self.events}

    def body(self) -> bytes:
        attempt = max(self.attempts - 1, 0)
        return orjson.dumps([{**e, "attemptNumber": attempt} for e in self.events])


class WebhookEmitter:
    def __init__(self, clock: Clock, *, portal_id: int, app_id: int) -> None:
        self._clock = clock
        self.portal_id = portal_id
        self.app_id = app_id
        self.settings: WebhookSettings | None = None
        self.stats = WebhookStats()
        self.deliveries: list[Delivery] = []
        self._event_id = 0
        self._drops = random.Random(0)  # noqa: S311 - reproducible, not secret
        self._copies = random.Random(1)  # noqa: S311
        self._pending: list[dict[str, Any]] = []  # events not yet in a request
        self._queue: list[Delivery] = []
        self._held: list[Delivery] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookEmitter(settings={self.settings!r}, stats={self.stats!r})"

    def configure(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._drops = random.Random(settings.seed)  # noqa: S311
        self._copies = random.Random(settings.seed + 1)  # noqa: S311

    async def stop(self) -> None:
        self.settings = None
        tasks = [t for t in (self._dispatcher, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiting in [*self._queue, *self._held]:
            waiting.outcome = "cancelled"
        self._pending.clear()
        self._queue.clear()
        self._held.clear()
        self._dispatcher = None
        self._retries.clear()

    # ------------------------------------------------------------------------------ making

    def event(
        self, subscription_type: str, object_id: str, source: tuple[int, str, str | None],
        **extra: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """One event; ``source`` is (occurredAt in ms, changeSource, sourceId)."""
        occurred_ms, change_source, source_id = source
        self._event_id += 1
        event: dict[str, Any] = {
            "eventId": self._event_id,
            "subscriptionId": 100 + SUBSCRIPTION_TYPES.index(subscription_type),
            "portalId": self.portal_id, "appId": self.app_id, "occurredAt": occurred_ms,
            "subscriptionType": subscription_type, "attemptNumber": 0,
            "objectId": int(object_id), "changeSource": change_source,
        }  # fmt: skip
        if source_id is not None:
            event["sourceId"] = source_id
        event.update(extra)
        return event

    def emit(self, events: Sequence[dict[str, Any]]) -> None:
        """Queue ``events`` of subscribed types. Events made close together (before the
        dispatcher next runs) go out together, ``batch`` to a request, as HubSpot batches them."""
        settings = self.settings
        if settings is None:
            return
        wanted = [e for e in events if e["subscriptionType"] in settings.subscriptions]
        self.stats.events += len(wanted)
        self._pending.extend(wanted)
        self._kick()

    def _form(self) -> None:
        """The pending events as requests: dropped, held or queued."""
        settings = self.settings
        if settings is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        made: list[Delivery] = []
        for i in range(0, len(pending), settings.batch):
            chunk = pending[i : i + settings.batch]
            delivery = Delivery(len(self.deliveries) + len(made) + 1, chunk, settings)
            made.append(delivery)
            if settings.duplicate_rate and self._copies.random() < settings.duplicate_rate:
                made.append(Delivery(delivery.number + 1, chunk, settings,
                                     copy_of=delivery.number))  # fmt: skip
                self.stats.duplicated += 1
        for delivery in made:
            self.deliveries.append(delivery)
            if settings.drop_rate and self._drops.random() < settings.drop_rate:
                delivery.outcome = "dropped"
                self.stats.dropped += 1
            elif settings.hold:
                delivery.outcome = "held"
                self._held.append(delivery)
            else:
                self._queue.append(delivery)

    def release(self, order: str = "fifo") -> int:
        if order not in ORDERS:
            raise ValueError(f"order is one of {list(ORDERS)}")
        self._form()
        held, self._held = self._held, []
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            seed = self.settings.seed if self.settings is not None else 0
            random.Random(seed + 2).shuffle(held)  # noqa: S311
        for delivery in held:
            delivery.outcome = "pending"
        self._queue.extend(held)
        self._kick()
        return len(held)

    def object_ids(self, *outcomes: Outcome) -> set[str]:
        self._form()
        return {i for d in self.deliveries if d.outcome in outcomes for i in d.object_ids}

    # ----------------------------------------------------------------------------- sending

    def _kick(self) -> None:
        if not (self._queue or self._pending) or (
            self._dispatcher is not None and not self._dispatcher.done()
        ):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def drain(self) -> None:
        self._kick()
        while True:
            pending = [t for t in (self._dispatcher, *self._retries)
                       if t is not None and not t.done()]  # fmt: skip
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def _dispatch(self) -> None:
        async with httpx.AsyncClient() as client:
            self._form()
            while self._queue:
                delivery = self._queue.pop(0)
                answer = await self._attempt(client, delivery)
                if answer is not None:
                    task = asyncio.create_task(self._retry(delivery, answer))
                    self._retries.add(task)
                    task.add_done_callback(self._retries.discard)
                self._form()

    async def _retry(self, delivery: Delivery, floor: float) -> None:
        async with httpx.AsyncClient() as client:
            for wait in delivery.settings.retry_schedule:
                # Each wait runs from the failed attempt, not from when its answer was read:
                # the clock may have moved while the answer was on its way.
                due = delivery.attempted_at + max(wait, floor)
                await self._clock.sleep(due - self._clock.monotonic())
                self.stats.retried += 1
                answer = await self._attempt(client, delivery)
                if answer is None:
                    return
                floor = answer
        delivery.outcome = "failed"
        self.stats.failed += 1

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> float | None:
        """None when done (sent, or refused for good); else the least wait before the next."""
        settings = delivery.settings
        delivery.attempts += 1
        delivery.attempted_at = self._clock.monotonic()
        self.stats.attempts += 1
        body = delivery.body()
        timestamp = str(int(self._clock.now().timestamp() * 1000))
        headers = {
            "content-type": "application/json",
            "user-agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (simulator)",
            "X-HubSpot-Signature-v3": sign_v3(settings.secret, "POST", settings.url, body,
                                              timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature": sign_v1(settings.secret, body),
            "X-HubSpot-Signature-Version": "v1",
        }  # fmt: skip
        try:
            response = await client.post(
                settings.url, content=body, headers=headers, timeout=settings.timeout
            )
        except httpx.HTTPError:
            return 0.0
        if 200 <= response.status_code < 300:
            delivery.outcome = "sent"
            self.stats.sent += 1
            return None
        if response.status_code in NOT_RETRIED:
            delivery.outcome = "refused"
            self.stats.refused += 1
            return None
        if response.status_code == 429:
            try:
                return max(0.0, float(response.headers.get("retry-after", "0")))
            except ValueError:
                return 0.0
        return 0.0
