"""``FakeStore``: the ``Store`` port in memory, for unit tests of everything above the store.

It passes the same conformance suite as the SQLite and PostgreSQL adapters. A unit of work takes
a (shallow, copy-on-write) copy of the committed state when it begins and swaps it in on
``commit()``, so a rolled-back or abandoned unit of work leaves nothing behind. Units of work
are serialised (one at a time, like SQLite's ``BEGIN IMMEDIATE``); opening a second one inside
the first in the same task would wait forever, so it raises ``StoreError`` instead.

One module (~660 lines) on purpose: each fake repository is a few lines over the shared state.
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

from cadastre.clock import SystemClock
from cadastre.contract.changes import ApplyResult
from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound, StoreError
from cadastre.ports import (
    Alert,
    ApiKey,
    AuditEntry,
    AuditReport,
    Clock,
    ConfigVersion,
    Conflict,
    Connection,
    ConnectionVersion,
    CredentialRead,
    DeliveryAttempt,
    ExternalRef,
    FieldProvenance,
    IdempotencyRecord,
    IdentityLink,
    InboxEntry,
    MinuteRollup,
    Operator,
    OperatorSession,
    OutboxMessage,
    QuarantinedRecord,
    RecordWrite,
    RefusalTally,
    SchemaSnapshot,
    SealedSecret,
    StoredCredential,
    StoredRecord,
    Subscription,
    SyncCursor,
    Tenant,
)
from cadastre.store.audit import GENESIS_HASH, seal, verify_chain
from cadastre.store.canonical import canonical_copy, json_copy
from cadastre.store.repositories.records import NUMBER_PATTERN, TIME_PATTERN
from cadastre.store.repositories.vault import check_secrets
from cadastre.testing.fake_alerts import FakeAlerts
from cadastre.testing.fake_config_versions import FakeConfigVersions
from cadastre.testing.fake_conflicts import FakeConflicts
from cadastre.testing.fake_events import FakeConsumed
from cadastre.testing.fake_idempotency import FakeIdempotency
from cadastre.testing.fake_identities import FakeIdentities
from cadastre.testing.fake_observations import FakeObservations
from cadastre.testing.fake_operators import FakeOperatorDirectory
from cadastre.testing.fake_webhooks import DeliveryRow, FakeDeliveries, FakeSubscriptions
from cadastre.testing.fake_webhooks_in import FakeWebhooksIn
from cadastre.testing.fake_writes import FakeWrites, WriteTables

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Sequence
    from types import TracebackType

    from cadastre.contract.events import EventEnvelope
    from cadastre.ports import (
        AlertRepository,
        AppliedChanges,
        AuditDraft,
        AuditLog,
        ConflictRepository,
        ConnectionRepository,
        ConsumedEvents,
        CredentialRepository,
        CursorRepository,
        DeliveryRepository,
        FieldFilter,
        IdempotencyRepository,
        IdentityRepository,
        KeyRepository,
        ObservationRepository,
        OutboxRepository,
        ProvenanceRepository,
        ProvenanceWrite,
        QuarantineRepository,
        RecordRepository,
        SchemaRepository,
        SubscriptionRepository,
        WebhookInbox,
        WriteRepository,
        XrefRepository,
    )


@dataclass
class _State:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    # everything below is keyed by tenant first
    records: dict[tuple[str, str, str], StoredRecord] = field(default_factory=dict)
    # (tenant, entity, id) -> field -> provenance: one record's provenance is one lookup
    provenance: dict[tuple[str, str, str], dict[str, FieldProvenance]] = field(default_factory=dict)
    xref: dict[tuple[str, str, str, str, str], str] = field(default_factory=dict)
    cursors: dict[tuple[str, str, str], SyncCursor] = field(default_factory=dict)
    quarantine: dict[str, tuple[str, QuarantinedRecord]] = field(default_factory=dict)
    outbox: dict[int, tuple[str, OutboxMessage]] = field(default_factory=dict)
    outbox_ids: dict[str, int] = field(default_factory=dict)  # event id -> position
    next_position: int = 1
    feed_heads: dict[str, int] = field(default_factory=dict)  # tenant -> its last feed_seq
    # bus consumers' de-duplication (cadastre.testing.fake_events): (tenant, consumer, event id)
    consumed: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    audit: dict[str, list[AuditEntry]] = field(default_factory=dict)
    applied: dict[tuple[str, str], ApplyResult] = field(default_factory=dict)
    connections: dict[tuple[str, str], Connection] = field(default_factory=dict)
    history: dict[tuple[str, str], list[ConnectionVersion]] = field(default_factory=dict)
    credentials: dict[tuple[str, str], StoredCredential] = field(default_factory=dict)
    credential_reads: dict[tuple[str, str], list[CredentialRead]] = field(default_factory=dict)
    schemas: dict[tuple[str, str, str], SchemaSnapshot] = field(default_factory=dict)
    # webhooks out (cadastre.testing.fake_webhooks)
    subscriptions: dict[tuple[str, str], Subscription] = field(default_factory=dict)
    deliveries: dict[str, DeliveryRow] = field(default_factory=dict)  # delivery id -> row
    delivery_keys: dict[tuple[str, str, str], str] = field(default_factory=dict)
    delivery_attempts: dict[str, tuple[DeliveryAttempt, ...]] = field(default_factory=dict)
    next_delivery_position: int = 1
    # webhooks in (cadastre.testing.fake_webhooks_in)
    inbox: dict[int, tuple[str, InboxEntry]] = field(default_factory=dict)  # position -> row
    inbox_keys: dict[tuple[str, str, str], int] = field(default_factory=dict)
    next_inbox_position: int = 1
    refusals: dict[tuple[str, str, str, datetime], RefusalTally] = field(default_factory=dict)
    # write-back (cadastre.testing.fake_writes): one immutable value, replaced on every write
    writeback: WriteTables = field(default_factory=lambda: WriteTables())
    # identity links (cadastre.testing.fake_identities): link id -> (tenant, link), insert order
    identity_links: dict[str, tuple[str, IdentityLink]] = field(default_factory=dict)
    identity_keys: dict[tuple[str, str, str], frozenset[tuple[str, str]]] = field(
        default_factory=dict
    )
    # API idempotency keys (cadastre.testing.fake_idempotency): (tenant, key) -> record
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)

    # conflicts (cadastre.testing.fake_conflicts): vectors by (tenant, entity, id) as JSON, and
    # the review queue by conflict id -> (tenant, conflict), insert order
    field_versions: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    conflicts: dict[str, tuple[str, Conflict]] = field(default_factory=dict)
    # vendor minutes (cadastre.testing.fake_observations): (tenant, connection, minute) -> rollup
    vendor_minutes: dict[tuple[str, str, datetime], MinuteRollup] = field(default_factory=dict)
    # alerts (cadastre.testing.fake_alerts): alert id -> (tenant, alert), in the order made
    alerts: dict[str, tuple[str, Alert]] = field(default_factory=dict)
    outbox_at: dict[int, datetime] = field(default_factory=dict)  # position -> when written
    # console operators (cadastre.testing.fake_operators): cross-tenant, by username / token hash
    operators: dict[str, Operator] = field(default_factory=dict)
    operator_sessions: dict[str, OperatorSession] = field(default_factory=dict)
    # configuration versions (cadastre.testing.fake_config_versions): (kind, name) -> versions
    config_versions: dict[tuple[str, str], tuple[ConfigVersion, ...]] = field(default_factory=dict)

    def copy(self) -> _State:
        # A shallow copy of each table is enough because nothing below is changed in place:
        # values are frozen, and the nested lists and dicts are replaced, never mutated, by the
        # repositories (copy-on-write). That keeps a unit of work's start a C-speed dict copy.
        new = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, dict):
                setattr(new, name, dict(value))
        return new


class FakeStore(FakeOperatorDirectory, FakeConfigVersions):  # cross-tenant calls (issue 9)
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._state = _State()
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        self._outbox_listeners: list[Callable[[str], None]] = []
        self._audit_listeners: list[Callable[[str, int], None]] = []

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> FakeUnitOfWork:
        # The fake runs one unit of work at a time either way; read_only is a hint to real stores.
        return FakeUnitOfWork(self, tenant)

    async def create_tenant(self, tenant_id: str, name: str) -> Tenant:
        async with self._serialised():
            if tenant_id in self._state.tenants:
                raise AlreadyExists(f"tenant {tenant_id!r} already exists")
            tenant = Tenant(tenant_id, name, self.clock.now())
            self._state.tenants[tenant_id] = tenant
            return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        return self._state.tenants.get(tenant_id)

    async def list_tenants(self) -> list[Tenant]:
        return sorted(self._state.tenants.values(), key=lambda t: t.id)

    async def find_api_key(self, key_id: str) -> ApiKey | None:
        return self._state.keys.get(key_id)

    async def pending_outbox_tenants(self) -> list[str]:
        return sorted({t for t, m in self._state.outbox.values() if m.published_at is None})

    def watch_outbox(self, listener: Callable[[str], None]) -> Callable[[], None]:
        self._outbox_listeners.append(listener)
        return lambda: self._outbox_listeners.remove(listener)

    def watch_audit(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        self._audit_listeners.append(listener)
        return lambda: self._audit_listeners.remove(listener)

    async def close(self) -> None:
        return None

    # -- serialisation -------------------------------------------------------------------

    async def _acquire(self) -> None:
        task = asyncio.current_task()
        if self._holder is not None and self._holder is task:
            raise StoreError("a unit of work is already open in this task; nesting would deadlock")
        await self._lock.acquire()
        self._holder = task

    def _release(self) -> None:
        self._holder = None
        self._lock.release()

    def _serialised(self) -> _Held:
        return _Held(self)


class _Held:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def __aenter__(self) -> None:
        await self._store._acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._store._release()


class FakeUnitOfWork:
    def __init__(self, store: FakeStore, tenant: str) -> None:
        self.tenant = tenant
        self._store = store
        self._clock = store.clock
        self._state: _State | None = None
        self.records: RecordRepository = _Records(self)
        self.provenance: ProvenanceRepository = _Provenance(self)
        self.xref: XrefRepository = _Xref(self)
        self.cursors: CursorRepository = _Cursors(self)
        self.quarantine: QuarantineRepository = _Quarantine(self)
        self.outbox: OutboxRepository = _Outbox(self)
        self.audit: AuditLog = _Audit(self)
        self.applied: AppliedChanges = _Applied(self)
        self.keys: KeyRepository = _Keys(self)
        self.connections: ConnectionRepository = _Connections(self)
        self.credentials: CredentialRepository = _Credentials(self)
        self.schemas: SchemaRepository = _Schemas(self)
        self.consumed: ConsumedEvents = FakeConsumed(self)
        self.wrote_outbox = False  # the relay hears of this unit of work's commit
        self.audited = 0  # audit entries appended, told to Store.watch_audit's listeners
        self.subscriptions: SubscriptionRepository = FakeSubscriptions(self)
        self.deliveries: DeliveryRepository = FakeDeliveries(self)
        self.webhooks_in: WebhookInbox = FakeWebhooksIn(self)
        self.writes: WriteRepository = FakeWrites(self)
        self.conflicts: ConflictRepository = FakeConflicts(self)
        self.observations: ObservationRepository = FakeObservations(self)
        self.identities: IdentityRepository = FakeIdentities(self)
        self.idempotency: IdempotencyRepository = FakeIdempotency(self)
        self.alerts: AlertRepository = FakeAlerts(self)

    @property
    def state(self) -> _State:
        if self._state is None:
            raise StoreError("the unit of work is not open; use 'async with'")
        return self._state

    async def __aenter__(self) -> Self:
        await self._store._acquire()
        self._state = self._store._state.copy()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = None
        self.audited = 0
        self._store._release()

    async def commit(self) -> None:
        self._store._state = self.state
        self._state = self._store._state.copy()
        if self.wrote_outbox:
            self.wrote_outbox = False
            for listener in list(self._store._outbox_listeners):
                listener(self.tenant)
        if self.audited:
            entries, self.audited = self.audited, 0
            for audit_listener in list(self._store._audit_listeners):
                audit_listener(self.tenant, entries)

    async def rollback(self) -> None:
        self.state  # noqa: B018 - raises when not open
        self._state = self._store._state.copy()
        self.wrote_outbox = False
        self.audited = 0


class _Repo:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> _State:
        return self._uow.state

    @property
    def _t(self) -> str:
        return self._uow.tenant

    def _now(self) -> Any:
        return self._uow._clock.now()


def _own(tenant: str, owner: str, what: str) -> None:
    if owner != tenant:
        raise ValueError(
            f"{what} belongs to tenant {owner!r}, not to this unit of work's {tenant!r}"
        )


def _aware(*moments: datetime | None) -> None:
    """Refuse naive datetimes as the SQL stores do (their ``UtcDateTime`` column type)."""
    if any(m is not None and m.tzinfo is None for m in moments):
        raise StoreError("database statement: the store keeps timezone-aware datetimes only")


class _Records(_Repo):
    async def get(self, entity: str, id: str, *, for_update: bool = False) -> StoredRecord | None:
        found = self._s.records.get((self._t, entity, id))
        return None if found is None else replace(found, data=copy.deepcopy(found.data))

    async def put(
        self, entity: str, id: str, data: Mapping[str, Any], *, expected_version: int,
        deleted: bool = False, confidence: float | None = None,
    ) -> StoredRecord:  # fmt: skip
        current = self._s.records.get((self._t, entity, id))
        version = current.version if current else 0
        if version != expected_version:
            raise ConcurrentUpdate(
                f"{entity} {id!r} is at version {version}, not {expected_version}"
            )
        copied, digest = canonical_copy(data)
        stored = StoredRecord(
            entity, id, version + 1, copied, digest, deleted, self._now(), confidence
        )
        self._s.records[(self._t, entity, id)] = stored
        return replace(stored, data=copy.deepcopy(stored.data))

    # The fake's bulk methods are the single ones in a loop: it has no statements to save.
    async def get_many(
        self, entity: str, ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, StoredRecord]:
        found = {id: await self.get(entity, id) for id in dict.fromkeys(ids)}
        return {id: record for id, record in found.items() if record is not None}

    async def put_many(self, writes: Sequence[RecordWrite]) -> list[StoredRecord]:
        keys = [(w.entity, w.id) for w in writes]
        if len(set(keys)) != len(keys):
            raise ValueError("put_many takes at most one write per record")
        return [
            await self.put(w.entity, w.id, w.data, expected_version=w.expected_version,
                           deleted=w.deleted, confidence=w.confidence)
            for w in writes
        ]  # fmt: skip

    async def scan(
        self, entity: str, *, after_id: str | None = None, limit: int = 100,
        include_deleted: bool = False,
    ) -> AsyncIterator[StoredRecord]:  # fmt: skip
        rows = sorted(
            (r for (t, e, i), r in self._s.records.items()
             if t == self._t and e == entity and (after_id is None or i > after_id)
             and (include_deleted or not r.deleted)),
            key=lambda r: r.id,
        )  # fmt: skip
        for record in rows[:limit]:
            yield replace(record, data=copy.deepcopy(record.data))

    async def query(
        self, entity: str, filters: Sequence[FieldFilter] = (), *, after_id: str | None = None,
        limit: int = 100, include_deleted: bool = False, min_confidence: float | None = None,
    ) -> list[StoredRecord]:  # fmt: skip
        if limit < 0:
            raise ValueError("limit must not be negative")
        rows = sorted(
            (r for (t, e, i), r in self._s.records.items()
             if t == self._t and e == entity and (after_id is None or i > after_id)
             and (include_deleted or not r.deleted) and all(_matches(r.data, f) for f in filters)
             and (min_confidence is None or r.confidence is None
                  or r.confidence >= min_confidence)),
            key=lambda r: r.id,
        )  # fmt: skip
        return [replace(r, data=copy.deepcopy(r.data)) for r in rows[:limit]]

    async def count(self, entity: str | None = None) -> int:
        return sum(
            1 for (t, e, _), r in self._s.records.items()
            if t == self._t and (entity is None or e == entity) and not r.deleted
        )  # fmt: skip


_NUMBER, _TIME = re.compile(NUMBER_PATTERN), re.compile(TIME_PATTERN)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMPARE = {
    "eq": lambda a, b: a == b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}  # fmt: skip


def _matches(data: Mapping[str, Any], f: FieldFilter) -> bool:
    """``FieldFilter``'s rules in Python: what the SQL adapters do with their JSON functions."""
    stored, wanted = data.get(f.field), f.value
    left: Any
    right: Any
    if f.kind == "text":
        if not isinstance(stored, str):
            return False
        left, right = stored, wanted
        if f.casefold:
            left, right = stored.translate(_ASCII_LOWER), str(wanted).translate(_ASCII_LOWER)
    elif f.kind == "number":
        if isinstance(stored, bool) or not isinstance(stored, int | float | str):
            return False
        if isinstance(stored, str) and not _NUMBER.search(stored):
            return False
        left = Decimal(str(stored)) if isinstance(stored, float | str) else Decimal(stored)
        right = Decimal(str(wanted)) if isinstance(wanted, float) else wanted
    else:
        if not isinstance(stored, str) or not _TIME.search(stored):
            return False
        try:
            instant = datetime.fromisoformat(stored)
        except ValueError:  # a day its month does not have
            return False
        # differences from one epoch: comparing aware datetimes converts them to UTC, which
        # overflows for year 1 at a positive offset
        left = instant - _EPOCH
        right = wanted - _EPOCH if isinstance(wanted, datetime) else None
    return bool(_COMPARE[f.op](left, right))


