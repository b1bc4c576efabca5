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

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from cadastre.simulators import push
from cadastre.simulators.push import Pusher, PushStats
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
Outcome = Literal["pending", "held", "dropped", "sent", "failed", "cancelled"]


@dataclass
class WebhookStats(PushStats):
    pass


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
        push.check_url(self.url)
        signing_key(self.secret)
        push.check_rates(self, "drop_rate", "duplicate_rate")
        push.check_whole(self.batch, "batch", 1)
        push.check_seed(self.seed)
        if self.payload not in ("records", "keys"):
            raise ValueError('payload is "records" or "keys"')
        push.check_hold(self.hold)
        push.check_schedule(self.retry_schedule)
        push.check_timeout(self.timeout)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        return cls(**push.settings_values(cls.__dataclass_fields__, body, ("url", "secret"),
                                          DEFAULT_SCHEDULE))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them: never the secret."""
        return push.shown_settings(self, "secret")


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


class WebhookEmitter(Pusher[Notification, WebhookSettings]):
    stats: WebhookStats

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.stats = WebhookStats()
        self.notifications = self._made  # every one made, in order
        self._sequence = 0  # EntityEventSequence: one order for every event the MLS emits

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
            if self._copied(settings):
                made.append(Notification(_message_id(), keys, body, settings, copy_of=note.id))
        self._file(made, settings)
        self._kick()
        return made

    def _numbered(self, event: dict[str, Any], settings: WebhookSettings) -> dict[str, Any]:
        self._sequence += 1
        numbered = {"EntityEventSequence": self._sequence, **event}
        if settings.payload == "keys":  # RCP-28 as written: the consumer reads the record
            return {k: numbered[k] for k in ("EntityEventSequence", "ResourceName",
                                             "ResourceRecordKey") if k in numbered}  # fmt: skip
        return numbered

    def keys(self, *outcomes: Outcome) -> set[str]:
        """The record keys of the notifications with one of ``outcomes`` (for tests)."""
        return {key for n in self.notifications if n.outcome in outcomes for key in n.keys}

    # ----------------------------------------------------------------------------- sending

    def _request(self, note: Notification) -> tuple[str, bytes, dict[str, str], float]:
        settings = note.settings
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "reso-simulator-webhooks",
            "webhook-id": note.id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(signing_key(settings.secret), note.id, stamp, note.body),
        }
        return settings.url, note.body, headers, settings.timeout


def _message_id() -> str:
    # Unique across simulator runs: a receiver keeps ids it has seen, and a test's second
    # simulator must not look like a replay of the first.
    return f"msg_{uuid.uuid4().hex}"
