from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cadastre.cli.runtime import console, err_console
from cadastre.contract.schema import diff_schemas, export_json_schemas

app = typer.Typer(help="JSON Schema of the canonical contract and its compatibility.")


@app.command("export")
def export(
    out: Path = typer.Option(Path("schemas/v1"), "--out", "-o", help="folder to write into"),
) -> None:
    """Write one JSON Schema file per entity (commit them: a test fails when they are stale)."""
    written = export_json_schemas(out)
    console.print(f"wrote {len(written)} schemas to {out}", highlight=False)


@app.command("diff")
def diff(
    old_dir: Path = typer.Argument(..., help="folder of the old schemas"),
    new_dir: Path = typer.Argument(..., help="folder of the new schemas"),
) -> None:
    """Print each change as compatible or breaking; exit 1 when any change is breaking."""
    for folder in (old_dir, new_dir):
        if not folder.is_dir():
            err_console.print(f"[red]error:[/red] not a folder: {folder}", highlight=False)
            raise typer.Exit(2)
    changes = diff_schemas(old_dir, new_dir)
    if not changes:
        console.print("no changes")
        return
    table = Table("entity", "field", "change", "compatibility")
    for change in changes:
        colour = "red" if change.breaking else "green"
        table.add_row(
            change.entity,
            change.field or "-",
            change.change,
            f"[{colour}]{change.compatibility}[/{colour}]",
        )
    console.print(table)
    breaking = sum(change.breaking for change in changes)
    console.print(f"{len(changes)} changes, {breaking} breaking", highlight=False)
    if breaking:
        raise typer.Exit(1)
