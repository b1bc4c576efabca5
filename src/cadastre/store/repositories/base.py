from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Executable, Result, Table

    from cadastre.store.base import SqlAlchemyUnitOfWork


# Bulk reads send ``WHERE key IN (...)`` lists of at most this many values per statement, well
# under SQLite's limit of 32 766 variables and small enough to keep PostgreSQL plans cheap.
IN_CHUNK = 500


def chunked(values: Sequence[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``values`` without repeats, in slices of at most ``size``."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


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

    async def execute(
        self,
        statement: Executable,
        params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    ) -> Result[Any]:
        return await self._uow.execute(statement, params)

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
