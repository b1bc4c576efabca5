"""The console's pages (GET) and the few things an operator can do from them (POST, each with the
session's CSRF token): replay quarantined records, resolve a subsystem alert, resolve a conflict.

List pages show every tenant the operator may see, or the one ``?tenant=`` names; a page about one
thing names its tenant in the path (``/t/{tenant}/...``), and a thing of another tenant answers
404 like one that does not exist. What is done is written down as ``console:<username>``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from cadastre.bootstrap import Hub
from cadastre.console import scope
from cadastre.console.coverage import coverage
from cadastre.console.fleet import connection_detail, fleet
from cadastre.console.render import base_of, page
from cadastre.console.session import NotVisible, Operator, checked_form, hub_of
from cadastre.contract.events import EventEnvelope
from cadastre.directory import Visitor
from cadastre.errors import AlreadyExists, CadastreError, ContractError, NotFound, Transient
from cadastre.ports import (
    Alert,
    AlertState,
    Conflict,
    ConflictResolution,
    ConflictState,
    StoredCredential,
    Tenant,
)
from cadastre.sync.drift import DRIFT_EVENT

router = APIRouter()

TenantParam = Annotated[str | None, Query(max_length=64)]
NameParam = Annotated[str | None, Query(max_length=200)]
LIST_LIMIT = 200  # rows of a list page, per tenant
RESOLVED_SHOWN = 50
DRIFT_SPAN = timedelta(days=30)
DETECTOR_SOURCE = "/cadastre/observe"  # alerts the evaluator raises resolve themselves


@dataclass(frozen=True)
class Scope:
    hub: Hub
    now: datetime
    tenants: list[Tenant]  # shown on this page
    context: dict[str, Any]  # what every list page's template needs


async def _scope(request: Request, visitor: Visitor, tenant: str | None) -> Scope:
    hub = hub_of(request)
    shown = await scope.shown(hub, visitor, tenant)
    context = {
        "tenant": tenant or None,
        "tenants": await scope.choices(hub, visitor),
        "show_tenant": visitor.operator.tenant is None,
    }
    return Scope(hub, hub.clock.now(), shown, context)


def actor(visitor: Visitor) -> str:
    return f"console:{visitor.operator.username}"


# ---------------------------------------------------------------------------------- fleet


@router.get("/", name="fleet")
async def fleet_page(request: Request, visitor: Operator, tenant: TenantParam = None) -> Response:
    s = await _scope(request, visitor, tenant)
    rows = [row for t in s.tenants for row in await fleet(s.hub, t.id, s.now)]
    verdicts = Counter(row.health.verdict for row in rows)
    return page(request, "fleet.html", now=s.now, title="Fleet", rows=rows, verdicts=verdicts,
                **s.context)  # fmt: skip


@router.get("/t/{tenant}/connections/{name}", name="connection")
async def connection_page(request: Request, visitor: Operator, tenant: str, name: str) -> Response:
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    now = hub.clock.now()
    try:
        detail = await connection_detail(hub, tenant, name, now)
    except NotFound:
        raise NotVisible from None
    return page(request, "connection.html", now=now, title=name, detail=detail, row=detail.row,
                page_tenant=tenant)  # fmt: skip


# ----------------------------------------------------------------------------- quarantine


@router.get("/quarantine", name="quarantine")
async def quarantine_page(
    request: Request, visitor: Operator, tenant: TenantParam = None,
    connection: NameParam = None, code: NameParam = None,
) -> Response:  # fmt: skip
    s = await _scope(request, visitor, tenant)
    groups = []
    for t in s.tenants:
        async with s.hub.store.unit_of_work(t.id, read_only=True) as uow:
            counts = await uow.quarantine.open_counts()
            items = await uow.quarantine.open_items(
                connection or None, code=code or None, limit=LIST_LIMIT
            )
        groups.append({"tenant": t, "counts": counts, "items": items})
    return page(request, "quarantine.html", now=s.now, title="Quarantine", groups=groups,
                connection=connection, code=code, limit=LIST_LIMIT, **s.context)  # fmt: skip


@router.get("/t/{tenant}/quarantine/{item}", name="quarantine_item")
async def quarantine_item(request: Request, visitor: Operator, tenant: str, item: str) -> Response:
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        found = await uow.quarantine.get(item)
    if found is None:
        raise NotVisible
    return page(request, "quarantine_item.html", now=hub.clock.now(), title="Quarantined record",
                item=found, page_tenant=tenant)  # fmt: skip


@router.post("/t/{tenant}/quarantine/replay", name="replay")
async def replay(request: Request, visitor: Operator, tenant: str) -> Response:
    form = await checked_form(request, visitor)
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    connection = str(form.get("connection") or "")
    item = str(form.get("item") or "")
    try:
        await hub.connections.get(tenant, connection)
    except NotFound:
        raise NotVisible from None
    if item:
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.quarantine.get(item)
        if found is None or found.connection != connection:
            raise NotVisible
    context: dict[str, Any] = {"page_tenant": tenant, "connection": connection,
                               "item": item or None}  # fmt: skip
    try:
        summary = await hub.replay_quarantine(tenant, connection, ids=(item,) if item else ())
    except CadastreError as exc:
        again = " (temporary; try again)" if isinstance(exc, Transient) else ""
        return page(request, "replay.html", now=hub.clock.now(), title="Replay", status=409,
                    summary=None, error=f"{exc}{again}", **context)  # fmt: skip
    return page(request, "replay.html", now=hub.clock.now(), title="Replay", summary=summary,
                error=None, **context)  # fmt: skip


# --------------------------------------------------------------------------------- alerts


@router.get("/alerts", name="alerts")
async def alerts_page(request: Request, visitor: Operator, tenant: TenantParam = None) -> Response:
    s = await _scope(request, visitor, tenant)
    opened: list[Alert] = []
    resolved: list[Alert] = []
    for t in s.tenants:
        async with s.hub.store.unit_of_work(t.id, read_only=True) as uow:
            opened.extend(await uow.alerts.open())
            history = await uow.alerts.history(limit=RESOLVED_SHOWN * 2)
        resolved.extend(a for a in history if a.state is AlertState.RESOLVED)
    resolved.sort(key=lambda a: a.resolved_at or a.last_seen_at, reverse=True)
    return page(request, "alerts.html", now=s.now, title="Alerts", opened=opened,
                resolved=resolved[:RESOLVED_SHOWN], detector=DETECTOR_SOURCE,
                done=request.query_params.get("resolved"), **s.context)  # fmt: skip


@router.get("/t/{tenant}/alerts/{alert_id}", name="alert")
async def alert_page(request: Request, visitor: Operator, tenant: str, alert_id: str) -> Response:
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        found = await uow.alerts.get(alert_id)
    if found is None:
        raise NotVisible
    return page(request, "alert.html", now=hub.clock.now(), title=found.summary, alert=found,
                detector=DETECTOR_SOURCE, page_tenant=tenant)  # fmt: skip


@router.post("/t/{tenant}/alerts/{alert_id}/resolve", name="resolve_alert")
async def resolve_alert(
    request: Request, visitor: Operator, tenant: str, alert_id: str
) -> Response:
    await checked_form(request, visitor)
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        found = await uow.alerts.get(alert_id)
    if found is None:
        raise NotVisible
    if found.source == DETECTOR_SOURCE:
        return _refused(request, 409, "this alert resolves itself once its condition clears")
    if found.state is not AlertState.RESOLVED:
        try:
            await hub.alerts.resolve(tenant, alert_id, actor=actor(visitor))
        except NotFound:
            raise NotVisible from None
    query = urlencode({"tenant": tenant, "resolved": alert_id})
    return RedirectResponse(f"{base_of(request)}/alerts?{query}", status_code=303)


# ------------------------------------------------------------------------------ conflicts


@router.get("/conflicts", name="conflicts")
async def conflicts_page(
    request: Request, visitor: Operator, tenant: TenantParam = None
) -> Response:
    s = await _scope(request, visitor, tenant)
    rows: list[tuple[str, Conflict]] = []
    for t in s.tenants:
        async with s.hub.store.unit_of_work(t.id, read_only=True) as uow:
            found = await uow.conflicts.find(state=ConflictState.OPEN, limit=LIST_LIMIT)
        rows.extend((t.id, c) for c in found)
    return page(request, "conflicts.html", now=s.now, title="Conflicts", rows=rows,
                done=request.query_params.get("resolved"), **s.context)  # fmt: skip


@router.post("/t/{tenant}/conflicts/{conflict_id}/resolve", name="resolve_conflict")
async def resolve_conflict(
    request: Request, visitor: Operator, tenant: str, conflict_id: str
) -> Response:
    form = await checked_form(request, visitor)
    hub = hub_of(request)
    await scope.one(hub, visitor, tenant)
    try:
        resolution = ConflictResolution(str(form.get("resolution") or ""))
    except ValueError:
        return _refused(request, 422, "choose keep the current value, take the incoming one, "
                                      "or set a value")  # fmt: skip
    value: Any = None
    if resolution is ConflictResolution.VALUE:
        value = _value(str(form.get("value") or ""))
    try:
        await hub.engine.resolve_conflict(
            tenant, conflict_id, resolution, value=value, actor=actor(visitor)
        )
    except NotFound:
        raise NotVisible from None
    except AlreadyExists as exc:
        return _refused(request, 409, str(exc))
    except ContractError as exc:
        return _refused(request, 422, str(exc))
    query = urlencode({"tenant": tenant, "resolved": conflict_id})
    return RedirectResponse(f"{base_of(request)}/conflicts?{query}", status_code=303)


def _value(text: str) -> Any:
    """A typed value: JSON when it reads as JSON (``42``, ``true``, ``"text"``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- mapping, drift, credentials


@router.get("/mapping", name="mapping")
async def mapping_page(request: Request, visitor: Operator, tenant: TenantParam = None) -> Response:
    s = await _scope(request, visitor, tenant)
    rows = [row for t in s.tenants for row in await coverage(s.hub, t.id)]
    return page(request, "mapping.html", now=s.now, title="Mapping coverage", rows=rows,
                **s.context)  # fmt: skip


@router.get("/drift", name="drift")
async def drift_page(request: Request, visitor: Operator, tenant: TenantParam = None) -> Response:
    s = await _scope(request, visitor, tenant)
    events: list[tuple[str, EventEnvelope]] = []
    for t in s.tenants:
        async with s.hub.store.unit_of_work(t.id, read_only=True) as uow:
            found = await uow.outbox.recent([DRIFT_EVENT], since=s.now - DRIFT_SPAN,
                                            limit=LIST_LIMIT)  # fmt: skip
        events.extend((t.id, e) for e in found)
    events.sort(key=lambda pair: pair[1].time, reverse=True)
    return page(request, "drift.html", now=s.now, title="Schema drift", events=events,
                span_days=DRIFT_SPAN.days, **s.context)  # fmt: skip


@router.get("/credentials", name="credentials")
async def credentials_page(
    request: Request, visitor: Operator, tenant: TenantParam = None
) -> Response:
    s = await _scope(request, visitor, tenant)
    rows: list[dict[str, Any]] = []
    for t in s.tenants:
        users: dict[str, list[str]] = {}
        for c in await s.hub.connections.all(t.id):
            if c.credential:
                users.setdefault(c.credential, []).append(c.name)
        rows.extend(_credential(t.id, each, users) for each in await s.hub.vault.all(t.id))
    return page(request, "credentials.html", now=s.now, title="Credentials", rows=rows,
                **s.context)  # fmt: skip


def _credential(
    tenant: str, stored: StoredCredential, users: dict[str, list[str]]
) -> dict[str, Any]:
    """Only what the page shows is passed on: status facts, never the sealed secrets nor the
    names of their fields (nor ``meta``, which a scheme may fill with more than addresses)."""
    return {
        "tenant": tenant, "name": stored.name, "scheme": stored.scheme,
        "status": stored.status.value, "reason": stored.status_reason,
        "expires_at": stored.expires_at, "updated_at": stored.updated_at,
        "connections": users.get(stored.name, []),
    }  # fmt: skip


def _refused(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", now=hub_of(request).clock.now(), status=status,
                title="Not done", message=message)  # fmt: skip
