"""The ``cadastre`` command. One command group per module; each module exposes ``app``."""

from __future__ import annotations

import typer

from cadastre.cli import (
    alerts,
    audit,
    conflicts,
    connections,
    credentials,
    deliveries,
    demo,
    identities,
    keys,
    mappings,
    operators,
    ownership,
    quarantine,
    reconcile,
    rollback,
    schema,
    serve,
    subscriptions,
    sync,
    tenants,
    vault,
    webhooks_in,
    writes,
)

app = typer.Typer(
    help="Cadastre: the register of which system owns which data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.command("demo")(demo.demo)
app.command("sync")(sync.sync)
app.command("serve")(serve.serve)
app.command("reconcile")(reconcile.reconcile)
app.add_typer(tenants.app, name="tenants")
app.add_typer(keys.app, name="keys")
app.add_typer(connections.app, name="connections")
app.add_typer(credentials.app, name="credentials")
app.add_typer(vault.app, name="vault")
app.add_typer(audit.app, name="audit")
app.add_typer(conflicts.app, name="conflicts")
app.add_typer(ownership.app, name="ownership")
app.add_typer(schema.app, name="schema")
app.add_typer(mappings.app, name="mappings")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(webhooks_in.app, name="webhooks")
app.add_typer(writes.writes_app, name="writes")
app.add_typer(writes.writeback_app, name="writeback")
app.add_typer(identities.app, name="identities")
app.add_typer(rollback.app, name="rollback")
app.add_typer(operators.app, name="operators")
app.add_typer(alerts.app, name="alerts")


def main() -> None:
    app()
