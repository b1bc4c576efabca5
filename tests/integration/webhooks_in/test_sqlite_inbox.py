"""The SQLite store's own write of the webhook inbox (``SqliteStore.store_webhooks`` without
refusal counts: driver SQL rather than the compiled statement) stores what ``add_many`` stores,
byte for byte, in batches of any size, and fails as every other write fails."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cadastre.errors import StoreUnavailable
from cadastre.ports import ReceivedWebhook
from cadastre.store import SqliteStore
from cadastre.testing.store_webhooks_in_suite import check_batched_inbox_write

AT = datetime(2026, 11, 27, 9, 0, 0, 250_000, tzinfo=UTC)
HEADERS = {"content-type": "application/json", "webhook-id": "m", "user-agent": "Vendor/1 é"}


def hook(message_id: str, connection: str = "crm", at: datetime = AT) -> ReceivedWebhook:
    body = f'{{"id": "{message_id}", "price": 1}}'.encode() + bytes(range(256))
    return ReceivedWebhook(connection, message_id, at, HEADERS, body)


def rows(path: Path, tenant: str) -> list[tuple[object, ...]]:
    """Every column but the position, as SQLite holds it."""
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT connection, message_id, received_at, headers, body, status, attempts, "
            "next_attempt_at, processed_at, error FROM webhooks_in WHERE tenant = ? "
            "ORDER BY position",
            (tenant,),
        ).fetchall()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "cadastre.db")
    await store.migrate()
    yield store
    await store.close()


async def test_the_rows_are_those_add_many_writes(store: SqliteStore) -> None:
    # an offset other than UTC, and a whole second: both must come out as SQLAlchemy writes them
    later = datetime(2026, 11, 27, 10, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    batch = [hook("m1"), hook("m2", at=later), hook("m1", "other")]
    async with store.unit_of_work("acme") as uow:
        assert await uow.webhooks_in.add_many(batch) == [True, True, True]
        await uow.commit()
    assert await store.store_webhooks("globex", batch, []) == [True, True, True]
    assert rows(store.path, "globex") == rows(store.path, "acme")
    async with store.unit_of_work("globex", read_only=True) as uow:
        held = await uow.webhooks_in.get("crm", "m2")
    assert held is not None
    assert (held.received_at, held.headers, held.body) == (later, HEADERS, batch[1].body)


async def test_batches_past_one_statement_keep_replays_apart(store: SqliteStore) -> None:
    await store.store_webhooks("acme", [hook("m5"), hook("m150")], [])
    batch = [hook(f"m{i}") for i in range(250)] + [hook("m7"), hook("m120"), hook("m249")]
    stored = await store.store_webhooks("acme", batch, [])
    # held before, and the twins of earlier items in the batch, are not stored now
    assert stored == [i not in (5, 150) for i in range(250)] + [False, False, False]
    assert len(rows(store.path, "acme")) == 250
    assert await store.store_webhooks("acme", [], []) == []


async def test_a_locked_database_is_store_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cadastre.db", busy_timeout_ms=50)
    await store.migrate()
    holder = sqlite3.connect(tmp_path / "cadastre.db", isolation_level=None)
    try:
        # another writer holds the lock: first while the store connects (its pragmas), then
        # while it begins its transaction on the connection it holds
        for message_id in ("m1", "m2"):
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.store_webhooks("acme", [hook(message_id)], [])
            holder.execute("ROLLBACK")
            assert await store.store_webhooks("acme", [hook(message_id)], []) == [True]
        assert [r[1] for r in rows(store.path, "acme")] == ["m1", "m2"]
    finally:
        holder.close()
        await store.close()


async def test_a_store_writing_batches_at_once_keeps_the_same_rules(store: SqliteStore) -> None:
    await check_batched_inbox_write(store)
