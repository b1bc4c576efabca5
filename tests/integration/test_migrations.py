"""Migrations from empty to head, back to base and up again, on a SQLite file and on PostgreSQL
(a database of its own, created and dropped here)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from cadastre.store import PostgresStore, SqlAlchemyStore, SqliteStore, open_store
from cadastre.store.postgres import create_database, drop_database
from cadastre.store.tables import TABLE_NAMES, metadata
from tests.conftest import service_missing

ADMIN_URL = os.environ.get(
    "CADASTRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def tables_of(sync_url: str) -> set[str]:
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def columns_of(sync_url: str, table: str) -> list[str]:
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


async def round_trip(store: SqlAlchemyStore, sync_url: str) -> None:
    assert tables_of(sync_url) == set()
    await store.migrate()
    assert tables_of(sync_url) == {*TABLE_NAMES, "alembic_version"}
    for name in TABLE_NAMES:  # the migration builds what the tables module describes
        assert columns_of(sync_url, name) == [c.name for c in metadata.tables[name].columns]
    async with store.unit_of_work("acme") as uow:
        await uow.audit.append(actor="test", action="migrated")
        await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
        await uow.commit()
    await store.migrate()  # already at head: nothing to do
    await store.downgrade("base")
    assert tables_of(sync_url) <= {"alembic_version"}
    await store.migrate()
    assert tables_of(sync_url) == {*TABLE_NAMES, "alembic_version"}
    async with store.unit_of_work("acme") as uow:
        assert (await uow.audit.verify()).entries == 0
        await uow.audit.append(actor="test", action="migrated again")
        await uow.commit()
        with pytest.raises(Exception, match="append-only"):  # the triggers came back too
            await uow.execute(text("DELETE FROM audit_log"))


async def test_sqlite_empty_to_head_to_base_to_head(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cadastre.db"
    store = SqliteStore(path)
    try:
        await round_trip(store, f"sqlite:///{path}")
    finally:
        await store.close()


async def test_open_store_picks_sqlite_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "var" / "cadastre.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        assert isinstance(store, SqliteStore)
        assert "records" in tables_of(f"sqlite:///{path}")
    finally:
        await store.close()


async def test_open_store_refuses_unknown_schemes() -> None:
    from cadastre.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        await open_store("mysql://localhost/db")
    with pytest.raises(ConfigurationError):
        await open_store("sqlite+aiosqlite:///:memory:")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    name = f"cadastre_test_{secrets.token_hex(4)}"
    try:
        url = create_database(ADMIN_URL, name)
    except Exception as exc:  # noqa: BLE001
        message = f"PostgreSQL is not reachable ({type(exc).__name__}: {exc})"
        service_missing("postgres", message)
    yield url
    drop_database(ADMIN_URL, name)


@pytest.mark.postgres
async def test_postgres_empty_to_head_to_base_to_head(postgres_database: str) -> None:
    store = await open_store(postgres_database, migrate=False)
    try:
        assert isinstance(store, PostgresStore)
        await round_trip(store, postgres_database)
    finally:
        await store.close()


async def carry_over(store: SqlAlchemyStore) -> None:
    """0002 folds 0001's per-field provenance rows into one row per record, losing nothing."""
    from datetime import UTC, datetime

    await store.migrate("0001")
    at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    rows = [
        ("L1", "ListPrice", "mls", "austin", at, "v7", 1.0),
        ("L1", "City", "mls", "austin", at, "v7", 1.0),
        ("L1", "PropertyId", "core", None, None, None, 0.5),
        ("L2", "City", "mls", "austin", at, "v2", 1.0),
    ]
    async with store.engine.begin() as conn:
        for id, field, system, connection, source_time, version, confidence in rows:
            await conn.execute(
                text(
                    "INSERT INTO field_provenance (tenant, entity, id, field, system, connection,"
                    " source_time, source_version, confidence, recorded_at) VALUES ('acme',"
                    " 'Listing', :id, :field, :system, :connection, :source_time, :version,"
                    " :confidence, :recorded_at)"
                ),
                {
                    "id": id,
                    "field": field,
                    "system": system,
                    "connection": connection,
                    "source_time": source_time,
                    "version": version,
                    "confidence": confidence,
                    "recorded_at": at,
                },
            )
    await store.migrate()
    async with store.unit_of_work("acme", read_only=True) as uow:
        got = await uow.provenance.for_records("Listing", ["L1", "L2"])
    flat = {
        (id, field, p.system, p.connection, p.source_time, p.source_version, p.confidence)
        for id, fields in got.items()
        for field, p in fields.items()
    }
    assert flat == {(id, f, s, c, t, v, conf) for id, f, s, c, t, v, conf in rows}
    assert all(p.recorded_at == at for fields in got.values() for p in fields.values())
    await store.downgrade("0001")  # and back: the rows are per field again
    async with store.engine.begin() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM field_provenance"))).scalar()
    assert count == len(rows)


