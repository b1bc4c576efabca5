"""``cadastre subscriptions add | list | remove | rotate-secret | enable``: a tenant's outbound
webhook subscriptions (``cadastre.webhooks.subscriptions``). The signing secret is printed by
``add`` and ``rotate-secret`` only, once; ``list`` names its vault credential, never its value."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.runtime import console, run
from cadastre.ports import Subscription, SubscriptionFormat

app = typer.Typer(
    help="Outbound webhook subscriptions: endpoints sent the events they subscribe to, signed.",
    no_args_is_help=True,
)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")


def describe(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.id, "url": s.url, "event_types": list(s.event_types),
        "description": s.description, "status": s.status.value,
        "status_reason": s.status_reason,
        "failing_since": s.failing_since.isoformat() if s.failing_since else None,
        "credential": s.credential, "created_at": s.created_at.isoformat(),
        "format": s.format.value,
    }  # fmt: skip


@app.command("add")
def add(
    tenant: str = TENANT,
    url: str = typer.Option(..., "--url", help="https, or http to a host the operator allows"),
    events: list[str] = typer.Option(
        ...,
        "--event",
        "-e",
        help="an event type (cadastre.listing.updated.v1) or a family (cadastre.listing.*); "
        "repeatable",
    ),
    description: str = typer.Option("", "--description", help="what the endpoint is"),
    body_format: SubscriptionFormat = typer.Option(
        SubscriptionFormat.STANDARD,
        "--format",
        help="standard: the event as Standard Webhooks signed CloudEvents JSON; slack: a Slack "
        "incoming-webhook message (alert events only: -e 'cadastre.alert.*')",
    ),
    as_json: bool = AS_JSON,
) -> None:
    """Subscribe an endpoint. Its signing secret is printed once: give it to the endpoint."""
    created = run(
        lambda hub: hub.webhooks.subscriptions.add(
            tenant,
            url=url,
            event_types=events,
            description=description,
            actor="cli",
            format=body_format,
        )
    )
    secret = created.secret.reveal()
    if as_json:
        typer.echo(json.dumps({**describe(created.subscription), "secret": secret}, indent=2))
        return
    s = created.subscription
    console.print(Text.assemble("subscription ", (s.id, "bold"), f" -> {s.url}"))
    console.print(f"events: {', '.join(s.event_types)} (format {s.format.value})")
    console.print("signing secret (store it now; it cannot be shown again):")
    console.print(secret, soft_wrap=True)


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = AS_JSON) -> None:
    """The tenant's subscriptions (never a secret)."""
    found = run(lambda hub: hub.webhooks.subscriptions.all(tenant))
    if as_json:
        typer.echo(json.dumps([describe(s) for s in found], indent=2))
        return
    if not found:
        console.print("no subscriptions")
        return
    table = Table()
    table.add_column("id", no_wrap=True)  # ids are typed back into commands: never cut
    for name in ("url", "events", "format", "status", "failing since", "description"):
        table.add_column(name)
    for s in found:
        status = s.status.value + (f" ({s.status_reason})" if s.status_reason else "")
        since = s.failing_since.isoformat(timespec="seconds") if s.failing_since else ""
        table.add_row(s.id, s.url, "\n".join(s.event_types), s.format.value, status, since,
                      s.description)  # fmt: skip
    console.print(table)


@app.command("remove")
def remove(tenant: str = TENANT, id: str = typer.Argument(..., help="subscription id")) -> None:
    """Remove a subscription and its secret; its waiting deliveries are cancelled."""
    cancelled = run(lambda hub: hub.webhooks.subscriptions.remove(tenant, id, actor="cli"))
    console.print(f"removed {id}; {cancelled} waiting deliveries cancelled")


@app.command("rotate-secret")
def rotate_secret(
    tenant: str = TENANT,
    id: str = typer.Argument(..., help="subscription id"),
    overlap_hours: float = typer.Option(
        24.0, "--overlap-hours", min=0, help="how long the old secret keeps signing too"
    ),
    as_json: bool = AS_JSON,
) -> None:
    """A new signing secret, printed once; deliveries carry both signatures for the overlap."""
    rotated = run(
        lambda hub: hub.webhooks.subscriptions.rotate_secret(
            tenant, id, overlap=timedelta(hours=overlap_hours), actor="cli"
        )
    )
    secret = rotated.secret.reveal()
    until = rotated.previous_valid_until.isoformat(timespec="seconds")
    if as_json:
        typer.echo(json.dumps({"id": id, "secret": secret, "previous_valid_until": until}))
        return
    console.print(f"new signing secret of {id} (the old one also signs until {until}):")
    console.print(secret, soft_wrap=True)


@app.command("enable")
def enable(tenant: str = TENANT, id: str = typer.Argument(..., help="subscription id")) -> None:
    """Enable a disabled subscription: its waiting deliveries are sent at once."""
    enabled = run(lambda hub: hub.webhooks.subscriptions.enable(tenant, id, actor="cli"))
    console.print(f"{enabled.id} is {enabled.status.value}")
