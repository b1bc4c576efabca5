"""The store: SQLAlchemy 2 tables behind the ``Store`` / ``UnitOfWork`` ports, on SQLite (the
embedded default, a file under ``./var/``) or PostgreSQL (by URL), with Alembic migrations shipped
in the package. See ``docs/store.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cadastre.errors import ConfigurationError
from cadastre.store.audit import GENESIS_HASH, audit_entry_hash
from cadastre.store.base import SqlAlchemyStore, SqlAlchemyUnitOfWork
from cadastre.store.canonical import canonical_json, content_hash
from cadastre.store.locks import PostgresLockBackend
from cadastre.store.postgres import PostgresStore
from cadastre.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from cadastre.ports import Clock

__all__ = [
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


async def open_store(
    url: str, *, clock: Clock | None = None, migrate: bool = True
) -> SqlAlchemyStore:
    """The adapter for a SQLAlchemy URL: ``sqlite[+aiosqlite]:///path`` or
    ``postgresql[+psycopg]://...``; with ``migrate`` the schema is upgraded to head first."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # Messages below never echo the URL or the parser's message: the URL may hold a password.
    try:
        parsed = make_url(url)
    except ValueError as exc:  # a port that is not a number ("invalid literal for int()")
        reason = "its port is not a number" if "int()" in str(exc) else "it cannot be parsed"
        raise ConfigurationError(_invalid_url(reason)) from None
    except ArgumentError:
        raise ConfigurationError(_invalid_url("it cannot be parsed")) from None
    store: SqlAlchemyStore
    match parsed.get_backend_name():
        case "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigurationError(
                    "the SQLite store needs a file path, not an in-memory database"
                )
            path = Path(parsed.database)
            try:
                store = SqliteStore(path, clock)
            except OSError as exc:  # the folder cannot be created
                raise ConfigurationError(
                    f"the SQLite store cannot use {path}: {exc.strerror or type(exc).__name__}"
                ) from None
        case "postgresql":
            try:
                store = PostgresStore(url, clock)
            except (ArgumentError, ValueError, TypeError) as exc:
                raise ConfigurationError(_invalid_url(type(exc).__name__)) from None
        case other:
            raise ConfigurationError(f"no store for database URL scheme {other!r}")
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store


def _invalid_url(reason: str) -> str:
    return (
        f"CADASTRE_DATABASE_URL is not a valid database URL: {reason} (expected "
        "postgresql://user:password@host[:port]/database or sqlite:///path/to/file.db)"
    )
