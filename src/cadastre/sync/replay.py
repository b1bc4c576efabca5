"""Quarantine replay: re-map set-aside vendor records with the connection's *current* mapping and
apply them through the engine (``cadastre quarantine replay``).

Only the selected entries are touched (a connection's open entries, narrowed by code or by id).
Each is re-mapped from its raw payload and applied with ``apply_batch``, so ownership, staleness
and idempotency hold as for a sync:

- an entry whose record now maps and applies is resolved (so is one the ledger says was applied
  already, and one ownership refuses: the refusal is recorded, as a sync records it);
- an entry whose record is older than the version a later sync stored is resolved as superseded:
  the store keeps the newer version (the engine's ``refuse_backwards`` check, nothing written);
  so is a ``duplicate_in_page`` copy as new as the stored version (it lost a tie to a later
  copy in its page);
- an entry that fails again keeps its payload and takes the new reason and code, with its
  attempts counted (``note_failed_replay``);
- a ``malformed_page`` entry is re-parsed from its body with a lenient JSON reader (it accepts
  what the connector's strict one refuses: a byte-order mark, ``NaN``). A body that still does
  not parse stays as it is; one that does is resolved, and its records are applied or, one by
  one, quarantined under their own codes.

Applying a batch and filing its outcome are two transactions: a crash between them leaves the
entries open, and replaying them again finds their changes in the idempotency ledger.

Memory stays bounded by ``batch`` whatever the number of entries (a mass update can set aside a
whole feed): entries are read ``batch`` at a time, by keyset on the entry id (oldest first), and
so is the first pass that counts them; ids asked for are checked first, then read a batch at a
time. An entry that fails again stays open behind the keyset, so it is replayed once per run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cadastre.contract import Change
from cadastre.errors import NotFound
from cadastre.mapping.records import raw_record as read_item
from cadastre.ports import QuarantinedRecord, RawRecord
from cadastre.sync.engine import BACKWARDS, QuarantineDraft
from cadastre.sync.runner import DUPLICATE_IN_PAGE, MALFORMED_PAGE

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from cadastre.mapping import RecordMapper
    from cadastre.ports import Store, UnitOfWork
    from cadastre.sync.engine import SyncEngine

    # stream, raw payload, the stream's mapper -> the record as the connector would read it
    Rebuild = Callable[[str, Mapping[str, Any], RecordMapper], RawRecord]

UNREADABLE = "unreadable"
NO_MAPPING = "no_mapping"


@dataclass
class ReplaySummary:
    connection: str
    total: int = 0  # entries selected
    replayed: int = 0  # entries tried so far
    resolved: int = 0  # applied (or already applied), and resolved
    superseded: int = 0  # resolved because a newer version of the record is stored
    failing: Counter[str] = field(default_factory=Counter)  # still failing, by code
    requarantined: int = 0  # records of a re-read page set aside under codes of their own
    skipped: list[str] = field(default_factory=list)  # ids asked for that were already resolved


@dataclass
class _Batch:
    """One batch of entries, re-mapped: changes to apply and what became of each entry."""

    changes: list[Change] = field(default_factory=list)
    owners: dict[int, QuarantinedRecord] = field(default_factory=dict)  # id(change) -> entry
    pages: set[str] = field(default_factory=set)  # page entries: their records answer for them
    raws: dict[int, RawRecord] = field(default_factory=dict)  # id(change) -> raw, pages only
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # entry id -> reason, code
    drafts: list[QuarantineDraft] = field(default_factory=list)
    superseded: set[str] = field(default_factory=set)


class QuarantineReplay:
    def __init__(self, engine: SyncEngine, store: Store, *, batch: int = 200) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._engine = engine
        self._store = store
        self._batch = batch

    async def run(
        self,
        *,
        tenant: str,
        connection: str,
        system: str,
        mappers: Mapping[str, RecordMapper],
        code: str | None = None,
        ids: Sequence[str] = (),
        rebuild: Rebuild | None = None,
        progress: Callable[[ReplaySummary], None] | None = None,
    ) -> ReplaySummary:
        """Replay the connection's open entries (``code`` narrows them), or exactly ``ids``."""
        summary = ReplaySummary(connection)
        rebuild = rebuild or raw_record
        if ids:
            chosen = await self._chosen(tenant, connection, ids, summary)
            summary.total = len(chosen)
            for start in range(0, len(chosen), self._batch):
                chunk = await self._entries(tenant, chosen[start : start + self._batch])
                await self._replay(tenant, system, mappers, rebuild, chunk, summary)
                if progress is not None:
                    progress(summary)
            return summary
        summary.total, last = await self._count(tenant, connection, code)
        after: str | None = None
        while summary.replayed < summary.total:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                chunk = await uow.quarantine.open_items(
                    connection, code=code, after=after, limit=self._batch
                )
            if not chunk:
                break
            # No more than counted, and none after the last counted: entries a sync (or this
            # replay, re-reading a page) adds meanwhile wait for the next replay.
            chunk = chunk[: summary.total - summary.replayed]
            ids_of = [q.id for q in chunk]
            if last in ids_of:
                chunk = chunk[: ids_of.index(last) + 1]
            after = chunk[-1].id  # past it, resolved or not: a failing entry is not met twice
            await self._replay(tenant, system, mappers, rebuild, chunk, summary)
            if progress is not None:
                progress(summary)
            if after == last:
                break
        return summary

    async def _chosen(
        self, tenant: str, connection: str, ids: Sequence[str], summary: ReplaySummary
    ) -> list[str]:
        """The open entries among ``ids``, checked before any is replayed (a wrong id changes
        nothing); ids only, so that many ids do not hold many payloads."""
        chosen: list[str] = []
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            for id in dict.fromkeys(ids):
                entry = await uow.quarantine.get(id)
                if entry is None or entry.connection != connection:
                    raise NotFound(
                        f"quarantine entry {id!r} does not exist for connection {connection!r}"
                    )
                if entry.resolved_at is not None:
                    summary.skipped.append(id)
                else:
                    chosen.append(id)
        return chosen

    async def _entries(self, tenant: str, ids: Sequence[str]) -> list[QuarantinedRecord]:
        entries: list[QuarantinedRecord] = []
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            for id in ids:
                entry = await uow.quarantine.get(id)
                if entry is not None and entry.resolved_at is None:  # not resolved meanwhile
                    entries.append(entry)
        return entries

    async def _count(self, tenant: str, connection: str, code: str | None) -> tuple[int, str]:
        """How many entries are open, and the last one's id, read ``batch`` at a time."""
        total, after = 0, ""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            while page := await uow.quarantine.open_items(
                connection, code=code, after=after or None, limit=self._batch
            ):
                total += len(page)
                after = page[-1].id
        return total, after

    async def _replay(
        self,
        tenant: str,
        system: str,
        mappers: Mapping[str, RecordMapper],
        rebuild: Rebuild,
        entries: Sequence[QuarantinedRecord],
        summary: ReplaySummary,
    ) -> None:
        batch = _Batch()
        for entry in entries:
            mapper = _mapper_for(entry, mappers)
            if mapper is None:
                why = f"no mapping for stream {entry.stream or '?'} ({entry.entity})"
                # The data may be fine: the entry keeps its code for a later replay to find.
                batch.failed[entry.id] = (why, entry.code or NO_MAPPING)
            elif entry.code == MALFORMED_PAGE:
                _remap_page(entry, mapper, rebuild, tenant, system, batch)
            else:
                _remap_record(entry, mapper, rebuild, tenant, system, batch)
        # In source order, so two versions of one record replayed together end on the newest.
        batch.changes.sort(key=_source_time)
        if batch.changes:
            # A copy that lost its page to a later copy of the same time is superseded by it
            # (the vendor's last word), not a same-instant update over it.
            ties = {
                c.idempotency_key
                for c in batch.changes
                if batch.owners[id(c)].code == DUPLICATE_IN_PAGE
            }
            items = await self._engine.apply_batch(
                batch.changes, refuse_backwards=True, refuse_ties=ties
            )
            for item in items:
                owner = batch.owners[id(item.change)]
                if item.code is None:
                    continue  # applied, already applied, or refused by ownership (recorded)
                if item.code == BACKWARDS:
                    if owner.id not in batch.pages:
                        batch.superseded.add(owner.id)
                    continue
                reason = str(item.error)
                if owner.id in batch.pages:
                    raw = batch.raws[id(item.change)]
                    batch.drafts.append(_draft(owner, raw, reason, item.code))
                else:
                    batch.failed[owner.id] = (reason, item.code)
        async with self._store.unit_of_work(tenant) as uow:
            await _file(uow, entries, batch, summary)
            await uow.commit()


