"""Webhook notifications from the MLS: every data change is pushed to a subscriber, signed per
Standard Webhooks, retried on a compressed schedule, and dropped on purpose when asked to.

The body follows RESO's push replication (RCP-28, "Push Replication Using Webhooks and the RESO
EntityEvent Resource"): a RESO Common Format batch of EntityEvent records,
``{"@reso.context": "urn:reso:metadata:2.0:resource:entityevent", "value": [event, ...]}``,
each event ``{"EntityEventSequence", "ResourceName", "ResourceRecordKey"}``. RCP-28 events carry
keys only (the consumer fetches the records); producers that push the data too put the whole
record in the event, in Common Format, as ``Data`` (RESO's 2023 developer workshop left payloads
to providers "in a way that matches RESO Common Format"; push vendors such as CData's EntityEvent
producer send ``Data``), and the workshop added an ``EventTypes`` array. So an event here is::

    {"EntityEventSequence": 12, "ResourceName": "Property", "ResourceRecordKey": "ACT00000007",
     "ModificationTimestamp": "2026-11-27T09:00:00.000Z", "EventTypes": ["Updated"],
     "Data": {...the record as GET /odata/Property serves it, in the dialect's field names...}}

``EventTypes`` is ``Created``, ``Updated`` or ``Deleted``; ``ModificationTimestamp`` is when the
event happened (the record's new timestamp, or the time it was withdrawn). A listing that
vanishes (``deletion.style: vanish``) is a ``Deleted`` event without ``Data``; an MLS Grid style
withdrawal is an ``Updated`` event whose record carries ``MlgCanView: false``, as its feed serves
it. ``payload: "keys"`` sends RCP-28's bare events (no ``Data``, no ``EventTypes``): the consumer
reads each record by key, and a 404 means it is gone.

Signing is written out here (the simulators import nothing of Cadastre): headers ``webhook-id``
(one per notification, kept across its retries), ``webhook-timestamp`` (the attempt's time on the
simulator clock) and ``webhook-signature`` ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
under the key a ``whsec_`` secret encodes.

Delivery runs in tasks, never inside the admin call that changed the data: one dispatcher sends
each notification's first attempt in the order the notifications were made; a notification that
is not answered 2xx is retried by a task of its own after each wait of ``retry_schedule`` (seconds
on the simulator clock; Svix's 5 s, 5 min, 30 min, 2 h ... compressed), so retries overtake
later notifications as they do at real senders, and is counted failed when the schedule runs out.
``drop_rate`` leaves that share of notifications unsent (a seeded generator picks them, so a test
knows which); ``duplicate_rate`` sends that share twice, the copy under a new ``webhook-id`` (a
sender re-emitting a change: only the record's timestamp tells the receiver it has it already);
``hold`` keeps notifications until ``release(order)`` sends them, in order, reversed or shuffled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

from cadastre.simulators.reso.records import format_timestamp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.reso.records import Row

RESO_CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"
# Svix retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; the same shape, in seconds.
DEFAULT_SCHEDULE: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
ORDERS = ("fifo", "reverse", "shuffle")
Outcome = Literal["pending", "held", "dropped", "sent", "failed", "cancelled"]


@dataclass
class WebhookStats:
    sent: int = 0  # notifications a receiver answered 2xx
    dropped: int = 0  # never sent, on purpose (drop_rate)
    failed: int = 0  # not answered 2xx by the last attempt of the schedule
    retried: int = 0  # attempts after a notification's first
    duplicated: int = 0  # copies sent under a new webhook-id (duplicate_rate)
    attempts: int = 0  # every POST made, answered or not


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str = field(repr=False)
    drop_rate: float = 0.0
    batch: int = 1  # events (records) per notification
    seed: int = 0
    payload: Literal["records", "keys"] = "records"
    duplicate_rate: float = 0.0
    hold: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    timeout: float = 5.0  # seconds an attempt waits for its answer (real time: it is I/O)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError("url is an http:// or https:// URL")
        signing_key(self.secret)
        for name in ("drop_rate", "duplicate_rate"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0.0 <= value <= 1.0)
            ):
                raise ValueError(f"{name} is between 0 and 1")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError("batch is a whole number >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed is a whole number")
        if self.payload not in ("records", "keys"):
            raise ValueError('payload is "records" or "keys"')
        if not isinstance(self.hold, bool):
            raise ValueError("hold is true or false")
        if not all(
            isinstance(s, int | float) and not isinstance(s, bool) and s >= 0
            for s in self.retry_schedule
        ):
            raise ValueError("retry_schedule is a list of seconds >= 0")
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or (self.timeout <= 0)
        ):
            raise ValueError("timeout is seconds > 0")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        if "url" not in body or "secret" not in body:
            raise ValueError("url and secret are required")
        values = dict(body)
        schedule = values.get("retry_schedule", DEFAULT_SCHEDULE)
        if not isinstance(schedule, list | tuple):
            raise ValueError("retry_schedule is a list of seconds >= 0")
        values["retry_schedule"] = tuple(schedule)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them: never the secret."""
        shown = {name: getattr(self, name) for name in self.__dataclass_fields__}
        shown["secret"] = "***"  # noqa: S105 - a mask
        shown["retry_schedule"] = list(self.retry_schedule)
        return shown


