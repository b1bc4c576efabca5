"""``cadastre conflicts``: the review queue of concurrent edits (docs/ownership.md, "Conflicts").

``resolve`` applies the decision through the engine (origin core, caused by the conflict, so
write-back carries it to the systems that hold the record) and writes a ``conflict.resolved``
audit entry naming who chose what."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.errors import NotFound
from cadastre.ports import Conflict, ConflictResolution, ConflictState

app = typer.Typer(help="The review queue of concurrent edits.", no_args_is_help=True)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")


def _when(stamp: Any) -> str:
    if not isinstance(stamp, dict):
        return ""
    who = stamp.get("connection") or stamp.get("system") or "?"
    return f"{who} @ {stamp.get('source_time') or 'time unknown'}"


def as_json(conflict: Conflict) -> dict[str, Any]:
    return {
        "id": conflict.id, "entity": conflict.entity, "record_id": conflict.record_id,
        "field": conflict.field, "state": conflict.state.value, "rule": conflict.rule,
        "current": dict(conflict.current), "incoming": dict(conflict.incoming),
        "vector": dict(conflict.vector), "created_at": conflict.created_at.isoformat(),
        "resolution": conflict.resolution.value if conflict.resolution else None,
        "resolved_value": conflict.resolved_value, "resolved_by": conflict.resolved_by,
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
    }  # fmt: skip


@app.command("list")
def list_(
    tenant: str = TENANT,
    entity: str | None = typer.Option(None, "--entity", help="one entity, e.g. Resident"),
    state: ConflictState | None = typer.Option(
        ConflictState.OPEN, "--state", help="open (the default) or resolved"
    ),
    all_: bool = typer.Option(False, "--all", help="open and resolved"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    json_lines: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """List conflicts, oldest first."""

    async def work(hub: Hub) -> list[Conflict]:
        await hub.tenants.require(tenant)
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.conflicts.find(
                entity=entity, state=None if all_ else state, limit=limit
            )

    found = run(work)
    if json_lines:
        for c in found:
            typer.echo(json.dumps(as_json(c), sort_keys=True))
        return
    table = Table("id", "entity", "record", "field", "state", "current", "incoming", "resolution")
    for c in found:
        table.add_row(
            c.id, c.entity, c.record_id, c.field, c.state.value,
            _when(c.current.get("stamp")), _when(c.incoming.get("stamp")),
            f"{c.resolution.value} by {c.resolved_by}" if c.resolution else "-",
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(conflict_id: str = typer.Argument(..., metavar="ID"), tenant: str = TENANT) -> None:
    """Show one conflict: both values, both stamps, the vector and the rule (JSON)."""

    async def work(hub: Hub) -> Conflict:
        await hub.tenants.require(tenant)
        async with hub.store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.conflicts.get(conflict_id)
        if found is None:
            raise NotFound(f"conflict {conflict_id!r} does not exist in tenant {tenant!r}")
        return found

    typer.echo(json.dumps(as_json(run(work)), indent=2, sort_keys=True))


@app.command("resolve")
def resolve(
    conflict_id: str = typer.Argument(..., metavar="ID"),
    tenant: str = TENANT,
    keep_current: bool = typer.Option(False, "--keep-current", help="the stored value stands"),
    take_incoming: bool = typer.Option(False, "--take-incoming", help="the held-back edit's value"),
    value: str | None = typer.Option(None, "--value", help="another value, as JSON"),
    by: str = typer.Option("cli", "--by", help="who decides (recorded in the audit trail)"),
) -> None:
    """Resolve a conflict: exactly one of --keep-current, --take-incoming, --value JSON."""
    chosen = [keep_current, take_incoming, value is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give exactly one of --keep-current, --take-incoming, --value")
    parsed: Any = None
    if value is not None:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--value is not JSON: {exc}") from None
    resolution = (
        ConflictResolution.KEEP_CURRENT if keep_current
        else ConflictResolution.TAKE_INCOMING if take_incoming
        else ConflictResolution.VALUE
    )  # fmt: skip

    async def work(hub: Hub) -> Any:
        await hub.tenants.require(tenant)
        return await hub.engine.resolve_conflict(
            tenant, conflict_id, resolution, value=parsed, actor=by
        )

    done = run(work)
    console.print(
        f"{done.conflict.id}: {resolution.value} -> {done.conflict.entity} "
        f"{done.conflict.record_id} {done.conflict.field} (version {done.result.version}, "
        f"event {done.result.event_id})",
        soft_wrap=True,
    )