async def _file(
    uow: UnitOfWork, entries: Sequence[QuarantinedRecord], batch: _Batch, summary: ReplaySummary
) -> None:
    for draft in batch.drafts:
        await uow.quarantine.add(
            connection=draft.connection, entity=draft.entity, external_id=draft.external_id,
            reason=draft.reason, payload=draft.payload, stream=draft.stream, code=draft.code,
        )  # fmt: skip
    summary.requarantined += len(batch.drafts)
    for entry in entries:
        summary.replayed += 1
        failed = batch.failed.get(entry.id)
        if failed is not None:
            reason, code = failed
            await uow.quarantine.note_failed_replay(entry.id, reason=reason, code=code)
            summary.failing[code] += 1
            continue
        await uow.quarantine.resolve(entry.id)
        summary.resolved += 1
        if entry.id in batch.superseded:
            summary.superseded += 1


def _remap_record(
    entry: QuarantinedRecord,
    mapper: RecordMapper,
    rebuild: Rebuild,
    tenant: str,
    system: str,
    batch: _Batch,
) -> None:
    stream = entry.stream or mapper.stream
    payload: Mapping[str, Any] = entry.payload
    if entry.code == UNREADABLE and set(payload) == {"value"}:
        # The connector wrapped an item that was not a record; it still is not one unless the
        # stored item is an object.
        inner = payload["value"]
        if not isinstance(inner, dict):
            why = f"not a record: a JSON {type(inner).__name__}"
            batch.failed[entry.id] = (why, UNREADABLE)
            return
        payload = inner
    raw = rebuild(stream, payload, mapper)
    # Fresh as when it arrived: the time in quarantine is not the data's age.
    mapped = mapper.map(
        raw, tenant=tenant, connection=entry.connection, system=system, now=entry.created_at
    )
    if isinstance(mapped, Change):
        batch.changes.append(mapped)
        batch.owners[id(mapped)] = entry
    else:
        batch.failed[entry.id] = (mapped.reason, mapped.code)