class _Provenance(_Repo):
    async def for_record(self, entity: str, id: str) -> dict[str, FieldProvenance]:
        return dict(self._s.provenance.get((self._t, entity, id), {}))

    async def for_records(
        self, entity: str, ids: Sequence[str]
    ) -> dict[str, dict[str, FieldProvenance]]:
        return {
            id: dict(found)
            for id in dict.fromkeys(ids)
            if (found := self._s.provenance.get((self._t, entity, id)))
        }

    async def record(self, items: Sequence[FieldProvenance]) -> None:
        for item in items:
            key = (self._t, item.entity, item.id)
            self._s.provenance[key] = {**self._s.provenance.get(key, {}), item.field: item}

    async def record_many(self, writes: Sequence[ProvenanceWrite]) -> None:
        await self.record([item for write in writes for item in write.expand()])


class _Xref(_Repo):
    async def resolve(
        self, system: str, connection: str, entity: str, external_id: str
    ) -> str | None:
        return self._s.xref.get((self._t, system, connection, entity, external_id))

    async def link(self, ref: ExternalRef) -> None:
        key = (self._t, ref.system, ref.connection, ref.entity, ref.external_id)
        current = self._s.xref.get(key)
        if current is not None and current != ref.canonical_id:
            raise AlreadyExists(
                f"{ref.system}/{ref.connection} {ref.entity} {ref.external_id!r} is already "
                f"linked to {current!r}"
            )
        self._s.xref[key] = ref.canonical_id

    async def resolve_many(
        self, system: str, connection: str, entity: str, external_ids: Sequence[str]
    ) -> dict[str, str]:
        found = {x: await self.resolve(system, connection, entity, x) for x in external_ids}
        return {x: cid for x, cid in found.items() if cid is not None}

    async def link_many(self, refs: Sequence[ExternalRef]) -> None:
        for ref in refs:
            await self.link(ref)

    async def for_record(self, entity: str, canonical_id: str) -> list[ExternalRef]:
        refs = [
            ExternalRef(s, c, e, x, cid) for (t, s, c, e, x), cid in self._s.xref.items()
            if t == self._t and e == entity and cid == canonical_id
        ]  # fmt: skip
        return sorted(refs, key=lambda r: (r.system, r.connection, r.external_id))

    async def for_connection(
        self, connection: str, entity: str, *, after: str | None = None, limit: int = 1000
    ) -> list[ExternalRef]:
        refs = [
            ExternalRef(s, c, e, x, cid) for (t, s, c, e, x), cid in self._s.xref.items()
            if t == self._t and c == connection and e == entity and (after is None or x > after)
        ]  # fmt: skip
        return sorted(refs, key=lambda r: r.external_id)[:limit]


