"""Ports: the small Protocols the core talks through, and the plain data they carry.

Adapters are named ``<Technology><Role>`` (``SqliteStore``), doubles ``Fake<Role>``; only
``cadastre.bootstrap`` picks a concrete adapter. Everything here is async: the core is asyncio and
adapters keep blocking work off the event loop.

This module is longer than most (~300 lines) because each port is kept beside the records it moves.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, Self, runtime_checkable

from cadastre.contract.events import EventEnvelope

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from cadastre.contract.changes import ApplyResult

# ------------------------------------------------------------------------------------------ time


class Clock(Protocol):
    """Time as the hub and the simulators see it. ``now()`` is timezone-aware UTC."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


# ------------------------------------------------------------------------------ store records


@dataclass(frozen=True)
class StoredRecord:
    entity: str
    id: str
    version: int  # starts at 1, +1 on every write; the optimistic-concurrency token
    data: Mapping[str, Any]  # wire name -> value (JSON-compatible)
    content_hash: str  # sha256 of the canonical JSON of ``data``
    deleted: bool
    updated_at: datetime
    # Data confidence of the record (0..1) as its last write scored it; None: never scored
    # (written by a system that does not score, e.g. core). See docs/confidence.md.
    confidence: float | None = None


@dataclass(frozen=True)
class RecordWrite:
    """One record write of a batch: the same rules as ``RecordRepository.put``."""

    entity: str
    id: str
    data: Mapping[str, Any]
    expected_version: int
    deleted: bool = False
    confidence: float | None = None  # None: the write is not scored (the record becomes unscored)


_FILTER_OPS = ("eq", "gt", "ge", "lt", "le")
_FILTER_KINDS = ("text", "number", "time")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]{1,100}")


@dataclass(frozen=True)
class FieldFilter:
    """One condition of ``RecordRepository.query`` on a top-level field of a record's ``data``.

    ``kind`` says how the stored value is read, and a value that cannot be read that way does not
    match (it never fails the query):

    - ``text``: a JSON string, equal to ``value`` (``eq`` only: collations order text differently
      on every database). ``casefold`` ignores the case of ASCII letters only - the one case
      rule SQLite's ``lower()`` and PostgreSQL's ``lower(... COLLATE "C")`` share.
    - ``number``: a JSON number, or a string of plain decimal digits such as ``"350000"`` or
      ``"-12.5"`` (an exponent allowed: ``"1E-7"``), compared numerically (exactly on
      PostgreSQL and the fake, as IEEE doubles on SQLite: exact to about 15 significant digits).
    - ``time``: a string ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with ``Z`` or ``+HH:MM``/``-HH:MM``
      (year 1000-9999), compared as instants (SQLite reads milliseconds, no finer).
    """

    field: str  # wire name inside ``data``, e.g. "ListPrice"; letters, digits and '_' only
    op: Literal["eq", "gt", "ge", "lt", "le"]
    value: str | int | float | Decimal | datetime
    kind: Literal["text", "number", "time"] = "text"
    casefold: bool = False

    def __post_init__(self) -> None:
        # Field names end up inside JSON paths, so they are checked here, before any adapter.
        if not isinstance(self.field, str) or not _FIELD_NAME.fullmatch(self.field):
            raise ValueError(f"filter field {self.field!r} must be 1-100 of A-Z, a-z, 0-9, '_'")
        if self.op not in _FILTER_OPS:
            raise ValueError(f"filter op {self.op!r} is not one of {', '.join(_FILTER_OPS)}")
        if self.kind not in _FILTER_KINDS:
            raise ValueError(f"filter kind {self.kind!r} is not one of text, number, time")
        if self.casefold and self.kind != "text":
            raise ValueError("casefold applies to text filters only")
        value = self.value
        if self.kind == "text":
            if not isinstance(value, str) or self.op != "eq":
                raise ValueError("a text filter compares a str with op 'eq'")
        elif self.kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise ValueError("a number filter needs an int, float or Decimal value")
            number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
            # Beyond this every database's numeric type overflows; nothing real is that large.
            if not number.is_finite() or (number and abs(number.adjusted()) > 1000):
                raise ValueError("a number filter value must be finite, within 1e-1000..1e1000")
        elif not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError("a time filter needs a timezone-aware datetime value")


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before the store gives it its place (seq) and hash in the chain."""

    actor: str
    action: str
    entity: str | None = None
    entity_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class FieldProvenance(NamedTuple):
    """Who last wrote one field, and when. (A NamedTuple rather than a frozen dataclass: a sync
    makes one per field written, and a tuple is built several times faster.)"""

    entity: str
    id: str
    field: str  # wire name
    system: str
    connection: str | None
    source_time: datetime | None
    source_version: str | None
    confidence: float
    recorded_at: datetime


# (system, connection, source_time, source_version, confidence, recorded_at)
StampValues = tuple[str, str | None, datetime | None, str | None, float, datetime]


@dataclass(frozen=True)
class ProvenanceWrite:
    """The stamps one write leaves on a record's fields. The fields a change writes share one
    stamp, so a write is a few ``stamps`` and a map of field -> index into them, not one object
    per field (a listing has 70-odd fields)."""

    entity: str
    id: str
    stamps: tuple[StampValues, ...]
    fields: Mapping[str, int]

    def expand(self) -> list[FieldProvenance]:
        return [FieldProvenance(self.entity, self.id, name, *self.stamps[i])
                for name, i in self.fields.items()]  # fmt: skip


@dataclass(frozen=True)
class ExternalRef:
    system: str
    connection: str  # "" when the system is not reached through a connection (e.g. core)
    entity: str
    external_id: str
    canonical_id: str


@dataclass(frozen=True)
class SyncCursor:
    connection: str
    stream: str
    value: Mapping[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class QuarantinedRecord:
    id: str
    connection: str
    entity: str
    external_id: str | None
    reason: str
    payload: Mapping[str, Any]
    created_at: datetime
    resolved_at: datetime | None = None
    stream: str = ""  # the vendor stream it came from ("Property"), for a replay
    code: str = ""  # the rejection code (a metric label): "unknown_enum_value", "malformed_page"
    attempts: int = 0  # replays tried that failed again
    # Reads that set the same version aside again while the entry was open (an unchanged bad
    # record the cursor meets on every incremental sync): one entry, counted, not a new one.
    sightings: int = 1
    last_seen_at: datetime | None = None  # the latest such read; None: seen once


@dataclass(frozen=True)
class OutboxMessage:
    event: EventEnvelope
    position: int  # monotonically increasing per store; the relay publishes in this order
    published_at: datetime | None
    # 1, 2, 3 ... per tenant in the order the relay published (set with published_at): the change
    # feed's order. Positions are handed out at insert but can commit out of order (PostgreSQL),
    # so a reader paging by position could pass one that commits later; feed_seq cannot.
    feed_seq: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    tenant: str
    seq: int  # 1, 2, 3 ... per tenant, no gaps
    at: datetime
    actor: str  # system or principal that caused it
    action: str  # e.g. "change.applied", "write.refused", "connection.paused", "key.created"
    entity: str | None
    entity_id: str | None
    detail: Mapping[str, Any]
    prev_hash: str  # hash of entry seq-1; 64 zeros for seq 1
    hash: str  # sha256 over prev_hash and the canonical JSON of the fields above


@dataclass(frozen=True)
class AuditReport:
    tenant: str
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


class PayloadClass(StrEnum):
    """Which RESO payload an API key may read. An MLS withholds fields from IDX (public display)
    and VOW (registered consumers) feeds; its mapping file's ``payloads`` say which."""

    FULL = "full"  # the tenant's own back office: every field stored
    VOW = "vow"
    IDX = "idx"


class ApiKeyScope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    key_id: str  # public part, shown in lists ("cad_k1a2b3...")
    tenant: str
    scope: ApiKeyScope
    secret_hash: str  # sha256 hex of the secret part; the secret itself is never stored
    created_at: datetime
    revoked_at: datetime | None = None
    label: str = ""
    payload_class: PayloadClass = PayloadClass.FULL


@dataclass(frozen=True)
class Operator:
    """A person who signs in to the operations console (issue 9). Cross-tenant, like tenants:
    ``tenant`` None means every tenant."""

    username: str
    tenant: str | None
    password_hash: str = field(repr=False)  # "scrypt$n$r$p$<salt>$<hash>", never the password
    created_at: datetime
    updated_at: datetime
    disabled: bool = False


