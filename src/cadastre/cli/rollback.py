"""``cadastre rollback``: return a mapping file, the ownership registry or a connection to an
earlier version, and ``rollback history`` of each (docs/rollback.md). ``mappings put`` and
``ownership put`` share its steps (``cli.config_files``): validate fully, keep what is on disk,
write atomically, record the new version.

A rollback is a new version with the old text (noted ``rollback to vN``), so the history keeps
both. A mapping rollback then replays the quarantine of every connection, in every tenant, whose
mapping is the file or extends it: records set aside under the bad version are re-mapped and
applied (``--resync`` also runs a full sync of each active one, for records the bad version
mapped wrongly rather than refused). Exit codes as everywhere (``cli.runtime``): 2 for bad
input (an unknown name or version), 1 for a refusal (a version that would not load today, an
ownership file that contradicts today's connections) or a replay or sync that failed.

Over the usual length (~480 lines): three kinds of configuration, each with its history and its
rollback, read better side by side than spread over three modules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.config_files import (
    BY,
    NOTE,
    Refused,
    check_ownership,
    mapping_path,
    ownership_path,
    print_diff,
    print_versions,
    run_checked,
    sha_of,
    when,
)
from cadastre.cli.quarantine import replay_progress
from cadastre.cli.runtime import console, run
from cadastre.cli.sync import sync_progress
from cadastre.connectors import connector_spec
from cadastre.connectors.claims import check_connections
from cadastre.directory.config_history import OWNERSHIP_NAME, PREVIOUS, check_mapping
from cadastre.directory.connections import to_spec
from cadastre.errors import CadastreError, ConfigurationError, MappingError, NotFound
from cadastre.ports import ConfigKind, ConfigVersion, Connection, ConnectionStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cadastre.bootstrap import Hub
    from cadastre.mapping import MappingRegistry

app = typer.Typer(
    help="Return a mapping file, the ownership registry or a connection to an earlier version.",
    no_args_is_help=True,
)
history_app = typer.Typer(help="The versions kept of each.", no_args_is_help=True)
app.add_typer(history_app, name="history")

TO = typer.Option(..., "--to", help="a version number, or 'previous' (the one before the current)")
DRY_RUN = typer.Option(
    False, "--dry-run", help="show the diff and what would happen; change nothing"
)
YES = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")
TENANT = typer.Option(..., "--tenant", "-t", help="the connection's tenant")


def parse_target(value: str) -> int | str:
    if value == PREVIOUS:
        return value
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a version number or 'previous'") from None
    if number < 1:
        raise typer.BadParameter(f"versions are numbered from 1, not {number}")
    return number


def _note(version: int, note: str) -> str:
    return f"rollback to v{version}" + (f": {note}" if note else "")


# ------------------------------------------------------------------------------ history


@history_app.command("mapping")
def history_mapping(name: str = typer.Argument(..., help="the mapping's registry name")) -> None:
    """Every version of mapping NAME (reading it versions a hand edit not seen yet)."""
    versions, on_disk, problem = run(lambda hub: _mapping_history(hub, name))
    print_versions(f"mapping {name}", versions, on_disk)
    if problem:
        console.print(f"the file on disk does not load, so it is not versioned: {problem}")


@history_app.command("ownership")
def history_ownership() -> None:
    """Every version of the ownership registry (the hub versions it when it loads it)."""
    versions, on_disk = run(_ownership_history)
    print_versions("ownership registry", versions, on_disk)


@history_app.command("connection")
def history_connection(
    name: str = typer.Argument(..., help="the connection's name"), tenant: str = TENANT
) -> None:
    """Every version of connection NAME: added, edited, paused, resumed, rolled back."""
    history = run(lambda hub: hub.connections.history(tenant, name))
    table = Table(
        "version", "when", "who", "change", "status", "sha256", title=f"connection {name}"
    )
    for entry in history:
        c = entry.connection
        table.add_row(
            str(c.version),
            when(c.updated_at),
            entry.changed_by,
            entry.change,
            c.status.value,
            connection_sha(c)[:12],
        )
    console.print(table)


async def _mapping_history(hub: Hub, name: str) -> tuple[list[ConfigVersion], str | None, str]:
    path = mapping_path(hub.mappings, name)
    problem = ""
    try:
        hub.mappings.load(name)  # the registry's observer versions the file if it changed
    except MappingError as exc:
        problem = str(exc)
    await hub.config_history.flush()
    versions = await hub.config_history.versions(ConfigKind.MAPPING, name)
    if not versions:
        raise NotFound(
            f"no versions of mapping {name!r} are recorded" + (f" ({problem})" if problem else "")
        )
    return versions, sha_of(await hub.config_history.read_found(path)), problem


async def _ownership_history(hub: Hub) -> tuple[list[ConfigVersion], str | None]:
    versions = await hub.config_history.versions(ConfigKind.OWNERSHIP, OWNERSHIP_NAME)
    if not versions:
        raise NotFound("no versions of the ownership registry are recorded")
    path = hub.settings.ownership_file
    on_disk = (
        versions[-1].sha256 if path is None else sha_of(await hub.config_history.read_found(path))
    )
    return versions, on_disk


# ------------------------------------------------------------------------------ mappings


@dataclass
class Replayed:
    tenant: str
    connection: str
    replayed: int = 0
    resolved: int = 0
    failing: int = 0
    resync: str = "-"
    error: str = ""


@dataclass
class Plan:
    affected: list[Connection] = field(default_factory=list)
    skipped: list[tuple[Connection, str]] = field(default_factory=list)


@app.command("mapping")
def rollback_mapping(
    name: str = typer.Argument(..., help="the mapping's registry name"),
    to: str = TO,
    resync: bool = typer.Option(
        False, "--resync", help="also run a full sync of each affected active connection"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
    by: str = BY,
    note: str = NOTE,
) -> None:
    """Restore an earlier version of mapping NAME, then replay the quarantine of every
    connection whose mapping is NAME or extends it."""
    target = parse_target(to)
    rows = run_checked(
        lambda hub: _rollback_mapping(
            hub, name, target, resync=resync, dry_run=dry_run, yes=yes, by=by, note=note
        )
    )
    if rows and any(r.error for r in rows):
        raise typer.Exit(1)


async def _rollback_mapping(
    hub: Hub,
    name: str,
    target: int | str,
    *,
    resync: bool,
    dry_run: bool,
    yes: bool,
    by: str,
    note: str,
) -> list[Replayed]:
    history, registry = hub.config_history, hub.mappings
    path = mapping_path(registry, name)
    # a hand edit nobody has read counts as the current version; it is kept (replace_file) only
    # once the rollback goes ahead, so a dry run or a "no" records nothing
    found = await history.read_found(path)
    current, chosen = await history.pick(ConfigKind.MAPPING, name, target, on_disk=found)
    if chosen.sha256 == current.sha256 and found is not None:
        console.print(f"{path} holds the text of version {chosen.version}: nothing to do")
        return []
    try:
        dependants = check_mapping(registry, name, chosen.content)
    except ConfigurationError as exc:
        raise Refused(
            f"version {chosen.version} of mapping {name!r} does not load today: {exc}"
        ) from None
    print_diff(
        current.content if found is not None else "",
        chosen.content,
        f"{path.name} (v{current.version}, now)",
        f"{path.name} (v{chosen.version})",
    )
    plan = await _affected(hub, registry.trial({name: chosen.content}), name)
    if dependants:
        console.print(f"checked with the mappings that extend it: {', '.join(dependants)}")
    _print_plan(plan, resync)
    if dry_run:
        console.print("dry run: nothing written, nothing replayed")
        return []
    _confirm(yes, f"Restore version {chosen.version} of mapping {name}?")
    made = await history.replace_file(
        ConfigKind.MAPPING,
        name,
        path,
        chosen.content,
        actor=by,
        note=_note(chosen.version, note),
        doing="rollback",
    )
    console.print(
        f"mapping {name}: version {chosen.version} restored as version {made.version} ({path})"
    )
    rows = await _replay(hub, plan.affected, resync)
    _print_replays(rows, resync)
    return rows


async def _affected(hub: Hub, registry: MappingRegistry, name: str) -> Plan:
    """Every tenant's connections whose mapping (or a mapping of a stream they read inside
    their pages) is ``name`` or extends it, read in ``registry``."""
    plan = Plan()
    for tenant in await hub.tenants.all():
        for connection in await hub.connections.all(tenant.id):
            try:
                spec = connector_spec(connection.connector)
                settings = spec.settings(connection.name, connection.config)
                names = [spec.mapping_name(settings), *spec.stream_mappings(settings).values()]
                uses = any(name in registry.lineage(each) for each in names)
            except CadastreError as exc:
                plan.skipped.append((connection, str(exc)))
                continue
            if uses:
                plan.affected.append(connection)
    return plan


def _print_plan(plan: Plan, resync: bool) -> None:
    if not plan.affected:
        console.print("no connection uses this mapping: nothing to replay")
    for c in plan.affected:
        paused = c.status is not ConnectionStatus.ACTIVE
        then = " and full sync" if resync and not paused else ""
        console.print(
            f"  quarantine replay{then}: {c.name} (tenant {c.tenant})"
            + (" - paused: no sync" if paused and resync else "")
        )
    for c, reason in plan.skipped:
        console.print(f"  not checked: {c.name} (tenant {c.tenant}): {reason}")


async def _replay(hub: Hub, affected: Sequence[Connection], resync: bool) -> list[Replayed]:
    rows = []
    for n, c in enumerate(affected, start=1):
        row = Replayed(c.tenant, c.name)
        rows.append(row)
        label = f"[{n}/{len(affected)}] replay of {c.name} ({c.tenant})"
        try:
            with replay_progress(label) as progress:
                summary = await hub.replay_quarantine(c.tenant, c.name, progress=progress)
            row.replayed, row.resolved = summary.replayed, summary.resolved
            row.failing = summary.failing.total()
        except CadastreError as exc:
            row.error = f"replay: {exc}"
            continue
        if not resync or c.status is not ConnectionStatus.ACTIVE:
            continue
        try:
            with sync_progress(f"[{n}/{len(affected)}] {c.name} (full)") as progress:
                report = await hub.sync(c.tenant, c.name, full=True, progress=progress)
            tally = report.tally
            row.resync = f"{tally.fetched:,} read, {tally.quarantined:,} quarantined"
        except CadastreError as exc:
            row.resync, row.error = "failed", f"sync: {exc}"
    return rows


def _print_replays(rows: Sequence[Replayed], resync: bool) -> None:
    if not rows:
        return
    columns = ["tenant", "connection", "replayed", "resolved", "still failing"]
    table = Table(*columns, *(["full sync"] if resync else []), title="quarantine replay")
    for r in rows:
        cells = [r.tenant, r.connection, f"{r.replayed:,}", f"{r.resolved:,}", f"{r.failing:,}"]
        table.add_row(*cells, *([r.resync] if resync else []))
    console.print(table)
    for r in rows:
        if r.error:
            console.print(
                Text.assemble(("failed:", "red"), f" {r.connection} ({r.tenant}): {r.error}")
            )


# ------------------------------------------------------------------------------ ownership


@app.command("ownership")
def rollback_ownership(
    to: str = TO, dry_run: bool = DRY_RUN, yes: bool = YES, by: str = BY, note: str = NOTE
) -> None:
    """Restore an earlier version of the ownership registry (CADASTRE_OWNERSHIP_FILE), once it
    is checked against every tenant's connections."""
    target = parse_target(to)
    run_checked(lambda hub: _rollback_ownership(hub, target, dry_run, yes, by, note))


