"""What hangs off canonical records: field provenance, the external-id cross reference and the
per-connection sync cursors. (Kept apart from ``records.py`` since the bulk methods arrived, to
keep both modules short.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cadastre.errors import AlreadyExists
from cadastre.ports import (
    ExternalRef,
    FieldProvenance,
    ProvenanceWrite,
    SchemaSnapshot,
    SyncCursor,
)
from cadastre.store import tables as t
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cadastre.ports import StampValues


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _unpack(entity: str, id: str, blob: Mapping[str, Any]) -> dict[str, FieldProvenance]:
    stamps = [
        (system, connection, _time(source_time), version, confidence, _time(recorded))
        for system, connection, source_time, version, confidence, recorded in blob["stamps"]
    ]
    out: dict[str, FieldProvenance] = {}
    for field, index in blob["fields"].items():
        system, connection, source_time, version, confidence, recorded = stamps[index]
        assert recorded is not None  # noqa: S101 - written by _pack, always set
        out[field] = FieldProvenance(
            entity, id, field, system, connection, source_time, version, confidence, recorded
        )
    return out


class SqlProvenance(SqlRepository):
    """Field provenance kept as one JSON row per record (migration 0002): writing a record's
    78 fields costs one row, not 78."""

    async def for_record(self, entity: str, id: str) -> dict[str, FieldProvenance]:
        return (await self.for_records(entity, [id])).get(id, {})

    async def for_records(
        self, entity: str, ids: Sequence[str]
    ) -> dict[str, dict[str, FieldProvenance]]:
        return {
            id: _unpack(entity, id, blob)
            for id, blob in (await self._blobs(entity, ids)).items()
            if blob["fields"]
        }

    async def _blobs(self, entity: str, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        c = t.record_provenance.c
        found: dict[str, Mapping[str, Any]] = {}
        for chunk in chunked(ids):
            rows = await self.execute(
                select(c.id, c.fields).where(
                    c.tenant == self.tenant, c.entity == entity, c.id.in_(chunk)
                )
            )
            found.update((r.id, r.fields) for r in rows)
        return found

    async def record(self, items: Sequence[FieldProvenance]) -> None:
        """Upsert by (entity, id, field): the record's other fields keep their stamps."""
        await self.record_many([
            ProvenanceWrite(p.entity, p.id, ((p.system, p.connection, p.source_time,
                                              p.source_version, p.confidence, p.recorded_at),),
                            {p.field: 0})
            for p in items
        ])  # fmt: skip

    async def record_many(self, writes: Sequence[ProvenanceWrite]) -> None:
        if not writes:
            return
        by_entity: dict[str, list[str]] = {}
        for write in writes:
            by_entity.setdefault(write.entity, []).append(write.id)
        blobs: dict[tuple[str, str], dict[str, Any]] = {}
        for entity, ids in by_entity.items():
            for id, blob in (await self._blobs(entity, ids)).items():
                blobs[(entity, id)] = {
                    "stamps": list(blob["stamps"]),
                    "fields": dict(blob["fields"]),
                }
        for write in writes:
            key = (write.entity, write.id)
            stamps = [_stamp_json(s) for s in write.stamps]
            held = blobs.get(key)
            if held is None:
                blobs[key] = {"stamps": stamps, "fields": dict(write.fields)}
                continue
            offset = len(held["stamps"])
            held["stamps"] += stamps
            held["fields"].update(
                write.fields if offset == 0 else {f: i + offset for f, i in write.fields.items()}
            )
            _compact(held)
        rows = [{"tenant": self.tenant, "entity": entity, "id": id, "fields": blob}
                for (entity, id), blob in blobs.items()]  # fmt: skip
        statement = self.insert(t.record_provenance)
        # executemany form: the statement compiles once and is cached; a multi-row VALUES
        # built per call compiled anew every time and cost more than the database work.
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "entity", "id"],
                set_={"fields": statement.excluded.fields},
            ),
            rows,
        )


def _stamp_json(values: StampValues) -> list[Any]:
    system, connection, source_time, version, confidence, recorded = values
    return [system, connection, _iso(source_time), version, confidence, _iso(recorded)]


def _compact(blob: dict[str, Any]) -> None:
    """Drop stamps no field points at any more, and repeats, renumbering the fields."""
    stamps, fields = blob["stamps"], blob["fields"]
    kept: list[Any] = []
    where: dict[str, int] = {}
    renumber: dict[int, int] = {}
    for index in sorted(set(fields.values())):
        text = repr(stamps[index])
        if text not in where:
            where[text] = len(kept)
            kept.append(stamps[index])
        renumber[index] = where[text]
    blob["stamps"] = kept
    blob["fields"] = {f: renumber[i] for f, i in fields.items()}


