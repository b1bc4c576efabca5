from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run

app = typer.Typer(help="Tenants: the unit of isolation.", no_args_is_help=True)


@app.command("create")
def create(
    tenant_id: str = typer.Argument(..., help="2-63 characters of a-z, 0-9 and '-'"),
    name: str | None = typer.Option(None, help="display name"),
) -> None:
    """Create a tenant."""
    tenant = run(lambda hub: hub.tenants.create(tenant_id, name))
    console.print(Text.assemble("created tenant ", (tenant.id, "bold"), f" ({tenant.name})"))


@app.command("list")
def list_() -> None:
    """List tenants."""

    async def work(hub: Hub) -> None:
        table = Table("id", "name", "created")
        for tenant in await hub.tenants.all():
            table.add_row(tenant.id, tenant.name, tenant.created_at.isoformat(timespec="seconds"))
        console.print(table)

    run(work)
