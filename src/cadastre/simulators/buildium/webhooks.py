"""Buildium webhook callbacks: every change of a subscribed entity is POSTed to the subscriber as
one thin event, signed, retried on the vendor's schedule, and the subscription suspended after
too many failures in a row.

From the vendor's documentation (Open API ``info.description``, "Webhooks"):

- the body is one Event object, minified JSON: ``{"EventName": "LeaseTenant.Updated",
  "EventDateTime": "2026-11-27T09:00:00.0000000Z", "AccountId": 123456, "TenantId": 7}``
  (``RentalUnit.*`` carry ``UnitId``, ``Lease.*`` ``LeaseId``); the receiver reads the entity
  through the API;
- ``buildium-webhook-timestamp`` is the UNIX time the message is *sent* (each attempt anew), and
  ``buildium-webhook-signature`` = base64(HMAC-SHA256(secret, "<timestamp>.<body>"));
- a callback not answered 2xx within 10 seconds failed; it is retried after 1 minute, 10 minutes
  and 1 hour (here: waits on the simulator clock), then dropped;
- 20 failed attempts in a row suspend the subscription (nothing more is sent until it is enabled
  again, as a person does in Settings > Developer Tools);
- no ordering and no exactly-once guarantee: ``duplicate_rate`` sends copies, ``hold`` plus
  ``release("reverse"|"shuffle")`` reorders, ``drop_rate`` loses events on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.simulators.clock import Clock

SCHEDULE: tuple[float, ...] = (60.0, 600.0, 3600.0)  # +1 min, +10 min, +1 h
SUSPEND_AFTER = 20  # consecutive failed attempts
ORDERS = ("fifo", "reverse", "shuffle")
Outcome = Literal["pending", "held", "dropped", "sent", "failed", "suspended", "cancelled"]


@dataclass
class WebhookStats:
    sent: int = 0  # events a receiver answered 2xx
    dropped: int = 0  # never sent, on purpose (drop_rate)
    failed: int = 0  # given up after the last retry
    retried: int = 0  # attempts after an event's first
    duplicated: int = 0  # copies made (duplicate_rate)
    attempts: int = 0  # every POST made
    suspended: int = 0  # events not sent because the subscription was suspended
    suspensions: int = 0  # times the subscription was suspended


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str = field(repr=False)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    hold: bool = False
    seed: int = 0
    retry_schedule: tuple[float, ...] = SCHEDULE
    suspend_after: int = SUSPEND_AFTER
    timeout: float = 10.0  # seconds an attempt waits for its answer (real time: it is I/O)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError("url is an http:// or https:// URL")
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("secret is a non-empty string")
        for name in ("drop_rate", "duplicate_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    0.0 <= value <= 1.0):  # fmt: skip
                raise ValueError(f"{name} is between 0 and 1")
        if not isinstance(self.hold, bool):
            raise ValueError("hold is true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed is a whole number")
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and s >= 0
                   for s in self.retry_schedule):  # fmt: skip
            raise ValueError("retry_schedule is a list of seconds >= 0")
        if isinstance(self.suspend_after, bool) or not isinstance(self.suspend_after, int) or (
                self.suspend_after < 1):  # fmt: skip
            raise ValueError("suspend_after is a whole number >= 1")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) or (
                self.timeout <= 0):  # fmt: skip
            raise ValueError("timeout is seconds > 0")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        if "url" not in body or "secret" not in body:
            raise ValueError("url and secret are required")
        values = dict(body)
        schedule = values.get("retry_schedule", SCHEDULE)
        if not isinstance(schedule, list | tuple):
            raise ValueError("retry_schedule is a list of seconds >= 0")
        values["retry_schedule"] = tuple(schedule)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        shown = {name: getattr(self, name) for name in self.__dataclass_fields__}
        shown["secret"] = "***"  # noqa: S105 - a mask
        shown["retry_schedule"] = list(self.retry_schedule)
        return shown


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, "<timestamp>.<body>")), as Buildium signs."""
    digest = hmac.new(secret.encode(), b"%d.%s" % (timestamp, body), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Notification:
    event: dict[str, Any]
    body: bytes = field(repr=False)
    settings: WebhookSettings = field(repr=False)
    outcome: Outcome = "pending"
    attempts: int = 0
    copy: bool = False

    @property
    def name(self) -> str:
        return str(self.event["EventName"])


class WebhookEmitter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.settings: WebhookSettings | None = None
        self.stats = WebhookStats()
        self.notifications: list[Notification] = []
        self.suspended = False
        self.consecutive_failures = 0
        self._drops = random.Random(0)  # noqa: S311 - reproducible, not secret
        self._copies = random.Random(1)  # noqa: S311
        self._queue: deque[Notification] = deque()
        self._held: list[Notification] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookEmitter(settings={self.settings!r}, stats={self.stats!r})"

    def configure(self, settings: WebhookSettings) -> None:
        """Subscribe (or change the subscription, which also enables a suspended one)."""
        self.settings = settings
        self.suspended = False
        self.consecutive_failures = 0
        self._drops = random.Random(settings.seed)  # noqa: S311
        self._copies = random.Random(settings.seed + 1)  # noqa: S311

    def enable(self) -> None:
        """A person re-enables a suspended subscription."""
        self.suspended = False
        self.consecutive_failures = 0

    async def stop(self) -> None:
        self.settings = None
        tasks = [t for t in (self._dispatcher, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for note in [*self._queue, *self._held]:
            note.outcome = "cancelled"
        self._queue.clear()
        self._held.clear()
        self._dispatcher = None
        self._retries.clear()

    def emit(self, event: dict[str, Any]) -> list[Notification]:
        settings = self.settings
        if settings is None:
            return []
        body = orjson.dumps(event)  # minified, as Buildium signs it
        made = [Notification(event, body, settings)]
        if settings.duplicate_rate and self._copies.random() < settings.duplicate_rate:
            made.append(Notification(event, body, settings, copy=True))
            self.stats.duplicated += 1
        for note in made:
            self.notifications.append(note)
            if settings.drop_rate and self._drops.random() < settings.drop_rate:
                note.outcome = "dropped"
                self.stats.dropped += 1
            elif self.suspended:
                note.outcome = "suspended"
                self.stats.suspended += 1
            elif settings.hold:
                note.outcome = "held"
                self._held.append(note)
            else:
                self._queue.append(note)
        self._kick()
        return made

    def release(self, order: str = "fifo") -> int:
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

    def events(self, *outcomes: Outcome) -> list[dict[str, Any]]:
        return [n.event for n in self.notifications if n.outcome in outcomes]

    async def drain(self) -> None:
        """Until every event made so far is sent, failed, dropped or suspended (held stay)."""
        self._kick()
        while True:
            pending = [t for t in (self._dispatcher, *self._retries)
                       if t is not None and not t.done()]  # fmt: skip
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    def _kick(self) -> None:
        if not self._queue or (self._dispatcher is not None and not self._dispatcher.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        async with httpx.AsyncClient() as client:
            while self._queue:
                note = self._queue.popleft()
                if self.suspended:
                    self._suspend(note)
                    continue
                if not await self._attempt(client, note):
                    task = asyncio.create_task(self._retry(note))
                    self._retries.add(task)
                    task.add_done_callback(self._retries.discard)

    async def _retry(self, note: Notification) -> None:
        async with httpx.AsyncClient() as client:
            for wait in note.settings.retry_schedule:
                await self._clock.sleep(wait)
                if self.suspended:
                    self._suspend(note)
                    return
                self.stats.retried += 1
                if await self._attempt(client, note):
                    return
        note.outcome = "failed"
        self.stats.failed += 1

    def _suspend(self, note: Notification) -> None:
        note.outcome = "suspended"
        self.stats.suspended += 1

    async def _attempt(self, client: httpx.AsyncClient, note: Notification) -> bool:
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "buildium-simulator-webhooks",
            "buildium-webhook-timestamp": str(stamp),
            "buildium-webhook-signature": sign(note.settings.secret, stamp, note.body),
        }
        note.attempts += 1
        self.stats.attempts += 1
        try:
            response = await client.post(
                note.settings.url, content=note.body, headers=headers,
                timeout=note.settings.timeout,
            )  # fmt: skip
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError:
            ok = False
        if ok:
            note.outcome = "sent"
            self.stats.sent += 1
            self.consecutive_failures = 0
            return True
        self.consecutive_failures += 1
        if not self.suspended and self.consecutive_failures >= note.settings.suspend_after:
            self.suspended = True
            self.stats.suspensions += 1
        return False
