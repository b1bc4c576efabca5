"""Versions of the global configuration files (``config_versions``): the Store-level calls
``record_config_version``, ``config_versions`` and ``config_version``. Cross-tenant, like tenants:
mapping registry files and the ownership registry serve every tenant.

``SqlConfigVersions`` is mixed into ``SqlAlchemyStore``, which provides the hooks it declares (its
dialect's INSERT, a short-lived connection, the clock).

Recording reads the latest version and, when the text differs, inserts the next number with ON
CONFLICT DO NOTHING. Two workers that notice one hand edit at once both try the same number: the
second insert waits for the first transaction (PostgreSQL's unique check), finds the row taken,
reads the latest again in a fresh statement (READ COMMITTED) and returns it when its hash is the
one it was recording, or tries the next number when someone recorded something else meanwhile.
SQLite needs none of it (its writers queue behind ``BEGIN IMMEDIATE``), but runs the same code.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cadastre.errors import ConcurrentUpdate
from cadastre.ports import ConfigVersion
from cadastre.store import tables as t

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from sqlalchemy import Row, Table
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cadastre.ports import Clock

# Each lost race means another process recorded a different text at that very moment; more than a
# handful in a row is not a race but something writing the file in a loop.
ATTEMPTS = 8


def config_sha256(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _version(row: Row[Any]) -> ConfigVersion:
    return ConfigVersion(
        row.kind,
        row.name,
        row.version,
        row.content,
        row.sha256,
        row.changed_by,
        row.changed_at,
        row.note,
    )


async def _latest(conn: AsyncConnection, kind: str, name: str) -> ConfigVersion | None:
    c = t.config_versions.c
    query = (
        select(t.config_versions)
        .where(c.kind == kind, c.name == name)
        .order_by(c.version.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _version(row)


async def record_version(
    conn: AsyncConnection,
    insert: Callable[[Table], Any],
    *,
    kind: str,
    name: str,
    content: str,
    actor: str,
    note: str,
    now: datetime,
) -> ConfigVersion:
    """Record ``content`` in the transaction ``conn`` has begun; the caller commits."""
    sha = config_sha256(content)
    for _ in range(ATTEMPTS):
        latest = await _latest(conn, kind, name)
        if latest is not None and latest.sha256 == sha:
            return latest
        number = 1 if latest is None else latest.version + 1
        made = ConfigVersion(kind, name, number, content, sha, actor, now, note)
        inserted = await conn.execute(
            insert(t.config_versions)
            .values(
                kind=kind,
                name=name,
                version=number,
                content=content,
                sha256=sha,
                changed_by=actor,
                changed_at=now,
                note=note,
            )
            .on_conflict_do_nothing()
            .returning(t.config_versions.c.version)
        )
        if inserted.first() is not None:
            return made
    raise ConcurrentUpdate(
        f"{kind} {name!r}: {ATTEMPTS} versions were recorded by others while this one tried; "
        "is something rewriting the file in a loop?"
    )


async def all_versions(conn: AsyncConnection, kind: str, name: str) -> list[ConfigVersion]:
    c = t.config_versions.c
    rows = await conn.execute(
        select(t.config_versions).where(c.kind == kind, c.name == name).order_by(c.version)
    )
    return [_version(r) for r in rows]


async def one_version(
    conn: AsyncConnection, kind: str, name: str, version: int
) -> ConfigVersion | None:
    c = t.config_versions.c
    query = select(t.config_versions).where(c.kind == kind, c.name == name, c.version == version)
    row = (await conn.execute(query)).first()
    return None if row is None else _version(row)


class SqlConfigVersions:
    clock: Clock

    # -- hooks the store provides -----------------------------------------------------

    def insert(self, table: Table) -> Any:
        raise NotImplementedError

    def _directory(
        self, *, read_only: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    # -- the port -----------------------------------------------------------------------

    async def record_config_version(
        self, kind: str, name: str, content: str, *, actor: str, note: str = ""
    ) -> ConfigVersion:
        async with self._directory() as conn:
            recorded = await record_version(
                conn,
                self.insert,
                kind=kind,
                name=name,
                content=content,
                actor=actor,
                note=note,
                now=self.clock.now(),
            )
            await conn.commit()
        return recorded

    async def config_versions(self, kind: str, name: str) -> list[ConfigVersion]:
        async with self._directory(read_only=True) as conn:
            return await all_versions(conn, kind, name)

    async def config_version(self, kind: str, name: str, version: int) -> ConfigVersion | None:
        async with self._directory(read_only=True) as conn:
            return await one_version(conn, kind, name, version)
