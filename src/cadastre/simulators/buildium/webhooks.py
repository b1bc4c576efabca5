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

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from cadastre.simulators import push
from cadastre.simulators.push import Pusher, PushStats

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from cadastre.simulators.clock import Clock

SCHEDULE: tuple[float, ...] = (60.0, 600.0, 3600.0)  # +1 min, +10 min, +1 h
SUSPEND_AFTER = 20  # consecutive failed attempts
Outcome = Literal["pending", "held", "dropped", "sent", "failed", "suspended", "cancelled"]


@dataclass
class WebhookStats(PushStats):
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
        push.check_url(self.url)
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("secret is a non-empty string")
        push.check_rates(self, "drop_rate", "duplicate_rate")
        push.check_hold(self.hold)
        push.check_seed(self.seed)
        push.check_schedule(self.retry_schedule)
        push.check_whole(self.suspend_after, "suspend_after", 1)
        push.check_timeout(self.timeout)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        values = push.settings_values(cls.__dataclass_fields__, body, ("url", "secret"), SCHEDULE)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return push.shown_settings(self, "secret")


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


class WebhookEmitter(Pusher[Notification, WebhookSettings]):
    stats: WebhookStats

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.stats = WebhookStats()
        self.notifications = self._made
        self.suspended = False
        self.consecutive_failures = 0

    def configure(self, settings: WebhookSettings) -> None:
        """Subscribe (or change the subscription, which also enables a suspended one)."""
        super().configure(settings)
        self.suspended = False
        self.consecutive_failures = 0

    def enable(self) -> None:
        """A person re-enables a suspended subscription."""
        self.suspended = False
        self.consecutive_failures = 0

    def emit(self, event: dict[str, Any]) -> list[Notification]:
        settings = self.settings
        if settings is None:
            return []
        body = orjson.dumps(event)  # minified, as Buildium signs it
        made = [Notification(event, body, settings)]
        if self._copied(settings):
            made.append(Notification(event, body, settings, copy=True))
        self._file(made, settings)
        self._kick()
        return made

    def events(self, *outcomes: Outcome) -> list[dict[str, Any]]:
        return [n.event for n in self.notifications if n.outcome in outcomes]

    # ------------------------------------------------------------------------ suspension

    def _diverted(self, note: Notification) -> bool:
        return self._halted(note)

    def _halted(self, note: Notification) -> bool:
        if not self.suspended:
            return False
        note.outcome = "suspended"
        self.stats.suspended += 1
        return True

    def _sent(self, note: Notification) -> None:
        super()._sent(note)
        self.consecutive_failures = 0

    def _answered(self, note: Notification, response: httpx.Response) -> float | None:
        floor = super()._answered(note, response)
        if floor is not None:
            self._failed_attempt(note)
        return floor

    def _unanswered(self, note: Notification, error: httpx.HTTPError) -> float | None:
        self._failed_attempt(note)
        return 0.0

    def _failed_attempt(self, note: Notification) -> None:
        self.consecutive_failures += 1
        if not self.suspended and self.consecutive_failures >= note.settings.suspend_after:
            self.suspended = True
            self.stats.suspensions += 1

    def _request(self, note: Notification) -> tuple[str, bytes, dict[str, str], float]:
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "buildium-simulator-webhooks",
            "buildium-webhook-timestamp": str(stamp),
            "buildium-webhook-signature": sign(note.settings.secret, stamp, note.body),
        }
        return note.settings.url, note.body, headers, note.settings.timeout
