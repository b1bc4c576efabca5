"""Intuit's webhooks: every change to a subscribed entity (by the API or "in the UI") is pushed to
the app's endpoint, signed, retried on Intuit's schedule, and dropped, duplicated or held for
reordering on purpose when asked.

Payload (``payload``): ``"cloudevents"`` (default; the format Intuit announced in November 2025
and lets apps switch to per app): a JSON array of CloudEvents 1.0 objects, ``{"specversion":
"1.0", "id", "source", "type": "qbo.<entity>.<created|updated|deleted>.v1", "datacontenttype":
"application/json", "time", "intuitentityid", "intuitaccountid", "data": {}}``: thin, the
receiver reads the object (or CDC). ``"legacy"``: ``{"eventNotifications": [{"realmId",
"dataChangeEvent": {"entities": [{"name", "id", "operation": "Create|Update|Delete",
"lastUpdated"}]}}]}``.

Signature: ``intuit-signature`` = base64(HMAC-SHA256(verifier token, raw body)); no timestamp.
The endpoint must answer 2xx within ``timeout`` (Intuit: 3 s; an answer later than that is a
failure). A failed notification is retried after 10 s, 20 s, 30 s, 5 min, 20 min, 2 h, 4 h and
6 h, then every 6 h ``extra_retries`` more times, on the simulator clock; meanwhile later
notifications wait behind it (Intuit holds later events until the failing one is acknowledged).
"""

from __future__ import annotations

import asyncio
import base64
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

from cadastre.simulators.quickbooks.faults import qbo_time

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.quickbooks.entities import Change

INTUIT_SCHEDULE: tuple[float, ...] = (10.0, 20.0, 30.0, 300.0, 1200.0, 7200.0, 14400.0, 21600.0)
SIX_HOURS = 21600.0
ORDERS = ("fifo", "reverse", "shuffle")
SOURCE = "intuit.quickbooks.simulator"
_OPERATIONS = {"Create": "created", "Update": "updated", "Delete": "deleted"}


def intuit_signature(verifier_token: str, body: bytes) -> str:
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    verifier_token: str = field(repr=False)
    payload: Literal["cloudevents", "legacy"] = "cloudevents"
    batch: int = 1  # events per notification (Intuit aggregates; CloudEvents: at most 100)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    hold: bool = False
    seed: int = 0
    retry_schedule: tuple[float, ...] = INTUIT_SCHEDULE
    extra_retries: int = 4  # further attempts every 6 h after the schedule
    timeout: float = 3.0
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError("url is an http:// or https:// URL")
        if not isinstance(self.verifier_token, str) or not self.verifier_token:
            raise ValueError("verifier_token is a non-empty string")
        if self.payload not in ("cloudevents", "legacy"):
            raise ValueError('payload is "cloudevents" or "legacy"')
        if (
            isinstance(self.batch, bool)
            or not isinstance(self.batch, int)
            or not 1 <= self.batch <= 100
        ):
            raise ValueError("batch is a whole number from 1 to 100")
        for name in ("drop_rate", "duplicate_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} is between 0 and 1")
        if not isinstance(self.hold, bool):
            raise ValueError("hold is true or false")
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and s >= 0
                   for s in self.retry_schedule):  # fmt: skip
            raise ValueError("retry_schedule is a list of seconds >= 0")
        if (
            isinstance(self.extra_retries, bool)
            or not isinstance(self.extra_retries, int)
            or (self.extra_retries < 0)
        ):
            raise ValueError("extra_retries is a whole number >= 0")
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
        if "url" not in body or "verifier_token" not in body:
            raise ValueError("url and verifier_token are required")
        values = dict(body)
        schedule = values.get("retry_schedule", INTUIT_SCHEDULE)
        if not isinstance(schedule, list | tuple):
            raise ValueError("retry_schedule is a list of seconds >= 0")
        values["retry_schedule"] = tuple(schedule)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        shown = {name: getattr(self, name) for name in self.__dataclass_fields__}
        shown["verifier_token"] = "***"  # noqa: S105 - a mask
        shown["retry_schedule"] = list(self.retry_schedule)
        return shown


@dataclass
class WebhookStats:
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    retried: int = 0
    duplicated: int = 0
    attempts: int = 0
    too_slow: int = 0  # attempts answered (or not) after the timeout


@dataclass
class Notification:
    id: str
    events: tuple[tuple[str, str, str], ...]  # (entity, id, operation)
    body: bytes = field(repr=False)
    settings: WebhookSettings = field(repr=False)
    outcome: str = "pending"  # pending, held, dropped, sent, failed, cancelled
    attempts: int = 0
    attempt_times: list[float] = field(default_factory=list)  # clock.monotonic() of each
    copy_of: str | None = None


