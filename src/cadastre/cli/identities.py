"""``cadastre identities list | show | link | unlink | confirm | reject | scan``: the links
between a CRM contact and a PMS resident of one person (``docs/identity.md``). Every link,
confirmation, rejection and unlink is written to the audit log with ``cli`` as its actor."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.ports import IdentityLink, LinkState

app = typer.Typer(
    help="Identity links: a CRM contact and a PMS resident that are one person.",
    no_args_is_help=True,
)

TENANT = typer.Option(None, "--tenant", "-t", help="tenant id (default: the only tenant)")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")
ACTOR = "cli"


def describe(link: IdentityLink) -> dict[str, Any]:
    return {
        "id": link.id, "contact": link.left_id, "resident": link.right_id,
        "state": link.state.value, "how": link.how.value, "confidence": link.confidence,
        "evidence": dict(link.evidence), "made_by": link.made_by,
        "made_at": link.made_at.isoformat(), "note": link.note, "broken_by": link.broken_by,
        "broken_at": link.broken_at.isoformat() if link.broken_at else None,
        "broken_reason": link.broken_reason,
    }  # fmt: skip


async def _tenant(hub: Hub, tenant: str | None) -> str:
    if tenant is not None:
        await hub.tenants.require(tenant)
        return tenant
    tenants = [t.id for t in await hub.tenants.all()]
    if len(tenants) != 1:
        fail(f"{len(tenants)} tenants exist; say which one with --tenant")
    return tenants[0]


def _signals(link: IdentityLink) -> str:
    return ", ".join(k for k in link.evidence if k in ("email", "phone", "name", "address"))


@app.command("list")
def list_(
    tenant: str | None = TENANT,
    state: LinkState | None = typer.Option(None, "--state", help="suggested, linked, rejected"),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="show at most this many"),
    as_json: bool = AS_JSON,
) -> None:
    """Live links, oldest first (suggestions waiting for a person: --state suggested)."""

    async def work(hub: Hub) -> list[IdentityLink]:
        return await hub.identities.find(await _tenant(hub, tenant), state=state, limit=limit)

    found = run(work)
    if as_json:
        typer.echo(json.dumps([describe(x) for x in found], indent=2))
        return
    if not found:
        console.print("no identity links")
        return
    table = Table(title=f"identity links ({len(found):,} shown)")
    table.add_column("id", no_wrap=True)
    table.add_column("contact", no_wrap=True)
    table.add_column("resident", no_wrap=True)
    for name in ("state", "how", "confidence", "signals", "made by"):
        table.add_column(name)
    for x in found:
        table.add_row(x.id, x.left_id, x.right_id, x.state.value, x.how.value,
                      f"{x.confidence:.2f}", _signals(x), x.made_by)  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    id: str = typer.Argument(..., help="link id"), tenant: str | None = TENANT,
    as_json: bool = AS_JSON,
) -> None:  # fmt: skip
    """One link, its evidence, and the pair's history (broken links included)."""

    async def work(hub: Hub) -> tuple[IdentityLink, list[IdentityLink]]:
        return await hub.identities.get(await _tenant(hub, tenant), id)

    link, history = run(work)
    if as_json:
        typer.echo(json.dumps({**describe(link), "history": [describe(x) for x in history]},
                              indent=2))  # fmt: skip
        return
    console.print(f"{link.id}: Contact {link.left_id} - Resident {link.right_id}, "
                  f"{link.state.value} ({link.how.value}, by {link.made_by}), "
                  f"confidence {link.confidence:.2f}")  # fmt: skip
    console.print("evidence: " + json.dumps(dict(link.evidence), sort_keys=True))
    if link.note:
        console.print(f"note: {link.note}")
    table = Table("id", "state", "how", "made", "broken", "why")
    for x in history:
        table.add_row(x.id, x.state.value, x.how.value, x.made_at.isoformat(timespec="seconds"),
                      x.broken_at.isoformat(timespec="seconds") if x.broken_at else "",
                      x.broken_reason)  # fmt: skip
    console.print(table)


@app.command("link")
def link(
    contact_id: str = typer.Argument(..., help="canonical id of the Contact"),
    resident_id: str = typer.Argument(..., help="canonical id of the Resident"),
    note: str = typer.Option("", "--note", help="why (kept with the link and in the audit log)"),
    tenant: str | None = TENANT,
) -> None:
    """Link a contact and a resident as one person, by hand."""

    async def work(hub: Hub) -> IdentityLink:
        owner = await _tenant(hub, tenant)
        return await hub.identities.link(owner, contact_id, resident_id, by=ACTOR, note=note)

    made = run(work)
    console.print(f"{made.id}: Contact {made.left_id} linked to Resident {made.right_id} "
                  f"(score {made.confidence:.2f})")  # fmt: skip


@app.command("unlink")
def unlink(
    id: str = typer.Argument(..., help="link id"),
    reason: str = typer.Option(..., "--reason", help="why (required; goes into the audit log)"),
    tenant: str | None = TENANT,
) -> None:
    """Break a link: the pair is never linked again by the matcher; ContactKey is cleared."""
    if not reason.strip():
        fail("--reason must say why")

    async def work(hub: Hub) -> IdentityLink:
        return await hub.identities.unlink(await _tenant(hub, tenant), id, by=ACTOR,
                                           reason=reason)  # fmt: skip

    broken = run(work)
    console.print(f"{broken.id} unlinked: Contact {broken.left_id} and Resident "
                  f"{broken.right_id} are no longer linked")  # fmt: skip


@app.command("confirm")
def confirm(id: str = typer.Argument(..., help="link id"), tenant: str | None = TENANT) -> None:
    """Confirm a suggested link."""

    async def work(hub: Hub) -> IdentityLink:
        return await hub.identities.confirm(await _tenant(hub, tenant), id, by=ACTOR)

    done = run(work)
    console.print(f"{done.id} confirmed: Contact {done.left_id} linked to Resident {done.right_id}")


@app.command("reject")
def reject(
    id: str = typer.Argument(..., help="link id"),
    reason: str = typer.Option("", "--reason", help="why (goes into the audit log)"),
    tenant: str | None = TENANT,
) -> None:
    """Reject a suggested link: the pair is never suggested again."""

    async def work(hub: Hub) -> IdentityLink:
        return await hub.identities.reject(await _tenant(hub, tenant), id, by=ACTOR,
                                           reason=reason)  # fmt: skip

    done = run(work)
    console.print(f"{done.id} rejected")


@app.command("scan")
def scan(tenant: str | None = TENANT) -> None:
    """Match every contact and resident already stored (the backlog)."""

    async def work(hub: Hub) -> Any:
        owner = await _tenant(hub, tenant)
        columns = (TextColumn("{task.description}", markup=False), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"matching {owner}", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            return await hub.identities.scan(owner, progress=advance)

    report = run(work)
    console.print(f"{report.indexed:,} records indexed, {report.residents:,} residents matched: "
                  f"{report.linked:,} linked, {report.suggested:,} suggested")  # fmt: skip