@dataclass(frozen=True)
class OperatorSession:
    """A signed-in console browser, found by the sha256 of its cookie's token (never stored)."""

    token_hash: str
    operator: str
    csrf: str = field(repr=False)  # the token every form of the session carries
    created_at: datetime
    expires_at: datetime


class ConfigKind(StrEnum):
    """The global configuration files kept as numbered versions (issue 9; connections have
    their own ``connection_versions``)."""

    MAPPING = "mapping"  # a mapping registry file, by its registry name
    OWNERSHIP = "ownership"  # the system-of-record registry, always named "ownership"


@dataclass(frozen=True)
class ConfigVersion:
    """One version of a global configuration file: its text exactly as it was on disk."""

    kind: str  # a ConfigKind value
    name: str
    version: int  # 1, 2, ... per (kind, name)
    content: str = field(repr=False)
    sha256: str  # hex digest of the content's UTF-8 bytes
    changed_by: str
    changed_at: datetime
    note: str = ""


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


@dataclass(frozen=True)
class Connection:
    tenant: str
    name: str  # unique per tenant, e.g. "austin-mls"
    system: str  # the owning-system name used by the ownership registry, e.g. "mls"
    connector: str  # the connector family/vendor, e.g. "mls/reso"
    config: Mapping[str, Any]  # non-secret settings: base URL, page size, rate budget ...
    credential: str | None  # the name of a vault credential, never a secret
    status: ConnectionStatus
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class ConnectionVersion:
    connection: Connection
    changed_by: str
    change: str  # "added", "edited", "paused", "resumed", "imported"


# ------------------------------------------------------------------------------ repositories


