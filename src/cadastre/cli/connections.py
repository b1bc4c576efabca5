from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, read_text_file, run, write_text_file
from cadastre.config import describe_validation_error
from cadastre.connectors import connector_spec
from cadastre.connectors.claims import check_connections
from cadastre.directory import ConnectionSpec
from cadastre.directory.connections import parse_connections_yaml
from cadastre.errors import ConfigurationError

app = typer.Typer(help="The connection registry (configuration as code).", no_args_is_help=True)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="unique per tenant, e.g. austin-mls"),
    tenant: str = TENANT,
    system: str = typer.Option(..., help="owning-system name in the ownership registry"),
    connector: str = typer.Option(..., help="family/vendor, e.g. mls/reso"),
    credential: str | None = typer.Option(
        None, help="the vault credential it uses (`cadastre credentials add`)"
    ),
    config: str = typer.Option("{}", help="non-secret settings as a JSON object"),
    ingestion: str | None = typer.Option(
        None,
        help="poll (the default: synced at the MLS's cadence) or webhook (the vendor pushes "
        "changes; a slow poll every CADASTRE_WEBHOOK_POLL_SECONDS catches missed ones); the "
        "config's `ingestion` key",
    ),
) -> None:
    """Add a connection."""
    try:
        parsed = json.loads(config)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--config is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("--config must be a JSON object")
    if ingestion is not None:
        if ingestion not in ("poll", "webhook"):
            raise typer.BadParameter("--ingestion is poll or webhook")
        if parsed.get("ingestion", ingestion) != ingestion:
            raise typer.BadParameter("--ingestion and the config's ingestion differ")
        parsed["ingestion"] = ingestion

    async def work(hub: Hub) -> None:
        try:
            spec = ConnectionSpec(
                name=name, system=system, connector=connector, credential=credential,
                config=parsed,
            )  # fmt: skip
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc)) from None
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        await check_claims(hub, tenant, [spec])
        if parsed.get("ingestion", "poll") != "poll":
            # Checked now rather than at the first scheduled run: with a connector that cannot
            # read webhooks, or a misspelt mode, every one of its syncs would fail.
            connector_spec(connector).settings(name, parsed)
        saved = await hub.connections.add(tenant, spec)
        console.print(
            Text.assemble("added connection ", (saved.name, "bold"), f" (v{saved.version})")
        )

    run(work)


@app.command("list")
def list_(tenant: str = TENANT) -> None:
    """List connections."""

    async def work(hub: Hub) -> None:
        table = Table("name", "system", "connector", "credential", "status", "version")
        for c in await hub.connections.all(tenant):
            table.add_row(
                c.name, c.system, c.connector, c.credential or "", c.status.value, str(c.version)
            )
        console.print(table)

    run(work)


@app.command("show")
def show(name: str, tenant: str = TENANT) -> None:
    """Show one connection and its version history."""

    async def work(hub: Hub) -> None:
        connection = await hub.connections.get(tenant, name)
        console.print_json(
            json.dumps(
                {
                    "name": connection.name,
                    "system": connection.system,
                    "connector": connection.connector,
                    "credential": connection.credential,
                    "status": connection.status.value,
                    "version": connection.version,
                    "config": dict(connection.config),
                },
                default=str,
            )
        )
        table = Table("version", "change", "by", "at", title="history")
        for item in await hub.connections.history(tenant, name):
            at = item.connection.updated_at.isoformat(timespec="seconds")
            table.add_row(str(item.connection.version), item.change, item.changed_by, at)
        console.print(table)

    run(work)


@app.command("pause")
def pause(name: str, tenant: str = TENANT) -> None:
    """Pause a connection (its syncs stop; nothing is deleted)."""
    saved = run(lambda hub: hub.connections.pause(tenant, name))
    console.print(f"{saved.name} is {saved.status.value} (v{saved.version})")


@app.command("resume")
def resume(name: str, tenant: str = TENANT) -> None:
    """Resume a paused connection."""
    saved = run(lambda hub: hub.connections.resume(tenant, name))
    console.print(f"{saved.name} is {saved.status.value} (v{saved.version})")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False), tenant: str = TENANT
) -> None:
    """Create or update connections from YAML; the whole file is checked before any write."""
    text = read_text_file(file)

    async def work(hub: Hub) -> dict[str, str]:
        await check_claims(hub, tenant, parse_connections_yaml(text).connections)
        return await hub.connections.import_yaml(tenant, text)

    outcome = run(work)
    for name, what in outcome.items():
        console.print(f"{name}: {what}")


@app.command("export")
def export(
    tenant: str = TENANT,
    out: Path | None = typer.Option(None, "--out", "-o", help="file to write; stdout if unset"),
) -> None:
    """Write the tenant's connections as YAML."""
    text = run(lambda hub: hub.connections.export_yaml(tenant))
    if out is None:
        # raw, not through rich: rich would wrap long lines and break the YAML
        typer.echo(text, nl=False)
    else:
        write_text_file(out, text)
        console.print(f"wrote {out}")


async def check_claims(hub: Hub, tenant: str, adding: list[ConnectionSpec] | None = None) -> None:
    """Refuse ownership drift (``cadastre.ownership.claims``): the tenant's connections, with
    ``adding`` in place of any of the same name, checked against the registry and each other."""
    found = {c.name: (c.name, c.system, c.connector, c.config)
             for c in await hub.connections.all(tenant)}  # fmt: skip
    for spec in adding or []:
        found[spec.name] = (spec.name, spec.system, spec.connector, spec.config)
    check_connections(hub.registry, found.values())
