"""The identity repository of ``FakeStore`` (``uow.identities``): the same rules as
``cadastre.store.repositories.identities``, over the fake's copy-on-write state."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.errors import AlreadyExists, StoreError
from cadastre.ports import IdentityLink, LinkState
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.identities import check_link

if TYPE_CHECKING:
    from collections.abc import Collection

    from cadastre.ports import ExternalRef
    from cadastre.testing.fakes import FakeUnitOfWork, _State


class FakeIdentities:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> _State:
        return self._uow.state

    @property
    def _t(self) -> str:
        return self._uow.tenant

    def _rows(self) -> list[IdentityLink]:
        """The tenant's links in insert order (the dict keeps it)."""
        return [link for tenant, link in self._s.identity_links.values() if tenant == self._t]

    def _check(self, link: IdentityLink) -> None:
        check_link(link)
        if any(m is not None and m.tzinfo is None for m in (link.made_at, link.broken_at)):
            raise StoreError("database statement: the store keeps timezone-aware datetimes only")
        if link.live and link.state is LinkState.LINKED:
            for other in self._rows():
                if (other.live and other.state is LinkState.LINKED and other.id != link.id
                        and (other.right_entity, other.right_id)
                        == (link.right_entity, link.right_id)):  # fmt: skip
                    raise AlreadyExists(
                        f"{link.right_entity} {link.right_id} is already linked ({other.id})"
                    )

    async def add(self, link: IdentityLink) -> None:
        self._check(link)
        pair = (link.left_entity, link.left_id, link.right_entity, link.right_id)
        taken = link.id in self._s.identity_links or (link.live and any(
            o.live and (o.left_entity, o.left_id, o.right_entity, o.right_id) == pair
            for o in self._rows()
        ))  # fmt: skip
        if taken:
            raise AlreadyExists(
                f"link {link.id} or a live link of {link.left_entity} {link.left_id} and "
                f"{link.right_entity} {link.right_id} exists already"
            )
        stored = replace(link, evidence=json_copy(link.evidence))
        self._s.identity_links[link.id] = (self._t, stored)

    async def get(self, id: str) -> IdentityLink | None:
        found = self._s.identity_links.get(id)
        return found[1] if found is not None and found[0] == self._t else None

    async def for_pair(
        self, left_entity: str, left_id: str, right_entity: str, right_id: str
    ) -> IdentityLink | None:
        pair = (left_entity, left_id, right_entity, right_id)
        for link in self._rows():
            if link.live and (link.left_entity, link.left_id, link.right_entity,
                              link.right_id) == pair:  # fmt: skip
                return link
        return None

    async def for_record(
        self, entity: str, id: str, *, include_broken: bool = False
    ) -> list[IdentityLink]:
        return [
            link for link in self._rows()
            if (include_broken or link.live)
            and ((link.left_entity, link.left_id) == (entity, id)
                 or (link.right_entity, link.right_id) == (entity, id))
        ]  # fmt: skip

    async def find(
        self, *, state: LinkState | None = None, after: str | None = None, limit: int = 100
    ) -> list[IdentityLink]:
        rows = self._rows()
        if after is not None:
            ids = [link.id for link in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        return [link for link in rows if link.live and (state is None or link.state is state)][
            :limit
        ]

    async def update(self, link: IdentityLink, *, expected_state: LinkState) -> bool:
        found = self._s.identity_links.get(link.id)
        if found is None or found[0] != self._t:
            return False
        current = found[1]
        if not current.live or current.state is not expected_state:
            return False
        self._check(link)
        stored = replace(
            link, left_entity=current.left_entity, left_id=current.left_id,
            right_entity=current.right_entity, right_id=current.right_id,
            evidence=json_copy(link.evidence),
        )  # fmt: skip
        self._s.identity_links[link.id] = (self._t, stored)
        return True

    async def set_keys(self, entity: str, id: str, keys: Collection[tuple[str, str]]) -> None:
        self._s.identity_keys[(self._t, entity, id)] = frozenset(keys)

    async def find_keys(
        self, entity: str, keys: Collection[tuple[str, str]], *, limit: int = 100
    ) -> dict[str, set[tuple[str, str]]]:
        wanted = set(keys)
        found: dict[str, set[tuple[str, str]]] = {}
        for (tenant, e, id), held in sorted(self._s.identity_keys.items()):
            if tenant == self._t and e == entity and (common := held & wanted):
                if len(found) >= limit:
                    break
                found[id] = set(common)
        return found

    async def repoint_external(self, ref: ExternalRef) -> str | None:
        key = (self._t, ref.system, ref.connection, ref.entity, ref.external_id)
        before = self._s.xref.get(key)
        self._s.xref[key] = ref.canonical_id
        return before
