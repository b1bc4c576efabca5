"""``/v1/connections/.../health``: how the gateway sees each of the tenant's connections: its
circuit breaker (state, failure and slow-call rates, when it will try again).

A connection that has made no call since the hub started reads ``closed`` with no calls. Another
tenant's connection name answers 404, the same as a name that does not exist.

``/v1/credentials``: the tenant's vault credentials as the hub holds them - scheme, status, expiry,
the addresses the vendor must allow - and never a secret value or a secret field's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.gateway import BreakerSnapshot
from cadastre.ports import StoredCredential

router = APIRouter(prefix="/v1", tags=["connections"])


class BreakerOut(BaseModel):
    state: Literal["closed", "open", "half_open"]
    calls: int
    failure_rate: float
    slow_call_rate: float
    retry_in_seconds: float | None
    times_opened: int


class ConnectionHealth(BaseModel):
    connection: str
    connector: str
    breaker: BreakerOut


def _breaker(snapshot: BreakerSnapshot | None) -> BreakerOut:
    if snapshot is None:
        return BreakerOut(state="closed", calls=0, failure_rate=0.0, slow_call_rate=0.0,
                          retry_in_seconds=None, times_opened=0)  # fmt: skip
    return BreakerOut(
        state=snapshot.state.value,
        calls=snapshot.calls,
        failure_rate=snapshot.failure_rate,
        slow_call_rate=snapshot.slow_call_rate,
        retry_in_seconds=snapshot.retry_in,
        times_opened=snapshot.opened_count,
    )


@router.get(
    "/connections/health",
    response_model=list[ConnectionHealth],
    responses=PROBLEMS,
    summary="Every connection of the tenant, as the vendor gateway sees it",
)
async def list_health(request: Request, key: Reader) -> list[ConnectionHealth]:
    hub = hub_of(request)
    states = hub.controls.breaker_states(key.tenant)
    return [
        ConnectionHealth(
            connection=each.name, connector=each.connector, breaker=_breaker(states.get(each.name))
        )
        for each in await hub.connections.all(key.tenant)
    ]


@router.get(
    "/connections/{name}/health",
    response_model=ConnectionHealth,
    responses={404: _problem("No such connection in the key's tenant"), **PROBLEMS},
    summary="One connection, as the vendor gateway sees it",
)
async def get_health(request: Request, key: Reader, name: str) -> ConnectionHealth:
    hub = hub_of(request)
    found = {c.name: c for c in await hub.connections.all(key.tenant)}.get(name)
    if found is None:
        raise Problem(404, "no such connection")
    snapshot = hub.controls.breaker_states(key.tenant).get(name)
    return ConnectionHealth(connection=name, connector=found.connector, breaker=_breaker(snapshot))


class CredentialOut(BaseModel):
    name: str
    scheme: str
    status: Literal["active", "pending", "needs_reauth", "disabled"]
    status_reason: str
    expires_at: datetime | None
    updated_at: datetime
    egress_ips: list[str]


def _credential(stored: StoredCredential) -> CredentialOut:
    return CredentialOut(
        name=stored.name, scheme=stored.scheme, status=stored.status.value,
        status_reason=stored.status_reason, expires_at=stored.expires_at,
        updated_at=stored.updated_at, egress_ips=list(stored.meta.get("egress_ips") or []),
    )  # fmt: skip


@router.get(
    "/credentials",
    response_model=list[CredentialOut],
    responses=PROBLEMS,
    tags=["credentials"],
    summary="The tenant's vault credentials: status and expiry, never a secret",
)
async def list_credentials(request: Request, key: Reader) -> list[CredentialOut]:
    return [_credential(each) for each in await hub_of(request).vault.all(key.tenant)]