def signing_key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("secret is whsec_ followed by base64")
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("secret may not be empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(digest.digest()).decode()


@dataclass
class Notification:
    id: str  # the webhook-id
    keys: tuple[str, ...]  # ResourceRecordKey of each event, in order
    body: bytes = field(repr=False)
    settings: WebhookSettings = field(repr=False)
    outcome: Outcome = "pending"
    attempts: int = 0
    copy_of: str | None = None  # the webhook-id of the notification this one duplicates


def change_event(row: Row, kind: str) -> dict[str, Any]:
    """The event of a record that was created or changed: the record as now served (a copy: the
    MLS goes on changing it while the notification waits)."""
    return {
        "ResourceName": "Property",
        "ResourceRecordKey": row.key,
        "ModificationTimestamp": format_timestamp(row.modified),
        "EventTypes": [kind],
        "Data": dict(row.served()),
    }


def deletion_event(key: str, when: datetime) -> dict[str, Any]:
    """The event of a record that left the feed altogether."""
    return {
        "ResourceName": "Property",
        "ResourceRecordKey": key,
        "ModificationTimestamp": format_timestamp(when),
        "EventTypes": ["Deleted"],
    }


class WebhookEmitter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.settings: WebhookSettings | None = None
        self.stats = WebhookStats()
        self.notifications: list[Notification] = []  # every one made, in order
        self._sequence = 0  # EntityEventSequence: one order for every event the MLS emits
        self._drops = random.Random(0)  # noqa: S311 - reproducible, not secret
        self._copies = random.Random(1)  # noqa: S311
        self._queue: deque[Notification] = deque()
        self._held: list[Notification] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookEmitter(settings={self.settings!r}, stats={self.stats!r})"

    @property
    def active(self) -> bool:
        return self.settings is not None

    def configure(self, settings: WebhookSettings) -> None:
        """Subscribe (or change the subscription); the generators restart from the seed, so the
        same settings drop the same notifications. Notifications already made keep theirs."""
        self.settings = settings
        self._drops = random.Random(settings.seed)  # noqa: S311
        self._copies = random.Random(settings.seed + 1)  # noqa: S311

    async def stop(self) -> None:
        """Unsubscribe: nothing more is made, and what is waiting or being retried is cancelled."""
        self.settings = None
        tasks = [t for t in (self._dispatcher, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiting in [*self._queue, *self._held]:
            waiting.outcome = "cancelled"
        self._queue.clear()
        self._held.clear()
        self._dispatcher = None
        self._retries.clear()

    # ------------------------------------------------------------------------------ making

    def emit(self, events: Sequence[dict[str, Any]]) -> list[Notification]:
        """Notifications of ``events`` (in order, ``batch`` to a notification), each dropped,
        held or queued for sending. Called by the MLS as its data changes."""
        settings = self.settings
        if settings is None or not events:
            return []
        made: list[Notification] = []
        for i in range(0, len(events), settings.batch):
            chunk = [self._numbered(event, settings) for event in events[i : i + settings.batch]]
            body = orjson.dumps({"@reso.context": RESO_CONTEXT, "value": chunk})
            keys = tuple(str(event["ResourceRecordKey"]) for event in chunk)
            note = Notification(_message_id(), keys, body, settings)
            made.append(note)
            if settings.duplicate_rate and self._copies.random() < settings.duplicate_rate:
                made.append(Notification(_message_id(), keys, body, settings, copy_of=note.id))
                self.stats.duplicated += 1
        for note in made:
            self.notifications.append(note)
            # A drop is drawn per notification made (copies too), so a seed fixes the pattern.
            if settings.drop_rate and self._drops.random() < settings.drop_rate:
                note.outcome = "dropped"
                self.stats.dropped += 1
            elif settings.hold:
                note.outcome = "held"
                self._held.append(note)
            else:
                self._queue.append(note)
        self._kick()
        return made

    def _numbered(self, event: dict[str, Any], settings: WebhookSettings) -> dict[str, Any]:
        self._sequence += 1
        numbered = {"EntityEventSequence": self._sequence, **event}
        if settings.payload == "keys":  # RCP-28 as written: the consumer reads the record
            return {k: numbered[k] for k in ("EntityEventSequence", "ResourceName",
                                             "ResourceRecordKey") if k in numbered}  # fmt: skip
        return numbered

    def release(self, order: str = "fifo") -> int:
        """Send the held notifications: in the order made, ``reverse``, or ``shuffle`` (seeded).
        Answers how many."""
        if order not in ORDERS:
            raise ValueError(f"order is one of {list(ORDERS)}")
        held, self._held = self._held, []
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            seed = self.settings.seed if self.settings is not None else 0
            random.Random(seed + 2).shuffle(held)  # noqa: S311
        for note in held:
            note.outcome = "pending"
        self._queue.extend(held)
        self._kick()
        return len(held)

    def keys(self, *outcomes: Outcome) -> set[str]:
        """The record keys of the notifications with one of ``outcomes`` (for tests)."""
        return {key for n in self.notifications if n.outcome in outcomes for key in n.keys}

    # ----------------------------------------------------------------------------- sending

    def _kick(self) -> None:
        if not self._queue or (self._dispatcher is not None and not self._dispatcher.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # made outside an event loop: sent when one asks (drain, the next change)
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def drain(self) -> None:
        """Wait until every notification made so far is sent, failed or dropped (held ones stay
        held)."""
        self._kick()
        while True:
            pending = [t for t in (self._dispatcher, *self._retries)
                       if t is not None and not t.done()]  # fmt: skip
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def _dispatch(self) -> None:
        async with httpx.AsyncClient() as client:
            while self._queue:
                note = self._queue.popleft()
                if not await self._attempt(client, note):
                    task = asyncio.create_task(self._retry(note))
                    self._retries.add(task)
                    task.add_done_callback(self._retries.discard)

    async def _retry(self, note: Notification) -> None:
        async with httpx.AsyncClient() as client:
            for wait in note.settings.retry_schedule:
                await self._clock.sleep(wait)
                self.stats.retried += 1
                if await self._attempt(client, note):
                    return
        note.outcome = "failed"
        self.stats.failed += 1

    async def _attempt(self, client: httpx.AsyncClient, note: Notification) -> bool:
        settings = note.settings
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "reso-simulator-webhooks",
            "webhook-id": note.id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(signing_key(settings.secret), note.id, stamp, note.body),
        }
        note.attempts += 1
        self.stats.attempts += 1
        try:
            response = await client.post(
                settings.url, content=note.body, headers=headers, timeout=settings.timeout
            )
        except httpx.HTTPError:
            return False  # no answer: the receiver is down or cut the connection
        if 200 <= response.status_code < 300:
            note.outcome = "sent"
            self.stats.sent += 1
            return True
        return False


def _message_id() -> str:
    # Unique across simulator runs: a receiver keeps ids it has seen, and a test's second
    # simulator must not look like a replay of the first.
    return f"msg_{uuid.uuid4().hex}"
