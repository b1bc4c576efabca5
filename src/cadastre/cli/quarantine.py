"""``cadastre quarantine list | replay``: the records syncs set aside, and their re-ingestion once
the mapping file is fixed. The replay itself is ``cadastre.sync.replay``; this module wires it.

A mass update can set aside a whole feed, so nothing here reads every entry at once: ``list``
shows the oldest ``--limit`` and counts the rest a page at a time, and ``replay`` finds the
connections that hold entries a page at a time (the replay reads its entries in batches)."""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.cli.sync import _owner
from cadastre.errors import NotFound
from cadastre.sync import ReplaySummary

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from cadastre.ports import QuarantinedRecord, UnitOfWork

app = typer.Typer(
    help="Records set aside by syncs: list them, and replay them after fixing the mapping.",
    no_args_is_help=True,
)

CONNECTION = typer.Option(None, "--connection", "-c", help="only this connection's entries")
CODE = typer.Option(None, "--code", help="only entries with this code, e.g. unknown_enum_value")
TENANT = typer.Option(None, "--tenant", "-t", help="tenant id (default: every tenant)")
PAGE = 500  # entries read at once where only their number or their connection matters


@app.command("list")
def list_entries(
    connection: str | None = CONNECTION,
    code: str | None = CODE,
    tenant: str | None = TENANT,
    as_json: bool = typer.Option(
        False, "--json", help='one JSON object: {"entries": [...], "more": N}, payloads included'
    ),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="show at most this many"),
) -> None:
    """List the open quarantine entries, oldest first (the first --limit; the rest counted)."""
    now, found, more = run(lambda hub: _list(hub, tenant, connection, code, limit))
    if as_json:
        shown = {"entries": [_as_json(t, q) for t, q in found], "more": more}
        console.print(json.dumps(shown), soft_wrap=True)
        return
    if not found:
        console.print("no open quarantine entries")
        return
    tenants = {t for t, _ in found}
    table = Table("id", "connection", "code", "external id", "reason", "age", "seen", "attempts",
                  title=f"quarantine ({len(found) + more:,} open)")  # fmt: skip
    if len(tenants) > 1:
        table.add_column("tenant")
    for t, q in found:
        row = [q.id, q.connection, q.code or "-", q.external_id or "-", q.reason,
               _age(now, q.created_at), f"{q.sightings}x", str(q.attempts)]  # fmt: skip
        table.add_row(*row, *([t] if len(tenants) > 1 else []))
    console.print(table)
    if more:
        console.print(f"{more:,} more not shown (the oldest {len(found):,} are): raise --limit, "
                      "or narrow with --connection and --code")  # fmt: skip


@app.command("replay")
def replay(
    connection: str | None = CONNECTION,
    code: str | None = CODE,
    ids: list[str] = typer.Option([], "--id", help="replay exactly this entry (repeatable)"),
    tenant: str | None = TENANT,
) -> None:
    """Re-map quarantined records with the connection's current mapping file and apply them."""
    summaries = run(lambda hub: _replay(hub, tenant, connection, code, tuple(ids)))
    if not summaries:
        console.print("nothing to replay")
        return
    for summary in summaries:
        print_summary(summary)


async def _tenants(hub: Hub, tenant: str | None, connection: str | None) -> list[str]:
    if tenant is not None:
        await hub.tenants.require(tenant)  # NotFound names it
        return [tenant]
    if connection is not None:
        return [await _owner(hub, connection)]
    return [t.id for t in await hub.tenants.all()]


async def _list(
    hub: Hub, tenant: str | None, connection: str | None, code: str | None, limit: int
) -> tuple[datetime, list[tuple[str, QuarantinedRecord]], int]:
    """The oldest ``limit`` open entries (tenant by tenant), and how many more there are."""
    found: list[tuple[str, QuarantinedRecord]] = []
    more = 0
    for t in await _tenants(hub, tenant, connection):
        async with hub.store.unit_of_work(t, read_only=True) as uow:
            want = limit - len(found)
            shown: list[QuarantinedRecord] = []
            if want > 0:
                shown = await uow.quarantine.open_items(connection, code=code, limit=want)
                found += [(t, q) for q in shown]
            counts = await uow.quarantine.open_counts(code=code)
            held = counts.get(connection, 0) if connection is not None else sum(counts.values())
            more += held - len(shown)
    return hub.clock.now(), found, more


async def _holders(uow: UnitOfWork, connection: str | None, code: str | None) -> list[str]:
    """The connections with open entries (of ``code``), counted by the store."""
    counts = await uow.quarantine.open_counts(code=code)
    return [name for name in counts if connection is None or name == connection]


async def _replay(
    hub: Hub, tenant: str | None, connection: str | None, code: str | None, ids: tuple[str, ...]
) -> list[ReplaySummary]:
    # Every entry asked for is found first: a wrong id stops the command before any replay.
    work: dict[tuple[str, str], list[str]] = defaultdict(list)
    tenants = await _tenants(hub, tenant, connection)
    for id in ids:
        entry = None
        for t in tenants:
            async with hub.store.unit_of_work(t, read_only=True) as uow:
                entry = await uow.quarantine.get(id)
            if entry is not None and connection in (None, entry.connection):
                work[(t, entry.connection)].append(id)
                break
        else:
            where = f" of connection {connection!r}" if connection else ""
            raise NotFound(f"quarantine entry {id!r}{where} does not exist")
    if not ids:
        for t in tenants:
            async with hub.store.unit_of_work(t, read_only=True) as uow:
                names = await _holders(uow, connection, code)
            for name in names:
                work[(t, name)] = []
    summaries = []
    for (t, name), chosen in work.items():
        with replay_progress(f"replay of {name}") as progress:
            summaries.append(await hub.replay_quarantine(
                t, name, code=None if chosen else code, ids=tuple(chosen), progress=progress
            ))  # fmt: skip
    return summaries


@contextmanager
def replay_progress(label: str) -> Iterator[Callable[[ReplaySummary], None]]:
    columns = (
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("resolved {task.fields[resolved]}", markup=False),
        TextColumn("failing {task.fields[failing]}", markup=False), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, resolved=0, failing=0)

        def update(summary: ReplaySummary) -> None:
            bar.update(task, completed=summary.replayed, total=summary.total or None,
                       resolved=summary.resolved, failing=summary.failing.total())  # fmt: skip

        yield update


def print_summary(summary: ReplaySummary) -> None:
    table = Table("entries", "count", title=f"replay of {summary.connection}")
    rows = [
        ("replayed", summary.replayed), ("resolved", summary.resolved),
        ("  of which superseded by a newer stored version", summary.superseded),
        ("still failing", summary.failing.total()),
        ("records of re-read pages set aside anew", summary.requarantined),
    ]  # fmt: skip
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    console.print(table)
    for code, n in sorted(summary.failing.items()):
        console.print(f"  still failing because {code.replace('_', ' ')}: {n}")
    if summary.skipped:
        console.print(f"already resolved, not replayed: {', '.join(summary.skipped)}")


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _as_json(tenant: str, q: QuarantinedRecord) -> dict[str, Any]:
    return {
        "id": q.id, "tenant": tenant, "connection": q.connection, "stream": q.stream,
        "entity": q.entity, "code": q.code, "external_id": q.external_id, "reason": q.reason,
        "attempts": q.attempts, "created_at": q.created_at.isoformat(),
        "sightings": q.sightings,  # reads that set this version aside again while it was open
        "last_seen_at": q.last_seen_at.isoformat() if q.last_seen_at else None,
        "payload": q.payload,
    }  # fmt: skip