class _Schemas(_Repo):
    async def get(self, connection: str, stream: str) -> SchemaSnapshot | None:
        found = self._s.schemas.get((self._t, connection, stream))
        return None if found is None else copy.deepcopy(found)

    async def put(self, snapshot: SchemaSnapshot) -> None:
        _aware(snapshot.taken_at)
        stored = SchemaSnapshot(
            snapshot.connection, snapshot.stream, json_copy(snapshot.declared),
            list(snapshot.seen_fields), {k: list(v) for k, v in snapshot.seen_values.items()},
            snapshot.taken_at,
        )  # fmt: skip
        self._s.schemas[(self._t, snapshot.connection, snapshot.stream)] = stored


class _Cursors(_Repo):
    async def get(self, connection: str, stream: str) -> SyncCursor | None:
        found = self._s.cursors.get((self._t, connection, stream))
        return None if found is None else replace(found, value=copy.deepcopy(found.value))

    async def put(self, connection: str, stream: str, value: Mapping[str, Any]) -> SyncCursor:
        cursor = SyncCursor(connection, stream, json_copy(value), self._now())
        self._s.cursors[(self._t, connection, stream)] = cursor
        return replace(cursor, value=copy.deepcopy(cursor.value))


class _Quarantine(_Repo):
    async def add(
        self, *, connection: str, entity: str, external_id: str | None, reason: str,
        payload: Mapping[str, Any], stream: str = "", code: str = "",
    ) -> QuarantinedRecord:  # fmt: skip
        copied, digest = canonical_copy(payload)
        for t, q in self._s.quarantine.values():  # the same version still held: a sighting
            if (
                t == self._t and q.resolved_at is None and q.connection == connection
                and q.stream == stream and q.entity == entity and q.external_id == external_id
                and canonical_copy(q.payload)[1] == digest
            ):  # fmt: skip
                seen = replace(q, sightings=q.sightings + 1, last_seen_at=self._now())
                self._s.quarantine[q.id] = (self._t, seen)
                return seen
        item = QuarantinedRecord(
            uuid.uuid4().hex, connection, entity, external_id, reason, copied,
            self._now(), None, stream, code,
        )  # fmt: skip
        self._s.quarantine[item.id] = (self._t, item)
        return item

    async def open_items(
        self, connection: str | None = None, *, code: str | None = None,
        after: str | None = None, limit: int | None = None,
    ) -> list[QuarantinedRecord]:  # fmt: skip
        items = [
            q for t, q in self._s.quarantine.values()
            if t == self._t and q.resolved_at is None
            and (connection is None or q.connection == connection)
            and (code is None or q.code == code)
        ]  # fmt: skip
        if after is not None:
            order = list(self._s.quarantine)
            start = order.index(after) if after in order else len(order)
            items = [q for q in items if order.index(q.id) > start]
        return items if limit is None else items[:limit]

    async def get(self, id: str) -> QuarantinedRecord | None:
        found = self._s.quarantine.get(id)
        return None if found is None or found[0] != self._t else found[1]

    async def open_counts(self, *, code: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t, q in self._s.quarantine.values():
            if t == self._t and q.resolved_at is None and (code is None or q.code == code):
                counts[q.connection] = counts.get(q.connection, 0) + 1
        return dict(sorted(counts.items()))

    async def note_failed_replay(self, id: str, *, reason: str, code: str) -> None:
        found = self._s.quarantine.get(id)
        if found is None or found[0] != self._t:
            raise NotFound(f"quarantined record {id!r} does not exist")
        item = found[1]
        self._s.quarantine[id] = (
            self._t,
            replace(item, reason=reason, code=code, attempts=item.attempts + 1),
        )

    async def resolve(self, id: str) -> None:
        found = self._s.quarantine.get(id)
        if found is None or found[0] != self._t:
            raise NotFound(f"quarantined record {id!r} does not exist")
        if found[1].resolved_at is None:
            self._s.quarantine[id] = (self._t, replace(found[1], resolved_at=self._now()))


class _Outbox(_Repo):
    async def add(self, event: EventEnvelope) -> OutboxMessage:
        _own(self._t, event.tenant, "the event")
        if event.id in self._s.outbox_ids:
            raise AlreadyExists(f"event {event.id!r} is already in the outbox")
        message = OutboxMessage(event, self._s.next_position, None)
        self._s.outbox[message.position] = (self._t, message)
        self._s.outbox_ids[event.id] = message.position
        self._s.outbox_at[message.position] = self._now()
        self._s.next_position += 1
        self._uow.wrote_outbox = True
        return message

    async def add_many(self, events: Sequence[EventEnvelope]) -> list[OutboxMessage]:
        return [await self.add(event) for event in events]

    async def pending(self, limit: int = 100) -> list[OutboxMessage]:
        waiting = [
            m for p, (t, m) in sorted(self._s.outbox.items())
            if t == self._t and m.published_at is None
        ]  # fmt: skip
        return waiting[:limit]

    async def count_pending(self) -> int:
        return sum(1 for t, m in self._s.outbox.values() if t == self._t and m.published_at is None)

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        now, seq = self._now(), self._s.feed_heads.get(self._t, 0)
        for event_id in dict.fromkeys(event_ids):  # in the order given, once each
            position = self._s.outbox_ids.get(event_id)
            if position is None:
                continue
            tenant, message = self._s.outbox[position]
            if tenant == self._t and message.published_at is None:
                seq += 1
                published = replace(message, published_at=now, feed_seq=seq)
                self._s.outbox[position] = (tenant, published)
        self._s.feed_heads[self._t] = seq

    async def feed(self, *, after: int = 0, limit: int = 100) -> list[OutboxMessage]:
        found = [
            m for t, m in self._s.outbox.values()
            if t == self._t and m.feed_seq is not None and m.feed_seq > after
        ]  # fmt: skip
        return sorted(found, key=lambda m: m.feed_seq or 0)[:limit]

    async def recent(
        self, types: Collection[str], *, since: datetime, limit: int = 100
    ) -> list[EventEnvelope]:
        _aware(since)
        wanted = set(types)
        found = [
            m.event for p, (t, m) in sorted(self._s.outbox.items(), reverse=True)
            if t == self._t and m.event.type in wanted and self._s.outbox_at[p] >= since
        ]  # fmt: skip
        return found[: max(limit, 0)]


class _Audit(_Repo):
    async def append(
        self, *, actor: str, action: str, entity: str | None = None,
        entity_id: str | None = None, detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:  # fmt: skip
        chain = self._s.audit.get(self._t, [])
        entry = seal(
            tenant=self._t, seq=len(chain) + 1,
            prev_hash=chain[-1].hash if chain else GENESIS_HASH, at=self._now(), actor=actor,
            action=action, entity=entity, entity_id=entity_id, detail=json_copy(detail or {}),
        )  # fmt: skip
        self._s.audit[self._t] = [*chain, entry]  # copy-on-write, see _State.copy
        self._uow.audited += 1
        return entry

    async def append_many(self, drafts: Sequence[AuditDraft]) -> list[AuditEntry]:
        return [
            await self.append(actor=d.actor, action=d.action, entity=d.entity,
                              entity_id=d.entity_id, detail=d.detail)
            for d in drafts
        ]  # fmt: skip

    async def entries(self, after_seq: int = 0) -> AsyncIterator[AuditEntry]:
        for entry in list(self._s.audit.get(self._t, [])):
            if entry.seq > after_seq:
                yield entry

    async def entries_for(
        self, entity: str, entity_id: str, after_seq: int = 0
    ) -> AsyncIterator[AuditEntry]:
        async for entry in self.entries(after_seq):
            if entry.entity == entity and entry.entity_id == entity_id:
                yield entry

    async def verify(self) -> AuditReport:
        return await verify_chain(self._t, self.entries())


class _Applied(_Repo):
    async def get(self, idempotency_key: str) -> ApplyResult | None:
        return self._s.applied.get((self._t, idempotency_key))

    async def put(self, result: ApplyResult) -> None:
        _own(self._t, result.tenant, "the result")
        key = (self._t, result.idempotency_key)
        if key in self._s.applied:
            raise ConcurrentUpdate(f"idempotency key {result.idempotency_key!r} already recorded")
        self._s.applied[key] = result

    async def get_many(self, idempotency_keys: Sequence[str]) -> dict[str, ApplyResult]:
        found = {k: self._s.applied.get((self._t, k)) for k in idempotency_keys}
        return {k: result for k, result in found.items() if result is not None}

    async def put_many(self, results: Sequence[ApplyResult]) -> None:
        for result in results:
            await self.put(result)


class _Keys(_Repo):
    async def add(self, key: ApiKey) -> None:
        _own(self._t, key.tenant, "the key")
        if key.key_id in self._s.keys:
            raise AlreadyExists(f"key {key.key_id!r} already exists")
        self._s.keys[key.key_id] = key

    async def revoke(self, key_id: str) -> ApiKey:
        found = self._s.keys.get(key_id)
        if found is None or found.tenant != self._t:
            raise NotFound(f"key {key_id!r} does not exist in tenant {self._t!r}")
        if found.revoked_at is None:
            found = self._s.keys[key_id] = replace(found, revoked_at=self._now())
        return found

    async def all(self) -> list[ApiKey]:
        mine = [k for k in self._s.keys.values() if k.tenant == self._t]
        return sorted(mine, key=lambda k: (k.created_at, k.key_id))


class _Connections(_Repo):
    async def get(self, name: str) -> Connection | None:
        return self._s.connections.get((self._t, name))

    async def all(self) -> list[Connection]:
        mine = [c for (t, _), c in self._s.connections.items() if t == self._t]
        return sorted(mine, key=lambda c: c.name)

    async def save(self, connection: Connection, *, changed_by: str, change: str) -> Connection:
        _own(self._t, connection.tenant, "the connection")
        key = (self._t, connection.name)
        current = self._s.connections.get(key)
        expected = current.version + 1 if current else 1
        if connection.version != expected:
            raise ConcurrentUpdate(
                f"connection {connection.name!r} would go to version {connection.version}, "
                f"expected {expected}"
            )
        saved = replace(connection, config=json_copy(connection.config))
        self._s.connections[key] = saved
        self._s.history[key] = [
            *self._s.history.get(key, []),
            ConnectionVersion(saved, changed_by, change),
        ]  # copy-on-write, see _State.copy
        return saved

    async def history(self, name: str) -> list[ConnectionVersion]:
        return list(self._s.history.get((self._t, name), []))


class _Credentials(_Repo):
    # Stored credentials are frozen and their ``secrets`` dicts are never changed in place: a
    # change stores a new credential with a new dict (copy-on-write, see _State.copy).

    def _out(self, credential: StoredCredential) -> StoredCredential:
        return replace(
            credential, meta=copy.deepcopy(credential.meta), secrets=dict(credential.secrets)
        )

    def _in(self, credential: StoredCredential) -> StoredCredential:
        _own(self._t, credential.tenant, "the credential")
        check_secrets(credential)
        _aware(credential.updated_at, credential.expires_at, credential.refresh_started_at)
        return replace(
            credential, meta=json_copy(credential.meta), secrets=dict(credential.secrets)
        )

    async def get(self, name: str) -> StoredCredential | None:
        found = self._s.credentials.get((self._t, name))
        return None if found is None else self._out(found)

    async def all(self) -> list[StoredCredential]:
        mine = [c for (t, _), c in self._s.credentials.items() if t == self._t]
        return [self._out(c) for c in sorted(mine, key=lambda c: c.name)]

    async def add(self, credential: StoredCredential) -> None:
        stored = self._in(credential)
        key = (self._t, credential.name)
        if key in self._s.credentials:
            raise AlreadyExists(f"credential {credential.name!r} already exists")
        self._s.credentials[key] = stored

    async def replace(
        self,
        credential: StoredCredential,
        *,
        expected_version: int,
        written: Collection[str] | None = None,
    ) -> None:
        stored = self._in(credential)
        if credential.version != expected_version + 1:
            raise ValueError(
                f"credential {credential.name!r} at version {credential.version} cannot replace "
                f"version {expected_version}: a replacement is the next version"
            )
        key = (self._t, credential.name)
        current = self._s.credentials.get(key)
        if current is None:
            raise NotFound(f"credential {credential.name!r} does not exist in tenant {self._t!r}")
        if current.version != expected_version:
            raise ConcurrentUpdate(
                f"credential {credential.name!r} is at version {current.version}, "
                f"expected {expected_version}"
            )
        if written is not None:  # fields not written keep the row's (perhaps re-wrapped) value
            kept = {
                f: v if f in written or f not in current.secrets else current.secrets[f]
                for f, v in stored.secrets.items()
            }
            stored = replace(stored, secrets=kept)
        self._s.credentials[key] = stored

    async def delete(self, name: str) -> bool:
        return self._s.credentials.pop((self._t, name), None) is not None

    async def rewrap(self, name: str, sealed: SealedSecret, *, was: SealedSecret) -> bool:
        if sealed.field != was.field:
            raise ValueError(
                f"credential {name!r}: cannot rewrap field {was.field!r} as {sealed.field!r}"
            )
        key = (self._t, name)
        current = self._s.credentials.get(key)
        if current is None or current.secrets.get(was.field) != was:
            return False
        secrets = {**current.secrets, was.field: sealed}
        self._s.credentials[key] = replace(current, secrets=secrets)
        return True

    async def sealed_not_under(self, key_id: str, *, limit: int) -> list[tuple[str, SealedSecret]]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        found = [
            (name, sealed)
            for (t, name), credential in self._s.credentials.items()
            if t == self._t
            for sealed in credential.secrets.values()
            if sealed.key_id != key_id
        ]
        return sorted(found, key=lambda pair: (pair[0], pair[1].field))[:limit]

    async def record_read(self, read: CredentialRead) -> None:
        _own(self._t, read.tenant, "the credential read")
        _aware(read.at)
        key = (self._t, read.credential)
        stored = replace(read, fields=tuple(read.fields))
        self._s.credential_reads[key] = [*self._s.credential_reads.get(key, []), stored]

    async def reads(self, name: str, *, limit: int = 100) -> list[CredentialRead]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        return list(reversed(self._s.credential_reads.get((self._t, name), [])))[:limit]
