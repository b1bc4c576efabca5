"""``IdentityStoreSuite``: the conformance tests of ``uow.identities``: one live link per pair
with broken links kept as history, one live ``linked`` contact per resident, state changes that
only apply from the expected state, match keys found by value, the cross-reference move of a
merge, and tenants that never see each other's.

``StoreSuite`` inherits it, so FakeStore, SQLite and PostgreSQL all run these.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.errors import AlreadyExists
from cadastre.ports import ExternalRef, IdentityLink, LinkHow, LinkState
from cadastre.testing.clock import EPOCH

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"


def link(
    id: str = "idl_1", contact: str = "C1", resident: str = "R1",
    state: LinkState = LinkState.SUGGESTED, confidence: float = 0.75,
) -> IdentityLink:  # fmt: skip
    return IdentityLink(
        id=id, left_entity="Contact", left_id=contact, right_entity="Resident",
        right_id=resident, confidence=confidence,
        evidence={"email": {"value": "ada@example.com", "score": 0.8}, "name": 0.93},
        state=state, how=LinkHow.AUTO, made_by="identity", made_at=EPOCH,
    )  # fmt: skip


class IdentityStoreSuite:
    async def _add(self, store: Store, *links: IdentityLink, tenant: str = A) -> None:
        async with store.unit_of_work(tenant) as uow:
            for each in links:
                await uow.identities.add(each)
            await uow.commit()

    async def test_a_link_round_trips_with_its_evidence(self, store: Store) -> None:
        await self._add(store, link())
        async with store.unit_of_work(A, read_only=True) as uow:
            got = await uow.identities.get("idl_1")
            pair = await uow.identities.for_pair("Contact", "C1", "Resident", "R1")
            by_contact = await uow.identities.for_record("Contact", "C1")
            by_resident = await uow.identities.for_record("Resident", "R1")
        assert got == link()
        assert got.live
        assert pair == got
        assert by_contact == by_resident == [got]

    async def test_one_live_link_per_pair_and_history_is_kept(self, store: Store) -> None:
        await self._add(store, link())
        with pytest.raises(AlreadyExists):
            await self._add(store, link("idl_2"))
        broken = replace(
            link(), broken_by="cli", broken_at=EPOCH + timedelta(hours=1), broken_reason="wrong"
        )
        async with store.unit_of_work(A) as uow:
            assert await uow.identities.update(broken, expected_state=LinkState.SUGGESTED)
            await uow.identities.add(link("idl_2", state=LinkState.REJECTED))
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            live = await uow.identities.for_record("Contact", "C1")
            every = await uow.identities.for_record("Contact", "C1", include_broken=True)
            pair = await uow.identities.for_pair("Contact", "C1", "Resident", "R1")
        assert [x.id for x in live] == ["idl_2"]
        assert [x.id for x in every] == ["idl_1", "idl_2"]
        assert every[0].broken_reason == "wrong"
        assert every[0].broken_at == EPOCH + timedelta(hours=1)
        assert pair is not None
        assert pair.state is LinkState.REJECTED

    async def test_a_resident_has_one_linked_contact(self, store: Store) -> None:
        await self._add(store, link(state=LinkState.LINKED))
        with pytest.raises(AlreadyExists, match="already linked"):
            await self._add(store, link("idl_2", contact="C2", state=LinkState.LINKED))
        await self._add(store, link("idl_3", contact="C3"))  # a suggestion is fine
        async with store.unit_of_work(A) as uow:
            promoted = replace(link("idl_3", contact="C3"), state=LinkState.LINKED)
            with pytest.raises(AlreadyExists):
                await uow.identities.update(promoted, expected_state=LinkState.SUGGESTED)
        # a contact may be linked to several residents (one person, two leases)
        await self._add(store, link("idl_4", resident="R2", state=LinkState.LINKED))

    async def test_update_applies_only_from_the_expected_state(self, store: Store) -> None:
        await self._add(store, link())
        confirmed = replace(link(), state=LinkState.LINKED, how=LinkHow.MANUAL, made_by="cli")
        async with store.unit_of_work(A) as uow:
            assert not await uow.identities.update(confirmed, expected_state=LinkState.LINKED)
            assert not await uow.identities.update(
                replace(confirmed, id="nope"), expected_state=LinkState.SUGGESTED
            )
            assert await uow.identities.update(confirmed, expected_state=LinkState.SUGGESTED)
            # the pair is fixed: an update cannot move a link to other records
            moved = replace(confirmed, left_id="C9", confidence=0.5)
            assert await uow.identities.update(moved, expected_state=LinkState.LINKED)
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            got = await uow.identities.get("idl_1")
        assert got == replace(confirmed, confidence=0.5)

    async def test_find_filters_by_state_and_pages(self, store: Store) -> None:
        await self._add(
            store, link("idl_1", "C1"), link("idl_2", "C2", "R2", LinkState.LINKED),
            link("idl_3", "C3", "R3"), link("idl_4", "C4", "R4", LinkState.REJECTED),
        )  # fmt: skip
        async with store.unit_of_work(A, read_only=True) as uow:
            every = await uow.identities.find()
            suggested = await uow.identities.find(state=LinkState.SUGGESTED)
            page = await uow.identities.find(after="idl_1", limit=2)
        assert [x.id for x in every] == ["idl_1", "idl_2", "idl_3", "idl_4"]
        assert [x.id for x in suggested] == ["idl_1", "idl_3"]
        assert [x.id for x in page] == ["idl_2", "idl_3"]

    async def test_refuses_what_cannot_be_a_link(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"0\.\.1"):
            await self._add(store, link(confidence=1.5))
        with pytest.raises(ValueError, match="itself"):
            await self._add(store, replace(link(), right_entity="Contact", right_id="C1"))
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.identities.find() == []

    async def test_match_keys_are_replaced_and_found_by_value(self, store: Store) -> None:
        email, phone = ("email", "ada@example.com"), ("phone", "+15125550100")
        async with store.unit_of_work(A) as uow:
            await uow.identities.set_keys("Contact", "C1", [email, phone])
            await uow.identities.set_keys("Contact", "C2", [phone])
            await uow.identities.set_keys("Resident", "R1", [email])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            found = await uow.identities.find_keys("Contact", [email, phone])
            only_one = await uow.identities.find_keys("Contact", [phone], limit=1)
            await uow.identities.set_keys("Contact", "C1", [("email", "ada@new.example")])
            after = await uow.identities.find_keys("Contact", [email, phone])
            nothing = await uow.identities.find_keys("Contact", [])
            await uow.commit()
        assert found == {"C1": {email, phone}, "C2": {phone}}
        assert len(only_one) == 1
        assert after == {"C2": {phone}}
        assert nothing == {}
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.identities.find_keys("Contact", [email, phone]) == {}

    async def test_repoint_external_moves_a_cross_reference(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.xref.link(ExternalRef("crm", "hub", "Contact", "101", "M"))
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            before = await uow.identities.repoint_external(
                ExternalRef("crm", "hub", "Contact", "101", "S")
            )
            fresh = await uow.identities.repoint_external(
                ExternalRef("crm", "hub", "Contact", "102", "S")
            )
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.xref.resolve_many("crm", "hub", "Contact", ["101", "102"])
        assert (before, fresh) == ("M", None)
        assert found == {"101": "S", "102": "S"}

    async def test_tenants_never_see_each_others_links(self, store: Store) -> None:
        await self._add(store, link())
        await self._add(store, link("idl_b", state=LinkState.LINKED), tenant=B)
        async with store.unit_of_work(B, read_only=True) as uow:
            assert await uow.identities.get("idl_1") is None
            assert [x.id for x in await uow.identities.find()] == ["idl_b"]
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.identities.get("idl_b") is None
            pair = await uow.identities.for_pair("Contact", "C1", "Resident", "R1")
        assert pair is not None
        assert pair.id == "idl_1"

    async def test_a_rolled_back_link_leaves_nothing(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.identities.add(link())
            await uow.identities.set_keys("Contact", "C1", [("email", "a@b.example")])
            await uow.rollback()
        async with store.unit_of_work(A, read_only=True) as uow:
            assert await uow.identities.get("idl_1") is None
            assert await uow.identities.find_keys("Contact", [("email", "a@b.example")]) == {}
