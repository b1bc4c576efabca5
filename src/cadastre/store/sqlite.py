"""``SqliteStore``: the embedded default, one file (``var/cadastre.db`` unless told otherwise).

Connection settings, and why:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
- ``synchronous=NORMAL``: with WAL, a committed transaction survives an application crash
  (kill -9); only an operating-system crash or power loss can lose the last commits. Pass
  ``synchronous="FULL"`` where power loss must not lose an acknowledged commit.
- ``foreign_keys=ON`` and ``busy_timeout``: a writer waits for the lock instead of failing.
- Every unit of work starts with ``BEGIN IMMEDIATE``, taking the write lock up front. Python's
  sqlite3 would otherwise start a deferred transaction that reads first and tries to upgrade to a
  writer later, which fails at once with "database is locked" when another writer got there
  first (the busy timeout does not apply to that upgrade). So writers queue, and the audit chain
  needs no other lock. The directory's read-only look-ups use a plain deferred ``BEGIN``.

aiosqlite runs each connection in its own thread, so SQLite never blocks the event loop. The
webhook inbox writes its batches through a synchronous engine of its own in a worker thread, one
hop per transaction (``store_webhooks``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import URL, create_engine, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cadastre.store.base import SqlAlchemyStore, json_dumps
from cadastre.store.repositories.webhooks_in import store_webhooks_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Engine, Table
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cadastre.ports import Clock, ReceivedWebhook, RefusalTally

DEFAULT_PATH = Path("var") / "cadastre.db"
_READ_ONLY = "cadastre_read_only"


class SqliteStore(SqlAlchemyStore):
    def __init__(
        self,
        path: Path = DEFAULT_PATH,
        clock: Clock | None = None,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        import orjson
        from sqlalchemy.ext.asyncio import create_async_engine

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            URL.create("sqlite+aiosqlite", database=str(self.path)),
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
            hide_parameters=True,  # record data stays out of exception messages and logs
        )
        self._pragmas = (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
        )
        _configure(engine.sync_engine, self._pragmas)
        # The webhook inbox's writer (store_webhooks); it connects on first use.
        self._inbox_engine = create_engine(
            URL.create("sqlite", database=str(self.path)), json_serializer=json_dumps,
            hide_parameters=True,
        )  # fmt: skip
        _configure(self._inbox_engine, self._pragmas)
        super().__init__(
            engine, URL.create("sqlite", database=str(self.path)).render_as_string(), clock
        )

    def insert(self, table: Table) -> Any:
        return sqlite_insert(table)

    async def store_webhooks(
        self, tenant: str, items: Sequence[ReceivedWebhook], tallies: Sequence[RefusalTally]
    ) -> list[bool]:
        """The webhook inbox's group commit in one hop to a worker thread, on a connection of
        its own, configured as every other. Through the async engine each statement of the
        transaction is a hop of its own, and under load each hop waits for a busy event loop:
        that made the commit, and so the 2xx, several times slower."""
        return await asyncio.to_thread(self._store_webhooks, tenant, items, tallies)

    def _store_webhooks(
        self, tenant: str, items: Sequence[ReceivedWebhook], tallies: Sequence[RefusalTally]
    ) -> list[bool]:
        with self.translate(), self._inbox_engine.connect() as conn:
            stored = store_webhooks_now(conn, sqlite_insert, tenant, items, tallies)
            conn.commit()
        return stored

    async def close(self) -> None:
        await super().close()
        self._inbox_engine.dispose()

    async def _connect(self, *, read_only: bool = False) -> AsyncConnection:
        conn = await super()._connect()
        if read_only:
            await conn.execution_options(**{_READ_ONLY: True})
        return conn

    def is_unavailable(self, error: DBAPIError) -> bool:
        # Only a busy or locked database clears up by waiting; "no such table", a read-only or
        # corrupt file and disk I/O errors need a person, so they are not Transient.
        message = str(error.orig).lower()
        return (
            "database is locked" in message
            or "database is busy" in message
            or (error.connection_invalidated)
        )

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


def _configure(engine: Engine, pragmas: Sequence[str]) -> None:
    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (see _begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
