from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.ports import AuditEntry, AuditLog

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="one tenant; all if unset"),
) -> None:
    """Walk each tenant's hash chain; exit 1 at the first broken link."""

    async def work(hub: Hub) -> bool:
        if tenant:
            await hub.tenants.require(tenant)
        tenants = [tenant] if tenant else [t.id for t in await hub.tenants.all()]
        table = Table("tenant", "entries", "result")
        ok = True
        for tenant_id in tenants:
            async with hub.store.unit_of_work(tenant_id) as uow:
                report = await uow.audit.verify()
            ok &= report.ok
            result = (
                Text("intact", style="green")
                if report.ok
                else Text(f"broken at entry {report.first_bad_seq}: {report.problem}", style="red")
            )
            table.add_row(tenant_id, str(report.entries), result)
        console.print(table)
        return ok

    if not run(work):
        raise typer.Exit(1)


@app.command("show")
def show(
    entity: str = typer.Argument(..., help="e.g. Resident, LedgerEntry"),
    entity_id: str = typer.Argument(..., metavar="ID", help="the canonical record id"),
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant id"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """The audit trail of one record, oldest first (changes, refusals, conflict resolutions)."""

    async def work(hub: Hub) -> list[AuditEntry]:
        await hub.tenants.require(tenant)
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            return [e async for e in entries_for(uow.audit, entity, entity_id)]

    found = run(work)
    if as_json:
        for entry in found:
            typer.echo(json.dumps(entry_json(entry), sort_keys=True))
        return
    table = Table("seq", "at", "actor", "action", "detail")
    for entry in found:
        table.add_row(
            str(entry.seq), entry.at.isoformat(timespec="seconds"), entry.actor, entry.action,
            json.dumps(dict(entry.detail), sort_keys=True),
        )  # fmt: skip
    console.print(table)


async def entries_for(log: AuditLog, entity: str, entity_id: str) -> AsyncIterator[AuditEntry]:
    """One record's entries in chain order, through the per-record index (``seq`` order within
    the record), not a walk of the whole chain."""
    async for entry in log.entries_for(entity, entity_id):
        yield entry


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor,
        "action": entry.action, "entity": entry.entity, "entity_id": entry.entity_id,
        "detail": dict(entry.detail), "hash": entry.hash,
    }  # fmt: skip
