"""What ``cadastre rollback``, ``mappings put`` and ``ownership put`` share: validate fully (a
refusal is exit 1 with the reason, nothing changed), keep what is on disk, write atomically (a
temporary file renamed over the old one), record the new version; and the diff and version
tables they print. The steps themselves are ``directory.config_history``'s.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.runtime import console, fail, run
from cadastre.connectors.claims import check_connections
from cadastre.directory.config_history import OWNERSHIP_NAME, ConfigHistory, check_mapping
from cadastre.errors import ConfigurationError
from cadastre.ownership import OwnershipRegistry, parse_registry
from cadastre.ports import ConfigKind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    from cadastre.bootstrap import Hub
    from cadastre.mapping import MappingRegistry
    from cadastre.ports import ConfigVersion

BY = typer.Option("cli", "--by", help="who does it (kept with the version)")
NOTE = typer.Option("", "--note", help="why (kept with the version)")
_DIFF_STYLES = {"---": "bold", "+++": "bold", "@@ ": "cyan", "+": "green", "-": "red"}


class Refused(Exception):
    """A change that validation refuses: exit 1 with the reason (``cli.runtime`` makes a
    ``ConfigurationError`` exit 2, which is for bad input)."""


def run_checked(work: Callable[[Hub], Awaitable[Any]]) -> Any:
    try:
        return run(work)
    except Refused as exc:
        fail(str(exc), 1)


def print_versions(title: str, versions: Sequence[ConfigVersion], on_disk: str | None) -> None:
    table = Table("version", "when", "who", "note", "sha256", "", title=title)
    for v in versions:
        here = "on disk" if v is versions[-1] and v.sha256 == on_disk else ""
        table.add_row(str(v.version), when(v.changed_at), v.changed_by, v.note, v.sha256[:12], here)
    console.print(table)
    if on_disk is not None and on_disk != versions[-1].sha256:
        console.print("the file on disk is not the latest version (it is versioned when read)")


def mapping_path(registry: MappingRegistry, name: str) -> Path:
    registry.trial({name: ""})  # a family default or a name that is no file name: refused
    return registry.folder / f"{name}.yaml"


def ownership_path(hub: Hub) -> Path:
    if hub.settings.ownership_file is None:
        raise ConfigurationError(
            "the hub uses the packaged default ownership registry; set CADASTRE_OWNERSHIP_FILE "
            "to a file of your own (`cadastre ownership default` prints a start) to change it"
        )
    return hub.settings.ownership_file


async def check_ownership(hub: Hub, text: str, label: str) -> OwnershipRegistry:
    """``text`` as a registry, checked as ``ownership check --connections`` checks one, against
    every tenant's connections; ``Refused`` names what is wrong."""
    try:
        registry = parse_registry(text, source=label)
    except ConfigurationError as exc:
        raise Refused(str(exc)) from None
    for tenant in await hub.tenants.all():
        connections = await hub.connections.all(tenant.id)
        try:
            check_connections(
                registry, [(c.name, c.system, c.connector, c.config) for c in connections]
            )
        except ConfigurationError as exc:
            raise Refused(
                f"{label} contradicts the connections of tenant {tenant.id!r}: {exc}"
            ) from None
    return registry


def print_diff(before: str, after: str, before_label: str, after_label: str) -> None:
    """A unified diff, coloured; data printed as it is (no markup)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), before_label, after_label
    )
    for line in lines:
        style = _DIFF_STYLES.get(line[:3], _DIFF_STYLES.get(line[:1], ""))
        console.print(Text(line.rstrip("\r\n"), style=style), soft_wrap=True)


def sha_of(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")  # UTC, as the store keeps it


async def put_mapping(hub: Hub, name: str, text: str, *, by: str, note: str) -> None:
    """``cadastre mappings put``: validate, keep what is on disk, write atomically, version."""
    path = mapping_path(hub.mappings, name)
    try:
        dependants = check_mapping(hub.mappings, name, text)
    except ConfigurationError as exc:
        raise Refused(str(exc)) from None
    await _put(hub.config_history, ConfigKind.MAPPING, name, path, text, by=by, note=note)
    if dependants:
        console.print(f"checked with the mappings that extend it: {', '.join(dependants)}")


async def put_ownership(hub: Hub, text: str, *, by: str, note: str) -> None:
    """``cadastre ownership put``: validated as ``ownership check --connections`` would, against
    every tenant's connections, then written and versioned."""
    path = ownership_path(hub)
    await check_ownership(hub, text, "the new registry")
    await _put(
        hub.config_history, ConfigKind.OWNERSHIP, OWNERSHIP_NAME, path, text, by=by, note=note
    )
    console.print("a running hub reads the ownership registry when it restarts")


async def _put(
    history: ConfigHistory, kind: str, name: str, path: Path, text: str, *, by: str, note: str
) -> None:
    if await history.read_found(path) == text:
        made = await history.record(kind, name, text, actor=by, note=note)
        console.print(f"{path.name} holds this text already (version {made.version}): unchanged")
        return
    made = await history.replace_file(kind, name, path, text, actor=by, note=note, doing="put")
    what = f"mapping {name}" if kind == ConfigKind.MAPPING else "ownership registry"
    console.print(f"{what}: version {made.version} written to {path}")
