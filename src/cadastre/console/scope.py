"""Which tenants a page shows. An operator of one tenant sees that tenant only; an operator of
every tenant sees them all and may narrow a page to one (``?tenant=``). A tenant that is not the
operator's answers exactly as one that does not exist: 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadastre.console.session import NotVisible

if TYPE_CHECKING:
    from cadastre.bootstrap import Hub
    from cadastre.directory import Visitor
    from cadastre.ports import Tenant


async def choices(hub: Hub, visitor: Visitor) -> list[Tenant]:
    """The tenants the operator may pick from."""
    own = visitor.operator.tenant
    if own is None:
        return await hub.tenants.all()
    found = await hub.tenants.get(own)
    return [found] if found is not None else []


async def shown(hub: Hub, visitor: Visitor, wanted: str | None) -> list[Tenant]:
    """The tenants a list page shows: ``wanted`` alone, or every one the operator may see."""
    available = await choices(hub, visitor)
    if not wanted:
        return available
    picked = [t for t in available if t.id == wanted]
    if not picked:
        raise NotVisible
    return picked


async def one(hub: Hub, visitor: Visitor, tenant: str) -> Tenant:
    """The tenant of a page about one thing of it, or ``NotVisible``."""
    if not visitor.sees(tenant):
        raise NotVisible
    found = await hub.tenants.get(tenant)
    if found is None:
        raise NotVisible
    return found
