"""Console operators and their sessions: cross-tenant rows, like tenants, reached through the
``Store`` itself rather than a tenant's unit of work (an operator signs in before any tenant is
chosen, and one may see every tenant).

``SqlOperatorDirectory`` is mixed into ``SqlAlchemyStore``, which provides the two hooks it
declares (its dialect's INSERT and a short-lived connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from cadastre.errors import AlreadyExists, NotFound
from cadastre.ports import Operator, OperatorSession
from cadastre.store import tables as t

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from sqlalchemy import Row, Table
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cadastre.ports import Clock


def _operator(row: Row[Any]) -> Operator:
    return Operator(
        username=row.username, tenant=row.tenant, password_hash=row.password_hash,
        created_at=row.created_at, updated_at=row.updated_at, disabled=bool(row.disabled),
    )  # fmt: skip


def _session(row: Row[Any]) -> OperatorSession:
    return OperatorSession(
        token_hash=row.token_hash, operator=row.operator, csrf=row.csrf,
        created_at=row.created_at, expires_at=row.expires_at,
    )  # fmt: skip


class SqlOperatorDirectory:
    clock: Clock

    # -- hooks the store provides -----------------------------------------------------

    def insert(self, table: Table) -> Any:
        raise NotImplementedError

    def _directory(
        self, *, read_only: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    # -- operators ----------------------------------------------------------------------

    async def create_operator(self, operator: Operator) -> None:
        async with self._directory() as conn:
            inserted = await conn.execute(
                self.insert(t.operators)
                .values(
                    username=operator.username,
                    tenant=operator.tenant,
                    password_hash=operator.password_hash,
                    disabled=operator.disabled,
                    created_at=operator.created_at,
                    updated_at=operator.updated_at,
                )
                .on_conflict_do_nothing()
                .returning(t.operators.c.username)
            )
            if inserted.first() is None:
                raise AlreadyExists(f"operator {operator.username!r} already exists")
            await conn.commit()

    async def find_operator(self, username: str) -> Operator | None:
        async with self._directory(read_only=True) as conn:
            query = select(t.operators).where(t.operators.c.username == username)
            row = (await conn.execute(query)).first()
        return None if row is None else _operator(row)

    async def list_operators(self) -> list[Operator]:
        async with self._directory(read_only=True) as conn:
            rows = await conn.execute(select(t.operators).order_by(t.operators.c.username))
        return [_operator(r) for r in rows]

    async def update_operator(
        self, username: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> Operator:
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        c = t.operators.c
        async with self._directory() as conn:
            row = (
                await conn.execute(
                    update(t.operators)
                    .where(c.username == username)
                    .values(**values)
                    .returning(*t.operators.c)
                )
            ).first()
            if row is None:
                raise NotFound(f"operator {username!r} does not exist")
            await conn.commit()
        return _operator(row)

    async def delete_operator(self, username: str) -> bool:
        async with self._directory() as conn:
            await conn.execute(
                delete(t.operator_sessions).where(t.operator_sessions.c.operator == username)
            )
            gone = await conn.execute(
                delete(t.operators)
                .where(t.operators.c.username == username)
                .returning(t.operators.c.username)
            )
            found = gone.first() is not None
            await conn.commit()
        return found

    # -- sessions -----------------------------------------------------------------------

    async def create_operator_session(self, session: OperatorSession) -> None:
        async with self._directory() as conn:
            await conn.execute(
                t.operator_sessions.insert().values(
                    token_hash=session.token_hash,
                    operator=session.operator,
                    csrf=session.csrf,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                )
            )
            await conn.commit()

    async def find_operator_session(self, token_hash: str) -> OperatorSession | None:
        async with self._directory(read_only=True) as conn:
            query = select(t.operator_sessions).where(
                t.operator_sessions.c.token_hash == token_hash
            )
            row = (await conn.execute(query)).first()
        return None if row is None else _session(row)

    async def delete_operator_session(self, token_hash: str) -> None:
        async with self._directory() as conn:
            await conn.execute(
                delete(t.operator_sessions).where(t.operator_sessions.c.token_hash == token_hash)
            )
            await conn.commit()

    async def delete_operator_sessions(self, username: str) -> int:
        return await self._delete_sessions(t.operator_sessions.c.operator == username)

    async def prune_operator_sessions(self, *, before: datetime) -> int:
        return await self._delete_sessions(t.operator_sessions.c.expires_at < before)

    async def _delete_sessions(self, condition: Any) -> int:
        async with self._directory() as conn:
            gone = await conn.execute(
                delete(t.operator_sessions)
                .where(condition)
                .returning(t.operator_sessions.c.token_hash)
            )
            count = len(gone.all())
            await conn.commit()
        return count
