"""The bus consumers' de-duplication marks of ``FakeStore``: the same rules as
``cadastre.store.repositories.outbox.SqlConsumed`` over the fake's copy-on-write state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadastre.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cadastre.testing.fakes import FakeUnitOfWork


class FakeConsumed:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def first_seen(self, consumer: str, event_ids: Sequence[str]) -> list[str]:
        state, tenant, now = self._uow.state, self._uow.tenant, self._uow._clock.now()
        new = []
        for event_id in dict.fromkeys(event_ids):
            key = (tenant, consumer, event_id)
            if key not in state.consumed:
                state.consumed[key] = now
                new.append(event_id)
        return new

    async def prune(self, *, before: datetime) -> int:
        if before.tzinfo is None:
            raise StoreError("database statement: the store keeps timezone-aware datetimes only")
        state, tenant = self._uow.state, self._uow.tenant
        gone = [k for k, at in state.consumed.items() if k[0] == tenant and at < before]
        for key in gone:
            del state.consumed[key]
        return len(gone)
