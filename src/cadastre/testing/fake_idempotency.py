"""``uow.idempotency`` of ``FakeStore``: the rules of
``cadastre.store.repositories.idempotency`` over the fake's copy-on-write state (records are
frozen and replaced). Units of work of the fake run one at a time, so ``begin`` is atomic without
anything more."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cadastre.ports import IdempotencyBegun, IdempotencyRecord, IdempotencyState
from cadastre.testing.fake_webhooks import _aware

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.ports import StoredResponse
    from cadastre.testing.fakes import FakeUnitOfWork

IN_FLIGHT, DONE = IdempotencyState.IN_FLIGHT, IdempotencyState.DONE


class FakeIdempotency:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _rows(self) -> dict[tuple[str, str], IdempotencyRecord]:
        return self._uow.state.idempotency

    def _held(self, key: str, holder: str) -> IdempotencyRecord | None:
        found = self._rows.get((self._uow.tenant, key))
        return found if found and found.state is IN_FLIGHT and found.holder == holder else None

    async def begin(
        self,
        key: str,
        *,
        method: str,
        path: str,
        fingerprint: str,
        holder: str,
        locked_until: datetime,
    ) -> IdempotencyBegun:
        _aware(locked_until)
        now = self._uow._clock.now()
        found = self._rows.get((self._uow.tenant, key))
        if found is None:
            found = IdempotencyRecord(
                key=key, method=method, path=path, fingerprint=fingerprint, state=IN_FLIGHT,
                holder=holder, locked_until=locked_until, created_at=now,
            )  # fmt: skip
        elif (
            found.state is IN_FLIGHT and found.locked_until <= now
            and found.fingerprint == fingerprint
        ):  # fmt: skip
            found = replace(found, holder=holder, locked_until=locked_until)
        else:
            return IdempotencyBegun(False, found)
        self._rows[(self._uow.tenant, key)] = found
        return IdempotencyBegun(True, found)

    async def finish(self, key: str, *, holder: str, response: StoredResponse) -> bool:
        found = self._held(key, holder)
        if found is None:
            return False
        stored = replace(response, headers=dict(response.headers))
        self._rows[(self._uow.tenant, key)] = replace(found, state=DONE, response=stored)
        return True

    async def release(self, key: str, *, holder: str) -> bool:
        if self._held(key, holder) is None:
            return False
        del self._rows[(self._uow.tenant, key)]
        return True

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self._rows.get((self._uow.tenant, key))

    async def reap(self, *, before: datetime, limit: int = 1000) -> int:
        _aware(before)
        now = self._uow._clock.now()
        due = sorted(
            (r.created_at, k)
            for k, r in self._rows.items()
            if k[0] == self._uow.tenant
            and r.created_at < before
            and (r.state is DONE or r.locked_until <= now)
        )[:limit]
        for _, k in due:
            del self._rows[k]
        return len(due)
