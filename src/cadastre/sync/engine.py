"""``SyncEngine``: changes in, one transaction out.

``apply_batch`` takes a page of changes for one tenant and, inside one unit of work: reads the
idempotency ledger, the cross-references, the records (row-locked) and their provenance in bulk;
decides each change in order against that in-memory view (``plan.py``), so later changes of the
page see earlier ones; turns each decision into a ``WriteSet`` (``writes.py``); and writes them with
one bulk call per table, together with the caller's sync cursor when it passes one. A change that
breaks the contract is reported and skipped (nothing of it written or recorded); a change whose
every field ownership forbids is reported with its refusal recorded.

``apply`` is a batch of one that raises instead of reporting: ``ContractError`` (nothing written,
nothing recorded, so a fixed change may be sent again) or ``OwnershipViolation`` (after the
refusal is committed).

A sync of vendor snapshots asks ``apply_batch(..., refuse_backwards=True)``: an upsert older than
the record's newest version from the same system is then reported (code ``timestamp_backwards``)
instead of planned, so it can be quarantined rather than refused field by field in silence. The
check reads the provenance stamps the batch loads anyway, so it costs no query.

The module is past 400 lines because the batch's in-memory view (``_View``) is the engine's other
half: it exists only to serve ``_decide`` and shares its locking and flushing rules.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cadastre.contract.changes import ApplyResult, Change, Operation, RefusalReason
from cadastre.errors import (
    AlreadyExists,
    CadastreError,
    ConcurrentUpdate,
    ContractError,
    OwnershipViolation,
)
from cadastre.ports import AuditDraft, ExternalRef
from cadastre.sync.echo import find_echoes
from cadastre.sync.ledger import MONEY_FIELDS, needs_reversal, reverse
from cadastre.sync.origin import Stamp, compare, new_record_id, stamp_of
from cadastre.sync.plan import Plan, Target, Validator, plan_delete, plan_upsert
from cadastre.sync.review import Resolved, carry_resolution, resolve_conflict
from cadastre.sync.vectors import DEFAULT_SKEW_SECONDS
from cadastre.sync.writes import REFUSED_EVENT, WriteSet, build_writes, flush

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection
    from datetime import datetime

    from cadastre.observe import Metrics
    from cadastre.ownership import OwnershipRegistry
    from cadastre.ports import (
        Clock,
        ConflictResolution,
        FieldProvenance,
        FieldVector,
        Store,
        StoredRecord,
        UnitOfWork,
    )

__all__ = [
    "BACKWARDS",
    "REFUSED_EVENT",
    "BatchItem",
    "CursorAdvance",
    "PreparedBatch",
    "QuarantineDraft",
    "SyncEngine",
    "forbidden_by_ownership",
]

_OWNERSHIP = frozenset({RefusalReason.NOT_OWNER, RefusalReason.NO_OWNER_DECLARED})
# BatchItem codes: what the runner's quarantine entries are filed under
_INVALID = "invalid_value"
BACKWARDS = "timestamp_backwards"


def _contract_validator(entity: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    # Imported on first use: the models are the heaviest part of the contract.
    from cadastre.contract import validate_fields

    return validate_fields(entity, fields)


@dataclass(frozen=True)
class CursorAdvance:
    """A sync cursor to store in the same transaction as the page it follows."""

    tenant: str
    connection: str
    stream: str
    value: Mapping[str, Any]


@dataclass(frozen=True)
class QuarantineDraft:
    """A vendor record set aside with its raw payload and a reason, in the page's transaction."""

    connection: str
    entity: str
    external_id: str | None
    reason: str
    payload: Mapping[str, Any]
    stream: str = ""  # the vendor stream, so a replay finds the mapping again
    code: str = ""  # the rejection code ("unknown_enum_value", "duplicate_in_page", ...)


