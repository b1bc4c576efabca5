"""``cadastre ownership``: check a system-of-record file before the hub loads it, and put one in
place of the hub's (``CADASTRE_OWNERSHIP_FILE``) as a new version.

``check`` needs no database, so it builds no Hub: a registry file can be checked in CI.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.config_files import BY, NOTE, put_ownership, run_checked
from cadastre.cli.runtime import console, fail, print_error, read_text_file
from cadastre.connectors.claims import check_connections
from cadastre.directory.connections import parse_connections_yaml
from cadastre.errors import ConfigurationError
from cadastre.ownership import OwnershipRegistry, default_registry_text, parse_registry

app = typer.Typer(help="The system-of-record registry: who owns which field.", no_args_is_help=True)


@app.command("check")
def check(
    file: Path = typer.Argument(..., help="the registry YAML to check"),
    strict: bool = typer.Option(False, "--strict", help="also fail when a field has no owner"),
    connections: Path | None = typer.Option(
        None,
        "--connections",
        help="a connections YAML (as `connections import` reads): also refuse ownership drift - "
        "claims of its connections that contradict FILE or each other",
    ),
) -> None:
    """Validate FILE against the canonical contract: exit 0 if valid, 1 if not, 2 if unreadable."""
    # Read here, not in the loader, so that an unreadable file (missing, a folder, not UTF-8)
    # is exit 2 and an invalid registry is exit 1.
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or type(exc).__name__}")
    try:
        registry = parse_registry(text, source=str(file))
    except ConfigurationError as exc:
        # the consoles print data verbatim: a message may hold brackets ("Listing.[A-Z]*")
        print_error(str(exc))
        raise typer.Exit(1) from None
    if connections is not None:
        _check_drift(registry, connections)
    uncovered = _summarise(registry)
    if uncovered and strict:
        fail(f"{uncovered} field(s) have no owner (--strict)", 1)
    console.print(Text.assemble(("valid", "green"), f": {file}"))


def _check_drift(registry: OwnershipRegistry, file: Path) -> None:
    text = read_text_file(file, "connections file")
    try:
        document = parse_connections_yaml(text)
        check_connections(
            registry, [(c.name, c.system, c.connector, c.config) for c in document.connections]
        )
    except ConfigurationError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


@app.command("put")
def put(
    file: Path = typer.Argument(..., help="the new registry YAML"),
    by: str = BY,
    note: str = NOTE,
) -> None:
    """Check FILE as `ownership check --connections` would, against every tenant's connections,
    then write it over CADASTRE_OWNERSHIP_FILE atomically and keep it as a new version. A file
    that fails is refused and nothing changes."""
    text = read_text_file(file, "registry file")
    try:  # the file alone first, before the hub opens: its own errors, as `check` prints them
        parse_registry(text, source=str(file))
    except ConfigurationError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    why = note or f"put from {file.name}"
    run_checked(lambda hub: put_ownership(hub, text, by=by, note=why))


@app.command("default")
def default() -> None:
    """Print the packaged default registry, a starting point for your own file."""
    # Raw, not through rich: rich would wrap long comment lines and break copy-paste.
    typer.echo(default_registry_text(), nl=False)


def _summarise(registry: OwnershipRegistry) -> int:
    rules = Table("#", "match", "owner", "writers", "conflict", "platform", title="rules")
    for rule in registry.rules:
        rules.add_row(
            str(rule.index),
            rule.match,
            rule.owner,
            ", ".join(sorted(rule.writers)) or "-",
            rule.conflict.value if rule.conflict else "-",
            rule.platform.value,
        )
    console.print(rules)
    coverage = Table(
        "entity", "fields", "record owner", "shared", "API writes", "no owner", title="coverage"
    )
    uncovered_total = 0
    shared = registry.shared_fields()
    for entity in registry.entities():
        uncovered = registry.coverage(entity)
        uncovered_total += len(uncovered)
        coverage.add_row(
            entity,
            str(len(registry.fields(entity))),
            registry.record_owner(entity) or Text("none", style="red"),
            str(sum(1 for e, _, _ in shared if e == entity)),
            str(len(registry.routed_fields(entity))),
            ", ".join(sorted(uncovered)) or "-",
        )
    console.print(coverage)
    return uncovered_total
