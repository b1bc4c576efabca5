"""``PostgresStore``: the distributed mode, by URL (``postgresql+psycopg://user@host/db``).

- ``synchronous_commit`` stays on (the server default): a commit Cadastre acknowledges - a
  webhook 2xx, an API response - is on disk. Never run Cadastre against ``fsync=off``.
- READ COMMITTED with optimistic version checks in the UPDATE's WHERE clause; a lost race is
  ``ConcurrentUpdate``. Serialisation failures, deadlocks, lock timeouts and lost connections
  are ``StoreUnavailable`` (transient: retry the unit of work).
- Audit appends take ``pg_advisory_xact_lock`` on a key derived from the tenant, so concurrent
  appends to one chain queue while other tenants proceed; the lock ends with the transaction.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from cadastre.errors import ConfigurationError
from cadastre.store.base import SqlAlchemyStore, SqlAlchemyUnitOfWork, json_dumps

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.exc import DBAPIError

    from cadastre.ports import Clock

# SQLSTATEs that mean "the same unit of work may succeed if run again"
# Serialisation failures and detected deadlocks: the transaction lost a race and was rolled
# back; a fresh read and retry succeeds, so they are ConcurrentUpdate rather than an outage.
_LOST_RACE = {"40001", "40P01"}
_PERMANENT_AT_CONNECT = (
    "authentication failed", "does not exist", "no password supplied", "no pg_hba.conf entry",
)  # fmt: skip
_TRANSIENT = {"55P03", "57014", "57P01", "57P02", "57P03", "53300"}
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def audit_lock_key(tenant: str) -> int:
    """A stable signed 64-bit advisory-lock key for a tenant's audit chain."""
    digest = hashlib.sha256(b"cadastre.audit_log:" + tenant.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore(SqlAlchemyStore):
    def __init__(
        self, url: str, clock: Clock | None = None, *, pool_size: int = 10, max_overflow: int = 10
    ) -> None:
        import orjson
        from sqlalchemy.ext.asyncio import create_async_engine

        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise ConfigurationError(
                f"PostgresStore needs a postgresql URL, not {parsed.drivername}"
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_async_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
            hide_parameters=True,  # record data stays out of exception messages and logs
        )
        self.url = parsed
        super().__init__(engine, parsed.render_as_string(hide_password=False), clock)

    def insert(self, table: Table) -> Any:
        return pg_insert(table)

    async def lock_audit_chain(self, uow: SqlAlchemyUnitOfWork) -> None:
        await uow.execute(_LOCK.bindparams(key=audit_lock_key(uow.tenant)))

    def is_lost_race(self, error: DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) in _LOST_RACE

    def is_unavailable(self, error: DBAPIError) -> bool:
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate is not None:
            return sqlstate in _TRANSIENT or sqlstate.startswith("08")
        # psycopg reports connect failures without a SQLSTATE; a wrong password, user or
        # database name will not fix itself, a refused or timed-out connection may.
        message = str(error.orig).lower()
        if any(permanent in message for permanent in _PERMANENT_AT_CONNECT):
            return False
        return super().is_unavailable(error)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.render_as_string(hide_password=True)!r})"


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` through ``admin_url`` (blocking; for provisioning and tests) and
    return the URL of the new database."""
    _admin(admin_url, f'CREATE DATABASE "{_identifier(name)}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ConfigurationError(f"database name {name!r} must be letters, digits and '_'")
    return name


def _admin(admin_url: str, statement: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
