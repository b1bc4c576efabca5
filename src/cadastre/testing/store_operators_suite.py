"""``OperatorsStoreSuite``: the conformance tests of the store's console operators and their
sessions (issue 9): operators round-trip, a username is taken once, updates change only what is
given, removing an operator ends their sessions, sessions are found by their token's hash and
pruned by expiry.

Subclass it with a ``store`` fixture (empty at the start of each test) built on the ``clock``
fixture, as for ``StoreSuite``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from cadastre.errors import AlreadyExists, NotFound
from cadastre.ports import Operator, OperatorSession
from cadastre.testing.clock import EPOCH, FakeClock

if TYPE_CHECKING:
    from cadastre.ports import Store

HASH = "scrypt$16384$8$1$c2FsdA$aGFzaA"
NEW_HASH = "scrypt$16384$8$1$bmV3$bmV3"


def operator(username: str, tenant: str | None = None, *, disabled: bool = False) -> Operator:
    return Operator(username, tenant, HASH, EPOCH, EPOCH, disabled)


def session(token_hash: str, who: str, *, hours: float = 12) -> OperatorSession:
    return OperatorSession(token_hash, who, f"csrf-{token_hash}", EPOCH,
                           EPOCH + timedelta(hours=hours))  # fmt: skip


class OperatorsStoreSuite:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    async def test_operators_round_trip_and_list_by_username(self, store: Store) -> None:
        await store.create_operator(operator("zoe", "acme"))
        await store.create_operator(operator("alice"))
        assert await store.find_operator("alice") == operator("alice")
        found = await store.find_operator("zoe")
        assert found == operator("zoe", "acme")
        assert found is not None
        assert found.created_at.utcoffset() == timedelta(0)
        assert await store.find_operator("nobody") is None
        assert [o.username for o in await store.list_operators()] == ["alice", "zoe"]

    async def test_a_username_is_taken_once(self, store: Store) -> None:
        await store.create_operator(operator("alice"))
        with pytest.raises(AlreadyExists, match="alice"):
            await store.create_operator(operator("alice", "acme"))
        assert await store.find_operator("alice") == operator("alice")  # the first one stands

    async def test_an_update_changes_only_what_is_given(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create_operator(operator("alice", "acme"))
        clock.advance(60)
        changed = await store.update_operator("alice", password_hash=NEW_HASH)
        assert (changed.password_hash, changed.disabled, changed.tenant) == (
            NEW_HASH, False, "acme",
        )  # fmt: skip
        assert changed.updated_at == EPOCH + timedelta(seconds=60)
        disabled = await store.update_operator("alice", disabled=True)
        assert (disabled.password_hash, disabled.disabled) == (NEW_HASH, True)
        assert await store.find_operator("alice") == disabled
        with pytest.raises(NotFound, match="bob"):
            await store.update_operator("bob", disabled=True)

    async def test_sessions_are_found_by_their_hash_and_deleted(self, store: Store) -> None:
        await store.create_operator(operator("alice"))
        await store.create_operator(operator("bob"))
        for token_hash, who in [("h1", "alice"), ("h2", "alice"), ("h3", "bob")]:
            await store.create_operator_session(session(token_hash, who))
        assert await store.find_operator_session("h1") == session("h1", "alice")
        assert await store.find_operator_session("nope") is None
        await store.delete_operator_session("h1")
        await store.delete_operator_session("h1")  # twice is fine
        assert await store.find_operator_session("h1") is None
        assert await store.delete_operator_sessions("alice") == 1
        assert await store.find_operator_session("h2") is None
        assert await store.find_operator_session("h3") == session("h3", "bob")

    async def test_removing_an_operator_ends_their_sessions(self, store: Store) -> None:
        await store.create_operator(operator("alice"))
        await store.create_operator(operator("bob"))
        await store.create_operator_session(session("h1", "alice"))
        await store.create_operator_session(session("h2", "bob"))
        assert await store.delete_operator("alice") is True
        assert await store.delete_operator("alice") is False
        assert await store.find_operator("alice") is None
        assert await store.find_operator_session("h1") is None
        assert await store.find_operator_session("h2") is not None

    async def test_expired_sessions_are_pruned(self, store: Store) -> None:
        await store.create_operator(operator("alice"))
        await store.create_operator_session(session("short", "alice", hours=1))
        await store.create_operator_session(session("long", "alice", hours=12))
        assert await store.prune_operator_sessions(before=EPOCH + timedelta(hours=1)) == 0
        cut = EPOCH + timedelta(hours=2)
        assert await store.prune_operator_sessions(before=cut) == 1
        assert await store.find_operator_session("short") is None
        assert await store.find_operator_session("long") is not None

    async def test_a_tenants_unit_of_work_leaves_operators_alone(self, store: Store) -> None:
        await store.create_operator(operator("alice", "acme"))
        await store.create_operator_session(session("h1", "alice"))
        async with store.unit_of_work("acme") as uow:
            await uow.audit.append(actor="test", action="noted")
            await uow.commit()
        async with store.unit_of_work("acme") as uow:
            await uow.audit.append(actor="test", action="dropped")  # rolled back
        assert await store.find_operator("alice") == operator("alice", "acme")
        assert await store.find_operator_session("h1") == session("h1", "alice")
