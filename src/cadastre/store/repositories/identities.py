"""Identity resolution: the links between records of one person (``identity_links``), the match
keys the matcher finds candidates by (``identity_keys``), and the cross-reference move a vendor
merge needs (``external_refs``).

A pair has one live link: the partial unique index ``uq_identity_links_pair`` (live rows only)
decides it, through ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` so a transaction is never left
aborted. A resident has at most one live ``linked`` row (``uq_identity_links_linked``); ``add`` and
``update`` look before they write, so the index only catches a true race.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, tuple_, update

from cadastre.errors import AlreadyExists
from cadastre.ports import IdentityLink, LinkHow, LinkState
from cadastre.store import tables as t
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy import Row

    from cadastre.ports import ExternalRef

_c = t.identity_links.c
_LINKED = LinkState.LINKED.value


def _link(row: Row[Any]) -> IdentityLink:
    return IdentityLink(
        id=row.id, left_entity=row.left_entity, left_id=row.left_id,
        right_entity=row.right_entity, right_id=row.right_id, confidence=row.confidence,
        evidence=row.evidence, state=LinkState(row.state), how=LinkHow(row.how),
        made_by=row.made_by, made_at=row.made_at, note=row.note, broken_by=row.broken_by,
        broken_at=row.broken_at, broken_reason=row.broken_reason,
    )  # fmt: skip


def _values(link: IdentityLink) -> dict[str, Any]:
    return {
        "left_entity": link.left_entity, "left_id": link.left_id,
        "right_entity": link.right_entity, "right_id": link.right_id,
        "confidence": float(link.confidence), "evidence": dict(link.evidence),
        "state": link.state.value, "how": link.how.value, "made_by": link.made_by,
        "made_at": link.made_at, "note": link.note, "broken_by": link.broken_by,
        "broken_at": link.broken_at, "broken_reason": link.broken_reason,
    }  # fmt: skip


def check_link(link: IdentityLink) -> None:
    """What every adapter refuses before writing (the fake uses it too)."""
    if not 0.0 <= link.confidence <= 1.0:
        raise ValueError(f"confidence {link.confidence} is not within 0..1")
    if (link.left_entity, link.left_id) == (link.right_entity, link.right_id):
        raise ValueError("a record cannot be linked to itself")


class SqlIdentities(SqlRepository):
    async def _linked_elsewhere(self, link: IdentityLink) -> str | None:
        """The id of another live ``linked`` link of ``link``'s right record, if any."""
        query = select(_c.id).where(
            _c.tenant == self.tenant, _c.right_entity == link.right_entity,
            _c.right_id == link.right_id, _c.state == _LINKED, _c.broken_at.is_(None),
            _c.id != link.id,
        )  # fmt: skip
        return (await self.execute(query)).scalar_one_or_none()

    async def add(self, link: IdentityLink) -> None:
        check_link(link)
        if link.live and link.state is LinkState.LINKED:
            other = await self._linked_elsewhere(link)
            if other is not None:
                raise AlreadyExists(
                    f"{link.right_entity} {link.right_id} is already linked ({other})"
                )
        inserted = await self.wrote(
            self.insert(t.identity_links)
            .values(tenant=self.tenant, id=link.id, **_values(link))
            .on_conflict_do_nothing()
            .returning(_c.id)
        )
        if not inserted:
            raise AlreadyExists(
                f"link {link.id} or a live link of {link.left_entity} {link.left_id} and "
                f"{link.right_entity} {link.right_id} exists already"
            )

    async def get(self, id: str) -> IdentityLink | None:
        query = select(t.identity_links).where(_c.tenant == self.tenant, _c.id == id)
        row = (await self.execute(query)).first()
        return None if row is None else _link(row)

    async def for_pair(
        self, left_entity: str, left_id: str, right_entity: str, right_id: str
    ) -> IdentityLink | None:
        query = select(t.identity_links).where(
            _c.tenant == self.tenant, _c.left_entity == left_entity, _c.left_id == left_id,
            _c.right_entity == right_entity, _c.right_id == right_id, _c.broken_at.is_(None),
        )  # fmt: skip
        row = (await self.execute(query)).first()
        return None if row is None else _link(row)

    async def for_record(
        self, entity: str, id: str, *, include_broken: bool = False
    ) -> list[IdentityLink]:
        query = select(t.identity_links).where(
            _c.tenant == self.tenant,
            or_(
                (_c.left_entity == entity) & (_c.left_id == id),
                (_c.right_entity == entity) & (_c.right_id == id),
            ),
        )
        if not include_broken:
            query = query.where(_c.broken_at.is_(None))
        return [_link(r) for r in await self.execute(query.order_by(_c.position))]

    async def find(
        self, *, state: LinkState | None = None, after: str | None = None, limit: int = 100
    ) -> list[IdentityLink]:
        query = select(t.identity_links).where(_c.tenant == self.tenant, _c.broken_at.is_(None))
        if state is not None:
            query = query.where(_c.state == state.value)
        if after is not None:
            start = select(_c.position).where(_c.tenant == self.tenant, _c.id == after)
            query = query.where(_c.position > start.scalar_subquery())
        rows = await self.execute(query.order_by(_c.position).limit(limit))
        return [_link(r) for r in rows]

    async def update(self, link: IdentityLink, *, expected_state: LinkState) -> bool:
        check_link(link)
        if link.live and link.state is LinkState.LINKED:
            other = await self._linked_elsewhere(link)
            if other is not None:
                raise AlreadyExists(
                    f"{link.right_entity} {link.right_id} is already linked ({other})"
                )
        values = _values(link)
        for fixed in ("left_entity", "left_id", "right_entity", "right_id"):
            values.pop(fixed)  # a link's pair never changes; a merge makes a new link
        statement = (
            update(t.identity_links)
            .where(
                _c.tenant == self.tenant,
                _c.id == link.id,
                _c.broken_at.is_(None),
                _c.state == expected_state.value,
            )
            .values(**values)
            .returning(_c.id)
        )
        return await self.wrote(statement)

    async def set_keys(self, entity: str, id: str, keys: Collection[tuple[str, str]]) -> None:
        k = t.identity_keys.c
        await self.execute(
            delete(t.identity_keys).where(
                k.tenant == self.tenant, k.entity == entity, k.record_id == id
            )
        )
        rows = [
            {"tenant": self.tenant, "entity": entity, "record_id": id, "kind": kind,
             "value": value}
            for kind, value in sorted(set(keys))
        ]  # fmt: skip
        if rows:
            await self.execute(self.insert(t.identity_keys), rows)

    async def find_keys(
        self, entity: str, keys: Collection[tuple[str, str]], *, limit: int = 100
    ) -> dict[str, set[tuple[str, str]]]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        k = t.identity_keys.c
        query = (
            select(k.record_id, k.kind, k.value)
            .where(k.tenant == self.tenant, k.entity == entity, tuple_(k.kind, k.value).in_(wanted))
            .order_by(k.record_id, k.kind, k.value)
        )
        found: dict[str, set[tuple[str, str]]] = {}
        for row in await self.execute(query):
            if row.record_id not in found and len(found) >= limit:
                break
            found.setdefault(row.record_id, set()).add((row.kind, row.value))
        return found

    async def repoint_external(self, ref: ExternalRef) -> str | None:
        x = t.external_refs.c
        where = (
            x.tenant == self.tenant, x.system == ref.system, x.connection == ref.connection,
            x.entity == ref.entity, x.external_id == ref.external_id,
        )  # fmt: skip
        before = (await self.execute(select(x.canonical_id).where(*where))).scalar_one_or_none()
        if before is None:
            await self.execute(
                self.insert(t.external_refs).values(
                    tenant=self.tenant,
                    system=ref.system,
                    connection=ref.connection,
                    entity=ref.entity,
                    external_id=ref.external_id,
                    canonical_id=ref.canonical_id,
                )
            )
        elif before != ref.canonical_id:
            await self.execute(
                update(t.external_refs).where(*where).values(canonical_id=ref.canonical_id)
            )
        return before
