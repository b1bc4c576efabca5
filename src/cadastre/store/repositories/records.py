"""Canonical records, one at a time, a page at a time, or filtered on fields of their data.

The bulk methods exist for the sync engine's page-level apply: whatever the page size,
``get_many`` is one ``SELECT ... WHERE id IN (...)`` per ``IN_CHUNK`` ids and ``put_many`` is at
most one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (new records) plus one
executemany ``UPDATE ... WHERE version = ?`` (existing ones). The single-row methods are the bulk
ones with one item, so both follow the same rules.

``query`` reads JSON fields with each database's own functions, so its conditions differ by
dialect; both read a value only once it has the shape its kind needs (a CASE, because
PostgreSQL's casts fail the whole statement on one bad value and neither database promises the
order in which it evaluates the operands of AND). The shapes are the regular expressions below
(SQLite evaluates them through the ``regexp`` function SQLAlchemy registers on every connection).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    DateTime,
    Integer,
    Numeric,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)

from cadastre.errors import ConcurrentUpdate
from cadastre.ports import RecordWrite, StoredRecord
from cadastre.store import tables as t
from cadastre.store.canonical import canonical_copy
from cadastre.store.repositories.base import SqlRepository, chunked

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from sqlalchemy import ColumnElement, Row

    from cadastre.ports import FieldFilter

_c = t.records.c
# One compiled statement for every batch: the key and the expected version are bound per row,
# the new values go to SET by their column names.
_UPDATE = update(t.records).where(
    _c.tenant == bindparam("k_tenant"),
    _c.entity == bindparam("k_entity"),
    _c.id == bindparam("k_id"),
    _c.version == bindparam("k_expected"),
)


def _record(row: Row[Any]) -> StoredRecord:
    return StoredRecord(
        row.entity, row.id, row.version, row.data, row.content_hash, row.deleted, row.updated_at,
        row.confidence,
    )  # fmt: skip


def _values(record: StoredRecord) -> dict[str, Any]:
    return {
        "version": record.version, "data": record.data, "content_hash": record.content_hash,
        "deleted": record.deleted, "updated_at": record.updated_at,
        "confidence": record.confidence,
    }  # fmt: skip


class SqlRecords(SqlRepository):
    async def get(self, entity: str, id: str, *, for_update: bool = False) -> StoredRecord | None:
        return (await self.get_many(entity, [id], for_update=for_update)).get(id)

    async def get_many(
        self, entity: str, ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, StoredRecord]:
        found: dict[str, StoredRecord] = {}
        # Sorted, and locked in id order: two batches that lock overlapping records queue on
        # each other instead of deadlocking.
        for chunk in chunked(sorted(ids) if for_update and len(ids) > 1 else ids):
            query = select(t.records).where(
                _c.tenant == self.tenant, _c.entity == entity, _c.id.in_(chunk)
            )
            if for_update:  # SQLite renders nothing: BEGIN IMMEDIATE already holds the lock
                query = query.order_by(_c.id).with_for_update()
            for row in await self.execute(query):
                found[row.id] = _record(row)
        return found

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
        write = RecordWrite(entity, id, data, expected_version, deleted, confidence)
        return (await self.put_many([write]))[0]

    async def put_many(self, writes: Sequence[RecordWrite]) -> list[StoredRecord]:
        if not writes:
            return []
        if len({(w.entity, w.id) for w in writes}) != len(writes):
            raise ValueError("put_many takes at most one write per record")
        now = self.now()
        stored: list[StoredRecord] = []
        for w in writes:
            copied, digest = canonical_copy(w.data)
            version = w.expected_version + 1
            stored.append(
                StoredRecord(w.entity, w.id, version, copied, digest, w.deleted, now, w.confidence)
            )
        new = [s for s, w in zip(stored, writes, strict=True) if w.expected_version == 0]
        changed = [s for s, w in zip(stored, writes, strict=True) if w.expected_version != 0]
        if new:
            await self._insert(new)
        if changed:
            await self._update(changed)
        return stored

    async def _insert(self, new: list[StoredRecord]) -> None:
        rows = [{"tenant": self.tenant, "entity": s.entity, "id": s.id, **_values(s)} for s in new]
        statement = self.insert(t.records).on_conflict_do_nothing().returning(_c.entity, _c.id)
        inserted = {(r.entity, r.id) for r in await self.execute(statement, rows)}
        if len(inserted) != len(new):
            raise await self._conflict([s for s in new if (s.entity, s.id) not in inserted])

    async def _update(self, changed: list[StoredRecord]) -> None:
        rows = [
            {"k_tenant": self.tenant, "k_entity": s.entity, "k_id": s.id,
             "k_expected": s.version - 1, **_values(s)}
            for s in changed
        ]  # fmt: skip
        # An executemany's rowcount is the sum over its rows on both drivers (SQLAlchemy's
        # supports_sane_multi_rowcount; the conformance suite checks a mismatch inside a batch).
        if len(rows) == 1 or not self._uow.connection.dialect.supports_sane_multi_rowcount:
            updated = 0
            for row in rows:  # one guarded UPDATE ... RETURNING per row
                updated += (await self.execute(_UPDATE.returning(_c.id), row)).first() is not None
        else:
            updated = (await self.execute(_UPDATE, rows)).rowcount  # type: ignore[attr-defined]
        if updated != len(changed):
            raise await self._conflict(changed)

    async def _conflict(self, candidates: list[StoredRecord]) -> ConcurrentUpdate:
        """The error for a batch some of whose ``candidates`` were not written: names the first
        one whose stored state is not what was written."""
        current: dict[tuple[str, str], StoredRecord] = {}
        for entity in dict.fromkeys(s.entity for s in candidates):
            found = await self.get_many(entity, [s.id for s in candidates if s.entity == entity])
            current.update({(entity, id): record for id, record in found.items()})
        failed = next((s for s in candidates if current.get((s.entity, s.id)) != s), candidates[0])
        now = current.get((failed.entity, failed.id))
        return ConcurrentUpdate(
            f"{failed.entity} {failed.id!r} is at version {now.version if now else 0}, "
            f"not {failed.version - 1}"
        )

    async def scan(
        self,
        entity: str,
        *,
        after_id: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> AsyncIterator[StoredRecord]:
        query = select(t.records).where(_c.tenant == self.tenant, _c.entity == entity)
        if after_id is not None:
            query = query.where(_c.id > after_id)
        if not include_deleted:
            query = query.where(_c.deleted.is_(False))
        for row in await self.execute(query.order_by(_c.id).limit(limit)):
            yield _record(row)

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
        if limit < 0:
            raise ValueError("limit must not be negative")
        condition = _postgres if self._uow.connection.dialect.name == "postgresql" else _sqlite
        query = select(t.records).where(
            _c.tenant == self.tenant, _c.entity == entity, *(condition(f) for f in filters)
        )
        if after_id is not None:
            query = query.where(_c.id > after_id)
        if not include_deleted:
            query = query.where(_c.deleted.is_(False))
        if min_confidence is not None:  # unscored records (NULL) are kept: nothing says less
            query = query.where(or_(_c.confidence.is_(None), _c.confidence >= min_confidence))
        return [_record(row) for row in await self.execute(query.order_by(_c.id).limit(limit))]

    async def count(self, entity: str | None = None) -> int:
        query = select(func.count()).where(_c.tenant == self.tenant, _c.deleted.is_(False))
        if entity is not None:
            query = query.where(_c.entity == entity)
        return int((await self.execute(query)).scalar_one())


# ------------------------------------------------------------------------------ query filters

# What a stored string must look like to be read as a number or an instant: the rules of
# ``FieldFilter``, the same on every adapter (the fake uses these patterns too). "(?!.*\n)"
# because Python's "$" also matches before a final newline and PostgreSQL's does not.
NUMBER_PATTERN = r"^(?!.*\n)-?[0-9]{1,200}(\.[0-9]{1,200})?([eE][+-]?[0-9]{1,3})?$"
TIME_PATTERN = (
    r"^(?!.*\n)[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
_OPS = {"eq": "__eq__", "gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _compare(left: ColumnElement[Any], f: FieldFilter, right: Any) -> ColumnElement[bool]:
    # NULL (a missing field, or a value of the wrong shape) compares as unknown: no match
    compared: ColumnElement[bool] = getattr(left, _OPS[f.op])(right)
    return compared


def _real_date(text: ColumnElement[Any]) -> ColumnElement[bool]:
    """The day exists in its month (the pattern allows 31 everywhere); PostgreSQL refuses
    2026-02-30, SQLite would roll it over to March."""
    year = cast(func.substr(text, 1, 4), Integer)
    month = cast(func.substr(text, 6, 2), Integer)
    day = cast(func.substr(text, 9, 2), Integer)
    leap = or_(and_(year % 4 == 0, year % 100 != 0), year % 400 == 0)
    days = case((month == 2, case((leap, 29), else_=28)), (month.in_([4, 6, 9, 11]), 30), else_=31)
    return day <= days


def _sqlite(f: FieldFilter) -> ColumnElement[bool]:
    path = f'$."{f.field}"'  # the name is letters, digits and '_' (FieldFilter checks)
    kind = func.json_type(_c.data, path)
    raw = func.json_extract(_c.data, path)
    if f.kind == "text":
        text = case((kind == "text", raw))
        if f.casefold:  # SQLite's lower() folds ASCII letters only, the FieldFilter rule
            return _compare(func.lower(text), f, str(f.value).translate(_ASCII_LOWER))
        return _compare(text, f, literal(f.value, String))
    if f.kind == "number":
        number = case(
            (kind.in_(["integer", "real"]), raw),
            (kind == "text", case((raw.regexp_match(NUMBER_PATTERN), cast(raw, Numeric)))),
        )
        return _compare(number, f, literal(_sqlite_number(f.value)))
    # julianday() on both sides: the same millisecond arithmetic for both, offsets included
    instant = case(
        (kind == "text",
         case((and_(raw.regexp_match(TIME_PATTERN), _real_date(raw)), func.julianday(raw)))),
    )  # fmt: skip
    value = f.value.isoformat() if isinstance(f.value, datetime) else str(f.value)
    return _compare(instant, f, func.julianday(literal(value, String)))


def _sqlite_number(value: Any) -> int | float:
    """SQLite compares INTEGER exactly and REAL as a double; it cannot bind a Decimal."""
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if number == number.to_integral_value() and abs(number) < 2**63:
        return int(number)
    return float(number)


def _postgres(f: FieldFilter) -> ColumnElement[bool]:
    kind = func.jsonb_typeof(func.jsonb_extract_path(_c.data, literal(f.field, String)))
    raw = func.jsonb_extract_path_text(_c.data, literal(f.field, String))
    if f.kind == "text":
        text = case((kind == "string", raw))
        if f.casefold:  # under the "C" collation lower() folds ASCII letters only, like SQLite
            folded = func.lower(text.collate("C"))
            return _compare(folded, f, str(f.value).translate(_ASCII_LOWER))
        return _compare(text, f, literal(f.value, String))
    if f.kind == "number":
        number = case(
            (kind == "number", cast(raw, Numeric)),
            (kind == "string", case((raw.regexp_match(NUMBER_PATTERN), cast(raw, Numeric)))),
        )
        value = Decimal(str(f.value)) if isinstance(f.value, float) else f.value
        return _compare(number, f, literal(value, Numeric))
    instant = case(
        (kind == "string",
         case((raw.regexp_match(TIME_PATTERN),
               case((_real_date(raw), cast(raw, DateTime(timezone=True))))))),
    )  # fmt: skip
    return _compare(instant, f, literal(f.value, DateTime(timezone=True)))
