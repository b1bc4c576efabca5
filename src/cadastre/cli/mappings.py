"""``cadastre mappings``: the mapping registry, and how well a mapping fits a connection's data.

``check CONNECTION`` reads a sample of the connection's records through its connector, maps them
and stores nothing: coverage of the vendor fields seen, of the canonical fields filled, and what
the mapping does not know (fields, enumeration values). ``check --file NAME`` only loads and
validates a mapping file; ``list`` shows the registry; ``put NAME FILE`` validates a file, writes
it into the registry atomically and versions it (``cadastre rollback`` returns to a version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cadastre.cli.config_files import BY, NOTE, put_mapping, run_checked
from cadastre.cli.runtime import (
    console,
    err_console,
    fail,
    load_settings,
    read_text_file,
    run,
)
from cadastre.cli.sync import _owner
from cadastre.connectors import available
from cadastre.errors import ConfigurationError, MappingError
from cadastre.mapping import MappingRegistry
from cadastre.mapping.coverage import MappingCheck

if TYPE_CHECKING:
    from cadastre.bootstrap import Hub
    from cadastre.ports import SourceConnector

app = typer.Typer(help="Mapping files: list them, validate one, check one against live data.")


def _registry(folder: Path | None = None) -> MappingRegistry:
    # as bootstrap builds the hub's registry, without opening a store
    families = {name: spec.family_mapping for name, spec in available().items()}
    for spec in available().values():
        families.update(spec.family_mappings)
    return MappingRegistry(folder or load_settings().mappings_dir, families)


@app.command("list")
def list_() -> None:
    """The mapping registry's files and the family defaults, with what each extends."""
    try:
        registry = _registry()
    except ConfigurationError as exc:
        fail(str(exc))
    table = Table("mapping", "version", "extends", "entity", "status", title="mappings")
    for name in [*registry.families(), *registry.names()]:
        try:
            spec = registry.load(name).spec
        except MappingError as exc:
            table.add_row(name, "", "", "", f"invalid: {exc}")
            continue
        table.add_row(name, str(spec.version), spec.extends or "", spec.entity or "", "ok")
    console.print(table)
    console.print(f"registry folder: {registry.folder}")


@app.command("put")
def put(
    name: str = typer.Argument(..., help="the registry name: the file becomes NAME.yaml"),
    file: Path = typer.Argument(..., help="the new mapping file"),
    by: str = BY,
    note: str = NOTE,
) -> None:
    """Validate FILE as mapping NAME (with every mapping that extends it), then write it into
    the registry folder atomically and keep it as a new version. A file that does not load is
    refused and nothing changes."""
    text = read_text_file(file, "mapping file")
    why = note or f"put from {file.name}"
    run_checked(lambda hub: put_mapping(hub, name, text, by=by, note=why))


