from __future__ import annotations

import cadastre.store
import cadastre.testing
from cadastre.ports import Store
from cadastre.store import PostgresStore, SqliteStore
from cadastre.testing import FakeStore


def test_store_public_surface() -> None:
    assert cadastre.store.__all__ == [
        "GENESIS_HASH",
        "PostgresLockBackend",
        "PostgresStore",
        "SqlAlchemyStore",
        "SqlAlchemyUnitOfWork",
        "SqliteStore",
        "audit_entry_hash",
        "canonical_json",
        "content_hash",
        "open_store",
    ]
    for name in cadastre.store.__all__:
        assert hasattr(cadastre.store, name)


def test_testing_public_surface() -> None:
    assert cadastre.testing.__all__ == ["EPOCH", "FakeClock", "FakeStore", "FakeUnitOfWork"]


def as_ports(sqlite: SqliteStore, postgres: PostgresStore, fake: FakeStore) -> list[Store]:
    """Never called: mypy checks here that every adapter satisfies the ``Store`` port."""
    return [sqlite, postgres, fake]
