"""A tenant's API keys (hashes only) and its connections, every change of which is kept as a
numbered version in ``connection_versions``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    Connection,
    ConnectionStatus,
    ConnectionVersion,
    PayloadClass,
)
from cadastre.store import tables as t
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from sqlalchemy import Row


def key_from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        row.key_id, row.tenant, ApiKeyScope(row.scope), row.secret_hash, row.created_at,
        row.revoked_at, row.label, PayloadClass(row.payload_class),
    )  # fmt: skip


def _connection(row: Row[Any]) -> Connection:
    return Connection(
        row.tenant, row.name, row.system, row.connector, row.config, row.credential,
        ConnectionStatus(row.status), row.version, row.updated_at,
    )  # fmt: skip


class SqlKeys(SqlRepository):
    async def add(self, key: ApiKey) -> None:
        self.own(key.tenant, "the key")
        inserted = await self.wrote(
            self.insert(t.api_keys)
            .values(
                key_id=key.key_id,
                tenant=key.tenant,
                scope=key.scope.value,
                secret_hash=key.secret_hash,
                label=key.label,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
                payload_class=key.payload_class.value,
            )
            .on_conflict_do_nothing()
            .returning(t.api_keys.c.key_id)
        )
        if not inserted:
            raise AlreadyExists(f"key {key.key_id!r} already exists")

    async def revoke(self, key_id: str) -> ApiKey:
        c = t.api_keys.c
        mine = (c.tenant == self.tenant) & (c.key_id == key_id)
        await self.execute(
            update(t.api_keys).where(mine, c.revoked_at.is_(None)).values(revoked_at=self.now())
        )
        row = (await self.execute(select(t.api_keys).where(mine))).first()
        if row is None:
            raise NotFound(f"key {key_id!r} does not exist in tenant {self.tenant!r}")
        return key_from_row(row)

    async def all(self) -> list[ApiKey]:
        c = t.api_keys.c
        rows = await self.execute(
            select(t.api_keys).where(c.tenant == self.tenant).order_by(c.created_at, c.key_id)
        )
        return [key_from_row(r) for r in rows]


class SqlConnections(SqlRepository):
    async def get(self, name: str) -> Connection | None:
        c = t.connections.c
        query = select(t.connections).where(c.tenant == self.tenant, c.name == name)
        row = (await self.execute(query)).first()
        return None if row is None else _connection(row)

    async def all(self) -> list[Connection]:
        c = t.connections.c
        rows = await self.execute(
            select(t.connections).where(c.tenant == self.tenant).order_by(c.name)
        )
        return [_connection(r) for r in rows]

    async def save(self, connection: Connection, *, changed_by: str, change: str) -> Connection:
        self.own(connection.tenant, "the connection")
        config = json_copy(connection.config)
        values: dict[str, Any] = {
            "system": connection.system, "connector": connection.connector, "config": config,
            "credential": connection.credential, "status": connection.status.value,
            "version": connection.version, "updated_at": connection.updated_at,
        }  # fmt: skip
        key = {"tenant": self.tenant, "name": connection.name}
        if connection.version == 1:
            statement = self.insert(t.connections).values(**key, **values).on_conflict_do_nothing()
        else:
            c = t.connections.c
            statement = (
                update(t.connections)
                .where(c.tenant == self.tenant, c.name == connection.name)
                .where(c.version == connection.version - 1)
                .values(**values)
            )
        if not await self.wrote(statement.returning(t.connections.c.version)):
            current = await self.get(connection.name)
            raise ConcurrentUpdate(
                f"connection {connection.name!r} would go to version {connection.version}, "
                f"expected {current.version + 1 if current else 1}"
            )
        await self.execute(
            t.connection_versions.insert().values(
                **key, **values, changed_by=changed_by, change=change
            )
        )
        return replace(connection, config=config)

    async def history(self, name: str) -> list[ConnectionVersion]:
        c = t.connection_versions.c
        rows = await self.execute(
            select(t.connection_versions)
            .where(c.tenant == self.tenant, c.name == name)
            .order_by(c.version)
        )
        return [ConnectionVersion(_connection(r), r.changed_by, r.change) for r in rows]
