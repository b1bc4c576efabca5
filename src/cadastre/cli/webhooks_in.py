"""``cadastre webhooks inbox | refusals``: the vendor webhooks stored (and where each one's
normalisation stands), and those refused, counted per connection, reason and minute."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.ports import InboxStatus

if TYPE_CHECKING:
    from cadastre.ports import InboxEntry, RefusalTally

app = typer.Typer(
    help="Vendor webhooks received: the inbox and its normalisation, and the refused requests.",
    no_args_is_help=True,
)
TENANT = typer.Option(None, "--tenant", "-t", help="tenant id (default: every tenant)")
CONNECTION = typer.Option(None, "--connection", "-c", help="only this connection's")
AS_JSON = typer.Option(False, "--json", help="one JSON object instead of a table")
LIMIT = typer.Option(50, "--limit", "-n", min=1, help="show at most this many")


@app.command("inbox")
def inbox(
    tenant: str | None = TENANT,
    connection: str | None = CONNECTION,
    status: str | None = typer.Option(
        None, "--status", "-s", help="pending, processed, quarantined or failed"
    ),
    as_json: bool = AS_JSON,
    limit: int = LIMIT,
) -> None:
    """The newest stored webhooks (no bodies) with their normalisation status, and the counts."""
    wanted = None
    if status is not None:
        try:
            wanted = InboxStatus(status)
        except ValueError:
            fail(f"--status {status!r} is not one of {', '.join(s.value for s in InboxStatus)}")
    counts, found = run(lambda hub: _inbox(hub, tenant, connection, wanted, limit))
    if as_json:
        shown = {
            "counts": [{"tenant": t, "connection": c, "status": s.value, "count": n}
                       for (t, c, s), n in sorted(counts.items())],
            "entries": [_entry_json(t, e) for t, e in found],
        }  # fmt: skip
        console.print(json.dumps(shown), soft_wrap=True)
        return
    if not counts:
        console.print("no webhooks stored")
        return
    table = Table("tenant", "connection", *[s.value for s in InboxStatus], title="inbox")
    pairs = sorted({(t, c) for t, c, _ in counts})
    for t, c in pairs:
        table.add_row(t, c, *[f"{counts.get((t, c, s), 0):,}" for s in InboxStatus])
    console.print(table)
    entries = Table("position", "tenant", "connection", "message id", "received", "status",
                    "attempts", "error", title=f"newest {len(found)}")  # fmt: skip
    for t, e in found:
        entries.add_row(str(e.position), t, e.connection, e.message_id,
                        e.received_at.isoformat(timespec="seconds"), e.status.value,
                        str(e.attempts), e.error or "-")  # fmt: skip
    console.print(entries)


@app.command("refusals")
def refusals(
    tenant: str | None = TENANT,
    connection: str | None = CONNECTION,
    hours: float = typer.Option(24.0, "--hours", min=0.0, help="how far back to look"),
    as_json: bool = AS_JSON,
    limit: int = LIMIT,
) -> None:
    """Refused webhook requests of known connections, per minute and reason, newest first,
    with the last one's headers (never a signature or a body)."""
    found = run(lambda hub: _refusals(hub, tenant, connection, hours, limit))
    if as_json:
        console.print(json.dumps({"refusals": [_tally_json(t, r) for t, r in found]}),
                      soft_wrap=True)  # fmt: skip
        return
    if not found:
        console.print(f"no webhook refused in the last {hours:g} h")
        return
    table = Table("minute", "tenant", "connection", "reason", "count", "last example",
                  title="refused webhooks")  # fmt: skip
    for t, r in found:
        example = ", ".join(f"{k}: {v}" for k, v in sorted(r.example.items()))
        table.add_row(r.minute.isoformat(timespec="minutes"), t, r.connection, r.reason,
                      f"{r.count:,}", example or "-")  # fmt: skip
    console.print(table)


async def _tenants(hub: Hub, tenant: str | None) -> list[str]:
    if tenant is not None:
        await hub.tenants.require(tenant)  # NotFound names it
        return [tenant]
    return [t.id for t in await hub.tenants.all()]


async def _inbox(
    hub: Hub, tenant: str | None, connection: str | None, status: InboxStatus | None, limit: int
) -> tuple[dict[tuple[str, str, InboxStatus], int], list[tuple[str, InboxEntry]]]:
    counts: dict[tuple[str, str, InboxStatus], int] = {}
    found: list[tuple[str, InboxEntry]] = []
    for t in await _tenants(hub, tenant):
        async with hub.store.unit_of_work(t, read_only=True) as uow:
            for (c, s), n in (await uow.webhooks_in.counts()).items():
                if connection in (None, c):
                    counts[(t, c, s)] = n
            found += [
                (t, e)
                for e in await uow.webhooks_in.entries(connection, status=status, limit=limit)
            ]
    found.sort(key=lambda pair: pair[1].received_at, reverse=True)
    return counts, found[:limit]


async def _refusals(
    hub: Hub, tenant: str | None, connection: str | None, hours: float, limit: int
) -> list[tuple[str, RefusalTally]]:
    since = hub.clock.now() - timedelta(hours=hours)
    found: list[tuple[str, RefusalTally]] = []
    for t in await _tenants(hub, tenant):
        async with hub.store.unit_of_work(t, read_only=True) as uow:
            found += [
                (t, r) for r in await uow.webhooks_in.refusals(connection, since=since, limit=limit)
            ]
    found.sort(key=lambda pair: pair[1].minute, reverse=True)
    return found[:limit]


def _entry_json(tenant: str, e: InboxEntry) -> dict[str, Any]:
    return {
        "tenant": tenant, "connection": e.connection, "position": e.position,
        "message_id": e.message_id, "received_at": e.received_at.isoformat(),
        "status": e.status.value, "attempts": e.attempts, "error": e.error,
        "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None,
        "processed_at": e.processed_at.isoformat() if e.processed_at else None,
        "bytes": len(e.body),
    }  # fmt: skip


def _tally_json(tenant: str, r: RefusalTally) -> dict[str, Any]:
    return {
        "tenant": tenant, "connection": r.connection, "reason": r.reason,
        "minute": r.minute.isoformat(), "count": r.count, "last_at": r.last_at.isoformat(),
        "example": dict(r.example),
    }  # fmt: skip
