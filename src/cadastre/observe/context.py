"""Whom the work in progress is for: the tenant and connection of the call, run or message.

Two context variables, set with ``working_for`` by the code that knows them (a gateway call, a
sync run, the webhook normaliser, the write-back worker) and read by the log formatters, so
every line written inside carries them without each call passing them along.

Context variables, not thread-locals or attributes of a worker: asyncio copies the context into
every task at its creation, so a task started inside a run (the read-ahead of the next page)
inherits its run's values, and two runs interleaved on one event loop never see each other's.
``working_for`` sets both variables together, ``None`` included, and restores both on leaving:
work for another tenant, or for the tenant as a whole, never inherits a connection it is not
about. Absent is always better than wrong.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

TENANT: ContextVar[str | None] = ContextVar("cadastre_tenant", default=None)
CONNECTION: ContextVar[str | None] = ContextVar("cadastre_connection", default=None)


@contextlib.contextmanager
def working_for(tenant: str | None, connection: str | None = None) -> Iterator[None]:
    """Inside the block, the current tenant and connection are these (an empty string or
    ``None``: none)."""
    tenant_token = TENANT.set(tenant or None)
    connection_token = CONNECTION.set(connection or None)
    try:
        yield
    finally:
        CONNECTION.reset(connection_token)
        TENANT.reset(tenant_token)


def current() -> dict[str, str]:
    """``{"tenant": ..., "connection": ...}`` with only the ones set."""
    found: dict[str, str] = {}
    if (tenant := TENANT.get()) is not None:
        found["tenant"] = tenant
    if (connection := CONNECTION.get()) is not None:
        found["connection"] = connection
    return found