async def test_sqlite_0002_carries_provenance_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cadastre.db")
    try:
        await carry_over(store)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_0002_carries_provenance_over(postgres_database: str) -> None:
    store = await open_store(postgres_database, migrate=False)
    try:
        await carry_over(store)
    finally:
        await store.close()


async def fold_quarantine_copies(store: SqlAlchemyStore) -> None:
    """0016 gives existing quarantine entries their digest and folds the open copies of one
    record version (what syncs before it left behind) into the oldest, with their sightings."""
    from datetime import UTC, datetime, timedelta

    await store.migrate("0015")
    at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    bad = '{"ListingKey": "X1", "StandardStatus": "Sold-ish"}'
    same = '{"StandardStatus": "Sold-ish", "ListingKey": "X1"}'  # the same JSON, keys reordered
    rows = [  # id, external id, payload, minutes later, resolved
        ("q1", "X1", bad, 0, False),
        ("q2", "X1", same, 10, False),
        ("q3", "X1", bad, 20, False),
        ("q4", "X1", bad, 30, True),  # resolved: left as it is
        ("q5", "X1", '{"ListingKey": "X1", "ListPrice": 1}', 40, False),  # another version
        ("q6", None, bad, 50, False),  # no key: not the keyed entries' copy
    ]
    async with store.engine.begin() as conn:
        for id, key, payload, minutes, resolved in rows:
            created = at + timedelta(minutes=minutes)
            await conn.execute(
                text(
                    "INSERT INTO quarantine (id, tenant, connection, entity, external_id, reason,"
                    " payload, created_at, resolved_at, stream, code, attempts) VALUES (:id,"
                    " 'acme', 'mls', 'Listing', :key, 'unknown status', :payload, :created,"
                    " :resolved, 'Property', 'unknown_enum_value', 0)"
                ),
                {
                    "id": id,
                    "key": key,
                    "payload": payload,
                    "created": created,
                    "resolved": created if resolved else None,
                },
            )
    await store.migrate()
    async with store.unit_of_work("acme") as uow:
        held = {q.id: q for q in await uow.quarantine.open_items()}
        assert set(held) == {"q1", "q5", "q6"}
        assert (held["q1"].sightings, held["q1"].last_seen_at) == (3, at + timedelta(minutes=20))
        assert (held["q5"].sightings, held["q5"].last_seen_at) == (1, None)
        closed = await uow.quarantine.get("q4")
        assert closed is not None
        assert closed.sightings == 1
        # the filled digests are the ones add computes: the next sighting finds its entry
        again = await uow.quarantine.add(
            connection="mls", entity="Listing", external_id="X1", reason="r",
            payload={"ListingKey": "X1", "StandardStatus": "Sold-ish"}, stream="Property",
        )  # fmt: skip
        assert (again.id, again.sightings) == ("q1", 4)
        await uow.commit()
    await store.downgrade("0015")
    await store.migrate()


async def test_sqlite_0016_folds_quarantine_copies(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cadastre.db")
    try:
        await fold_quarantine_copies(store)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_0016_folds_quarantine_copies(postgres_database: str) -> None:
    store = await open_store(postgres_database, migrate=False)
    try:
        await fold_quarantine_copies(store)
    finally:
        await store.close()
