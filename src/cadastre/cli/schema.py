from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.runtime import console, describe_os_error, fail, read_text_file
from cadastre.contract.schema import diff_schemas, export_json_schemas
from cadastre.errors import ContractError

app = typer.Typer(help="JSON Schema of the canonical contract and its compatibility.")


@app.command("export")
def export(
    out: Path = typer.Option(Path("schemas/v1"), "--out", "-o", help="folder to write into"),
) -> None:
    """Write one JSON Schema file per entity (commit them: a test fails when they are stale)."""
    if out.exists() and not out.is_dir():
        fail(f"{out} exists and is not a folder")
    try:
        written = export_json_schemas(out)
    except OSError as exc:
        fail(describe_os_error(exc, "cannot write"))
    console.print(f"wrote {len(written)} schemas to {out}")


@app.command("diff")
def diff(
    old_dir: Path = typer.Argument(..., help="folder of the old schemas"),
    new_dir: Path = typer.Argument(..., help="folder of the new schemas"),
) -> None:
    """Print each change as compatible or breaking; exit 1 when any change is breaking."""
    for folder in (old_dir, new_dir):
        if not folder.is_dir():
            fail(f"not a folder: {folder}")
        _check_schema_files(folder)
    try:
        changes = diff_schemas(old_dir, new_dir)
    except ContractError as exc:
        fail(str(exc))
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
            Text(change.compatibility, style=colour),
        )
    console.print(table)
    breaking = sum(change.breaking for change in changes)
    console.print(f"{len(changes)} changes, {breaking} breaking")
    if breaking:
        raise typer.Exit(1)


def _check_schema_files(folder: Path) -> None:
    """Exit 2 naming the first ``*.json`` file in ``folder`` that is not a JSON object."""
    for path in sorted(folder.glob("*.json")):
        text = read_text_file(path, "schema file")
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"schema file {path} is not valid JSON: {exc.msg} at line {exc.lineno}")
        if not isinstance(schema, dict):
            fail(f"schema file {path} is not a JSON object")
