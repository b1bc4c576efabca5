"""``cadastre reconcile CONNECTION``: compare the vendor's keys with the records held for the
connection and tombstone those gone upstream (see ``cadastre.sync.reconcile``)."""

from __future__ import annotations

import typer
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, print_error, run
from cadastre.cli.sync import _owner
from cadastre.sync.reconcile import ReconcileGuard, ReconcileReport


def reconcile(
    connection: str = typer.Argument(..., help="the connection's name, e.g. austin-mls"),
    tenant: str | None = typer.Option(
        None, "--tenant", "-t", help="tenant id; needed only when two tenants use the name"
    ),
    stream: str | None = typer.Option(None, "--stream", help="the vendor stream; default: main"),
    max_share: float = typer.Option(
        0.1,
        "--max-share",
        min=0.0,
        max=1.0,
        help="delete nothing when more than this share of the held records (and more than 10) "
        "is gone at once; more than half is always refused without --force",
    ),
    force: bool = typer.Option(
        False, "--force", help="delete past the guard (after checking the vendor's feed)"
    ),
) -> None:
    """Tombstone the records a vendor no longer serves (keys only: cheap to run often)."""
    guard = ReconcileGuard(max_share=max_share)
    report = run(lambda hub: _reconcile(hub, tenant, connection, stream, guard, force))
    print_report(report)
    if report.refused is not None:
        raise typer.Exit(1)


async def _reconcile(
    hub: Hub, tenant: str | None, connection: str, stream: str | None, guard: ReconcileGuard,
    force: bool,
) -> ReconcileReport:  # fmt: skip
    tenant = tenant or await _owner(hub, connection)
    return await hub.reconcile(tenant, connection, stream=stream, guard=guard, force=force)


def print_report(report: ReconcileReport) -> None:
    table = Table("keys", "count", title=f"reconciliation of {report.connection} {report.stream}")
    for label, value in (
        ("listed by the vendor", report.upstream), ("held (live)", report.held),
        ("gone upstream", report.missing), ("tombstoned", report.deleted),
    ):  # fmt: skip
        table.add_row(label, f"{value:,}")
    console.print(table)
    if report.refused is not None:
        print_error(f"nothing deleted: {report.refused}; an alert was raised")