class SqlXref(SqlRepository):
    async def resolve(
        self, system: str, connection: str, entity: str, external_id: str
    ) -> str | None:
        return (await self.resolve_many(system, connection, entity, [external_id])).get(external_id)

    async def resolve_many(
        self, system: str, connection: str, entity: str, external_ids: Sequence[str]
    ) -> dict[str, str]:
        c = t.external_refs.c
        found: dict[str, str] = {}
        for chunk in chunked(external_ids):
            query = select(c.external_id, c.canonical_id).where(
                c.tenant == self.tenant, c.system == system, c.connection == connection,
                c.entity == entity, c.external_id.in_(chunk),
            )  # fmt: skip
            found.update((r.external_id, r.canonical_id) for r in await self.execute(query))
        return found

    async def link(self, ref: ExternalRef) -> None:
        await self.link_many([ref])

    async def link_many(self, refs: Sequence[ExternalRef]) -> None:
        """One multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``; the refs it did not
        insert (already linked) are read back and must point at the same canonical id."""
        if not refs:
            return
        c = t.external_refs.c
        rows = [
            {"tenant": self.tenant, "system": r.system, "connection": r.connection,
             "entity": r.entity, "external_id": r.external_id, "canonical_id": r.canonical_id}
            for r in refs
        ]  # fmt: skip
        statement = (
            self.insert(t.external_refs)
            .on_conflict_do_nothing()
            .returning(c.system, c.connection, c.entity, c.external_id, c.canonical_id)
        )
        linked: dict[tuple[str, str, str, str], str] = {}
        for row in await self.execute(statement, rows):
            linked[(row.system, row.connection, row.entity, row.external_id)] = row.canonical_id
        already: dict[tuple[str, str, str], list[str]] = {}
        for r in refs:
            if (r.system, r.connection, r.entity, r.external_id) not in linked:
                already.setdefault((r.system, r.connection, r.entity), []).append(r.external_id)
        for (system, connection, entity), external_ids in already.items():
            found = await self.resolve_many(system, connection, entity, external_ids)
            linked.update(((system, connection, entity, x), cid) for x, cid in found.items())
        for ref in refs:
            current = linked.get((ref.system, ref.connection, ref.entity, ref.external_id))
            if current != ref.canonical_id:
                raise AlreadyExists(
                    f"{ref.system}/{ref.connection} {ref.entity} {ref.external_id!r} is already "
                    f"linked to {current!r}"
                )

    async def for_record(self, entity: str, canonical_id: str) -> list[ExternalRef]:
        c = t.external_refs.c
        rows = await self.execute(
            select(t.external_refs)
            .where(c.tenant == self.tenant, c.entity == entity, c.canonical_id == canonical_id)
            .order_by(c.system, c.connection, c.external_id)
        )
        return [
            ExternalRef(r.system, r.connection, r.entity, r.external_id, r.canonical_id)
            for r in rows
        ]

    async def for_connection(
        self, connection: str, entity: str, *, after: str | None = None, limit: int = 1000
    ) -> list[ExternalRef]:
        c = t.external_refs.c
        query = select(t.external_refs).where(
            c.tenant == self.tenant, c.connection == connection, c.entity == entity
        )
        if after is not None:
            query = query.where(c.external_id > after)
        rows = await self.execute(query.order_by(c.external_id).limit(limit))
        return [
            ExternalRef(r.system, r.connection, r.entity, r.external_id, r.canonical_id)
            for r in rows
        ]


class SqlSchemas(SqlRepository):
    async def get(self, connection: str, stream: str) -> SchemaSnapshot | None:
        c = t.schema_snapshots.c
        query = select(t.schema_snapshots).where(
            c.tenant == self.tenant, c.connection == connection, c.stream == stream
        )
        row = (await self.execute(query)).first()
        if row is None:
            return None
        return SchemaSnapshot(
            row.connection, row.stream, row.declared, list(row.seen_fields),
            {name: list(values) for name, values in row.seen_values.items()}, row.taken_at,
        )  # fmt: skip

    async def put(self, snapshot: SchemaSnapshot) -> None:
        statement = self.insert(t.schema_snapshots).values(
            tenant=self.tenant, connection=snapshot.connection, stream=snapshot.stream,
            declared=json_copy(snapshot.declared), seen_fields=list(snapshot.seen_fields),
            seen_values={k: list(v) for k, v in snapshot.seen_values.items()},
            taken_at=snapshot.taken_at,
        )  # fmt: skip
        excluded = statement.excluded
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "connection", "stream"],
                set_={
                    "declared": excluded.declared,
                    "seen_fields": excluded.seen_fields,
                    "seen_values": excluded.seen_values,
                    "taken_at": excluded.taken_at,
                },
            )
        )


class SqlCursors(SqlRepository):
    async def get(self, connection: str, stream: str) -> SyncCursor | None:
        c = t.sync_cursors.c
        query = select(t.sync_cursors).where(
            c.tenant == self.tenant, c.connection == connection, c.stream == stream
        )
        row = (await self.execute(query)).first()
        return (
            None
            if row is None
            else SyncCursor(row.connection, row.stream, row.value, row.updated_at)
        )

    async def put(self, connection: str, stream: str, value: Mapping[str, Any]) -> SyncCursor:
        cursor = SyncCursor(connection, stream, json_copy(value), self.now())
        statement = self.insert(t.sync_cursors).values(
            tenant=self.tenant, connection=connection, stream=stream, value=cursor.value,
            updated_at=cursor.updated_at,
        )  # fmt: skip
        await self.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "connection", "stream"],
                set_={
                    "value": statement.excluded.value,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
        return cursor
