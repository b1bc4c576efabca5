from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.ports import ApiKeyScope, PayloadClass

app = typer.Typer(help="Tenant API keys (shown once, stored as a hash).", no_args_is_help=True)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")


@app.command("create")
def create(
    tenant: str = TENANT,
    scope: ApiKeyScope = typer.Option(..., help="read or write"),
    label: str = typer.Option("", help="what the key is for"),
    payload_class: PayloadClass = typer.Option(
        PayloadClass.FULL,
        "--class",
        help="the RESO payload the key reads: full, vow or idx (fields an MLS withholds from "
        "IDX or VOW are never served to such a key)",
    ),
) -> None:
    """Create a key. The key is printed once; only its hash is stored."""
    issued = run(
        lambda hub: hub.keys.create(tenant, scope, label=label, payload_class=payload_class)
    )
    console.print(
        Text.assemble(
            "key id ",
            (issued.record.key_id, "bold"),
            f", scope {scope.value}, class {payload_class.value}",
        )
    )
    console.print("store it now; it cannot be shown again:")
    console.print(issued.plaintext, soft_wrap=True)


@app.command("revoke")
def revoke(tenant: str = TENANT, key_id: str = typer.Argument(...)) -> None:
    """Revoke a key at once."""
    run(lambda hub: hub.keys.revoke(tenant, key_id))
    console.print(f"revoked {key_id}")


@app.command("rotate")
def rotate(tenant: str = TENANT, key_id: str = typer.Argument(...)) -> None:
    """Issue a replacement with the same scope, then revoke the old key."""
    issued = run(lambda hub: hub.keys.rotate(tenant, key_id))
    console.print(
        Text.assemble(f"{key_id} revoked; new key id ", (issued.record.key_id, "bold"), ":")
    )
    console.print(issued.plaintext, soft_wrap=True)


@app.command("list")
def list_(tenant: str = TENANT) -> None:
    """List a tenant's keys (ids and scopes; never secrets)."""

    async def work(hub: Hub) -> None:
        table = Table("key id", "scope", "class", "label", "created", "revoked")
        for key in await hub.keys.all(tenant):
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
            created = key.created_at.isoformat(timespec="seconds")
            table.add_row(
                key.key_id, key.scope.value, key.payload_class.value, key.label, created, revoked
            )
        console.print(table)

    run(work)
