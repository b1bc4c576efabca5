"""``SqlAlchemyStore`` and ``SqlAlchemyUnitOfWork``: everything the SQLite and PostgreSQL adapters
share. The adapters add only what differs - how to connect, how to serialise audit appends and
how to recognise their drivers' errors.

A unit of work is one ``AsyncConnection`` and the transaction it begins on first use. Database
errors are translated at this one boundary: lost connections, lock timeouts, serialisation
failures and deadlocks become ``StoreUnavailable`` (transient); uniqueness conflicts are decided
by the repositories with ``ON CONFLICT DO NOTHING`` so a transaction is never left aborted.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from cadastre.clock import SystemClock
from cadastre.errors import (
    AlreadyExists,
    CadastreError,
    ConcurrentUpdate,
    StoreError,
    StoreUnavailable,
)
from cadastre.ports import ApiKey, Tenant
from cadastre.store import tables as t
from cadastre.store.repositories.alerts import SqlAlerts
from cadastre.store.repositories.config_versions import SqlConfigVersions
from cadastre.store.repositories.conflicts import SqlConflicts
from cadastre.store.repositories.directory import SqlConnections, SqlKeys, key_from_row
from cadastre.store.repositories.idempotency import SqlIdempotency
from cadastre.store.repositories.identities import SqlIdentities
from cadastre.store.repositories.ledger import SqlApplied, SqlAudit, SqlQuarantine
from cadastre.store.repositories.links import SqlCursors, SqlProvenance, SqlSchemas, SqlXref
from cadastre.store.repositories.observations import SqlObservations
from cadastre.store.repositories.operators import SqlOperatorDirectory
from cadastre.store.repositories.outbox import SqlConsumed, SqlOutbox, pending_tenants
from cadastre.store.repositories.records import SqlRecords
from cadastre.store.repositories.vault import SqlCredentials
from cadastre.store.repositories.webhooks import SqlDeliveries, SqlSubscriptions
from cadastre.store.repositories.webhooks_in import SqlWebhooksIn
from cadastre.store.repositories.writes import SqlWrites

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from datetime import datetime
    from types import TracebackType

    from sqlalchemy import Executable, Result, Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from cadastre.ports import (
        AlertRepository,
        AppliedChanges,
        AuditLog,
        Clock,
        ConflictRepository,
        ConnectionRepository,
        ConsumedEvents,
        CredentialRepository,
        CursorRepository,
        DeliveryRepository,
        IdempotencyRepository,
        IdentityRepository,
        KeyRepository,
        ObservationRepository,
        OutboxRepository,
        ProvenanceRepository,
        QuarantineRepository,
        RecordRepository,
        SchemaRepository,
        SubscriptionRepository,
        WebhookInbox,
        WriteRepository,
        XrefRepository,
    )

MIGRATIONS = Path(__file__).parent / "migrations"


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqlAlchemyStore(SqlOperatorDirectory, SqlConfigVersions):  # cross-tenant calls (issue 9)
    """The ``Store`` port over an SQLAlchemy async engine. Use ``SqliteStore`` or
    ``PostgresStore`` (or ``open_store(url)``), which build the engine."""

    def __init__(self, engine: AsyncEngine, sync_url: str, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self._sync_url = sync_url
        self._outbox_listeners: list[Callable[[str], None]] = []
        self._audit_listeners: list[Callable[[str, int], None]] = []

    # -- adapter hooks -----------------------------------------------------------------

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``
        (PostgreSQL's and SQLite's share that API but no base class, hence ``Any``)."""
        raise NotImplementedError

    async def lock_audit_chain(self, uow: SqlAlchemyUnitOfWork) -> None:
        """Serialise audit appends for ``uow.tenant`` until the transaction ends."""

    def is_lost_race(self, error: sa_exc.DBAPIError) -> bool:
        """A deadlock or serialisation failure: retryable as ``ConcurrentUpdate``."""
        return False

    def is_unavailable(self, error: sa_exc.DBAPIError) -> bool:
        return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or (
            error.connection_invalidated
        )

    async def _connect(self, *, read_only: bool = False) -> AsyncConnection:
        with self.translate():
            return await self.engine.connect()

    # -- the port ----------------------------------------------------------------------

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self, tenant, read_only=read_only)

    async def create_tenant(self, tenant_id: str, name: str) -> Tenant:
        tenant = Tenant(tenant_id, name, self.clock.now())
        async with self._directory() as conn:
            inserted = await conn.execute(
                self.insert(t.tenants)
                .values(id=tenant_id, name=name, created_at=tenant.created_at)
                .on_conflict_do_nothing()
                .returning(t.tenants.c.id)
            )
            if inserted.first() is None:
                raise AlreadyExists(f"tenant {tenant_id!r} already exists")
            await conn.commit()
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self._directory(read_only=True) as conn:
            row = (await conn.execute(select(t.tenants).where(t.tenants.c.id == tenant_id))).first()
        return None if row is None else Tenant(row.id, row.name, row.created_at)

    async def list_tenants(self) -> list[Tenant]:
        async with self._directory(read_only=True) as conn:
            rows = await conn.execute(select(t.tenants).order_by(t.tenants.c.id))
        return [Tenant(r.id, r.name, r.created_at) for r in rows]

    async def find_api_key(self, key_id: str) -> ApiKey | None:
        async with self._directory(read_only=True) as conn:
            query = select(t.api_keys).where(t.api_keys.c.key_id == key_id)
            row = (await conn.execute(query)).first()
        return None if row is None else key_from_row(row)

    async def pending_outbox_tenants(self) -> list[str]:
        async with self._directory(read_only=True) as conn:
            return await pending_tenants(conn)

    def watch_outbox(self, listener: Callable[[str], None]) -> Callable[[], None]:
        self._outbox_listeners.append(listener)
        return lambda: self._outbox_listeners.remove(listener)

    def outbox_committed(self, tenant: str) -> None:
        for listener in list(self._outbox_listeners):
            listener(tenant)

    def watch_audit(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        self._audit_listeners.append(listener)
        return lambda: self._audit_listeners.remove(listener)

    def audit_committed(self, tenant: str, entries: int) -> None:
        for listener in list(self._audit_listeners):
            listener(tenant, entries)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- schema ------------------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema (Alembic, in a worker thread with a synchronous engine)."""
        with self.translate():  # an unreachable database is StoreUnavailable here too
            await asyncio.to_thread(self._alembic, "upgrade", revision)

    async def downgrade(self, revision: str = "base") -> None:
        with self.translate():
            await asyncio.to_thread(self._alembic, "downgrade", revision)

    def _alembic(self, direction: str, revision: str) -> None:
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import create_engine

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        engine = create_engine(self._sync_url)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                getattr(command, direction)(config, revision)
        finally:
            engine.dispose()

    # -- plumbing ----------------------------------------------------------------------

    @asynccontextmanager
    async def _directory(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect(read_only=read_only)
        try:
            with self.translate():
                yield conn
        finally:
            with self.translate():
                await conn.close()

    def translate(self) -> _Translate:
        return _Translate(self)


class _Translate:
    """Turn driver errors into the Cadastre error tree (a sync context manager, so it can wrap
    any await)."""

    def __init__(self, store: SqlAlchemyStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or isinstance(exc, CadastreError):
            return
        if isinstance(exc, sa_exc.DBAPIError):
            if self._store.is_lost_race(exc):
                raise ConcurrentUpdate(f"database: {type(exc.orig).__name__}: {exc.orig}") from exc
            kind = StoreUnavailable if self._store.is_unavailable(exc) else StoreError
            raise kind(f"database: {type(exc.orig).__name__}: {exc.orig}") from exc
        if isinstance(exc, sa_exc.TimeoutError | ConnectionError | OSError):
            raise StoreUnavailable(f"database: {exc}") from exc
        if isinstance(exc, sa_exc.StatementError):  # raised before the driver saw it
            raise StoreError(f"database statement: {exc.orig}") from exc


class SqlAlchemyUnitOfWork:
    def __init__(self, store: SqlAlchemyStore, tenant: str, *, read_only: bool = False) -> None:
        self.tenant = tenant
        self.store = store
        self._read_only = read_only
        self._conn: AsyncConnection | None = None
        self.records: RecordRepository = SqlRecords(self)
        self.provenance: ProvenanceRepository = SqlProvenance(self)
        self.xref: XrefRepository = SqlXref(self)
        self.cursors: CursorRepository = SqlCursors(self)
        self.quarantine: QuarantineRepository = SqlQuarantine(self)
        self.outbox: OutboxRepository = SqlOutbox(self)
        self.audit: AuditLog = SqlAudit(self)
        self.applied: AppliedChanges = SqlApplied(self)
        self.keys: KeyRepository = SqlKeys(self)
        self.connections: ConnectionRepository = SqlConnections(self)
        self.credentials: CredentialRepository = SqlCredentials(self)
        self.schemas: SchemaRepository = SqlSchemas(self)
        self.consumed: ConsumedEvents = SqlConsumed(self)
        self._after_commit: dict[tuple[Callable[[str], None], str], None] = {}
        self._audited = 0  # audit entries appended in this transaction (Store.watch_audit)
        self.subscriptions: SubscriptionRepository = SqlSubscriptions(self)
        self.deliveries: DeliveryRepository = SqlDeliveries(self)
        self.webhooks_in: WebhookInbox = SqlWebhooksIn(self)
        self.writes: WriteRepository = SqlWrites(self)
        self.conflicts: ConflictRepository = SqlConflicts(self)
        self.observations: ObservationRepository = SqlObservations(self)
        self.identities: IdentityRepository = SqlIdentities(self)
        self.idempotency: IdempotencyRepository = SqlIdempotency(self)
        self.alerts: AlertRepository = SqlAlerts(self)

    def now(self) -> datetime:
        return self.store.clock.now()

    def audited(self, entries: int) -> None:
        """``entries`` audit entries were appended: told to ``Store.watch_audit`` on commit."""
        self._audited += entries

    def after_commit(self, call: Callable[[str], None], argument: str) -> None:
        """Run ``call(argument)`` once this unit of work commits (once, however often asked);
        a rollback forgets it."""
        self._after_commit[(call, argument)] = None

    @property
    def connection(self) -> AsyncConnection:
        if self._conn is None:
            raise StoreError("the unit of work is not open; use 'async with'")
        return self._conn

    async def execute(
        self,
        statement: Executable,
        params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    ) -> Result[Any]:
        """Run one statement; with ``params`` (a list of rows), run it for every row - one
        multi-row statement for an INSERT with RETURNING (SQLAlchemy's "insertmanyvalues"), the
        driver's executemany otherwise."""
        with self.store.translate():
            return await self.connection.execute(statement, params)

    async def __aenter__(self) -> Self:
        self._conn = await self.store._connect(read_only=self._read_only)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self.connection, None
        self._after_commit.clear()
        self._audited = 0
        try:
            with self.store.translate():
                if conn.in_transaction():
                    await conn.rollback()
        except StoreError:
            if exc is None:  # do not hide the error that is already on its way out
                raise
        finally:
            await conn.close()

    async def commit(self) -> None:
        with self.store.translate():
            await self.connection.commit()
        calls, self._after_commit = self._after_commit, {}
        for call, argument in calls:
            call(argument)
        if self._audited:
            entries, self._audited = self._audited, 0
            self.store.audit_committed(self.tenant, entries)

    async def rollback(self) -> None:
        self._after_commit.clear()
        self._audited = 0
        with self.store.translate():
            await self.connection.rollback()
