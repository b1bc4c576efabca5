from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run

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
