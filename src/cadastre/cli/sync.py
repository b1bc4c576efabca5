"""``cadastre sync CONNECTION``: pull one connection into the store, with a progress bar."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.errors import ConfigurationError, NotFound
from cadastre.sync import SyncReport, SyncTally

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def sync(
    connection: str = typer.Argument(..., help="the connection's name, e.g. austin-mls"),
    tenant: str | None = typer.Option(
        None, "--tenant", "-t", help="tenant id; needed only when two tenants use the name"
    ),
    full: bool = typer.Option(False, "--full", help="start from nothing, not the stored cursor"),
) -> None:
    """Pull a connection's records into the store (incremental from its cursor by default)."""
    report = run(lambda hub: _sync(hub, tenant, connection, full))
    print_report(report)


async def _owner(hub: Hub, connection: str) -> str:
    """The one tenant with a connection of that name."""
    owners = [
        t.id for t in await hub.tenants.all()
        if any(c.name == connection for c in await hub.connections.all(t.id))
    ]  # fmt: skip
    if len(owners) == 1:
        return owners[0]
    if not owners:
        raise NotFound(f"no tenant has a connection named {connection!r}")
    raise ConfigurationError(
        f"tenants {', '.join(sorted(owners))} each have a connection named {connection!r}; "
        "say which with --tenant"
    )


async def _sync(hub: Hub, tenant: str | None, connection: str, full: bool) -> SyncReport:
    tenant = tenant or await _owner(hub, connection)
    label = f"{connection} ({'full' if full else 'incremental'})"
    with sync_progress(label) as progress:
        return await hub.sync(tenant, connection, full=full, progress=progress)


@contextmanager
def sync_progress(label: str) -> Iterator[Callable[[SyncTally], None]]:
    """A rich progress bar fed by the runner's per-page tally: records, rate, quarantined."""
    columns = (
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8} rec/s", markup=False),
        TextColumn("quarantined {task.fields[quarantined]}", markup=False), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task: TaskID = bar.add_task(label, total=None, rate="-", quarantined=0)

        def update(tally: SyncTally) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{tally.fetched / elapsed:,.0f}" if elapsed > 0 else "-"
            total = max(tally.expected, tally.fetched) if tally.expected is not None else None
            bar.update(task, completed=tally.fetched, total=total, rate=rate,
                       quarantined=tally.quarantined)  # fmt: skip

        yield update
        done = bar.tasks[0]
        bar.update(task, total=done.completed or 1, completed=done.completed or 1)


def print_report(report: SyncReport) -> None:
    tally = report.tally
    table = Table("records", "count", title=f"sync of {report.connection}")
    rows = [
        ("read from the vendor", tally.fetched), ("created", tally.created),
        ("updated", tally.updated), ("deleted", tally.deleted), ("unchanged", tally.unchanged),
        ("already applied (duplicates)", tally.duplicates), ("refused by ownership", tally.refused),
        ("quarantined", tally.quarantined), ("pages", tally.pages),
        ("retried reads", tally.retries),
    ]  # fmt: skip
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    console.print(table)
    for code, n in sorted(tally.reasons.items()):
        console.print(f"  quarantined because {code.replace('_', ' ')}: {n}")
    for stream, problem in sorted(report.unread.items()):
        # The page is in quarantine; the stream's cursor waits before it for the next run.
        console.print(f"{stream}: stopped at a page that could not be read ({problem}); "
                      "the next sync reads it again")  # fmt: skip
    if tally.quarantined or tally.unreadable_pages:
        console.print("see them with: cadastre quarantine list -c " + report.connection)
    if report.unknown_fields:
        names = ", ".join(sorted(report.unknown_fields))
        console.print(f"vendor fields the mapping does not know (dropped): {names}")
    rate = tally.fetched / report.seconds if report.seconds > 0 else 0.0
    console.print(f"{tally.fetched:,} records in {report.seconds:.1f} s ({rate:,.0f} records/s)")