@app.command("check")
def check(
    connection: str | None = typer.Argument(None, help="the connection whose data to check"),
    tenant: str | None = typer.Option(
        None, "--tenant", "-t", help="tenant id; needed only when two tenants use the name"
    ),
    file: str | None = typer.Option(
        None, "--file", "-f", help="only validate this mapping (a registry name or a .yaml path)"
    ),
    sample: int = typer.Option(2000, "--sample", "-n", min=1, help="records to read at most"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Map a sample of a connection's records (storing nothing) and report coverage, or with
    --file validate a mapping file alone."""
    if file is not None:
        if connection is not None:
            fail("give a connection or --file, not both")
        _check_file(file, as_json)
        return
    if connection is None:
        fail("name a connection to check, or give --file NAME to validate a mapping file")
    report = run(lambda hub: _sample(hub, tenant, connection, sample, not as_json))
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print(report)


def _check_file(file: str, as_json: bool) -> None:
    path = Path(file)
    try:
        registry, name = _registry(), file
        if file not in registry.families() and (path.suffix in (".yaml", ".yml") or "/" in file):
            if not path.is_file():
                fail(f"no mapping file at {file}")
            registry, name = _registry(path.parent), path.stem
        mapper = registry.load(name)
    except MappingError as exc:
        fail(str(exc))
    spec = mapper.spec
    summary = {
        "mapping": spec.mapping, "version": spec.version, "valid": True,
        "entity": mapper.entity, "stream": mapper.stream, "fields": len(spec.fields),
        "enums": sum(len(v) for v in spec.enums.values()), "transforms": len(spec.transforms),
        "defaults": len(spec.defaults), "required": spec.required,
        "deletion": spec.deletion.model_dump() if spec.deletion else None,
        "refresh": spec.refresh.model_dump() if spec.refresh else None,
        "payloads": sorted(spec.payloads),
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(f"{spec.mapping} v{spec.version} is valid ({mapper.entity} from {mapper.stream})")
    for key in ("fields", "enums", "transforms", "defaults"):
        console.print(f"  {key}: {summary[key]}")


async def _sample(
    hub: Hub, tenant: str | None, name: str, limit: int, progress: bool
) -> dict[str, Any]:
    tenant = tenant or await _owner(hub, name)
    connector, mapper = await _open_unselected(hub, tenant, name)
    check = MappingCheck(mapper)
    columns = (TextColumn("{task.description}", markup=False), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
    unreadable, system = 0, connector.system
    pages = connector.read(mapper.stream, None)
    try:
        with Progress(*columns, console=err_console, disable=not progress) as bar:
            task = bar.add_task(f"sampling {name}", total=limit)
            async for page in pages:
                if page.stream != mapper.stream:
                    continue  # records of another stream (Media inside Property pages)
                unreadable += page.problem is not None
                for raw in page.records[: limit - check.records]:
                    now = hub.clock.now()
                    check.observe(
                        mapper.map(raw, tenant=tenant, connection=name, system=system, now=now)
                    )
                bar.update(task, completed=check.records)
                if check.records >= limit:
                    break
    finally:
        close = getattr(pages, "aclose", None)  # stop a generator read part-way
        if close is not None:
            await close()
        await connector.aclose()
    report = check.report()
    report["connection"] = name
    report["unreadable_pages"] = unreadable
    return report


async def _open_unselected(hub: Hub, tenant: str, name: str) -> tuple[SourceConnector, Any]:
    """The connection's connector and mapper, asking for every field (no ``$select``): a check
    must see the fields the mapping does not use. The connector is this call's own; the caller
    closes it."""
    source = await hub.open_source(tenant, name, overrides={"select": False})
    return source.connector, next(iter(source.mappers.values()))


def _print(report: dict[str, Any]) -> None:
    title = f"mapping {report['mapping']} on {report['connection']}"
    table = Table("measure", "value", title=title)
    rows = [
        ("records sampled", f"{report['records']:,}"),
        ("mapped", f"{report['mapped']:,}"), ("deletions", f"{report['deleted']:,}"),
        ("quarantined", f"{sum(report['rejected'].values()):,}"),
        ("vendor fields seen", f"{report['vendor_fields']:,}"),
        ("coverage (vendor fields mapped or kept local)", f"{report['coverage']:.1%}"),
        ("dd_coverage (canonical fields filled)", f"{report['dd_coverage']:.1%}"),
    ]  # fmt: skip
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for code, n in report["rejected"].items():
        console.print(f"  quarantined because {code.replace('_', ' ')}: {n}")
    if report["unmapped_fields"]:
        console.print("vendor fields not mapped: " + ", ".join(report["unmapped_fields"]))
    if report["dropped_fields"]:
        dropped = ", ".join(report["dropped_fields"])
        console.print(f"vendor fields dropped by the mapping: {dropped}")
    for field, values in report["unmapped_enum_values"].items():
        console.print(f"enumeration values of {field} not mapped: " + ", ".join(values))
    standard = report["dd_fields_not_in_contract"]
    console.print(
        f"{len(standard)} vendor fields are RESO Data Dictionary standard names the canonical "
        "contract does not carry" + (f": {', '.join(standard)}" if standard else "")
    )