class WebhookEmitter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.settings: WebhookSettings | None = None
        self.stats = WebhookStats()
        self.notifications: list[Notification] = []
        self._drops = random.Random(0)  # noqa: S311 - reproducible, not secret
        self._copies = random.Random(1)  # noqa: S311
        self._queue: deque[Notification] = deque()
        self._held: list[Notification] = []
        self._dispatcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"WebhookEmitter(settings={self.settings!r}, stats={self.stats!r})"

    def configure(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._drops = random.Random(settings.seed)  # noqa: S311
        self._copies = random.Random(settings.seed + 1)  # noqa: S311

    async def stop(self) -> None:
        self.settings = None
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        for waiting in [*self._queue, *self._held]:
            waiting.outcome = "cancelled"
        self._queue.clear()
        self._held.clear()

    def emit(self, realm: str, changes: Sequence[Change]) -> list[Notification]:
        settings = self.settings
        if settings is None or not changes:
            return []
        made: list[Notification] = []
        for i in range(0, len(changes), settings.batch):
            chunk = changes[i : i + settings.batch]
            body = _body(settings, realm, chunk)
            events = tuple((c.entity, c.id, c.operation) for c in chunk)
            note = Notification(_message_id(), events, body, settings)
            made.append(note)
            if settings.duplicate_rate and self._copies.random() < settings.duplicate_rate:
                copy = _body(settings, realm, chunk)  # new CloudEvents ids, as a re-emit has
                made.append(Notification(_message_id(), events, copy, settings, copy_of=note.id))
                self.stats.duplicated += 1
        for note in made:
            self.notifications.append(note)
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

    def ids(self, *outcomes: str) -> set[tuple[str, str]]:
        """(entity, id) of the events whose notification ended in one of ``outcomes``."""
        return {(e, i) for n in self.notifications if n.outcome in outcomes for e, i, _ in n.events}

    def _kick(self) -> None:
        if not self._queue or (self._dispatcher is not None and not self._dispatcher.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def drain(self) -> None:
        """Until every notification made so far is sent, failed or dropped (held ones stay)."""
        self._kick()
        while self._dispatcher is not None and not self._dispatcher.done():
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._kick()

    async def _dispatch(self) -> None:
        async with httpx.AsyncClient() as client:
            while self._queue:
                note = self._queue[0]
                if not await self._attempt(client, note):
                    await self._retry(client, note)  # later ones wait behind it
                self._queue.popleft()

    async def _retry(self, client: httpx.AsyncClient, note: Notification) -> None:
        waits = [*note.settings.retry_schedule, *[SIX_HOURS] * note.settings.extra_retries]
        for wait in waits:
            await self._clock.sleep(wait)
            self.stats.retried += 1
            if await self._attempt(client, note):
                return
        note.outcome = "failed"
        self.stats.failed += 1

    async def _attempt(self, client: httpx.AsyncClient, note: Notification) -> bool:
        settings = note.settings
        headers = {
            "content-type": settings.content_type,
            "intuit-signature": intuit_signature(settings.verifier_token, note.body),
            "intuit-t-id": str(uuid.uuid4()),
            "user-agent": "intuit-webhooks-simulator",
        }
        note.attempts += 1
        note.attempt_times.append(self._clock.monotonic())
        self.stats.attempts += 1
        try:
            response = await client.post(
                settings.url, content=note.body, headers=headers, timeout=settings.timeout
            )
        except httpx.TimeoutException:
            self.stats.too_slow += 1
            return False
        except httpx.HTTPError:
            return False
        if 200 <= response.status_code < 300:
            note.outcome = "sent"
            self.stats.sent += 1
            return True
        return False


def _body(settings: WebhookSettings, realm: str, changes: Sequence[Change]) -> bytes:
    if settings.payload == "legacy":
        entities = []
        for c in changes:
            entity: dict[str, Any] = {"name": c.entity, "id": c.id, "operation": c.operation,
                                      "lastUpdated": qbo_time(c.at)}  # fmt: skip
            entities.append(entity)
        return orjson.dumps({"eventNotifications": [
            {"realmId": realm, "dataChangeEvent": {"entities": entities}}
        ]})  # fmt: skip
    return orjson.dumps([
        {"specversion": "1.0", "id": str(uuid.uuid4()), "source": SOURCE,
         "type": f"qbo.{c.entity.lower()}.{_OPERATIONS[c.operation]}.v1",
         "datacontenttype": "application/json", "time": qbo_time(c.at),
         "intuitentityid": c.id, "intuitaccountid": realm, "data": {}}
        for c in changes
    ])  # fmt: skip


def _message_id() -> str:
    return f"qbo_{uuid.uuid4().hex}"
