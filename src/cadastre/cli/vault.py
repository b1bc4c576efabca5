"""``cadastre vault``: the master keys the vault's data keys are wrapped under.

A rotation re-wraps 32-byte data keys, never a secret value, online: readers keep opening rows
under the old key while it stays in the keyring. With a key file (the embedded default) the hub
adds the new key itself (``rotate-master --new-key``) and can drop the old one afterwards
(``--retire``); with keys from the environment the operator sets them on every worker first.
"""

from __future__ import annotations

import base64
import secrets
from collections import Counter
from dataclasses import dataclass

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.errors import ConfigurationError
from cadastre.vault import EnvMasterKeys, FileMasterKeys, LocalKeyring, RewrapReport
from cadastre.vault.crypto import KEY_BYTES, new_key_id

app = typer.Typer(help="The vault's master keys: rotation and status.", no_args_is_help=True)

ENV_STEPS = (
    "the master keys come from the environment: (1) add the new key (`cadastre vault new-key`) "
    "to CADASTRE_VAULT_PREVIOUS_KEYS on every worker and restart them; (2) make it "
    "CADASTRE_VAULT_MASTER_KEY, the old one moving to CADASTRE_VAULT_PREVIOUS_KEYS, restart, "
    "then run `cadastre vault rotate-master`"
)


@dataclass(frozen=True)
class _Rotation:
    added: str | None
    report: RewrapReport
    retired: list[str]
    env: bool


async def _rotate(hub: Hub, new_key: bool, retire: bool) -> _Rotation:
    keys = hub.vault.keys
    if new_key and not isinstance(keys, FileMasterKeys):
        raise ConfigurationError(f"--new-key needs a key file; {ENV_STEPS}")
    added = keys.add_key() if new_key and isinstance(keys, FileMasterKeys) else None
    if added is not None:
        console.print(Text.assemble("new current master key ", (added, "bold")))
    tenants = [t.id for t in await hub.tenants.all()]
    current = keys.current_key_id()
    todo = await hub.vault.left_under_old(tenants, current)
    columns = (TextColumn(f"re-wrapping under {current}", markup=False), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("", total=todo)
        report = await hub.vault.rotate_master(
            tenants, progress=lambda done: bar.advance(task, done)
        )
    retired: list[str] = []
    if retire and report.left == 0 and isinstance(keys, FileMasterKeys):
        retired = keys.retire(keep=())
    return _Rotation(added, report, retired, isinstance(keys, EnvMasterKeys))


@app.command("rotate-master")
def rotate_master(
    new_key: bool = typer.Option(
        False, "--new-key", help="first add a new current key to the key file"
    ),
    retire: bool = typer.Option(
        False, "--retire", help="afterwards, remove keys no secret is wrapped under any more"
    ),
) -> None:
    """Re-wrap every secret's data key under the current master key (online)."""
    done = run(lambda hub: _rotate(hub, new_key, retire))
    report = done.report
    console.print(
        Text.assemble(
            f"re-wrapped {report.rewrapped} secret(s) under ", (report.key_id, "bold"),
            f"; {report.left} left under other keys",
        )
    )  # fmt: skip
    if report.failed:
        shown = ", ".join(report.failed[:10]) + (" ..." if len(report.failed) > 10 else "")
        hint = f"; {ENV_STEPS}" if done.env else ""
        fail(
            f"{len(report.failed)} secret(s) did not open and stay under their old key: "
            f"{shown} (is their master key missing from the keyring?){hint}",
            1,
        )
    if report.left:
        if retire:
            fail(
                f"{report.left} secret(s) are still under other keys, so none is retired; run "
                "rotate-master again",
                1,
            )
        console.print("run it again to finish")
        return
    if done.retired:
        console.print(f"retired key(s): {', '.join(done.retired)}")
    elif retire and done.env:
        console.print(
            "nothing is under the old keys: drop them from CADASTRE_VAULT_PREVIOUS_KEYS on every "
            "worker"
        )
    elif retire:
        console.print("no key to retire")


@app.command("new-key")
def new_key() -> None:
    """Print a fresh master key, <key id>:<base64>, for CADASTRE_VAULT_MASTER_KEY."""
    material = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    typer.echo(f"{new_key_id()}:{material}")


@dataclass(frozen=True)
class _Status:
    source: str
    current: str
    known: list[str]
    secrets: Counter[str]
    credentials: Counter[str]


async def _status(hub: Hub) -> _Status:
    keys = hub.vault.keys
    secrets_by_key: Counter[str] = Counter()
    credentials_by_key: Counter[str] = Counter()
    for tenant in await hub.tenants.all():
        for stored in await hub.vault.all(tenant.id):
            ids = [sealed.key_id for sealed in stored.secrets.values()]
            secrets_by_key.update(ids)
            credentials_by_key.update(set(ids))
    if isinstance(keys, FileMasterKeys):
        source = "key file"
    elif isinstance(keys, EnvMasterKeys):
        source = "environment (CADASTRE_VAULT_MASTER_KEY, CADASTRE_VAULT_PREVIOUS_KEYS)"
    else:
        source = type(keys).__name__
    known = keys.key_ids if isinstance(keys, LocalKeyring) else []
    return _Status(source, keys.current_key_id(), known, secrets_by_key, credentials_by_key)


@app.command("status")
def status() -> None:
    """The current master key, the known ones, and how many secrets each wraps."""
    found = run(_status)
    console.print(Text.assemble("master keys from ", found.source))
    console.print(Text.assemble("current key ", (found.current, "bold")))
    table = Table("key id", "current", "known", "secrets", "credentials")
    for key_id in sorted({*found.known, *found.secrets, found.current}):
        table.add_row(
            key_id, "yes" if key_id == found.current else "",
            "yes" if key_id in found.known or not found.known else "MISSING",
            str(found.secrets[key_id]), str(found.credentials[key_id]),
        )  # fmt: skip
    console.print(table)
    missing = sorted(k for k in found.secrets if found.known and k not in found.known)
    if missing:
        fail(f"secrets are wrapped under key(s) not in the keyring: {', '.join(missing)}", 1)
