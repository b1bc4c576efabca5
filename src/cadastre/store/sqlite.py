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
hop per transaction (``store_webhooks``), with one INSERT written here rather than compiled per
batch (``_InboxInsert``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import URL, create_engine, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from cadastre.ports import InboxStatus
from cadastre.store import tables as t
from cadastre.store.base import SqlAlchemyStore, json_dumps
from cadastre.store.repositories.webhooks_in import store_webhooks_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Dialect, Engine, Table
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
        self._inbox_insert = _InboxInsert(self._inbox_engine.dialect)
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
        with self.translate():
            if not tallies:
                return self._inbox_insert(self._inbox_engine, tenant, items)
            # refusal counts ride along at most once a second: the compiled statements
            with self._inbox_engine.connect() as conn:
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


class _InboxInsert:
    """``uow.webhooks_in.add_many`` in a transaction of its own, for the inbox's group commit:
    on a DBAPI connection of the inbox engine's pool (so configured as every other), as SQL
    written here. A driver error is raised as SQLAlchemy would raise it, for ``translate``.

    Why not the compiled statement: the write thread spent as long in Python as SQLite spent
    writing (the connection's checkout, begin and commit events, the statement cache look-up,
    a bind processor call per row and column), holding the GIL the event loop needs. Here the
    SQL is written once per row count, and only the two columns that need it go through their
    type's bind processor (taken from the dialect: the stored text is SQLAlchemy's).

    Why no ``RETURNING``: sqlite3 lets the GIL go around each step of a statement, one step per
    returned row, and takes it back after; with the event loop busy, each taking back waits up
    to the interpreter's switch interval (5 ms), and the batch's 2xx with it. So the message
    ids already held are looked up first (one step: usually none is), then the rows inserted
    in one statement: in the ``BEGIN IMMEDIATE`` transaction nobody else writes in between,
    and the INSERT's row count is checked against it."""

    COLUMNS = ("tenant", "connection", "message_id", "received_at", "headers", "body", "status",
               "attempts", "error")  # fmt: skip
    CHUNK = 100  # rows per statement: 900 parameters, under the 999 older SQLite builds allow

    def __init__(self, dialect: Dialect) -> None:
        c = t.webhooks_in.c
        when = c.received_at.type._cached_bind_processor(dialect)
        as_json = c.headers.type._cached_bind_processor(dialect)
        if when is None or as_json is None:  # both types convert on SQLite: a changed type
            raise TypeError("webhooks_in.received_at and .headers need their bind processors")
        self._when, self._json = when, as_json
        self._sql: dict[tuple[str, int], str] = {}

    def sql(self, kind: str, count: int) -> str:
        """The INSERT of ``count`` rows, or the SELECT of the ids held among ``count``."""
        found = self._sql.get((kind, count))
        if found is None:
            # column names and placeholders only: every value is a parameter
            if kind == "insert":
                one = "(" + ", ".join("?" * len(self.COLUMNS)) + ")"
                found = (
                    f"INSERT INTO webhooks_in ({', '.join(self.COLUMNS)}) "  # noqa: S608
                    f"VALUES {', '.join([one] * count)} "
                    "ON CONFLICT (tenant, connection, message_id) DO NOTHING"
                )
            else:
                found = (
                    "SELECT message_id FROM webhooks_in "  # noqa: S608
                    "WHERE tenant = ? AND connection = ? "
                    f"AND message_id IN ({', '.join('?' * count)})"
                )
            self._sql[(kind, count)] = found
        return found

    def __call__(self, engine: Engine, tenant: str, items: Sequence[ReceivedWebhook]) -> list[bool]:
        """Insert ``items`` and commit; True for each stored now, False for one held already
        or a twin of an earlier item (a replay)."""
        first: dict[tuple[str, str], int] = {}
        for i, item in enumerate(items):
            first.setdefault((item.connection, item.message_id), i)
        if not first:
            return []
        held = self._run(engine, tenant, items, first)
        return [
            first[key] == i and key not in held
            for i, key in enumerate((item.connection, item.message_id) for item in items)
        ]

    def _run(
        self, engine: Engine, tenant: str, items: Sequence[ReceivedWebhook],
        first: dict[tuple[str, str], int],
    ) -> set[tuple[str, str]]:  # fmt: skip
        by_connection: dict[str, list[str]] = {}
        for connection, message_id in first:
            by_connection.setdefault(connection, []).append(message_id)
        try:  # connecting runs the pragmas, which can find the database locked
            db = engine.raw_connection()
        except sqlite3.Error as exc:
            raise DBAPIError.instance("PRAGMA", None, exc, sqlite3.Error) from exc
        statement = "BEGIN IMMEDIATE"  # see _configure: the write lock up front
        try:
            cursor = db.cursor()
            cursor.execute(statement)
            held: set[tuple[str, str]] = set()
            for connection, ids in by_connection.items():
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    statement = self.sql("select", len(chunk))
                    found = cursor.execute(statement, (tenant, connection, *chunk)).fetchall()
                    held.update((connection, message_id) for (message_id,) in found)
            values = self._values(tenant, [items[i] for key, i in first.items() if key not in held])
            width, step = len(self.COLUMNS), self.CHUNK * len(self.COLUMNS)
            for start in range(0, len(values), step):
                chunk = values[start : start + step]
                statement = self.sql("insert", len(chunk) // width)
                if cursor.execute(statement, chunk).rowcount != len(chunk) // width:
                    raise RuntimeError("the webhook inbox changed under its write lock")
            statement = "COMMIT"
            cursor.execute(statement)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
        finally:
            with contextlib.suppress(sqlite3.Error):  # nothing of a failed batch is kept
                if db.driver_connection is not None and db.driver_connection.in_transaction:
                    db.rollback()
            db.close()  # back to the pool
        return held

    def _values(self, tenant: str, items: list[ReceivedWebhook]) -> list[Any]:
        values: list[Any] = []
        for item in items:
            values += (
                tenant, item.connection, item.message_id, self._when(item.received_at),
                self._json(dict(item.headers)), item.body, InboxStatus.PENDING.value, 0, "",
            )  # fmt: skip
        return values


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