async def _rollback_ownership(
    hub: Hub, target: int | str, dry_run: bool, yes: bool, by: str, note: str
) -> None:
    history = hub.config_history
    path = ownership_path(hub)
    found = await history.read_found(path)  # kept by replace_file, as for a mapping
    current, chosen = await history.pick(
        ConfigKind.OWNERSHIP, OWNERSHIP_NAME, target, on_disk=found
    )
    if chosen.sha256 == current.sha256 and found is not None:
        console.print(f"{path} holds the text of version {chosen.version}: nothing to do")
        return
    await check_ownership(hub, chosen.content, f"version {chosen.version}")
    print_diff(
        current.content if found is not None else "",
        chosen.content,
        f"{path.name} (v{current.version}, now)",
        f"{path.name} (v{chosen.version})",
    )
    if dry_run:
        console.print("dry run: nothing written")
        return
    _confirm(yes, f"Restore version {chosen.version} of the ownership registry?")
    made = await history.replace_file(
        ConfigKind.OWNERSHIP,
        OWNERSHIP_NAME,
        path,
        chosen.content,
        actor=by,
        note=_note(chosen.version, note),
        doing="rollback",
    )
    console.print(
        f"ownership registry: version {chosen.version} restored as version "
        f"{made.version} ({path}); a running hub reads it when it restarts"
    )