@dataclass(frozen=True)
class PreparedBatch:
    """The validated fields of a batch's upserts, from ``SyncEngine.prepare``. It belongs to the
    caller that prepared it, who hands it to ``apply_batch``: concurrent syncs on one engine
    keep their own."""

    values: Mapping[int, tuple[Change, Mapping[str, Any]]]  # id(change) -> (change, fields)

    def get(self, change: Change) -> Mapping[str, Any] | None:
        found = self.values.get(id(change))
        return found[1] if found is not None and found[0] is change else None


@dataclass(frozen=True)
class BatchItem:
    """What became of one change of a batch: a result, an error, or both (a refused change's
    result is recorded and its ``OwnershipViolation`` reported)."""

    change: Change
    result: ApplyResult | None
    error: CadastreError | None = None
    # why a change with no result was rejected, as a quarantine code: "invalid_value" (the
    # contract), "timestamp_backwards" (older than the stored version, when asked to refuse)
    code: str | None = None


class SyncEngine:
    # How long an acknowledged write-back's echo is recognised (CADASTRE_WRITEBACK_ECHO_DAYS);
    # None: echoes are not looked for.
    echo_keep: timedelta | None = timedelta(days=7)

    def __init__(
        self,
        store: Store,
        registry: OwnershipRegistry,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        validate: Validator | None = None,
        new_id: Callable[[], str] | None = None,
        attempts: int = 3,
        conflict_skew: float = DEFAULT_SKEW_SECONDS,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._attempts = attempts
        self._store = store
        self._registry = registry
        self._clock = clock
        self._metrics = metrics
        self._validate: Validator = validate or _contract_validator
        self._new_id = new_id or (lambda: new_record_id(clock))
        self._skew = conflict_skew
        self._shared_fields: dict[str, frozenset[str]] = {}

    def shared(self, entity: str) -> frozenset[str]:
        """The entity's fields that several systems may write (their rules have writers): the
        ones with version vectors."""
        found = self._shared_fields.get(entity)
        if found is None:
            found = self._shared_fields[entity] = frozenset(
                f
                for f in self._registry.fields(entity)
                if (rule := self._registry.rule_for(entity, f)) is not None and rule.writers
            )
        return found

    def prepare(self, changes: Sequence[Change]) -> PreparedBatch:
        """Validate the changes' fields now, so that applying them later reuses the result:
        pass what this returns to ``apply_batch(..., prepared=)``.

        The sync runner calls this for the next page while the current one is being written:
        the database works in a thread of its own, so validation (the largest CPU cost of a
        change) overlaps it. A change that fails here is validated again, and reported, when it
        is applied. The engine keeps nothing of it: each caller holds its own batch, so syncs
        running at once on one engine never drop each other's."""
        values: dict[int, tuple[Change, Mapping[str, Any]]] = {}
        for change in changes:
            if change.operation is Operation.UPSERT:
                try:
                    values[id(change)] = (change, self._validate(change.entity, change.fields))
                except ContractError:
                    continue
        return PreparedBatch(values)

    def _validator_for(self, change: Change, prepared: PreparedBatch | None) -> Validator:
        values = prepared.get(change) if prepared is not None else None
        if values is None:
            return self._validate
        fields = change.fields

        def validate(entity: str, raw: Mapping[str, Any]) -> Mapping[str, Any]:
            if len(raw) == len(fields):  # every field admitted: the prepared values stand
                return values
            return {name: values[name] for name in raw}

        return validate

    async def resolve_conflict(
        self, tenant: str, conflict_id: str, resolution: ConflictResolution, *,
        value: Any = None, actor: str,
    ) -> Resolved:  # fmt: skip
        """Apply a person's decision on a queued conflict (``review.py``): the value as a change
        of origin core caused by the conflict, the conflict resolved, an audit entry."""
        return await resolve_conflict(
            self._store, self._clock, self._validate, tenant=tenant, conflict_id=conflict_id,
            resolution=resolution, value=value, actor=actor,
        )  # fmt: skip

    async def carry_resolution(
        self, change: Change, *, conflict_id: str, source: tuple[str, str]
    ) -> ApplyResult | None:
        """A review-queue decision on ``source`` carried to the record linked to it (``change``
        names it), as ``resolve_conflict`` wrote it: ownership not asked. None when
        ``conflict_id`` is no resolved conflict of ``source`` (the caller applies as usual)."""
        if change.canonical_id is None:
            return None
        return await carry_resolution(
            self._store, self._clock, tenant=change.tenant, conflict_id=conflict_id,
            source=source, entity=change.entity, record_id=change.canonical_id,
            values=change.fields, origin=change.origin, key=change.idempotency_key,
        )  # fmt: skip

    async def apply(self, change: Change) -> ApplyResult:
        """Apply what ``change.origin`` may write; refuse the rest, field by field.

        Raises ``ContractError``, ``OwnershipViolation`` (the refusal is committed first), and
        ``ConcurrentUpdate`` (Transient) when other writers won the race ``attempts`` times.
        """
        (item,) = await self.apply_batch([change])
        if item.error is not None:
            raise item.error
        assert item.result is not None  # noqa: S101 - no error means a result
        return item.result

    async def apply_batch(
        self,
        changes: Sequence[Change],
        *,
        cursor: CursorAdvance | None = None,
        quarantine: Sequence[QuarantineDraft] = (),
        on_reject: Callable[[BatchItem], QuarantineDraft | None] | None = None,
        refuse_backwards: bool = False,
        refuse_ties: Collection[str] = (),
        prepared: PreparedBatch | None = None,
        before: Callable[[UnitOfWork], Awaitable[Sequence[Change]]] | None = None,
        also: Callable[[UnitOfWork], Awaitable[None]] | None = None,
    ) -> list[BatchItem]:
        """Apply a page of changes of one tenant in one transaction; one item per change, in
        order. ``cursor`` is stored in the same transaction, so it never runs ahead of the
        records it covers; so are the ``quarantine`` entries of the page, and the entry
        ``on_reject`` makes of each rejected change (an item with a ``code``: nothing of a page
        is lost between its records, its quarantine and its cursor). ``refuse_backwards``
        rejects an upsert older than its record's newest version from the same system; with it,
        the upserts whose idempotency keys are in ``refuse_ties`` are rejected also when that
        version is as new (a copy that lost a tie in its page to a later one, replayed).
        ``prepared`` (from ``prepare``) holds fields validated ahead; the results are the same
        with it or without. ``before`` runs first in the batch's unit of work (again on a retry)
        and the changes it returns are applied after the batch's own, with items of their own at
        the end (identity resolution's vendor merges: re-point, then tombstone, in one
        transaction with the page). ``also`` runs last in the unit of work, before the commit
        (write-back: the target marked applied with its receipt). A change that echoes a
        write-back of ours (``sync.echo``) is dropped before planning: its item's result has
        ``echo`` set and nothing is written for it."""
        if not changes and before is None:
            if quarantine and cursor is None:
                raise ValueError("quarantine entries without changes need a cursor's tenant")
            if cursor is not None:  # a page that filtered down to nothing still moves on
                async with self._store.unit_of_work(cursor.tenant) as uow:
                    await _set_aside(uow, quarantine)
                    await uow.cursors.put(cursor.connection, cursor.stream, cursor.value)
                    await uow.commit()
            return []
        tenants = {c.tenant for c in changes} | ({cursor.tenant} if cursor else set())
        if len(tenants) != 1:
            raise ValueError(f"a batch belongs to one tenant, not {sorted(tenants)}")
        started = self._clock.monotonic()
        (tenant,) = tenants
        for attempt in range(1, self._attempts + 1):
            try:
                items = await self._attempt(
                    changes, cursor, quarantine, on_reject, refuse_backwards, refuse_ties, prepared,
                    before=before, tenant=tenant, also=also,
                )  # fmt: skip
                break
            except ConcurrentUpdate:
                # Another writer committed first (same record, same external id or same
                # idempotency key). Nothing of ours was written; a fresh read decides again.
                if attempt == self._attempts:
                    raise
        self._observe(items, self._clock.monotonic() - started)
        return items

    async def _attempt(
        self,
        changes: Sequence[Change],
        cursor: CursorAdvance | None,
        quarantine: Sequence[QuarantineDraft],
        on_reject: Callable[[BatchItem], QuarantineDraft | None] | None,
        refuse_backwards: bool,
        refuse_ties: Collection[str] = (),
        prepared: PreparedBatch | None = None,
        *,
        before: Callable[[UnitOfWork], Awaitable[Sequence[Change]]] | None = None,
        tenant: str = "",
        also: Callable[[UnitOfWork], Awaitable[None]] | None = None,
    ) -> list[BatchItem]:
        async with self._store.unit_of_work(tenant or changes[0].tenant) as uow:
            if before is not None:
                changes = [*changes, *await before(uow)]
            view = await _View.load(uow, changes, self.shared)
            echoes = await self._echoes(uow, changes)
            items = [
                _echo(c, view)
                if i in echoes
                else await self._decide(uow, view, c, refuse_backwards, refuse_ties, prepared)
                for i, c in enumerate(changes)
            ]
            await view.flush(uow)
            drafts = list(quarantine)
            if on_reject is not None:
                for item in items:
                    if item.code is not None:
                        draft = on_reject(item)
                        if draft is not None:
                            drafts.append(draft)
            await _set_aside(uow, drafts)
            if cursor is not None:
                await uow.cursors.put(cursor.connection, cursor.stream, cursor.value)
            if also is not None:
                await also(uow)
            await uow.commit()
        return items

    async def _echoes(self, uow: UnitOfWork, changes: Sequence[Change]) -> set[int]:
        if self.echo_keep is None:
            return set()
        return await find_echoes(uow, changes, since=self._clock.now() - self.echo_keep)

    async def _decide(
        self,
        uow: UnitOfWork,
        view: _View,
        change: Change,
        refuse_backwards: bool = False,
        refuse_ties: Collection[str] = (),
        prepared: PreparedBatch | None = None,
    ) -> BatchItem:
        if not self._registry.fields(change.entity):
            error = ContractError(f"unknown entity {change.entity!r}")
            return BatchItem(change, None, error, _INVALID)
        seen = view.ledger.get(change.idempotency_key)
        if seen is not None:
            result = seen.model_copy(update={"duplicate": True})
            return BatchItem(change, result, _violation(change, result))
        try:
            canonical_id, linked = view.resolve(change, self._new_id)
        except ContractError as exc:
            return BatchItem(change, None, exc, _INVALID)
        key = (change.entity, canonical_id)
        if key in view.touched:
            # A second write to one record in a page: flush first, so a flush holds at most one
            # write per record and the bulk statements stay simple.
            await view.flush(uow)
        current = view.records.get(key)
        stamps = view.stamps(key)
        if refuse_backwards and change.operation is Operation.UPSERT:
            ties = change.idempotency_key in refuse_ties
            newer = _newer_stamp(stamp_of(change.origin), stamps, ties=ties)
            if newer is not None:
                error = ContractError(
                    f"{change.entity} {change.origin.external_id!r} from {change.origin.system} "
                    f"dated {_when(change.origin.source_time, change.origin.source_version)} is "
                    f"{'no newer' if ties else 'older'} than the stored version dated "
                    f"{_when(newer.source_time, None)}"
                )
                return BatchItem(change, None, error, BACKWARDS)
        shared = self.shared(change.entity)
        target = Target(
            change, canonical_id, current, stamps,
            view.vectors.get(key, {}) if shared else {}, shared, self._skew,
        )  # fmt: skip
        try:
            if change.operation is Operation.DELETE:
                plan = plan_delete(self._registry, target)
            else:
                plan = plan_upsert(self._registry, self._validator_for(change, prepared), target)
        except ContractError as exc:
            return BatchItem(change, None, exc, _INVALID)
        if needs_reversal(target, plan):
            writes = self._reverse(view, target, plan)
        else:
            writes = build_writes(target, plan, now=self._clock.now(), link=not linked)
            view.add(change, writes)
        return BatchItem(change, writes.result, _violation(change, writes.result))

    def _reverse(self, view: _View, target: Target, plan: Plan) -> WriteSet:
        """A ledger entry's money change as a reversal (+ a replacement): ``ledger.py``."""
        change, origin, now = target.change, target.change.origin, self._clock.now()
        parts = reverse(target, plan, self._new_id)
        written: dict[str, WriteSet] = {}
        main: WriteSet | None = None
        for part in parts:
            writes = build_writes(part.target, part.plan, now=now, link=False)
            writes.ledger = part.main
            if part.repoint and origin.external_id is not None:
                writes.repoint = ExternalRef(
                    origin.system, origin.connection or "", change.entity, origin.external_id,
                    part.target.canonical_id,
                )  # fmt: skip
                view.xrefs[_xref_key(change)] = part.target.canonical_id
            view.add(change, writes)  # the main part comes last: its result stays the change's
            written[part.target.canonical_id] = writes
            if part.main:
                main = writes
        reversal = next((p for p in parts if "ReversesEntryId" in p.plan.values), None)
        if reversal is not None:
            replacement = next((p for p in parts if p.repoint), None)
            written[reversal.target.canonical_id].audit.append(
                AuditDraft(
                    actor=origin.system,
                    action="ledger.reversed",
                    entity=change.entity,
                    entity_id=target.canonical_id,
                    detail={
                        "original": target.canonical_id,
                        "reversal": reversal.target.canonical_id,
                        "replacement": replacement.target.canonical_id if replacement else None,
                        "operation": change.operation.value,
                        "altered": sorted(f for f in plan.values if f in MONEY_FIELDS),
                        "idempotency_key": change.idempotency_key,
                    },
                )
            )
        assert main is not None  # noqa: S101 - reverse() always names one main part
        return main

    def _observe(self, items: list[BatchItem], seconds: float) -> None:
        if self._metrics is None:
            return
        # Counted first, then one metric update per label set: a page is hundreds of changes.
        outcomes: Counter[tuple[str, str, str]] = Counter()
        refusals: Counter[tuple[str, str, str]] = Counter()
        entities: Counter[str] = Counter()
        for item in items:
            tenant, entity = item.change.tenant, item.change.entity
            outcomes[(tenant, entity, _outcome(item))] += 1
            entities[entity] += 1
            if item.result is not None and not item.result.duplicate:
                for refusal in item.result.refused:
                    refusals[(tenant, entity, refusal.reason.value)] += 1
        echoes = Counter(
            (i.change.tenant, i.change.origin.connection or "")
            for i in items if i.result is not None and i.result.echo
        )  # fmt: skip
        for (tenant, connection), n in echoes.items():
            self._metrics.counter("cadastre_writeback_echoes_dropped_total").labels(
                tenant, connection
            ).inc(n)
        applied = self._metrics.counter("cadastre_changes_applied_total")
        for (tenant, entity, outcome), n in outcomes.items():
            applied.labels(tenant=tenant, entity=entity, outcome=outcome).inc(n)
        refused = self._metrics.counter("cadastre_fields_refused_total")
        for (tenant, entity, reason), n in refusals.items():
            refused.labels(tenant=tenant, entity=entity, reason=reason).inc(n)
        if items:
            per_change = seconds / len(items)
            histogram = self._metrics.histogram("cadastre_apply_seconds")
            for entity, n in entities.items():
                child = histogram.labels(entity=entity)
                for _ in range(n):  # the histogram counts changes, not batches
                    child.observe(per_change)


class _View:
    """The batch's records as the store holds them plus the writes decided so far."""

    def __init__(
        self,
        ledger: dict[str, ApplyResult],
        xrefs: dict[tuple[str, str, str, str], str],
        records: dict[tuple[str, str], StoredRecord],
        provenance: dict[tuple[str, str], dict[str, FieldProvenance]],
    ) -> None:
        self.ledger = ledger
        self.xrefs = xrefs
        self.records = records
        self.provenance = provenance  # as loaded
        self.stamped: dict[tuple[str, str], dict[str, Stamp]] = {}  # as planned on, by record
        self.pending: list[WriteSet] = []
        self.touched: set[tuple[str, str]] = set()
        # shared fields' version vectors by record, as loaded and then as written in the batch
        self.vectors: dict[tuple[str, str], Mapping[str, FieldVector]] = {}

    @classmethod
    async def load(
        cls,
        uow: UnitOfWork,
        changes: Sequence[Change],
        shared: Callable[[str], frozenset[str]] | None = None,
    ) -> _View:
        ledger = await uow.applied.get_many(list(dict.fromkeys(c.idempotency_key for c in changes)))
        wanted: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        for change in changes:
            if change.origin.external_id is not None:
                wanted[_xref_group(change)].add(change.origin.external_id)
        xrefs: dict[tuple[str, str, str, str], str] = {}
        for (system, connection, entity), external_ids in wanted.items():
            found = await uow.xref.resolve_many(system, connection, entity, sorted(external_ids))
            xrefs.update({(system, connection, entity, x): cid for x, cid in found.items()})
        ids: defaultdict[str, set[str]] = defaultdict(set)
        for change in changes:
            if change.canonical_id is not None:
                ids[change.entity].add(change.canonical_id)
            if (linked := xrefs.get(_xref_key(change))) is not None:
                ids[change.entity].add(linked)
        records: dict[tuple[str, str], StoredRecord] = {}
        provenance: dict[tuple[str, str], dict[str, FieldProvenance]] = {}
        vectors: dict[tuple[str, str], Mapping[str, FieldVector]] = {}
        # One lock order for every writer (entity, then id), so overlapping batches queue for
        # each other instead of deadlocking.
        for entity, id_set in sorted(ids.items()):
            ordered = sorted(id_set)
            for id, record in (
                await uow.records.get_many(entity, ordered, for_update=True)
            ).items():
                records[(entity, id)] = record
            for id, fields in (await uow.provenance.for_records(entity, ordered)).items():
                provenance[(entity, id)] = fields
            if shared is not None and shared(entity):  # one more read, only where it matters
                for id, held in (await uow.conflicts.versions(entity, ordered)).items():
                    vectors[(entity, id)] = held
        view = cls(ledger, xrefs, records, provenance)
        view.vectors = vectors
        return view

    def stamps(self, key: tuple[str, str]) -> dict[str, Stamp]:
        """The record's stamps by field (stored, or written earlier in this batch), equal stamps
        as one object (the planner decides once per distinct stamp)."""
        if key in self.stamped:
            return self.stamped[key]
        interned: dict[tuple[Any, ...], Stamp] = {}
        out: dict[str, Stamp] = {}
        for name, p in self.provenance.get(key, {}).items():
            values = (p.system, p.connection, p.source_time, p.source_version)
            stamp = interned.get(values)
            if stamp is None:
                stamp = interned[values] = Stamp(*values)
            out[name] = stamp
        self.stamped[key] = out
        return out

    def resolve(self, change: Change, new_id: Callable[[], str]) -> tuple[str, bool]:
        """The canonical id, and whether the external id is already linked to it."""
        origin = change.origin
        found = self.xrefs.get(_xref_key(change)) if origin.external_id is not None else None
        if change.canonical_id is not None:
            if found is not None and found != change.canonical_id:
                raise ContractError(
                    f"{origin.system} {change.entity} {origin.external_id!r} is linked to "
                    f"{found}, not to {change.canonical_id}"
                )
            return change.canonical_id, found is not None
        if found is not None:
            return found, True
        return new_id(), False

    def add(self, change: Change, writes: WriteSet) -> None:
        key = (change.entity, writes.result.canonical_id)
        self.pending.append(writes)
        self.ledger[change.idempotency_key] = writes.result
        if writes.link is not None:
            link = writes.link
            self.xrefs[(link.system, link.connection, link.entity, link.external_id)] = (
                link.canonical_id
            )
        if writes.stamps:
            self.stamped[key] = {**self.stamps(key), **writes.stamps}
        if writes.versions is not None:
            self.vectors[key] = writes.versions
        if writes.record is not None or writes.stamps:
            self.touched.add(key)

    async def flush(self, uow: UnitOfWork) -> None:
        try:
            stored = await flush(uow, self.pending)
        except AlreadyExists as exc:
            # Only a link can collide here, and only because another transaction linked the
            # same external id after we looked: a race, which a fresh read resolves.
            raise ConcurrentUpdate(f"linked concurrently: {exc}") from None
        for record in stored:
            self.records[(record.entity, record.id)] = record
        self.pending, self.touched = [], set()


async def _set_aside(uow: UnitOfWork, drafts: Sequence[QuarantineDraft]) -> None:
    for draft in drafts:
        await uow.quarantine.add(
            connection=draft.connection, entity=draft.entity, external_id=draft.external_id,
            reason=draft.reason, payload=draft.payload, stream=draft.stream, code=draft.code,
        )  # fmt: skip


def _newer_stamp(
    incoming: Stamp, stamps: Mapping[str, Stamp], *, ties: bool = False
) -> Stamp | None:
    """A stored stamp of the incoming system (a field's, or the record's delete) that is newer
    than ``incoming`` (or, with ``ties``, as new), if any. Equal stamps are not newer: an equal
    time with equal content is a duplicate, with other content a same-instant update."""
    older = (-1, 0) if ties else (-1,)
    last: Stamp | None = None
    for stamp in stamps.values():
        if stamp is last:  # a record's fields mostly share one interned stamp
            continue
        last = stamp
        if stamp.system == incoming.system and compare(incoming, stamp, versions=True) in older:
            return stamp
    return None


def _when(time: datetime | None, version: str | None) -> str:
    if time is not None:
        return time.isoformat()
    return f"version {version}" if version else "at an unknown time"


def _xref_group(change: Change) -> tuple[str, str, str]:
    return (change.origin.system, change.origin.connection or "", change.entity)


def _xref_key(change: Change) -> tuple[str, str, str, str]:
    return (*_xref_group(change), change.origin.external_id or "")


def _violation(change: Change, result: ApplyResult) -> OwnershipViolation | None:
    if not forbidden_by_ownership(result):
        return None
    reasons = "; ".join(f"{r.field}: {r.reason.value} ({r.detail})" for r in result.refused)
    message = f"{change.origin.system} may not write {change.entity} {result.canonical_id}: "
    return OwnershipViolation(message + reasons, result=result)


def forbidden_by_ownership(result: ApplyResult) -> bool:
    """True when ownership let nothing of the change through: no field applied or unchanged,
    and every refusal is an ownership one (unknown fields aside). Stale or conflicting fields
    were allowed to their system, so such a change returns normally with its refusals."""
    if result.wrote or result.unchanged or not result.refused:
        return False
    reasons = {r.reason for r in result.refused}
    return bool(reasons & _OWNERSHIP) and reasons <= _OWNERSHIP | {RefusalReason.UNKNOWN_FIELD}


def _echo(change: Change, view: _View) -> BatchItem:
    found = view.xrefs.get(_xref_key(change)) if change.origin.external_id is not None else None
    result = ApplyResult(
        tenant=change.tenant, entity=change.entity,
        canonical_id=change.canonical_id or found or "", idempotency_key=change.idempotency_key,
        unchanged=sorted(change.fields), echo=True,
    )  # fmt: skip
    return BatchItem(change, result)


def _outcome(item: BatchItem) -> str:
    result = item.result
    if result is None:
        return "rejected"
    if result.echo:
        return "echo"
    if result.duplicate:
        return "duplicate"
    if result.deleted:
        return "deleted"
    if result.applied:
        return "applied"
    return "refused" if result.refused else "unchanged"
