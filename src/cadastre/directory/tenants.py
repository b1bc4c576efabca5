"""Tenants: the unit of isolation. Every record, key, connection and audit chain belongs to one."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cadastre.errors import ConfigurationError, NotFound

if TYPE_CHECKING:
    from cadastre.ports import Store, Tenant

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class TenantService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, tenant_id: str, name: str | None = None) -> Tenant:
        if not _ID.match(tenant_id):
            raise ConfigurationError(
                f"tenant id {tenant_id!r} must be 2-63 characters of a-z, 0-9 and '-'"
            )
        tenant = await self._store.create_tenant(tenant_id, name or tenant_id)
        async with self._store.unit_of_work(tenant_id) as uow:
            await uow.audit.append(
                actor="cli", action="tenant.created", detail={"name": tenant.name}
            )
            await uow.commit()
        return tenant

    async def all(self) -> list[Tenant]:
        return await self._store.list_tenants()

    async def get(self, tenant_id: str) -> Tenant | None:
        return await self._store.get_tenant(tenant_id)

    async def require(self, tenant_id: str) -> Tenant:
        """The tenant, or ``NotFound`` naming it."""
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return tenant