def _remap_page(
    entry: QuarantinedRecord,
    mapper: RecordMapper,
    rebuild: Rebuild,
    tenant: str,
    system: str,
    batch: _Batch,
) -> None:
    items, problem = parse_page(entry.payload.get("body"))
    if problem is not None:
        batch.failed[entry.id] = (f"still unreadable: {problem}", MALFORMED_PAGE)
        return
    batch.pages.add(entry.id)
    stream = entry.stream or mapper.stream
    for item in items:
        if not isinstance(item, dict):
            raw = RawRecord(stream, None, {"value": item}, None,
                            problem=f"not a record: a JSON {type(item).__name__}")  # fmt: skip
        else:
            raw = rebuild(stream, item, mapper)
        mapped = mapper.map(
            raw, tenant=tenant, connection=entry.connection, system=system, now=entry.created_at
        )
        if isinstance(mapped, Change):
            batch.changes.append(mapped)
            batch.owners[id(mapped)] = entry
            batch.raws[id(mapped)] = raw
        else:
            batch.drafts.append(_draft(entry, raw, mapped.reason, mapped.code))


def parse_page(body: Any) -> tuple[list[Any], str | None]:
    """The items of a page body (an OData collection, or a bare JSON array), or why not."""
    if not isinstance(body, str):
        return [], "the entry holds no page body"
    try:
        # NaN and Infinity (which strict readers refuse) are read as no value: null.
        parsed = json.loads(body.removeprefix("\ufeff"), parse_constant=lambda _: None)
    except ValueError as exc:
        return [], f"not JSON ({exc})"
    if isinstance(parsed, dict) and isinstance(parsed.get("value"), list):
        return parsed["value"], None
    if isinstance(parsed, list):
        return parsed, None
    return [], "not an OData collection"


def raw_record(stream: str, payload: Mapping[str, Any], mapper: RecordMapper) -> RawRecord:
    """A stored payload read again as a connector reads an item (see ``mapping.records``)."""
    return read_item(stream, payload, mapper.key, mapper.timestamp)


def _mapper_for(
    entry: QuarantinedRecord, mappers: Mapping[str, RecordMapper]
) -> RecordMapper | None:
    if entry.stream:
        return mappers.get(entry.stream)
    # Entries from before streams were recorded: the connection's mapper of their entity.
    return next((m for m in mappers.values() if m.entity == entry.entity), None)


def _draft(entry: QuarantinedRecord, raw: RawRecord, reason: str, code: str) -> QuarantineDraft:
    return QuarantineDraft(
        entry.connection, entry.entity, raw.external_id, reason, dict(raw.data),
        stream=raw.stream, code=code,
    )  # fmt: skip


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _source_time(change: Change) -> datetime:
    return change.origin.source_time or _NO_TIME
