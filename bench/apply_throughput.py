"""Apply throughput: changes per second through ``SyncEngine`` on each store, one change per
transaction (``apply``) and a page per transaction (``apply_batch``).

The baseline is the in-memory FakeStore with one change per transaction, measured in the same
run, so the figures that matter are the ratios (the machines are small and shared; absolute
numbers drift from run to run).

    .venv/bin/python bench/apply_throughput.py [--changes 2000] [--page 500]
                                               [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cadastre.contract import Change, Origin
from cadastre.ownership import load_registry
from cadastre.store import PostgresStore, SqliteStore
from cadastre.store.postgres import create_database, drop_database
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock, FakeStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from cadastre.ports import Store

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def changes(count: int) -> list[Change]:
    """Creates for the first half, then an update of each (a price change, a later timestamp)."""
    half = count // 2
    made = []
    for n in range(count):
        key = f"L{n % half:06d}"
        made.append(
            Change(
                tenant="bench",
                entity="Listing",
                fields={
                    "ListingKey": key,
                    "ListPrice": str(300_000 + n),
                    "City": "Austin",
                    "StandardStatus": "Active",
                    "BedroomsTotal": 3,
                },
                origin=Origin(
                    system="mls",
                    connection="bench",
                    external_id=key,
                    source_time=T0 + timedelta(seconds=n),
                ),
            )
        )
    return made


async def measure(store: Store, batch: list[Change], page: int) -> float:
    """Changes per second; ``page`` 0 means one ``apply`` per change."""
    await store.create_tenant("bench", "Bench")
    engine = SyncEngine(store, load_registry(), FakeClock())
    started = time.perf_counter()
    if page == 0:
        for change in batch:
            await engine.apply(change)
    else:
        for start in range(0, len(batch), page):
            items = await engine.apply_batch(batch[start : start + page])
            if any(item.error for item in items):
                raise SystemExit(f"a change failed: {next(i.error for i in items if i.error)}")
    return len(batch) / (time.perf_counter() - started)


def fake() -> AbstractAsyncContextManager[Store]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_() -> AsyncIterator[Store]:
        yield FakeStore()

    return open_()


def sqlite() -> AbstractAsyncContextManager[Store]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_() -> AsyncIterator[Store]:
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteStore(Path(folder) / "bench.db")
            await store.migrate()
            try:
                yield store
            finally:
                await store.close()

    return open_()


def postgres(admin_url: str) -> Callable[[], AbstractAsyncContextManager[Store]]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_() -> AsyncIterator[Store]:
        name = f"cadastre_bench_{secrets.token_hex(4)}"
        url = create_database(admin_url, name)
        store = PostgresStore(url)
        try:
            await store.migrate()
            yield store
        finally:
            await store.close()
            drop_database(admin_url, name)

    return open_


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page", type=int, default=500, help="changes per apply_batch")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    batch = changes(args.changes)
    stores: dict[str, Callable[[], AbstractAsyncContextManager[Store]]] = {
        "FakeStore (baseline)": fake,
        "SQLite (WAL, file)": sqlite,
    }
    if not args.no_postgres:
        stores["PostgreSQL (loopback)"] = postgres(args.postgres)

    print(f"apply throughput: {args.changes} changes (half creates, half updates), "
          f"median of {args.rounds} rounds")  # fmt: skip
    baseline = None
    for label, opener in stores.items():
        for page in (0, args.page):
            rates = []
            for _ in range(args.rounds):
                async with opener() as store:
                    rates.append(await measure(store, batch, page))
            rate = statistics.median(rates)
            baseline = baseline or rate
            mode = "apply, 1 per txn" if page == 0 else f"apply_batch, {page} per txn"
            print(f"  {label:<22} {mode:<26} {rate:8.0f} changes/s  {rate / baseline:7.2f} x")


if __name__ == "__main__":
    asyncio.run(main())
