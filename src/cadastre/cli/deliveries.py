"""``cadastre deliveries list | show | redeliver``: outbound webhook deliveries, and sending them
again by hand (``cadastre.webhooks.deliveries``). A redelivery starts the delivery's attempts
over and is written to the audit log; ``cadastre serve`` sends it (a running hub is woken at
once when it is in this process; another process's sender finds it at its next poll)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.errors import NotFound
from cadastre.ports import Delivery, DeliveryStatus

app = typer.Typer(
    help="Outbound webhook deliveries: list them, see their attempts, send them again.",
    no_args_is_help=True,
)

TENANT = typer.Option(None, "--tenant", "-t", help="tenant id (default: every tenant)")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")
PAGE = 500


def describe(tenant: str, d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "tenant": tenant, "subscription": d.subscription, "event_id": d.event_id,
        "event_type": d.event_type, "status": d.status.value, "attempts": d.attempts,
        "redeliveries": d.redeliveries, "last_status": d.last_status,
        "last_error": d.last_error, "created_at": d.created_at.isoformat(),
        "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
    }  # fmt: skip


async def _tenants(hub: Hub, tenant: str | None) -> list[str]:
    if tenant is not None:
        await hub.tenants.require(tenant)
        return [tenant]
    return [t.id for t in await hub.tenants.all()]


@app.command("list")
def list_(
    tenant: str | None = TENANT,
    status: DeliveryStatus | None = typer.Option(None, "--status", help="e.g. dead"),
    subscription: str | None = typer.Option(None, "--subscription", "-s"),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="show at most this many"),
    as_json: bool = AS_JSON,
) -> None:
    """Deliveries, oldest first (dead ones: --status dead)."""

    async def work(hub: Hub) -> list[tuple[str, Delivery]]:
        found: list[tuple[str, Delivery]] = []
        for t in await _tenants(hub, tenant):
            want = limit - len(found)
            if want <= 0:
                break
            page = await hub.webhooks.deliveries.find(
                t, status=status, subscription=subscription, limit=want
            )
            found += [(t, d) for d in page]
        return found

    found = run(work)
    if as_json:
        typer.echo(json.dumps([describe(t, d) for t, d in found], indent=2))
        return
    if not found:
        console.print("no deliveries")
        return
    table = Table(title=f"deliveries ({len(found):,} shown)")
    table.add_column("id", no_wrap=True)  # ids are typed back into commands: never cut
    for name in ("subscription", "event type", "status", "attempts", "last answer",
                 "next attempt", "tenant"):  # fmt: skip
        table.add_column(name)
    for t, d in found:
        answer = str(d.last_status) if d.last_status is not None else d.last_error or "-"
        when = d.next_attempt_at.isoformat(timespec="seconds") if d.next_attempt_at else ""
        table.add_row(d.id, d.subscription, d.event_type, d.status.value, str(d.attempts),
                      answer, when, t)  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    id: str = typer.Argument(..., help="delivery id"), tenant: str | None = TENANT,
    as_json: bool = AS_JSON,
) -> None:  # fmt: skip
    """One delivery and every attempt at it."""

    async def work(hub: Hub) -> tuple[str, Any, Any]:
        for t in await _tenants(hub, tenant):
            try:
                delivery, attempts = await hub.webhooks.deliveries.get(t, id)
            except NotFound:
                continue
            return t, delivery, attempts
        raise NotFound(f"delivery {id!r} does not exist")

    t, delivery, attempts = run(work)
    rows = [
        {"redelivery": a.redelivery, "number": a.number, "at": a.at.isoformat(),
         "status": a.status, "error": a.error, "seconds": round(a.seconds, 3)}
        for a in attempts
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps({**describe(t, delivery), "history": rows}, indent=2))
        return
    console.print(f"{delivery.id}: {delivery.event_type} to {delivery.subscription}, "
                  f"{delivery.status.value}")  # fmt: skip
    table = Table("round", "attempt", "at", "status", "error", "seconds")
    for r in rows:
        table.add_row(str(r["redelivery"]), str(r["number"]), str(r["at"]),
                      str(r["status"] or "-"), str(r["error"]), str(r["seconds"]))  # fmt: skip
    console.print(table)


@app.command("redeliver")
def redeliver(
    ids: list[str] = typer.Argument(None, help="delivery ids"),
    subscription: str | None = typer.Option(
        None, "--subscription", "-s", help="with --dead: every dead delivery of it"
    ),
    dead: bool = typer.Option(False, "--dead", help="with --subscription: its dead deliveries"),
    tenant: str | None = TENANT,
) -> None:
    """Send deliveries again: ``redeliver ID...`` or ``redeliver --subscription S --dead``."""
    by_id = bool(ids) and subscription is None and not dead
    by_subscription = not ids and subscription is not None and dead
    if not (by_id or by_subscription):
        fail("give delivery ids, or --subscription with --dead (not both)")
    if subscription is not None:
        sent = run(lambda hub: _redeliver_dead(hub, tenant, subscription))
        console.print(f"{sent} dead deliveries of {subscription} redelivered")
        return
    redelivered, skipped = run(lambda hub: _redeliver_ids(hub, tenant, ids))
    for id in redelivered:
        console.print(f"{id} redelivered")
    for id, why in skipped.items():
        console.print(f"{id} not redelivered: {why}")
    if skipped and not redelivered:
        raise typer.Exit(1)


async def _owner(hub: Hub, tenant: str | None, find: Any) -> str:
    for t in await _tenants(hub, tenant):
        if await find(t):
            return t
    raise NotFound("not found")


async def _redeliver_ids(
    hub: Hub, tenant: str | None, ids: list[str]
) -> tuple[list[str], dict[str, str]]:
    by_tenant: dict[str, list[str]] = {}
    for id in dict.fromkeys(ids):  # every id is found first: a wrong one stops the command
        try:
            owner = await _owner(hub, tenant, lambda t, id=id: _has_delivery(hub, t, id))
        except NotFound:
            raise NotFound(f"delivery {id!r} does not exist") from None
        by_tenant.setdefault(owner, []).append(id)
    redelivered: list[str] = []
    skipped: dict[str, str] = {}
    for owner, chosen in by_tenant.items():
        report = await hub.webhooks.deliveries.redeliver(owner, chosen, actor="cli")
        redelivered += [d.id for d in report.redelivered]
        skipped |= report.skipped
    return redelivered, skipped


async def _has_delivery(hub: Hub, tenant: str, id: str) -> bool:
    try:
        await hub.webhooks.deliveries.get(tenant, id)
    except NotFound:
        return False
    return True


async def _redeliver_dead(hub: Hub, tenant: str | None, subscription: str) -> int:
    async def has(t: str) -> bool:
        try:
            await hub.webhooks.subscriptions.get(t, subscription)
        except NotFound:
            return False
        return True

    try:
        owner = await _owner(hub, tenant, has)
    except NotFound:
        raise NotFound(f"subscription {subscription!r} does not exist") from None
    total = 0
    after: str | None = None
    while True:  # counted first, for the progress bar
        page = await hub.webhooks.deliveries.find(
            owner, status=DeliveryStatus.DEAD, subscription=subscription, after=after, limit=PAGE
        )
        total += len(page)
        if len(page) < PAGE:
            break
        after = page[-1].id
    columns = (TextColumn("{task.description}", markup=False), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"redelivering {subscription}", total=total or None)
        return await hub.webhooks.deliveries.redeliver_dead(
            owner, subscription, actor="cli", progress=lambda n: bar.advance(task, n)
        )