class RecordRepository(Protocol):
    async def get(self, entity: str, id: str, *, for_update: bool = False) -> StoredRecord | None:
        """``for_update`` locks the row until the unit of work ends, so concurrent writers of one
        record queue instead of failing their version check (PostgreSQL; SQLite and the fake
        already run one writing unit of work at a time)."""
        ...

    async def put(
        self,
        entity: str,
        id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        deleted: bool = False,
        confidence: float | None = None,
    ) -> StoredRecord:
        """Write a new version. ``expected_version`` 0 means "must not exist yet"; a mismatch
        raises ``ConcurrentUpdate``."""
        ...

    async def get_many(
        self, entity: str, ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, StoredRecord]:
        """The records among ``ids`` that exist (tombstones included), by id."""
        ...

    async def put_many(self, writes: Sequence[RecordWrite]) -> list[StoredRecord]:
        """``put`` for each write, in bulk; at most one write per record. One failed version
        check raises ``ConcurrentUpdate`` (the caller rolls the unit of work back)."""
        ...

    def scan(
        self,
        entity: str,
        *,
        after_id: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> AsyncIterator[StoredRecord]: ...

    async def query(
        self,
        entity: str,
        filters: Sequence[FieldFilter] = (),
        *,
        after_id: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
        min_confidence: float | None = None,
    ) -> list[StoredRecord]:
        """At most ``limit`` records matching every filter, by id ascending, after ``after_id``
        (keyset paging: pass the last id of one page to get the next). ``min_confidence`` keeps
        records scored at least that (unscored records, confidence None, are kept)."""
        ...

    async def count(self, entity: str | None = None) -> int: ...


class ProvenanceRepository(Protocol):
    async def for_record(self, entity: str, id: str) -> dict[str, FieldProvenance]: ...

    async def for_records(
        self, entity: str, ids: Sequence[str]
    ) -> dict[str, dict[str, FieldProvenance]]:
        """Record id -> field -> provenance, for the ids that have any."""
        ...

    async def record(self, items: Sequence[FieldProvenance]) -> None:
        """Upsert by (entity, id, field)."""
        ...

    async def record_many(self, writes: Sequence[ProvenanceWrite]) -> None:
        """``record`` for each write's fields, in order (a later write of a record wins)."""
        ...


class XrefRepository(Protocol):
    async def resolve(
        self, system: str, connection: str, entity: str, external_id: str
    ) -> str | None: ...

    async def resolve_many(
        self, system: str, connection: str, entity: str, external_ids: Sequence[str]
    ) -> dict[str, str]:
        """External id -> canonical id, for the external ids that are linked."""
        ...

    async def link(self, ref: ExternalRef) -> None:
        """Idempotent; linking one external id to two canonical ids raises ``AlreadyExists``."""
        ...

    async def link_many(self, refs: Sequence[ExternalRef]) -> None:
        """``link`` for each ref, in bulk; any conflict raises ``AlreadyExists``."""
        ...

    async def for_record(self, entity: str, canonical_id: str) -> list[ExternalRef]: ...

    async def for_connection(
        self, connection: str, entity: str, *, after: str | None = None, limit: int = 1000
    ) -> list[ExternalRef]:
        """The refs of one connection's records of ``entity``, by external id ascending, after
        ``after`` (keyset paging), for key reconciliation."""
        ...


class CursorRepository(Protocol):
    async def get(self, connection: str, stream: str) -> SyncCursor | None: ...

    async def put(self, connection: str, stream: str, value: Mapping[str, Any]) -> SyncCursor: ...


class QuarantineRepository(Protocol):
    async def add(
        self,
        *,
        connection: str,
        entity: str,
        external_id: str | None,
        reason: str,
        payload: Mapping[str, Any],
        stream: str = "",
        code: str = "",
    ) -> QuarantinedRecord:
        """Set a record aside. While an open entry holds the same version of it - the same
        connection, stream, entity and external id (both absent counts as the same) and a
        payload of the same canonical JSON - that entry is returned with one more sighting
        (its reason and code stay as they were), and no second entry is opened. Another
        payload of the same record is an entry of its own."""
        ...

    async def open_items(
        self,
        connection: str | None = None,
        *,
        code: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[QuarantinedRecord]:
        """Unresolved entries, oldest first; ``after`` an entry id pages on from it."""
        ...

    async def get(self, id: str) -> QuarantinedRecord | None: ...

    async def open_counts(self, *, code: str | None = None) -> dict[str, int]:
        """Unresolved entries (of ``code``) by connection, counted without reading them."""
        ...

    async def note_failed_replay(self, id: str, *, reason: str, code: str) -> None:
        """A replay failed again: the entry keeps its payload, takes the new reason and code,
        and counts the attempt."""
        ...

    async def resolve(self, id: str) -> None: ...


@dataclass(frozen=True)
class SchemaSnapshot:
    """What one connection's stream looked like at its last sync: the fields its metadata
    declares (name -> type), and the fields and enumeration values seen in the data. Schema
    drift is the difference between two snapshots."""

    connection: str
    stream: str
    declared: Mapping[str, str]  # field -> vendor type ("Edm.String", RETS "Character")
    seen_fields: Sequence[str]
    seen_values: Mapping[str, Sequence[str]]  # enumerated field -> values seen
    taken_at: datetime


class SchemaRepository(Protocol):
    async def get(self, connection: str, stream: str) -> SchemaSnapshot | None: ...

    async def put(self, snapshot: SchemaSnapshot) -> None:
        """Replace the connection's snapshot of the stream."""
        ...


class OutboxRepository(Protocol):
    async def add(self, event: EventEnvelope) -> OutboxMessage: ...

    async def add_many(self, events: Sequence[EventEnvelope]) -> list[OutboxMessage]:
        """``add`` for each event, in order (positions increase in list order)."""
        ...

    async def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """Unpublished events of the tenant, by position."""
        ...

    async def count_pending(self) -> int:
        """How many events of the tenant are unpublished (the outbox backlog), without reading
        them."""
        ...

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        """Mark the events published and give each a ``feed_seq``, in the order of
        ``event_ids`` (the order the bus took them). Already published ones are left alone.
        Concurrent calls for one tenant queue, so feed_seq commits in increasing order."""
        ...

    async def feed(self, *, after: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Published events of the tenant with ``feed_seq > after``, by feed_seq: the change
        feed (``GET /v1/changes``)."""
        ...

    async def recent(
        self, types: Collection[str], *, since: datetime, limit: int = 100
    ) -> list[EventEnvelope]:
        """The tenant's events of ``types`` (exact type names) written to the outbox at or after
        ``since`` (the store's clock), published or not, newest first, at most ``limit``: what
        the alert evaluator reads schema drift from, and the console's drift history."""
        ...


class ConsumedEvents(Protocol):
    """What each bus consumer has already acted on, by event id: the consumer's de-duplication.
    Written in the unit of work of the consumer's effect, so effect and mark commit together."""

    async def first_seen(self, consumer: str, event_ids: Sequence[str]) -> list[str]:
        """Mark ``event_ids`` seen by ``consumer`` and return those not seen before, in the
        order given (an id repeated in the list counts once)."""
        ...

    async def prune(self, *, before: datetime) -> int:
        """Forget marks made before ``before`` (every consumer of the tenant); how many."""
        ...


class AuditLog(Protocol):
    async def append(
        self,
        *,
        actor: str,
        action: str,
        entity: str | None = None,
        entity_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry: ...

    async def append_many(self, drafts: Sequence[AuditDraft]) -> list[AuditEntry]:
        """``append`` for each draft, in order, with one lock of the chain head."""
        ...

    def entries(self, after_seq: int = 0) -> AsyncIterator[AuditEntry]: ...

    def entries_for(
        self, entity: str, entity_id: str, after_seq: int = 0
    ) -> AsyncIterator[AuditEntry]:
        """One record's entries in chain order (an index lookup, not a walk of the chain)."""
        ...

    async def verify(self) -> AuditReport: ...


class AppliedChanges(Protocol):
    """The idempotency ledger of ``apply``: idempotency key -> the result it produced."""

    async def get(self, idempotency_key: str) -> ApplyResult | None: ...

    async def put(self, result: ApplyResult) -> None: ...

    async def get_many(self, idempotency_keys: Sequence[str]) -> dict[str, ApplyResult]: ...

    async def put_many(self, results: Sequence[ApplyResult]) -> None:
        """``put`` for each result; a key already present raises ``ConcurrentUpdate``."""
        ...


class KeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def revoke(self, key_id: str) -> ApiKey: ...

    async def all(self) -> list[ApiKey]: ...


class ConnectionRepository(Protocol):
    async def get(self, name: str) -> Connection | None: ...

    async def all(self) -> list[Connection]: ...

    async def save(self, connection: Connection, *, changed_by: str, change: str) -> Connection:
        """Insert (version 1) or update (version must be current + 1); every save is kept as a
        ``ConnectionVersion``."""
        ...

    async def history(self, name: str) -> list[ConnectionVersion]: ...


# ------------------------------------------------------------------------------ unit of work


CREDENTIAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # how connections name a vault credential


class CredentialStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"  # waiting for a person's consent (OAuth2 authorization code)
    NEEDS_REAUTH = "needs_reauth"  # the vendor refused a refresh; no call uses it until reconnected
    DISABLED = "disabled"


@dataclass(frozen=True, repr=False)
class SealedSecret:
    """One secret field as the store keeps it (envelope encryption, ``cadastre.vault.crypto``):
    a data key wrapped under master key ``key_id``, and the value sealed under the data key. Both
    are bound to (tenant, credential, field) as associated data, so a copy in another row does
    not open."""

    field: str
    key_id: str
    wrapped_key: bytes  # nonce || AES-GCM(master key, data key)
    ciphertext: bytes  # nonce || AES-GCM(data key, value)

    def __repr__(self) -> str:
        return f"SealedSecret(field={self.field!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class StoredCredential:
    """A credential as stored: its scheme and non-secret facts in the clear, its secrets sealed."""

    tenant: str
    name: str
    scheme: str  # "oauth2_client_credentials", "oauth2_authorization_code", "api_key", ...
    status: CredentialStatus
    meta: Mapping[str, Any]  # non-secret facts: token URL, scopes, header name, egress addresses
    version: int  # starts at 1, +1 on every change: the compare-and-set token of a refresh
    updated_at: datetime
    expires_at: datetime | None = None  # the access token's, or the API key's
    # Set, durably, before a refresh token is sent, and cleared with the answer stored: found set
    # by the next refresher, it means the vendor may have rotated the token already.
    refresh_started_at: datetime | None = None
    status_reason: str = ""
    secrets: Mapping[str, SealedSecret] = field(default_factory=dict)  # field -> sealed


@dataclass(frozen=True)
class CredentialRead:
    """One decryption of a credential: who, what for, which fields, when (never the values)."""

    tenant: str
    credential: str
    fields: tuple[str, ...]
    actor: str  # "connection:austin-mls", "cli", "api"
    purpose: str  # "refresh", "call", "test", "rotate"
    at: datetime


class CredentialRepository(Protocol):
    async def get(self, name: str) -> StoredCredential | None: ...

    async def all(self) -> list[StoredCredential]:
        """Every credential of the tenant, by name."""
        ...

    async def add(self, credential: StoredCredential) -> None:
        """Raise ``AlreadyExists`` when the name is taken."""
        ...

    async def replace(
        self,
        credential: StoredCredential,
        *,
        expected_version: int,
        written: Collection[str] | None = None,
    ) -> None:
        """Store ``credential`` (whose version is ``expected_version + 1``) if the stored row is
        still at ``expected_version``: its fields, and the secret fields named in ``written``
        (None: all). A stored secret field absent from ``credential.secrets`` is deleted; the
        others keep what the row holds, which a master-key rotation may have re-wrapped since the
        caller read it (a rotation does not move the version). ``ConcurrentUpdate`` when another
        writer got there first, ``NotFound`` when there is no such credential."""
        ...

    async def delete(self, name: str) -> bool: ...

    async def rewrap(self, name: str, sealed: SealedSecret, *, was: SealedSecret) -> bool:
        """Put ``sealed`` (the same value under another master key) in place of ``was`` if the row
        still holds ``was``; False when it changed meanwhile. The version does not move: the
        secret did not change."""
        ...

    async def sealed_not_under(self, key_id: str, *, limit: int) -> list[tuple[str, SealedSecret]]:
        """Up to ``limit`` (credential, sealed field) pairs wrapped under another key than
        ``key_id``: what a master-key rotation has left to do."""
        ...

    async def record_read(self, read: CredentialRead) -> None: ...

    async def reads(self, name: str, *, limit: int = 100) -> list[CredentialRead]:
        """The latest decryptions of ``name``, newest first."""
        ...


class UnitOfWork(Protocol):
    """One database transaction scoped to one tenant: every repository sees only that tenant.

    ``async with store.unit_of_work(tenant) as uow: ...; await uow.commit()``; leaving the block
    without ``commit()`` rolls back.
    """

    tenant: str
    records: RecordRepository
    provenance: ProvenanceRepository
    xref: XrefRepository
    cursors: CursorRepository
    quarantine: QuarantineRepository
    outbox: OutboxRepository
    audit: AuditLog
    applied: AppliedChanges
    keys: KeyRepository
    connections: ConnectionRepository
    credentials: CredentialRepository
    schemas: SchemaRepository
    consumed: ConsumedEvents  # bus consumers' de-duplication
    subscriptions: SubscriptionRepository  # webhooks out
    deliveries: DeliveryRepository  # webhooks out
    webhooks_in: WebhookInbox  # verified vendor webhooks, before normalisation
    writes: WriteRepository  # write-back: platform writes, targets, switches, echoes
    idempotency: IdempotencyRepository  # Idempotency-Key of the API's own writes (issue 8)
    identities: IdentityRepository  # identity links (issue 8)
    conflicts: ConflictRepository  # field version vectors and the review queue (issue 8)
    observations: ObservationRepository  # vendor calls and gauges by minute (issue 9)
    alerts: AlertRepository  # detector and subsystem alerts (issue 9)

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Store(Protocol):
    """The persistence port. Tenant-wide data goes through ``unit_of_work``; the directory calls
    (tenants, key lookup for authentication) are the only cross-tenant ones."""

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> UnitOfWork:
        """``read_only`` promises no writes, so SQLite need not take its write lock up front
        (readers then never queue behind a sync); writing in such a unit of work is a bug."""
        ...

    async def create_tenant(self, tenant_id: str, name: str) -> Tenant: ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def list_tenants(self) -> list[Tenant]: ...

    async def find_api_key(self, key_id: str) -> ApiKey | None: ...

    # Console operators and their sessions (issue 9): cross-tenant, like the tenant calls.
    async def create_operator(self, operator: Operator) -> None:
        """``AlreadyExists`` when the username is taken."""
        ...

    async def find_operator(self, username: str) -> Operator | None: ...

    async def list_operators(self) -> list[Operator]:
        """By username."""
        ...

    async def update_operator(
        self, username: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> Operator:
        """Change what is given; ``NotFound`` for an unknown username."""
        ...

    async def delete_operator(self, username: str) -> bool:
        """Remove the operator and every session of theirs; False when there was none."""
        ...

    async def create_operator_session(self, session: OperatorSession) -> None: ...

    async def find_operator_session(self, token_hash: str) -> OperatorSession | None:
        """The session, expired or not (the caller compares with its clock)."""
        ...

    async def delete_operator_session(self, token_hash: str) -> None: ...

    async def delete_operator_sessions(self, username: str) -> int:
        """Sign the operator out everywhere (a new password, disabled); how many sessions."""
        ...

    async def prune_operator_sessions(self, *, before: datetime) -> int:
        """Forget sessions that expired before ``before``; how many."""
        ...

    # Versions of the global configuration files (issue 9): cross-tenant, like the tenant calls.
    async def record_config_version(
        self, kind: str, name: str, content: str, *, actor: str, note: str = ""
    ) -> ConfigVersion:
        """Keep ``content`` as the next version of (kind, name), or return the latest version
        unchanged when its sha256 is the same. Two workers recording one change at once get one
        version between them."""
        ...

    async def config_versions(self, kind: str, name: str) -> list[ConfigVersion]:
        """Every version, oldest first."""
        ...

    async def config_version(self, kind: str, name: str, version: int) -> ConfigVersion | None: ...

    async def pending_outbox_tenants(self) -> list[str]:
        """Tenants with unpublished outbox events (the relay's round; cross-tenant, like the
        directory calls)."""
        ...

    def watch_outbox(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(tenant)`` after each commit in this process that wrote outbox events
        (so the relay need not wait for its next poll); returns the call that stops it."""
        ...

    def watch_audit(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        """Call ``listener(tenant, n)`` after each commit in this process that appended ``n``
        audit entries (``cadastre_audit_entries_total``: the store knows no metrics library);
        returns the call that stops it."""
        ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------------ connectors


@dataclass(frozen=True)
class RawRecord:
    """One vendor record as the vendor sent it; mapping turns it into a canonical change."""

    stream: str  # e.g. "Property"
    external_id: str | None  # None when the vendor left its key out (quarantined by mapping)
    data: Mapping[str, Any]  # vendor field name -> value, as parsed from the wire
    source_time: datetime | None  # e.g. ModificationTimestamp; None when missing or unreadable
    source_version: str | None = None
    problem: str | None = None  # the connector could not read it as a record (quarantined)
    # The vendor said the record is gone (a webhook's delete event): mapping makes it a DELETE
    # stamped with ``source_time``, as key reconciliation does; ``data`` holds only its key.
    deleted: bool = False
    # The vendor merged this record (``external_id``) into the one it now calls ``merged_into``
    # (a CRM contact merge): the runner hands it to identity resolution, not to mapping.
    merged_into: str | None = None


@dataclass(frozen=True)
class RawPage:
    """A page of one stream and the position the stream reaches once the page is committed."""

    stream: str
    records: Sequence[RawRecord]
    cursor: Mapping[str, Any]  # JSON-compatible; committed in the transaction of the page
    expected: int | None = None  # records the vendor says the whole read holds, if it says
    # A page that could not be read as a page at all (malformed JSON, an HTML error page), after
    # the connector's retries: ``records`` is empty, ``raw`` holds the body (capped) for the
    # quarantine, and ``cursor`` stays where it was.
    problem: str | None = None
    raw: str | None = None


class SourceConnector(Protocol):
    """What a vendor connector offers the sync engine: raw pages, never canonical writes."""

    system: str  # the owning-system name of its records, e.g. "mls"

    def streams(self) -> Sequence[str]: ...

    def read(self, stream: str, cursor: Mapping[str, Any] | None) -> AsyncIterator[RawPage]:
        """Pages from ``cursor`` (None: a full sync) to the newest record; each page's
        ``cursor`` resumes right after it."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class StreamSchema:
    """A stream's schema as the vendor declares it (OData ``$metadata``, RETS metadata)."""

    fields: Mapping[str, str]  # field -> vendor type
    lookups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # declared values


class DescribesSchema(Protocol):
    """A connector that can say what a stream's schema is (for schema drift)."""

    async def describe(self, stream: str) -> StreamSchema | None: ...


class ListsKeys(Protocol):
    """A connector that can list every live key of a stream cheaply (keys only), for the
    reconciliation that finds records deleted upstream."""

    def keys(self, stream: str) -> AsyncIterator[Sequence[str]]: ...


class ReceivesWebhooks(Protocol):
    """A connector whose vendor pushes changes: it reads a webhook that the hub has verified and
    stored into raw records (fetching them through its gateway when the vendor sends only keys).
    The sync engine does the rest, as for a polled page.

    A body it cannot read is handed back as records with a ``problem``, or raises ``ValueError``
    (``json.JSONDecodeError`` is one): either way it is quarantined as ``malformed_webhook``.
    Anything else it raises (a vendor outage while fetching) has the webhook read again later."""

    async def webhook_records(
        self, body: bytes, headers: Mapping[str, str]
    ) -> Sequence[RawRecord]: ...


# ------------------------------------------------------------------------------ rate limits


@dataclass(frozen=True)
class Reservation:
    """What a rate-limit backend answers: wait ``wait`` seconds, then send (``granted``), or the
    slot lies beyond the caller's horizon and nothing was reserved (wait, then ask again)."""

    granted: bool
    wait: float


class RateLimitBackend(Protocol):
    """Where GCRA buckets live: in memory (one process) or in Redis (every worker shares them).

    A bucket is its theoretical arrival time (TAT). ``interval`` is the emission interval (seconds
    per request) and ``tolerance`` the burst allowance (``(burst - 1) * interval``). Times are the
    backend's own: a shared backend reads one server clock, so workers' skew cannot matter.
    """

    async def reserve(
        self, key: str, interval: float, tolerance: float, horizon: float
    ) -> Reservation:
        """Take the next slot of ``key`` if it starts within ``horizon`` seconds; a bucket seen for
        the first time counts its burst as spent (a restarted process cannot know what was sent
        before it)."""
        ...

    async def defer(self, key: str, seconds: float, tolerance: float) -> None:
        """No slot of ``key`` starts sooner than ``seconds`` from now (a vendor said so)."""
        ...

    async def aclose(self) -> None: ...


# ------------------------------------------------------------------------------ credentials


class Secret:
    """A secret value that does not print. ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, repr=False)
class EndpointReply:
    """What a token, login or key-rotation endpoint answered. The body may hold tokens: the repr
    leaves it out."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    cookies: Mapping[str, str] = field(default_factory=dict)  # Set-Cookie, name -> value
    retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After

    def __repr__(self) -> str:
        return f"EndpointReply(status={self.status}, {len(self.body)} bytes)"


class TokenEndpoint(Protocol):
    """How the vault reaches a vendor's token, login and key-rotation endpoints: through the
    connection's gateway (rate limits, address rules, metrics), never directly."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> EndpointReply:
        """One request, never retried here (a refresh token must not be sent twice). Raises
        ``VendorUnavailable`` when no answer arrived: the vendor may have acted on it."""
        ...


class LockBackend(Protocol):
    """Named locks shared by every process that uses one credential: a file lock on one machine
    (the embedded default), Redis across machines."""

    def hold(self, key: str, *, wait: float, lease: float) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` for the block; wait up to ``wait`` seconds for it (``LockTimeout`` then).
        ``lease`` bounds how long a holder that dies without releasing keeps it."""
        ...

    async def aclose(self) -> None: ...


# ------------------------------------------------------------------------------ event bus


@dataclass(frozen=True)
class BusMessage:
    """One event as a durable consumer receives it."""

    event: EventEnvelope
    subject: str  # "cadastre.<tenant>.<entity>.<verb>" (contract.events.bus_subject)
    delivery: int  # 1 the first time; 2, 3, ... when the bus delivers it again


class BusSubscription(Protocol):
    async def stop(self) -> None:
        """Stop receiving; what was not acknowledged is delivered again later (to this durable
        consumer, in whatever process subscribes to it next)."""
        ...


class EventBus(Protocol):
    """Where the outbox relay hands committed events, and where subscribers (webhooks out,
    write-back, detectors) take them. At-least-once: consumers de-duplicate by event id.

    Per-entity order: a consumer sees the events of one record in the order they were published,
    a redelivery included (a batch that fails is delivered again before anything after it).
    """

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        """Hand ``events`` over in order; returns once the bus holds every one durably (a
        JetStream acknowledgement; in process, once every durable consumer has taken it).
        Publishing an event id again is harmless."""
        ...

    async def subscribe(
        self,
        consumer: str,
        handler: Callable[[Sequence[BusMessage]], Awaitable[None]],
        *,
        subjects: Sequence[str] = ("cadastre.>",),
        batch: int = 100,
    ) -> BusSubscription:
        """A durable consumer named ``consumer`` (it resumes where it stopped): ``handler`` gets
        up to ``batch`` messages at a time, one batch at a time, in publish order. Returning
        acknowledges the batch; raising has it delivered again, after a backoff, first."""
        ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------------ webhooks in


class InboxStatus(StrEnum):
    PENDING = "pending"  # stored, not yet normalised (or waiting for a retry: next_attempt_at)
    PROCESSED = "processed"  # its records went through the sync engine
    QUARANTINED = "quarantined"  # it could not be read: set aside whole (malformed_webhook)
    FAILED = "failed"  # the connector failed on it every time it was tried; ``error`` says why


@dataclass(frozen=True, repr=False)
class ReceivedWebhook:
    """A verified vendor webhook as the inbox stores it before the vendor gets its 2xx.
    ``message_id`` is the vendor's signed id or a hash of the signed content: a second delivery
    of one message finds it held. ``headers`` leave signatures out."""

    connection: str
    message_id: str
    received_at: datetime
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def __repr__(self) -> str:
        return f"ReceivedWebhook({self.connection!r}, {self.message_id!r}, {len(self.body)} bytes)"


@dataclass(frozen=True, repr=False)
class InboxEntry:
    """One stored webhook and where its normalisation stands."""

    position: int  # increasing per store in insert order: a connection's received order
    connection: str
    message_id: str
    received_at: datetime
    headers: Mapping[str, str]
    body: bytes
    status: InboxStatus
    attempts: int = 0  # normalisations tried that failed
    next_attempt_at: datetime | None = None  # a pending entry waits until then (None: now)
    processed_at: datetime | None = None  # when it left pending
    error: str = ""

    def __repr__(self) -> str:
        return (f"InboxEntry({self.position}, {self.connection!r}, {self.message_id!r}, "
                f"{self.status.value})")  # fmt: skip


@dataclass(frozen=True)
class InboxSettlement:
    """What the normaliser decided for one entry: PROCESSED, QUARANTINED or FAILED (settled at
    the unit of work's time), or PENDING again with ``next_attempt_at`` (a retry)."""

    position: int
    status: InboxStatus
    attempts: int
    error: str = ""
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class RefusalTally:
    """Refused webhook requests of one connection, by reason, per minute; ``example`` holds the
    headers of the last one (signatures left out, no body)."""

    connection: str
    reason: str  # "bad_signature", "stale_timestamp", "missing_signature", "too_large" ...
    minute: datetime  # the start of the minute
    count: int
    last_at: datetime
    example: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class StoresWebhooksAtOnce(Protocol):
    """A store that writes the webhook inbox's batches faster than through a unit of work
    (SQLite: in one hop to a worker thread). The same effect as ``add_many`` then
    ``count_refusals`` in one committed unit of work of ``tenant``."""

    async def store_webhooks(
        self, tenant: str, items: Sequence[ReceivedWebhook], tallies: Sequence[RefusalTally]
    ) -> list[bool]: ...


class WebhookInbox(Protocol):
    """The durable inbox of verified vendor webhooks (``uow.webhooks_in``) and the tally of the
    refused ones."""

    async def add_many(self, items: Sequence[ReceivedWebhook]) -> list[bool]:
        """Store each item unless (connection, message id) is held already; per item, in order,
        whether it was stored now (False: a replay, or its twin earlier in ``items``)."""
        ...

    async def get(self, connection: str, message_id: str) -> InboxEntry | None: ...

    async def due(self, connection: str, *, now: datetime, limit: int = 100) -> list[InboxEntry]:
        """Pending entries of the connection whose ``next_attempt_at`` is unset or not after
        ``now``, by position (received order)."""
        ...

    async def due_connections(self, *, now: datetime) -> list[str]:
        """Connections with ``due`` entries, by name."""
        ...

    async def settle(self, settlements: Sequence[InboxSettlement]) -> None:
        """Record each settlement on its entry (``processed_at`` set unless it stays pending)."""
        ...

    async def entries(
        self,
        connection: str | None = None,
        *,
        status: InboxStatus | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[InboxEntry]:
        """Newest first (by position), below position ``before`` when given."""
        ...

    async def counts(self) -> dict[tuple[str, InboxStatus], int]:
        """Entries by (connection, status), counted without reading them."""
        ...

    async def prune(self, *, settled_before: datetime, failed_before: datetime) -> int:
        """Delete processed and quarantined entries received before ``settled_before`` and failed
        ones received before ``failed_before``; pending ones stay. How many went."""
        ...

    async def count_refusals(self, tallies: Sequence[RefusalTally]) -> None:
        """Add each tally to the one held for its (connection, reason, minute): counts add up,
        the later ``last_at`` and its example win."""
        ...

    async def refusals(
        self, connection: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> list[RefusalTally]:
        """Tallies newest minute first (then by connection and reason), from ``since`` on."""
        ...

    async def prune_refusals(self, *, before: datetime) -> int:
        """Forget the tallies of minutes before ``before``; how many rows went."""
        ...


# ------------------------------------------------------------------------------ webhooks out


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by a person, a 410 Gone or days of failures; status_reason says which


class SubscriptionFormat(StrEnum):
    STANDARD = "standard"  # the event as CloudEvents JSON, Standard Webhooks signed
    SLACK = "slack"  # a Slack incoming-webhook payload (text + blocks) of an alert event


@dataclass(frozen=True)
class Subscription:
    """A platform service's webhook endpoint: which event types it takes, and the vault
    credential (scheme ``webhook_secret``) whose secret signs what it is sent."""

    id: str
    url: str
    event_types: tuple[str, ...]  # "cadastre.listing.updated.v1", or a family "cadastre.listing.*"
    description: str
    status: SubscriptionStatus
    status_reason: str
    failing_since: datetime | None  # the first failed attempt since the last success
    credential: str  # a vault credential name, never a secret
    created_at: datetime
    updated_at: datetime
    # What its bodies are: the signed CloudEvents JSON, or a Slack incoming-webhook payload
    # (alert types only; cadastre.webhooks.slack)
    format: SubscriptionFormat = SubscriptionFormat.STANDARD


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (held while its subscription is disabled)
    DELIVERED = "delivered"
    DEAD = "dead"  # every attempt of the schedule failed: the dead-letter queue
    CANCELLED = "cancelled"  # its subscription was removed


@dataclass(frozen=True)
class Delivery:
    """One event for one subscription. ``body`` is the exact JSON text sent (and signed) on every
    attempt; the event id is the ``webhook-id`` header, stable across retries and redeliveries."""

    id: str
    subscription: str
    event_id: str
    event_type: str
    body: str
    status: DeliveryStatus
    attempts: int  # made since it was created or last redelivered by hand
    redeliveries: int  # times a person sent it again (``cadastre deliveries redeliver``)
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_status: int | None = None  # HTTP status of the last attempt (None: no answer)
    last_error: str = ""
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery: str
    redelivery: int  # which round of attempts (0 before any redelivery by hand)
    number: int  # 1, 2, ... within its round
    at: datetime
    status: int | None  # None: no answer (timeout, refused address, connection error)
    error: str
    seconds: float


class SubscriptionRepository(Protocol):
    async def add(self, subscription: Subscription) -> None:
        """``AlreadyExists`` when the id is taken."""
        ...

    async def get(self, id: str) -> Subscription | None: ...

    async def all(self) -> list[Subscription]:
        """Every subscription of the tenant, oldest first."""
        ...

    async def delete(self, id: str) -> bool: ...

    async def set_status(
        self, id: str, status: SubscriptionStatus, reason: str = ""
    ) -> Subscription | None:
        """Move to ``status`` if it is not there yet: the subscription as changed, or None when
        it was there already or does not exist (so a concurrent change is made, and alerted,
        once). Enabling also clears ``failing_since``."""
        ...

    async def note_failure(self, id: str, at: datetime) -> datetime | None:
        """Start the failure clock at ``at`` unless it runs already; when it started (None:
        no such subscription)."""
        ...

    async def note_success(self, id: str) -> None:
        """Stop the failure clock (``failing_since`` back to None)."""
        ...


class DeliveryRepository(Protocol):
    async def add_many(self, deliveries: Sequence[Delivery]) -> int:
        """Insert the deliveries whose (subscription, event id) is new; the others are left
        alone, so an event the bus delivers again adds nothing. How many were inserted."""
        ...

    async def any_due(self) -> bool:
        """Whether ``claim`` would take something now: a read, so an idle sender's poll never
        takes the store's write lock (SQLite has one, shared with webhooks coming in)."""
        ...

    async def count_pending(self) -> int:
        """How many deliveries of the tenant are pending (the delivery backlog), due or not."""
        ...

    async def claim(self, *, holder: str, until: datetime, limit: int = 50) -> list[Delivery]:
        """Take up to ``limit`` pending deliveries due now (``next_attempt_at`` passed), not
        claimed by another sender (or whose claim ran out), of active subscriptions: they are
        marked as ``holder``'s until ``until``, oldest due first. Atomic, so two senders never
        take one delivery."""
        ...

    async def finish(
        self,
        id: str,
        *,
        holder: str,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record ``attempt`` and the delivery's new state and release the claim, if ``holder``
        still holds it; False (nothing written) when the claim was lost."""
        ...

    async def get(self, id: str) -> Delivery | None: ...

    async def attempts(self, id: str) -> list[DeliveryAttempt]:
        """Every attempt at the delivery, every round, oldest first."""
        ...

    async def find(
        self,
        *,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries in the order they were created, after the delivery ``after`` (paging)."""
        ...

    async def redeliver(self, id: str) -> Delivery | None:
        """Send a dead or delivered delivery again: pending, due now, attempts from zero,
        ``redeliveries`` + 1. None when it is pending already (a redelivery under way is not
        doubled), cancelled or unknown."""
        ...

    async def resume(self, subscription: str) -> int:
        """Make the subscription's pending deliveries due now (it was enabled again)."""
        ...

    async def cancel(self, subscription: str) -> int:
        """Cancel the subscription's pending deliveries (it is being removed)."""
        ...

    async def prune(self, *, before: datetime, limit: int = 1000) -> int:
        """Delete, with their attempts, up to ``limit`` deliveries last changed before
        ``before`` that nothing will send again: delivered and cancelled ones, and every one
        whose subscription is gone (a live subscription's dead ones are its dead-letter queue,
        kept until redelivered). How many."""
        ...


# ------------------------------------------------------------------------------ write-back


class WriteOperation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Idempotency(StrEnum):
    """What a vendor does with a write sent twice: it decides what crash recovery may do."""

    KEY = "key"  # the vendor replays a repeated key (QBO requestid): resend is safe
    NATURAL = "natural"  # create-or-update by a natural key (HubSpot upsert by email): resend safe
    NONE = "none"  # neither (Buildium): after a crash, read back; never resend blindly


@dataclass(frozen=True)
class OutboundWrite:
    """One write to one target connection, as the write-back worker hands it to a connector."""

    write_id: str  # the platform write (or propagation) it belongs to
    key: str  # deterministic idempotency key, <= 36 chars (QBO batch limit), [a-z0-9-]
    entity: str  # canonical entity ("Contact")
    canonical_id: str
    external_id: str | None  # vendor id from xref; None for a create
    operation: WriteOperation
    fields: Mapping[str, Any]  # canonical wire names -> JSON values, only this target's fields
    base_version: str | None = None  # last vendor version we know (SyncToken), if any


@dataclass(frozen=True)
class WriteReceipt:
    """What the vendor holds after a write (or a read-back)."""

    external_id: str
    source_version: str | None  # vendor version after the write (SyncToken, updatedAt-derived)
    source_time: datetime | None  # vendor's modification time after the write
    values: Mapping[str, Any]  # canonical wire names -> the vendor's values after the write
    replayed: bool = False  # the vendor answered with a stored earlier response


@runtime_checkable
class TargetConnector(Protocol):
    """A connector whose vendor takes writes (the object ``ConnectorSpec.create`` returns).

    Connectors translate canonical wire names to vendor fields and handle their vendor's
    concurrency themselves. Gateway ``Vendor*`` errors pass through; ``VendorRejected`` (4xx) is
    terminal for the write target."""

    system: str

    def writable(self) -> Mapping[str, frozenset[str]]:
        """Entity -> the wire fields it can write."""
        ...

    def idempotency(self, entity: str, operation: WriteOperation) -> Idempotency: ...

    async def write(self, write: OutboundWrite) -> WriteReceipt: ...

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        """After a crash: find what the vendor holds (by external id, else by natural fields);
        None when nothing matches (a create that never happened); raise ``WriteIndeterminate``
        when it cannot tell (several candidates)."""
        ...


# ------------------------------------------------------------------------------ identity


class LinkState(StrEnum):
    SUGGESTED = "suggested"  # the matcher thinks so, a person confirms (or rejects)
    LINKED = "linked"  # the same person: linked fields kept in step
    REJECTED = "rejected"  # a person said no (or unlinked): never suggested again


class LinkHow(StrEnum):
    AUTO = "auto"  # by the matcher
    MANUAL = "manual"  # by a person (CLI, API)


@dataclass(frozen=True)
class IdentityLink:
    """Two canonical records of one person (``left``: a CRM Contact, ``right``: a PMS Resident),
    with the matcher's confidence (0..1) and its evidence. A pair has at most one live link
    (``broken_at`` None); a broken one stays as history."""

    id: str
    left_entity: str
    left_id: str
    right_entity: str
    right_id: str
    confidence: float
    evidence: Mapping[str, Any]  # which signals matched: {"email": {...}, "phone": ..., ...}
    state: LinkState
    how: LinkHow
    made_by: str  # "identity" (the matcher), "cli", "api:<key id>"
    made_at: datetime
    note: str = ""
    broken_by: str | None = None
    broken_at: datetime | None = None
    broken_reason: str = ""

    @property
    def live(self) -> bool:
        return self.broken_at is None


class IdentityRepository(Protocol):
    """Identity links (``uow.identities``), the match keys the matcher finds candidates by, and
    the cross-reference move a vendor merge needs."""

    async def add(self, link: IdentityLink) -> None:
        """``AlreadyExists`` when the id is taken, the pair has a live link already, or the link
        is ``linked`` and its right record has a live ``linked`` link already."""
        ...

    async def get(self, id: str) -> IdentityLink | None: ...

    async def for_pair(
        self, left_entity: str, left_id: str, right_entity: str, right_id: str
    ) -> IdentityLink | None:
        """The pair's live link, if any."""
        ...

    async def for_record(
        self, entity: str, id: str, *, include_broken: bool = False
    ) -> list[IdentityLink]:
        """Links with the record on either side, oldest first; live ones unless asked."""
        ...

    async def find(
        self, *, state: LinkState | None = None, after: str | None = None, limit: int = 100
    ) -> list[IdentityLink]:
        """Live links (of ``state``) oldest first, after the link ``after`` (paging)."""
        ...

    async def update(self, link: IdentityLink, *, expected_state: LinkState) -> bool:
        """Replace the live link ``link.id`` by ``link`` (its state, how, confidence, evidence,
        note, made_by/at, or broken_*) if it is live and still in ``expected_state``; False
        otherwise (nothing written). ``AlreadyExists`` as ``add`` for a second live ``linked``
        link of a right record."""
        ...

    async def set_keys(self, entity: str, id: str, keys: Collection[tuple[str, str]]) -> None:
        """Replace the record's match keys: (kind, normalised value), e.g. ("email", "a@b.c")."""
        ...

    async def find_keys(
        self, entity: str, keys: Collection[tuple[str, str]], *, limit: int = 100
    ) -> dict[str, set[tuple[str, str]]]:
        """Records of ``entity`` holding any of ``keys`` (an indexed lookup): id -> the keys
        it holds among them; at most ``limit`` records."""
        ...

    async def repoint_external(self, ref: ExternalRef) -> str | None:
        """Make the cross-reference of ``ref``'s external id point at ``ref.canonical_id`` (a
        vendor merged the record it named into another): the canonical id it pointed at before,
        None when it was not linked (it is linked now)."""
        ...


# ------------------------------------------------------------------------------ API idempotency


class IdempotencyState(StrEnum):
    IN_FLIGHT = "in_flight"  # a request holds the key (until ``locked_until``)
    DONE = "done"  # its response is stored, to be replayed


@dataclass(frozen=True, repr=False)
class StoredResponse:
    """What a keyed API write answered, to be replayed verbatim. ``headers`` holds only the
    replayed ones (Content-Type, Location). With ``key_id`` set, ``body`` is sealed (the
    response carried a secret): ciphertext under a data key wrapped by master key ``key_id``."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    key_id: str | None = None
    wrapped_key: bytes | None = None

    def __repr__(self) -> str:  # never the body: it may hold a secret
        return f"StoredResponse(status={self.status}, {len(self.body)} bytes)"


@dataclass(frozen=True)
class IdempotencyRecord:
    """One tenant's idempotency key and the request it was first used for."""

    key: str
    method: str
    path: str
    fingerprint: str  # sha256 of method, path and canonical body (hex)
    state: IdempotencyState
    holder: str  # the request that holds it (in flight) or stored its response
    locked_until: datetime
    created_at: datetime
    response: StoredResponse | None = None  # set once done


@dataclass(frozen=True)
class IdempotencyBegun:
    started: bool  # this request holds the key now: run it, then ``finish`` or ``release``
    record: IdempotencyRecord  # the key as stored after the call


class IdempotencyRepository(Protocol):
    """Stripe-style keys of the unified API's own writes (``uow.idempotency``), one per
    (tenant, key). ``begin`` commits on its own, before the write runs, so a concurrent request
    with the same key sees it held."""

    async def begin(
        self,
        key: str,
        *,
        method: str,
        path: str,
        fingerprint: str,
        holder: str,
        locked_until: datetime,
    ) -> IdempotencyBegun:
        """Hold ``key`` for ``holder`` until ``locked_until``: a new key is inserted in flight;
        a key still in flight whose lock ran out (its request died) is taken over, if the
        fingerprint is the same. Otherwise nothing changes and ``started`` is False. Atomic:
        of concurrent calls for one key, exactly one starts."""
        ...

    async def finish(self, key: str, *, holder: str, response: StoredResponse) -> bool:
        """Store the response and mark the key done, if ``holder`` still holds it in flight;
        False (nothing written) otherwise."""
        ...

    async def release(self, key: str, *, holder: str) -> bool:
        """Forget a key ``holder`` holds in flight (its request was refused before it ran),
        so it can be used again."""
        ...

    async def get(self, key: str) -> IdempotencyRecord | None: ...

    async def reap(self, *, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` keys created before ``before`` that no request holds (done,
        or in flight with the lock run out); how many."""
        ...


class WriteState(StrEnum):
    """Where one target of a write stands (``write_targets.state``)."""

    PENDING = "pending"  # waiting for the worker (or for its next attempt: next_attempt_at)
    SHADOWED = "shadowed"  # shadow mode: the vendor request was computed and recorded, not sent
    SENDING = "sending"  # committed before the vendor call: found so after a crash, recovery
    APPLIED = "applied"  # the vendor acknowledged; its receipt is applied locally
    FAILED = "failed"  # the vendor refused it (or retries ran out); ``error`` says why
    INDETERMINATE = "indeterminate"  # after a crash, whether the vendor acted is unknown
    SKIPPED = "skipped"  # write-back is off for the connection
    HELD = "held"  # a kill switch is on: kept, sent once it is released


class WritebackMode(StrEnum):
    OFF = "off"
    SHADOW = "shadow"
    LIVE = "live"


@dataclass(frozen=True)
class StoredWrite:
    """A platform write (``PATCH/POST/DELETE /v1/...``) or a propagation of a vendor change."""

    id: str
    entity: str
    canonical_id: str
    operation: WriteOperation
    patch: Mapping[str, Any]  # the JSON merge patch as asked (wire names)
    actor: str  # the API key id, or "writeback" for a propagation
    causation_id: str | None  # the event a propagation follows; None for an API write
    created_at: datetime


@dataclass(frozen=True)
class WriteTarget:
    """One write to one connection: the fields its system takes, and where sending them stands."""

    write_id: str
    connection: str
    system: str
    entity: str
    canonical_id: str
    operation: WriteOperation
    fields: Mapping[str, Any]  # wire name -> value (None removes)
    key: str  # the deterministic idempotency key (``sync.idempotency``)
    state: WriteState
    attempts: int = 0
    next_attempt_at: datetime | None = None
    external_id: str | None = None  # known before (an update) or from the receipt (a create)
    base_version: str | None = None
    receipt: Mapping[str, Any] | None = None  # the receipt, or a shadowed request
    error: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class WritebackSwitch:
    """A connection's write-back mode and kill switch (``connection`` "": the tenant-wide
    switch, whose mode is unused)."""

    connection: str
    mode: WritebackMode | None  # None: the connector's default
    stopped: bool = False
    stopped_by: str = ""
    reason: str = ""
    stopped_at: datetime | None = None
    updated_by: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class WriteEcho:
    """An acknowledged vendor write, to recognise when the vendor sends it back."""

    connection: str
    entity: str
    external_id: str
    source_version: str | None
    values_hash: str  # ``sync.echo.values_hash`` of the written values
    fields: tuple[str, ...]
    recorded_at: datetime


class WriteRepository(Protocol):
    """``uow.writes``: platform writes, their targets, the switches and the echo records."""

    async def add(self, write: StoredWrite, targets: Sequence[WriteTarget]) -> None:
        """``AlreadyExists`` when the write id is taken."""
        ...

    async def get(self, id: str) -> StoredWrite | None: ...

    async def targets(self, write_id: str) -> list[WriteTarget]:
        """The write's targets, by connection."""
        ...

    async def find_targets(
        self,
        *,
        state: WriteState | None = None,
        connection: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[WriteTarget]:
        """Targets by (write id, connection), after ``after`` (paging)."""
        ...

    async def any_due(self) -> bool:
        """Whether ``claim`` would take something now (a read: an idle poll takes no lock)."""
        ...

    async def pending_counts(self) -> dict[str, int]:
        """Connection -> its targets not yet settled (pending, sending or held)."""
        ...

    async def claim(self, *, holder: str, until: datetime, limit: int = 20) -> list[WriteTarget]:
        """Take up to ``limit`` targets: pending ones due now, and ``sending`` ones whose claim
        ran out (their worker died: recovery). Atomic: two workers never take one target."""
        ...

    async def settle(
        self,
        write_id: str,
        connection: str,
        *,
        holder: str,
        state: WriteState,
        attempts: int | None = None,
        next_attempt_at: datetime | None = None,
        external_id: str | None = None,
        receipt: Mapping[str, Any] | None = None,
        error: str | None = None,
        release: bool = True,
    ) -> bool:
        """Move a claimed target to ``state`` (None arguments keep what is stored), releasing
        the claim unless ``release`` is False (``sending`` keeps it); False, nothing written,
        when ``holder`` no longer holds it."""
        ...

    async def release_held(self, connection: str | None = None) -> int:
        """Held targets (of ``connection``; None: every one) pending again, due now."""
        ...

    async def switches(self) -> dict[str, WritebackSwitch]:
        """Every switch of the tenant by connection ("" the tenant-wide one)."""
        ...

    async def set_mode(
        self, connection: str, mode: WritebackMode, *, by: str
    ) -> WritebackSwitch: ...

    async def set_stopped(
        self, connection: str, stopped: bool, *, by: str, reason: str = ""
    ) -> WritebackSwitch:
        """Turn the kill switch of ``connection`` ("" tenant-wide) on or off."""
        ...

    async def add_echoes(self, echoes: Sequence[WriteEcho]) -> None: ...

    async def echoes(
        self, connection: str, entity: str, external_ids: Sequence[str]
    ) -> list[WriteEcho]:
        """The echo records of those external ids, oldest first."""
        ...

    async def prune_echoes(self, *, before: datetime) -> int:
        """Forget echo records made before ``before``; how many."""
        ...


# ------------------------------------------------------------------------------ conflicts


@dataclass(frozen=True)
class FieldVector:
    """The version vector of one shared field of one record: ``v`` counts the values applied,
    ``seen`` is the ``v`` each writer (by connection) is known to hold."""

    v: int = 0
    seen: Mapping[str, int] = field(default_factory=dict)
    # writer -> digest of the value that writer last held (sent us, or was sent): a writer that
    # repeats it has not edited the field, however new its stamp (a re-read of an unchanged
    # record, stamped with the read time by a vendor that keeps no modification time)
    held: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"v": self.v, "seen": dict(sorted(self.seen.items()))}
        if self.held:
            found["held"] = dict(sorted(self.held.items()))
        return found

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FieldVector:
        seen, held = value.get("seen", {}), value.get("held", {})
        return cls(
            int(value.get("v", 0)),
            {str(k): int(n) for k, n in seen.items()},
            {str(k): str(d) for k, d in held.items()},
        )


class ConflictState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ConflictResolution(StrEnum):
    KEEP_CURRENT = "keep_current"
    TAKE_INCOMING = "take_incoming"
    VALUE = "value"


@dataclass(frozen=True)
class Conflict:
    """A concurrent edit of a shared field held back for a person to decide (the review queue).

    ``current`` and ``incoming`` are ``{"value": ..., "stamp": {"system", "connection",
    "source_time", "source_version"}}`` (JSON); ``incoming`` also names the change's
    ``idempotency_key`` and ``external_id``; ``vector`` is the field's vector when it was held."""

    id: str
    entity: str
    record_id: str
    field: str
    current: Mapping[str, Any]
    incoming: Mapping[str, Any]
    vector: Mapping[str, Any]
    rule: str
    created_at: datetime
    state: ConflictState = ConflictState.OPEN
    resolution: ConflictResolution | None = None
    resolved_value: Any = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


class ConflictRepository(Protocol):
    """``uow.conflicts``: the field version vectors the engine reads per page and the review
    queue."""

    async def versions(self, entity: str, ids: Sequence[str]) -> dict[str, dict[str, FieldVector]]:
        """Record id -> field -> vector, for the records that have any (one query)."""
        ...

    async def put_versions(
        self, entity: str, vectors: Mapping[str, Mapping[str, FieldVector]]
    ) -> None:
        """Replace the vectors of each record id given (the whole map of the record)."""
        ...

    async def add_many(self, conflicts: Sequence[Conflict]) -> None: ...

    async def get(self, id: str) -> Conflict | None: ...

    async def find(
        self,
        *,
        entity: str | None = None,
        state: ConflictState | None = None,
        record_id: str | None = None,
        limit: int = 100,
    ) -> list[Conflict]:
        """Oldest first."""
        ...

    async def resolve(
        self,
        id: str,
        *,
        resolution: ConflictResolution,
        value: Any,
        by: str,
        at: datetime,
    ) -> Conflict:
        """Mark an open conflict resolved; ``NotFound`` for an unknown id, ``ConcurrentUpdate``
        when it is resolved already."""
        ...


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class MinuteRollup:
    """What one minute of one connection looked like (issue 9): the vendor calls by outcome and
    status, their latency histogram (``cadastre.observe.signals.LATENCY_EDGES`` buckets plus one
    overflow bucket), error fingerprints and response shapes, additive counters and sampled
    gauges. ``connection`` is "" for tenant-wide samples (outbox, delivery backlog).

    Stored rows merge: counts, calls, statuses, latency, errors and shapes add; gauges are last
    wins. Everything is JSON-compatible, so a rollup is one row."""

    connection: str
    minute: datetime  # UTC, truncated to the minute
    vendor: str = ""
    calls: Mapping[str, int] = field(default_factory=dict)  # outcome -> count
    statuses: Mapping[str, int] = field(default_factory=dict)  # "200", "503", "timeout" -> count
    latency: Sequence[int] = ()  # counts per latency bucket (empty: no calls timed)
    latency_sum: float = 0.0
    # fp -> {"count": n, "status": "503", "sample": "..."}
    errors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # fp -> {"count": n, "endpoint": "GET /odata/Property", "keys": ["value:array", ...]}
    shapes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)  # additive counters
    gauges: Mapping[str, float] = field(default_factory=dict)  # sampled, last wins


class ObservationRepository(Protocol):
    """``uow.observations``: the tenant's minutes, one row per (connection, minute)."""

    async def add(self, rollups: Sequence[MinuteRollup]) -> None:
        """Merge each rollup into its stored minute: counters add, gauges last-wins (safe when
        several workers flush the same minute at once)."""
        ...

    async def window(
        self, *, since: datetime, until: datetime | None = None, connection: str | None = None
    ) -> list[MinuteRollup]:
        """Minutes in ``[since, until)``, oldest first (then by connection)."""
        ...

    async def last_seen(self) -> dict[str, datetime]:
        """Connection -> the latest minute with a ``sync_ok`` count."""
        ...

    async def prune(self, before: datetime) -> int:
        """Forget minutes before ``before``; how many rows."""
        ...


# --------------------------------------------------------------------------------- alerts


class AlertState(StrEnum):
    PENDING = "pending"  # the condition holds, not yet for the rule's ``for``: nobody is told
    FIRING = "firing"  # raised (``cadastre.alert.raised.v1``)
    RESOLVED = "resolved"  # cleared for ``clear_for``, resolved by a person, or a dropped pending


@dataclass(frozen=True)
class Alert:
    """One episode of one alert (issue 9, docs/alerts.md): a detector's finding held by a rule,
    or a subsystem's ``cadastre.alert.raised.v1`` folded in. A tenant has at most one alert per
    (rule, key) that is not resolved; the store refuses a second."""

    id: str
    tenant: str
    rule: str  # the rule's name (detector alerts) or data.alert (subsystem alerts)
    key: str  # de-dup key within the rule: connection name, credential name, subject
    state: AlertState
    severity: str  # info | warning | critical
    owner: str
    vendor: str | None
    connection: str | None
    summary: str  # one line: which vendor/connection and what changed
    changed: str  # the measured fact: "error rate 62% (31 of 50 calls) over 5 min; ..."
    since: datetime  # when the condition began
    action: str  # what to do: the runbook step, with the rollback command where one answers it
    rollback: str | None  # the exact rollback command, if the rule names one
    facts: Mapping[str, Any]
    occurrences: int
    raised_at: datetime | None  # when it started firing (None: it never did)
    last_seen_at: datetime  # the last evaluation (or subsystem event) that found it
    resolved_at: datetime | None
    source: str  # "/cadastre/observe" (detector) or the subsystem event's source


class AlertRepository(Protocol):
    """``uow.alerts``: the tenant's alerts, every episode kept as history."""

    async def put(self, alert: Alert) -> None:
        """Insert, or update the alert of that id. ``AlreadyExists`` when it is new and another
        alert of its (rule, key) is not resolved (the evaluator that lost a race), or the id is
        taken by another tenant."""
        ...

    async def get(self, id: str) -> Alert | None: ...

    async def current(self, rule: str, key: str, *, for_update: bool = False) -> Alert | None:
        """The alert of (rule, key) that is not resolved, if any. ``for_update`` locks its row
        until the unit of work ends (PostgreSQL), so two writers of one alert's transition
        queue and the second sees what the first made of it."""
        ...

    async def open(self, *, connection: str | None = None) -> list[Alert]:
        """Pending and firing alerts (of ``connection``), newest first (the last made first)."""
        ...

    async def history(
        self, *, rule: str | None = None, connection: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts in every state (of ``rule``, of ``connection``), newest first (the last
        made first)."""
        ...
