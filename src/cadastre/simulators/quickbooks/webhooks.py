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
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

from cadastre.simulators import push
from cadastre.simulators.push import Pusher, PushStats
from cadastre.simulators.quickbooks.faults import qbo_time

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.quickbooks.entities import Change

INTUIT_SCHEDULE: tuple[float, ...] = (10.0, 20.0, 30.0, 300.0, 1200.0, 7200.0, 14400.0, 21600.0)
SIX_HOURS = 21600.0
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
        push.check_url(self.url)
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
        push.check_rates(self, "drop_rate", "duplicate_rate")
        push.check_hold(self.hold)
        push.check_schedule(self.retry_schedule)
        push.check_whole(self.extra_retries, "extra_retries", 0)
        push.check_timeout(self.timeout)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        return cls(**push.settings_values(cls.__dataclass_fields__, body, ("url", "verifier_token"),
                                          INTUIT_SCHEDULE))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return push.shown_settings(self, "verifier_token")


@dataclass
class WebhookStats(PushStats):
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


class WebhookEmitter(Pusher[Notification, WebhookSettings]):
    stats: WebhookStats

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.stats = WebhookStats()
        self.notifications = self._made

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
            if self._copied(settings):
                copy = _body(settings, realm, chunk)  # new CloudEvents ids, as a re-emit has
                made.append(Notification(_message_id(), events, copy, settings, copy_of=note.id))
        self._file(made, settings)
        self._kick()
        return made

    def ids(self, *outcomes: str) -> set[tuple[str, str]]:
        """(entity, id) of the events whose notification ended in one of ``outcomes``."""
        return {(e, i) for n in self.notifications if n.outcome in outcomes for e, i, _ in n.events}

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
                if await self._attempt(client, note) is not None:
                    await self._retry_with(client, note, 0.0)  # later ones wait behind it
                self._queue.popleft()

    def _waits(self, note: Notification) -> list[float]:
        return [*note.settings.retry_schedule, *[SIX_HOURS] * note.settings.extra_retries]

    def _request(self, note: Notification) -> tuple[str, bytes, dict[str, str], float]:
        settings = note.settings
        note.attempt_times.append(self._clock.monotonic())
        headers = {
            "content-type": settings.content_type,
            "intuit-signature": intuit_signature(settings.verifier_token, note.body),
            "intuit-t-id": str(uuid.uuid4()),
            "user-agent": "intuit-webhooks-simulator",
        }
        return settings.url, note.body, headers, settings.timeout

    def _unanswered(self, note: Notification, error: httpx.HTTPError) -> float | None:
        if isinstance(error, httpx.TimeoutException):
            self.stats.too_slow += 1
        return 0.0


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
