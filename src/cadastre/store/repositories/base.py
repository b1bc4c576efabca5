from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Executable, Result, Table

    from cadastre.store.base import SqlAlchemyUnitOfWork


class SqlRepository:
    def __init__(self, uow: SqlAlchemyUnitOfWork) -> None:
        self._uow = uow

    @property
    def tenant(self) -> str:
        return self._uow.tenant

    def now(self) -> datetime:
        return self._uow.now()

    def insert(self, table: Table) -> Any:
        return self._uow.store.insert(table)

    async def execute(self, statement: Executable) -> Result[Any]:
        return await self._uow.execute(statement)

    async def wrote(self, statement: Executable) -> bool:
        """Run an INSERT ... ON CONFLICT DO NOTHING or a guarded UPDATE with RETURNING, and say
        whether it wrote a row. (RETURNING, because some async drivers report no rowcount for
        INSERT.)"""
        return (await self.execute(statement)).first() is not None

    def own(self, owner: str, what: str) -> None:
        """Refuse to write another tenant's object through this tenant's unit of work."""
        if owner != self.tenant:
            raise ValueError(
                f"{what} belongs to tenant {owner!r}, not to this unit of work's {self.tenant!r}"
            )
