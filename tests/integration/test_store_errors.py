"""Driver errors surface as the Cadastre error tree: an unreachable or locked database is
``StoreUnavailable`` (transient), never a raw driver exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.errors import StoreUnavailable, is_transient
from cadastre.store import PostgresStore, SqliteStore


async def test_unreachable_postgres_is_store_unavailable() -> None:
    store = PostgresStore("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            async with store.unit_of_work("acme"):
                pass
        assert is_transient(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.list_tenants()
    finally:
        await store.close()


async def test_a_writer_that_cannot_get_the_lock_is_store_unavailable(tmp_path: Path) -> None:
    holder = SqliteStore(tmp_path / "cadastre.db")
    waiter = SqliteStore(tmp_path / "cadastre.db", busy_timeout_ms=50)
    try:
        await holder.migrate()
        async with holder.unit_of_work("acme") as uow:
            await uow.records.put("Listing", "L1", {}, expected_version=0)  # holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                async with waiter.unit_of_work("acme") as other:
                    await other.records.get("Listing", "L1")
            assert await waiter.list_tenants() == []  # readers are not blocked (WAL)
            await uow.commit()
        async with waiter.unit_of_work("acme") as other:
            assert await other.records.get("Listing", "L1") is not None
    finally:
        await holder.close()
        await waiter.close()