# ------------------------------------------------------------------------------ connections


@app.command("connection")
def rollback_connection(
    name: str = typer.Argument(..., help="the connection's name"),
    tenant: str = TENANT,
    to: str = TO,
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
    by: str = BY,
) -> None:
    """Save an earlier version's configuration as connection NAME's next version (its status,
    active or paused, stays as it is)."""
    target = parse_target(to)
    run_checked(lambda hub: _rollback_connection(hub, tenant, name, target, dry_run, yes, by))


async def _rollback_connection(
    hub: Hub, tenant: str, name: str, target: int | str, dry_run: bool, yes: bool, by: str
) -> None:
    versions = [v.connection for v in await hub.connections.history(tenant, name)]
    current = versions[-1]
    chosen = _pick_connection(versions, target)
    restored = to_spec(chosen).model_copy(update={"status": current.status})
    if restored == to_spec(current):
        console.print(
            f"connection {name} at version {current.version} has the configuration "
            f"of version {chosen.version} already: nothing to do"
        )
        return
    try:  # as `connections add` checks a connection: its connector's settings, ownership drift
        connector_spec(chosen.connector).settings(name, chosen.config)
        others = [c for c in await hub.connections.all(tenant) if c.name != name]
        check_connections(
            hub.registry, [(c.name, c.system, c.connector, c.config) for c in [*others, chosen]]
        )
    except ConfigurationError as exc:
        raise Refused(
            f"version {chosen.version} of connection {name!r} is refused today: {exc}"
        ) from None
    print_diff(
        _spec_text(current),
        _spec_text(chosen),
        f"{name} (v{current.version}, now)",
        f"{name} (v{chosen.version})",
    )
    if dry_run:
        console.print("dry run: nothing saved")
        return
    _confirm(yes, f"Save version {chosen.version} of connection {name} as its next version?")
    saved = await hub.connections.put(
        tenant, restored, actor=by, change=f"rollback to v{chosen.version}"
    )
    console.print(
        f"connection {name}: version {chosen.version} restored as version "
        f"{saved.version} (status {saved.status.value})"
    )


def _pick_connection(versions: Sequence[Connection], target: int | str) -> Connection:
    current = versions[-1]
    name = current.name
    if target == PREVIOUS:
        # the newest earlier version that differs in more than status: a pause or a resume
        # changes no configuration, and rolling back across one would do nothing
        for earlier in reversed(versions[:-1]):
            if _spec_text(earlier) != _spec_text(current):
                return earlier
        raise NotFound(f"connection {name!r} has no earlier version with another configuration")
    if not isinstance(target, int) or not 1 <= target <= current.version:
        raise NotFound(
            f"connection {name!r} has no version {target} (it has 1 to {current.version})"
        )
    return versions[target - 1]


def _spec_text(connection: Connection) -> str:
    """The configuration as YAML-ish JSON, keys sorted, status left out (a rollback keeps it)."""
    spec = to_spec(connection).model_dump(mode="json", exclude={"status"})
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def connection_sha(connection: Connection) -> str:
    spec = to_spec(connection).model_dump(mode="json")
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question, default=False):
        console.print("nothing changed")
        raise typer.Exit(1)
