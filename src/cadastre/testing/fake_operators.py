"""``FakeStore``'s console operators and sessions (cross-tenant, like its tenants): mixed into
``FakeStore``, whose committed state holds the two tables. Each call is its own transaction, as
the SQL stores' are."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.errors import AlreadyExists, NotFound, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from cadastre.ports import Clock, Operator, OperatorSession
    from cadastre.testing.fakes import _State


class FakeOperatorDirectory:
    clock: Clock
    _state: _State  # the FakeStore's committed state

    def _serialised(self) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def create_operator(self, operator: Operator) -> None:
        _aware(operator.created_at, operator.updated_at)
        async with self._serialised():
            if operator.username in self._state.operators:
                raise AlreadyExists(f"operator {operator.username!r} already exists")
            self._state.operators[operator.username] = operator

    async def find_operator(self, username: str) -> Operator | None:
        return self._state.operators.get(username)

    async def list_operators(self) -> list[Operator]:
        return [self._state.operators[name] for name in sorted(self._state.operators)]

    async def update_operator(
        self, username: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> Operator:
        async with self._serialised():
            found = self._state.operators.get(username)
            if found is None:
                raise NotFound(f"operator {username!r} does not exist")
            changed = replace(
                found,
                password_hash=found.password_hash if password_hash is None else password_hash,
                disabled=found.disabled if disabled is None else disabled,
                updated_at=self.clock.now(),
            )
            self._state.operators[username] = changed
            return changed

    async def delete_operator(self, username: str) -> bool:
        async with self._serialised():
            self._drop_sessions(lambda s: s.operator == username)
            return self._state.operators.pop(username, None) is not None

    async def create_operator_session(self, session: OperatorSession) -> None:
        _aware(session.created_at, session.expires_at)
        async with self._serialised():
            if session.token_hash in self._state.operator_sessions:
                raise AlreadyExists("an operator session with that token exists")
            self._state.operator_sessions[session.token_hash] = session

    async def find_operator_session(self, token_hash: str) -> OperatorSession | None:
        return self._state.operator_sessions.get(token_hash)

    async def delete_operator_session(self, token_hash: str) -> None:
        async with self._serialised():
            self._state.operator_sessions.pop(token_hash, None)

    async def delete_operator_sessions(self, username: str) -> int:
        async with self._serialised():
            return self._drop_sessions(lambda s: s.operator == username)

    async def prune_operator_sessions(self, *, before: datetime) -> int:
        _aware(before)
        async with self._serialised():
            return self._drop_sessions(lambda s: s.expires_at < before)

    def _drop_sessions(self, doomed: Callable[[OperatorSession], bool]) -> int:
        sessions = self._state.operator_sessions
        gone = [h for h, s in sessions.items() if doomed(s)]
        for token_hash in gone:
            del sessions[token_hash]
        return len(gone)


def _aware(*moments: datetime) -> None:
    if any(m.tzinfo is None for m in moments):
        raise StoreError("database statement: the store keeps timezone-aware datetimes only")
