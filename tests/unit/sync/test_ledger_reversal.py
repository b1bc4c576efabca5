"""Accounting entries are never mutated, only reversed (``sync/ledger.py``), on FakeStore and
SQLite: a money change becomes a reversal and a replacement in one transaction, each with its
audit entry; a memo change applies in place; a delete is a reversal; the books still add up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Operation
from cadastre.ownership import parse_registry
from cadastre.ports import Store
from cadastre.store import SqliteStore
from cadastre.sync import SyncEngine
from cadastre.testing import FakeClock, FakeStore
from tests.unit.sync.conftest import TENANT, Reader, make_change

REGISTRY = """
version: 1
systems: {accounting: {}, core: {}}
rules:
  - {match: LedgerEntry.*, owner: accounting}
"""


@pytest.fixture(params=["fake", "sqlite"])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
                ) -> AsyncIterator[Store]:  # fmt: skip
    if request.param == "fake":
        yield FakeStore(clock)
        return
    sqlite = SqliteStore(tmp_path / "cadastre.db", clock)
    await sqlite.migrate()
    yield sqlite
    await sqlite.close()


def entry(fields: dict[str, Any] | None = None, t: float = 1, op: Operation = Operation.UPSERT
          ) -> Any:  # fmt: skip
    return make_change("accounting", fields, entity="LedgerEntry", ext="JE1:1", t=t, op=op)


async def entries(store: Store) -> dict[str, dict[str, Any]]:
    async with store.unit_of_work(TENANT) as uow:
        return {r.id: dict(r.data) async for r in uow.records.scan("LedgerEntry")}


def balance(books: dict[str, dict[str, Any]]) -> Decimal:
    sign = {"Debit": 1, "Credit": -1}
    return sum((sign[e["EntryType"]] * Decimal(e["Amount"]) for e in books.values()), Decimal(0))


async def test_entries_are_reversed_never_mutated(store: Store, clock: FakeClock) -> None:
    engine = SyncEngine(store, parse_registry(REGISTRY, source="test"), clock)
    read = Reader(store)
    posted = {
        "LedgerEntryId": "JE1:1",
        "LedgerAccountId": "A1",
        "EntryType": "Debit",
        "Amount": "100.00",
        "Currency": "USD",
        "PostedDate": "2026-01-05",
        "Memo": "rent",
    }
    original = (await engine.apply(entry(posted))).canonical_id
    before = (await entries(store))[original]

    change = entry({**posted, "Amount": "120.00"}, t=2)
    corrected = await engine.apply(change)
    assert corrected.created
    assert corrected.canonical_id != original
    books = await entries(store)
    assert len(books) == 3
    kept = books[original]
    reversal_id = kept.pop("ReversedByEntryId")
    assert kept == before  # the original's posting is untouched
    reversal, replacement = books[reversal_id], books[corrected.canonical_id]
    assert reversal["ReversesEntryId"] == original
    assert (reversal["EntryType"], reversal["Amount"]) == ("Credit", before["Amount"])
    assert replacement["ReplacesEntryId"] == original
    assert replacement["Amount"] == "120"
    assert replacement["Memo"] == "rent"
    assert balance(books) == Decimal("120.00")
    # the vendor's line now names the replacement
    assert await read.resolve("accounting", "JE1:1", "LedgerEntry") == corrected.canonical_id
    actions = [(e.action, e.entity_id) for e in await read.audit()]
    assert actions[1:] == [
        ("change.applied", reversal_id),
        ("ledger.reversed", original),
        ("change.applied", original),
        ("change.applied", corrected.canonical_id),
    ]
    assert (await engine.apply(change)).duplicate  # a repeat writes nothing more
    assert len(await entries(store)) == 3

    memo = await engine.apply(entry({"Memo": "rent, January"}, t=3))
    assert memo.canonical_id == corrected.canonical_id
    assert memo.applied == ["Memo"]
    assert len(await entries(store)) == 3  # not a money field: changed in place

    deleted = await engine.apply(entry(t=4, op=Operation.DELETE))
    assert not deleted.deleted
    books = await entries(store)
    assert len(books) == 4
    assert all(not r.deleted for r in await _records(store))
    assert balance(books) == 0
    late = await engine.apply(entry({"Amount": "130.00"}, t=3.5))  # older than the delete
    assert [r.reason.value for r in late.refused] == ["stale"]
    assert len(await entries(store)) == 4


async def _records(store: Store) -> list[Any]:
    async with store.unit_of_work(TENANT) as uow:
        return [r async for r in uow.records.scan("LedgerEntry")]
