"""``cadastre ownership``: check a system-of-record file before the hub loads it.

It needs no database, so it builds no Hub: a registry file can be checked in CI.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cadastre.errors import ConfigurationError
from cadastre.ownership import OwnershipRegistry, default_registry_text, load_registry

app = typer.Typer(help="The system-of-record registry: who owns which field.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)


@app.command("check")
def check(
    file: Path = typer.Argument(..., help="the registry YAML to check"),
    strict: bool = typer.Option(False, "--strict", help="also fail when a field has no owner"),
) -> None:
    """Validate FILE against the canonical contract: exit 0 if valid, 1 if not, 2 if unreadable."""
    try:
        registry = load_registry(file)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        err_console.print(f"[red]error:[/red] cannot read {file}: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    except ConfigurationError as exc:
        # Text, not markup: a registry message may hold brackets ("Listing.[A-Z]*").
        err_console.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
        raise typer.Exit(1) from None
    uncovered = _summarise(registry)
    if uncovered and strict:
        err_console.print(f"[red]error:[/red] {uncovered} field(s) have no owner (--strict)")
        raise typer.Exit(1)
    console.print(f"[green]valid[/green]: {file}", highlight=False)


@app.command("default")
def default() -> None:
    """Print the packaged default registry, a starting point for your own file."""
    # Raw, not through rich: rich would wrap long comment lines and break copy-paste.
    typer.echo(default_registry_text(), nl=False)


def _summarise(registry: OwnershipRegistry) -> int:
    rules = Table("#", "match", "owner", "writers", "conflict", title="rules")
    for rule in registry.rules:
        rules.add_row(
            str(rule.index),
            rule.match,
            rule.owner,
            ", ".join(sorted(rule.writers)) or "-",
            rule.conflict.value if rule.conflict else "-",
        )
    console.print(rules)
    coverage = Table("entity", "fields", "record owner", "shared", "no owner", title="coverage")
    uncovered_total = 0
    shared = registry.shared_fields()
    for entity in registry.entities():
        uncovered = registry.coverage(entity)
        uncovered_total += len(uncovered)
        coverage.add_row(
            entity,
            str(len(registry.fields(entity))),
            registry.record_owner(entity) or "[red]none[/red]",
            str(sum(1 for e, _, _ in shared if e == entity)),
            ", ".join(sorted(uncovered)) or "-",
        )
    console.print(coverage)
    return uncovered_total
