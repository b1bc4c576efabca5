"""``/v1/alerts``: the tenant's alerts (docs/alerts.md), and resolving one by hand. Tenant-scoped
like every ``/v1`` route: another tenant's alert id answers 404, as an unknown one does.
Reading needs any key of the tenant; resolving needs a write key and is audited as
``api:<key id>``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from cadastre.api.auth import Reader, hub_of
from cadastre.api.listings import PROBLEMS, _problem
from cadastre.api.problems import Problem
from cadastre.api.subscriptions import WRITE_PROBLEMS, Writer
from cadastre.errors import NotFound
from cadastre.ports import Alert

router = APIRouter(prefix="/v1", tags=["alerts"])
MAX_PAGE = 500
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No such alert in the key's tenant")}


class AlertOut(BaseModel):
    id: str
    rule: str = Field(description="the rule's name, or a subsystem alert's kind")
    key: str = Field(description="what it is about within the rule: connection, credential...")
    state: Literal["pending", "firing", "resolved"]
    severity: str = Field(description="info, warning or critical")
    owner: str
    vendor: str | None
    connection: str | None
    summary: str = Field(description="which vendor or connection, and what changed, in a line")
    changed: str = Field(description="the measured fact, against its threshold or baseline")
    since: datetime = Field(description="when the condition began")
    action: str = Field(description="what to do: the runbook step and the rollback command")
    rollback: str | None = Field(description="the exact rollback command, when one answers it")
    facts: dict[str, Any]
    occurrences: int
    raised_at: datetime | None
    last_seen_at: datetime
    resolved_at: datetime | None
    source: str


def _out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id, rule=a.rule, key=a.key, state=a.state.value, severity=a.severity,
        owner=a.owner, vendor=a.vendor, connection=a.connection, summary=a.summary,
        changed=a.changed, since=a.since, action=a.action, rollback=a.rollback,
        facts=dict(a.facts), occurrences=a.occurrences, raised_at=a.raised_at,
        last_seen_at=a.last_seen_at, resolved_at=a.resolved_at, source=a.source,
    )  # fmt: skip


@router.get("/alerts", response_model=list[AlertOut], responses=PROBLEMS,
            summary="The tenant's alerts, newest first (open ones by default)")  # fmt: skip
async def list_alerts(
    request: Request,
    key: Reader,
    state: Annotated[
        Literal["open", "all", "pending", "firing", "resolved"],
        Query(description="open: pending and firing"),
    ] = "open",
    connection: Annotated[str | None, Query(max_length=64)] = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[AlertOut]:
    found = await hub_of(request).alerts.list(
        key.tenant, state=state, connection=connection, rule=rule, limit=limit
    )
    return [_out(a) for a in found]


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses={**PROBLEMS, **NOT_FOUND},
            summary="One alert")  # fmt: skip
async def get_alert(request: Request, key: Reader, alert_id: str) -> AlertOut:
    try:
        return _out(await hub_of(request).alerts.get(key.tenant, alert_id))
    except NotFound:
        raise Problem(404, f"alert {alert_id!r} does not exist") from None


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut,
             responses={**WRITE_PROBLEMS, **NOT_FOUND},
             summary="Resolve an alert by hand (one resolved already is answered as it is)",
             )  # fmt: skip
async def resolve_alert(request: Request, key: Writer, alert_id: str) -> AlertOut:
    try:
        done = await hub_of(request).alerts.resolve(key.tenant, alert_id,
                                                    actor=f"api:{key.key_id}")  # fmt: skip
    except NotFound:
        raise Problem(404, f"alert {alert_id!r} does not exist") from None
    return _out(done)
