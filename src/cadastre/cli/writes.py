"""``cadastre writes list | show`` (platform writes and where each target stands) and
``cadastre writeback mode | stop | resume | status`` (per-connection modes and the kill
switches; ``docs/writeback.md``). Every switch turned is written to the audit log; a running hub's
worker sees it at its next target."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.ports import WritebackMode, WriteState, WriteTarget

writes_app = typer.Typer(help="Platform writes and their targets per system.",
                         no_args_is_help=True)  # fmt: skip
writeback_app = typer.Typer(help="Write-back modes and kill switches, per connection.",
                            no_args_is_help=True)  # fmt: skip

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")
ACTOR = "cli"


def describe(t: WriteTarget) -> dict[str, Any]:
    return {
        "write_id": t.write_id, "connection": t.connection, "system": t.system,
        "entity": t.entity, "id": t.canonical_id, "operation": t.operation.value,
        "state": t.state.value, "attempts": t.attempts, "external_id": t.external_id,
        "fields": sorted(t.fields), "error": t.error or None, "receipt": t.receipt,
        "updated_at": t.updated_at.isoformat() if t.updated_at else None,
    }  # fmt: skip


@writes_app.command("list")
def list_(
    tenant: str = TENANT,
    state: WriteState | None = typer.Option(None, "--state", help="e.g. indeterminate"),
    connection: str | None = typer.Option(None, "--connection", "-c"),
    limit: int = typer.Option(100, "--limit", "-n", min=1),
    as_json: bool = AS_JSON,
) -> None:
    """Write targets, oldest write first."""

    async def work(hub: Hub) -> list[WriteTarget]:
        await hub.tenants.require(tenant)
        return await hub.writeback.targets_of(tenant, state=state, connection=connection,
                                              limit=limit)  # fmt: skip

    found = run(work)
    if as_json:
        typer.echo(json.dumps([describe(t) for t in found], indent=2))
        return
    if not found:
        console.print("no writes")
        return
    table = Table(title=f"write targets ({len(found):,} shown)")
    table.add_column("write", no_wrap=True)
    for name in ("connection", "entity", "id", "operation", "state", "attempts", "error"):
        table.add_column(name)
    for t in found:
        table.add_row(t.write_id, t.connection, t.entity, t.canonical_id, t.operation.value,
                      t.state.value, str(t.attempts), t.error or "-")  # fmt: skip
    console.print(table)


@writes_app.command("show")
def show(write_id: str, tenant: str = TENANT, as_json: bool = AS_JSON) -> None:
    """One write: what was asked, and each target's state."""

    async def work(hub: Hub) -> dict[str, Any]:
        await hub.tenants.require(tenant)
        write, targets = await hub.writeback.get(tenant, write_id)
        return {
            "write_id": write.id, "entity": write.entity, "id": write.canonical_id,
            "operation": write.operation.value, "patch": write.patch, "actor": write.actor,
            "causation_id": write.causation_id, "created_at": write.created_at.isoformat(),
            "targets": [describe(t) for t in targets],
        }  # fmt: skip

    found = run(work)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    console.print(f"write {found['write_id']}: {found['operation']} {found['entity']} "
                  f"{found['id']} by {found['actor']}")  # fmt: skip
    console.print(f"patch: {json.dumps(found['patch'])}")
    for t in found["targets"]:
        line = f"  {t['system']}/{t['connection']}: {t['state']} ({t['attempts']} attempts)"
        if t["external_id"]:
            line += f", vendor id {t['external_id']}"
        if t["error"]:
            line += f", {t['error']}"
        console.print(line, markup=False)


@writeback_app.command("mode")
def mode(connection: str, new_mode: WritebackMode, tenant: str = TENANT) -> None:
    """Set CONNECTION's write-back mode: off (skip), shadow (record, send nothing) or live."""

    async def work(hub: Hub) -> None:
        await hub.tenants.require(tenant)
        await hub.writeback.set_mode(tenant, connection, new_mode, by=ACTOR)

    run(work)
    console.print(f"write-back to {connection}: {new_mode.value}", markup=False)


@writeback_app.command("stop")
def stop(
    tenant: str = TENANT,
    connection: str | None = typer.Option(
        None, "--connection", "-c", help="one connection (default: every one)"
    ),
    reason: str = typer.Option(..., "--reason", help="why, for the audit log and the others"),
) -> None:
    """Turn a kill switch on: nothing more is sent; targets wait, held, for `resume`."""
    if not reason.strip():
        fail("--reason must say why")

    async def work(hub: Hub) -> None:
        await hub.tenants.require(tenant)
        await hub.writeback.stop(tenant, connection, by=ACTOR, reason=reason)

    run(work)
    console.print(f"write-back stopped ({connection or 'every connection'})", markup=False)


@writeback_app.command("resume")
def resume(
    tenant: str = TENANT,
    connection: str | None = typer.Option(None, "--connection", "-c"),
) -> None:
    """Turn a kill switch off; the targets it held are sent."""

    async def work(hub: Hub) -> int:
        await hub.tenants.require(tenant)
        return await hub.writeback.resume(tenant, connection, by=ACTOR)

    released = run(work)
    console.print(f"write-back resumed ({connection or 'every connection'}): "
                  f"{released} held target(s) released", markup=False)  # fmt: skip


@writeback_app.command("status")
def status(tenant: str = TENANT, as_json: bool = AS_JSON) -> None:
    """Each connection's mode, kill switch and targets by state."""

    async def work(hub: Hub) -> Any:
        await hub.tenants.require(tenant)
        return await hub.writeback.status(tenant)

    found = run(work)
    rows = [
        {"connection": c.connection, "system": c.system, "mode": c.mode.value,
         "mode_set": c.mode_set, "stopped": c.stopped or found.stopped,
         "reason": c.reason or found.reason, "targets": dict(c.states)}
        for c in found.connections
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"stopped": found.stopped, "reason": found.reason,
                               "connections": rows}, indent=2))  # fmt: skip
        return
    if found.stopped:
        console.print(f"write-back STOPPED for the tenant by {found.stopped_by}: {found.reason}",
                      markup=False)  # fmt: skip
    table = Table("connection", "system", "mode", "stopped", "targets", title="write-back")
    for row in rows:
        mode_text = row["mode"] + ("" if row["mode_set"] else " (default)")
        stopped = f"yes: {row['reason']}" if row["stopped"] else "no"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(row["targets"].items())) or "-"
        table.add_row(row["connection"], row["system"], mode_text, stopped, counts)
    console.print(table)
