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

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from cadastre.simulators import push
from cadastre.simulators.push import Pusher

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import httpx

    from cadastre.simulators.clock import Clock

DEFAULT_SCHEDULE: tuple[float, ...] = tuple(60.0 * 2**n for n in range(10))
NOT_RETRIED = frozenset({400, 401, 403, 404, 405})
MAX_BATCH = 100
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
        push.check_url(self.url)
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
        push.check_rates(self, "drop_rate", "duplicate_rate")
        push.check_hold(self.hold)
        push.check_seed(self.seed)
        push.check_schedule(self.retry_schedule)
        push.check_timeout(self.timeout)

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
        shown = push.shown_settings(self, "secret")
        shown["subscriptions"] = list(self.subscriptions)
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


class WebhookEmitter(Pusher[Delivery, WebhookSettings]):
    stats: WebhookStats

    def __init__(self, clock: Clock, *, portal_id: int, app_id: int) -> None:
        super().__init__(clock)
        self.portal_id = portal_id
        self.app_id = app_id
        self.stats = WebhookStats()
        self.deliveries = self._made
        self._event_id = 0
        self._pending: list[dict[str, Any]] = []  # events not yet in a request

    async def stop(self) -> None:
        await super().stop()
        self._pending.clear()

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
            if self._copied(settings):
                made.append(Delivery(delivery.number + 1, chunk, settings,
                                     copy_of=delivery.number))  # fmt: skip
        self._file(made, settings)

    def object_ids(self, *outcomes: Outcome) -> set[str]:
        self._form()
        return {i for d in self.deliveries if d.outcome in outcomes for i in d.object_ids}

    # ----------------------------------------------------------------------------- sending

    def _waiting(self) -> bool:
        return bool(self._queue or self._pending)

    async def _pause(self, note: Delivery, wait: float, floor: float) -> None:
        # Each wait runs from the failed attempt, not from when its answer was read: the clock
        # may have moved while the answer was on its way.
        due = note.attempted_at + max(wait, floor)
        await self._clock.sleep(due - self._clock.monotonic())

    def _request(self, note: Delivery) -> tuple[str, bytes, dict[str, str], float]:
        settings = note.settings
        note.attempted_at = self._clock.monotonic()
        body = note.body()
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
        return settings.url, body, headers, settings.timeout

    def _answered(self, note: Delivery, response: httpx.Response) -> float | None:
        """None when done (sent, or refused for good); else the least wait before the next."""
        if 200 <= response.status_code < 300:
            self._sent(note)
            return None
        if response.status_code in NOT_RETRIED:
            note.outcome = "refused"
            self.stats.refused += 1
            return None
        if response.status_code == 429:
            try:
                return max(0.0, float(response.headers.get("retry-after", "0")))
            except ValueError:
                return 0.0
        return 0.0
