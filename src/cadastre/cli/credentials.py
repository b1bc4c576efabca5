"""``cadastre credentials``: the vault's credentials, by name, per tenant.

Secret values never come from the command line (shell history, the process list): a
``--secret-field`` is prompted for with hidden input, or read one line each from stdin when stdin
is not a terminal; ``--from-env PREFIX`` imports part 1's ``PREFIX__FIELD`` variables. Only
identifiers - ``client_id``, ``username`` - may be given with ``--field``. Nothing here prints a
secret value; listings show field names, key ids, status and expiry.

Longer than most command modules (~540 lines): seven commands, and ``add``'s input checks, which
must refuse a secret on the command line before anything echoes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args, get_origin

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.errors import AlreadyExists, CadastreError, ConfigurationError, CredentialError
from cadastre.observe import SECRETS
from cadastre.ports import CredentialStatus, StoredCredential
from cadastre.vault.schemes import Scheme, check, scheme_spec
from cadastre.vault.tokens import CONSENT_SECONDS

if TYPE_CHECKING:
    from cadastre.ports import SealedSecret

app = typer.Typer(
    help="Credentials in the encrypted vault (secrets are never printed).", no_args_is_help=True
)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")
# Identifiers a vendor prints on its console; everything else a scheme holds is a secret.
ARGV_FIELDS = frozenset({"client_id", "username"})
_OAUTH = {Scheme.OAUTH2_CLIENT_CREDENTIALS, Scheme.OAUTH2_AUTHORIZATION_CODE}
CALLBACK_PATH = "/v1/oauth/callback"
POLL_SECONDS = 1.0  # connect --wait: how often the credential is looked at ...
WAIT_SECONDS = CONSENT_SECONDS  # ... and for how long (a consent URL is good this long)
SPENT_GRACE_SECONDS = 60.0  # a state spent, but no tokens stored after this long: it failed


# ------------------------------------------------------------------------------------ add


def _pairs(values: list[str], option: str, *, quote: bool) -> dict[str, str]:
    """``k=v`` options as a dict. ``quote=False``: a malformed entry is not echoed (a secret may
    have been pasted where a field name belongs)."""
    parsed: dict[str, str] = {}
    for entry in values:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = f" {entry!r}" if quote else ""
            fail(f"{option}{shown} must be <name>=<value>")
        if key in parsed:
            fail(f"{option} {key} is given twice")
        parsed[key] = value
    return parsed


def _meta_value(scheme: str, key: str, value: str) -> Any:
    """A ``--meta`` value as the scheme's meta model wants it: lists are comma-separated, the
    rest is text that pydantic converts (``rotate_every_days=30`` -> 30.0)."""
    try:
        model = scheme_spec(scheme).meta
    except ConfigurationError:
        return value  # the unknown scheme is reported by check()
    info = model.model_fields.get(key)
    annotation = info.annotation if info is not None else None
    kinds = (annotation, *get_args(annotation))
    if any(get_origin(kind) is list for kind in kinds):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _secret_names(scheme: str) -> set[str]:
    try:
        spec = scheme_spec(scheme)
    except ConfigurationError:
        return set()
    return {*spec.needs, *spec.may}


def _from_env(prefix: str) -> dict[str, str]:
    head = f"{prefix.upper()}__"
    found = {
        key[len(head) :].lower(): value
        for key, value in os.environ.items()
        if key.startswith(head) and len(key) > len(head) and value
    }
    if not found:
        fail(f"--from-env {prefix}: no environment variables {head}<FIELD> are set")
    return found


def _read_secret(field: str, interactive: bool) -> str:
    if interactive:
        value = str(typer.prompt(f"{field}", hide_input=True, err=True))
    else:
        line = sys.stdin.readline()
        if not line:
            fail(f"stdin ended before secret field {field} (give one value per line)")
        value = line.removesuffix("\n").removesuffix("\r")
    if not value:
        fail(f"secret field {field} is empty")
    SECRETS.add(value)  # a log line of this process that quotes it is scrubbed
    return value


@app.command(
    "add",
    # Anything typer does not know lands in ctx.args and is refused without being echoed: a
    # secret typed as an argument must not reappear in an error message.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="unique per tenant; connections name it"),
    tenant: str = TENANT,
    scheme: str = typer.Option(..., "--scheme", "-s", help=f"one of {', '.join(Scheme)}"),
    field: list[str] = typer.Option(
        [], "--field", "-f", help="identifier field, name=value (client_id, username only)"
    ),
    secret_field: list[str] = typer.Option(
        [],
        "--secret-field",
        "-S",
        help="secret field name; its value is prompted for (hidden) or read from stdin",
    ),
    from_env: str | None = typer.Option(
        None, "--from-env", help="import every PREFIX__FIELD environment variable"
    ),
    meta: list[str] = typer.Option(
        [], "--meta", "-m", help="non-secret setting, name=value (lists comma-separated)"
    ),
    meta_json: str | None = typer.Option(None, "--meta-json", help="settings as a JSON object"),
    replace: bool = typer.Option(False, "--replace", help="overwrite an existing credential"),
) -> None:
    """Add a credential (or --replace one): its fields sealed, its settings checked."""
    if ctx.args:
        fail(
            f"{len(ctx.args)} unexpected argument(s), not shown (they may be secrets): secret "
            "values are never taken from the command line; name them with --secret-field"
        )
    secrets_known = _secret_names(scheme)
    plain = _pairs(field, "--field", quote=False)
    for key in plain:
        if key not in ARGV_FIELDS:
            fail(
                f"--field {key}: only {', '.join(sorted(ARGV_FIELDS))} may be given on the "
                f"command line; give {key} with --secret-field {key} (prompted, or read from "
                "stdin) or --from-env"
            )
    settings: dict[str, Any] = {}
    if meta_json is not None:
        try:
            loaded = json.loads(meta_json)
        except json.JSONDecodeError as exc:
            fail(f"--meta-json is not JSON: {exc.msg} at character {exc.pos}")
        if not isinstance(loaded, dict):
            fail("--meta-json must be a JSON object")
        settings.update(loaded)
    for key, value in _pairs(meta, "--meta", quote=False).items():
        settings[key] = _meta_value(scheme, key, value)
    leaked = sorted(k for k in settings if k in secrets_known)
    if leaked:
        fail(
            f"settings {', '.join(leaked)} are secret fields: settings are stored in the clear; "
            "give them with --secret-field"
        )

    sources: list[dict[str, str]] = [plain]
    if from_env is not None:
        sources.append(_from_env(from_env))
    asked = list(dict.fromkeys(secret_field))
    names: list[str] = [*asked]
    for source in sources:
        names.extend(source)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        fail(f"field(s) {', '.join(twice)} given more than once")
    try:
        checked = check(name, scheme, set(names), settings)
    except ConfigurationError as exc:
        fail(str(exc))  # before any secret is asked for

    values: dict[str, str] = {}
    for source in sources:
        values.update(source)
    interactive = sys.stdin.isatty()
    for key in asked:
        values[key] = _read_secret(key, interactive)

    status = CredentialStatus.ACTIVE
    if scheme == Scheme.OAUTH2_AUTHORIZATION_CODE and "refresh_token" not in values:
        status = CredentialStatus.PENDING  # usable once a person consents (`connect`)

    async def work(hub: Hub) -> tuple[StoredCredential, bool]:
        if replace:
            try:
                current = await hub.vault.stored(tenant, name)
            except CredentialError:
                current = None
            if current is not None:
                if current.scheme != scheme:
                    raise ConfigurationError(
                        f"credential {name!r} is {current.scheme}, not {scheme}; remove it first"
                    )
                updated = await hub.vault.update(
                    current, secrets=values, drop=set(current.secrets) - set(values),
                    meta=checked, status=status, reason="", expires_at=None,
                    refresh_started_at=None,
                )  # fmt: skip
                return updated, True
        try:
            added = await hub.vault.add(tenant, name, scheme, values, checked, status=status)
        except AlreadyExists as exc:
            raise AlreadyExists(f"{exc}; add --replace to overwrite it") from None
        return added, False

    saved, replaced = run(work)
    console.print(
        Text.assemble(
            "replaced " if replaced else "added ", "credential ", (saved.name, "bold"),
            f" ({saved.scheme}, v{saved.version}; fields: {', '.join(sorted(saved.secrets))})",
        )
    )  # fmt: skip
    if saved.status is CredentialStatus.PENDING:
        console.print(
            f"it needs consent: run `cadastre credentials connect {name} --tenant {tenant}`"
        )


# ----------------------------------------------------------------------------------- list


def relative(when: datetime, now: datetime) -> str:
    """``in 54 min`` / ``3 min ago``: the distance from ``now``, in its largest sensible unit."""
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    if span < 90:
        text = f"{span:.0f} s"
    elif span < 90 * 60:
        text = f"{span / 60:.0f} min"
    elif span < 48 * 3600:
        text = f"{span / 3600:.0f} h"
    else:
        text = f"{span / 86400:.0f} d"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _expires(stored: StoredCredential, now: datetime) -> str:
    if stored.expires_at is None:
        return ""
    text = relative(stored.expires_at, now)
    return text if stored.expires_at > now else f"expired {text}"


def _key_ids(stored: StoredCredential) -> list[str]:
    return sorted({sealed.key_id for sealed in stored.secrets.values()})


def _describe(stored: StoredCredential) -> dict[str, Any]:
    """Everything ``list --json`` and the API say of a credential: no secret value, ever."""
    return {
        "name": stored.name,
        "scheme": stored.scheme,
        "status": stored.status.value,
        "status_reason": stored.status_reason,
        "expires_at": stored.expires_at.isoformat() if stored.expires_at else None,
        "updated_at": stored.updated_at.isoformat(),
        "version": stored.version,
        "fields": sorted(stored.secrets),
        "key_ids": _key_ids(stored),
        "egress_ips": list(stored.meta.get("egress_ips") or []),
    }


@app.command("list")
def list_(
    tenant: str = TENANT,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List credentials: scheme, status, expiry, master key ids (never a secret)."""

    async def work(hub: Hub) -> tuple[list[StoredCredential], datetime]:
        return await hub.vault.all(tenant), hub.clock.now()

    found, now = run(work)
    if as_json:
        typer.echo(json.dumps([_describe(s) for s in found], indent=2))
        return
    table = Table()
    for column in ("name", "scheme", "status", "expires", "updated", "key id", "egress ips"):
        table.add_column(column, overflow="fold")  # ids are not cut short with an ellipsis
    for stored in found:
        reason = f" ({stored.status_reason})" if stored.status_reason else ""
        status = stored.status.value + reason
        table.add_row(
            stored.name, stored.scheme, status, _expires(stored, now),
            relative(stored.updated_at, now), ", ".join(_key_ids(stored)),
            ", ".join(stored.meta.get("egress_ips") or []),
        )  # fmt: skip
    console.print(table)


# ----------------------------------------------------------------------------------- test


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    detail: str


async def _test(hub: Hub, tenant: str, name: str) -> _Outcome:
    try:
        opened = await hub.vault.open(tenant, name, actor="cli", purpose="test")
        stored = opened.stored
        fields = ", ".join(sorted(opened.fields))
        del opened
        if Scheme(stored.scheme) in _OAUTH:
            endpoint, defaults = await hub.token_endpoint(tenant, name)
            sent = hub.tokens.refreshes
            await hub.tokens.access_token(tenant, name, endpoint, actor="cli", defaults=defaults)
            after = await hub.vault.stored(tenant, name)
            until = _expires(after, hub.clock.now())
            how = (
                "the vendor issued an access token" if hub.tokens.refreshes > sent
                else "the stored access token is still good"
            )  # fmt: skip
            return _Outcome(True, how + (f", expires {until}" if until else ""))
        if stored.status is not CredentialStatus.ACTIVE:
            reason = f" ({stored.status_reason})" if stored.status_reason else ""
            return _Outcome(False, f"it is {stored.status.value}{reason}")
        return _Outcome(True, f"{stored.scheme} with fields {fields} (not sent to the vendor)")
    except CadastreError as exc:
        return _Outcome(False, str(exc))


@app.command("test")
def try_credential(name: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Open a credential (audited) and, for OAuth2, get an access token from the vendor."""
    outcome = run(lambda hub: _test(hub, tenant, name))
    if outcome.ok:
        console.print(Text.assemble(("ok", "green"), f": {name}: {outcome.detail}"))
        return
    console.print(Text.assemble(("failed", "red"), f": {name}: {outcome.detail}"))
    raise typer.Exit(1)


# --------------------------------------------------------------------------------- rotate


async def _rotate_one(hub: Hub, tenant: str, name: str) -> StoredCredential:
    endpoint, _ = await hub.token_endpoint(tenant, name)
    return await hub.tokens.rotate_api_key(tenant, name, endpoint, actor="cli")


def _rotated_line(stored: StoredCredential) -> str:
    until = stored.meta.get("previous_valid_until")
    overlap = f"; the previous key works until {until}" if until else ""
    return f"rotated {stored.name} (tenant {stored.tenant}){overlap}"


async def _rotate_due(hub: Hub, tenant: str | None) -> list[tuple[str, str, str | None]]:
    """Every due credential rotated, with a progress bar; (tenant, name, error or None) each."""
    tenants = [tenant] if tenant else [t.id for t in await hub.tenants.all()]
    total = sum([len(await hub.tokens.due_for_rotation(t)) for t in tenants])
    columns = (TextColumn("rotating {task.description}", markup=False), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("", total=total)

        def started(each: str, name: str) -> None:
            if bar.tasks[0].description:  # the previous one is done
                bar.advance(task)
            bar.update(task, description=f"{each}/{name}")

        results = await hub.rotate_due(tenant, actor="cli", started=started)
        bar.update(task, completed=total)
    return results


@app.command("rotate")
def rotate(
    name: str | None = typer.Argument(None, help="the API-key credential to rotate"),
    tenant: str | None = typer.Option(
        None, "--tenant", "-t", help="tenant id (with --due: only this tenant)"
    ),
    due: bool = typer.Option(
        False, "--due", help="rotate every credential whose rotate_every_days has passed"
    ),
) -> None:
    """Rotate an API key at the vendor (the old one is kept for the vendor's overlap)."""
    if due:
        if name is not None:
            fail("give a credential name or --due, not both")
        results = run(lambda hub: _rotate_due(hub, tenant))
        if not results:
            console.print("no credential is due for rotation")
            return
        table = Table("tenant", "credential", "result")
        for each_tenant, each, error in results:
            table.add_row(each_tenant, each, "rotated" if error is None else f"failed: {error}")
        console.print(table)
        if any(error is not None for *_, error in results):
            raise typer.Exit(1)
        return
    if name is None or tenant is None:
        fail("give a credential name and --tenant, or --due")
    stored = run(lambda hub: _rotate_one(hub, tenant, name))
    console.print(_rotated_line(stored))


# -------------------------------------------------------------------------------- connect


def callback_url(public_url: str) -> str:
    return public_url.rstrip("/") + CALLBACK_PATH


def _refresh_token(stored: StoredCredential) -> SealedSecret | None:
    return stored.secrets.get("refresh_token")


async def _wait_for_consent(hub: Hub, tenant: str, name: str, before: StoredCredential) -> str:
    """Poll until the callback stored fresh tokens; the outcome as one line."""
    pending = before.meta.get("pending_state")
    old_token = _refresh_token(before)
    deadline = time.monotonic() + WAIT_SECONDS
    spent_since: float | None = None
    with console.status("waiting for consent in the browser ...", spinner="dots"):
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            now = await hub.vault.stored(tenant, name)
            token = _refresh_token(now)
            spent = now.meta.get("pending_state") is None  # a routine refresh leaves it set
            fresh = token is not None and token != old_token
            if now.status is CredentialStatus.ACTIVE and spent and fresh:
                return ""
            if now.status is CredentialStatus.NEEDS_REAUTH:
                return f"it is needs_reauth ({now.status_reason})"
            state = now.meta.get("pending_state")
            if state is not None and state != pending:
                return "another `connect` started meanwhile; finish that one"
            if state is None:  # the callback spent the state: the code exchange is under way
                spent_since = spent_since or time.monotonic()
                if time.monotonic() - spent_since > SPENT_GRACE_SECONDS:
                    return "the consent came back but no tokens were stored (see the hub's log)"
    return f"no consent within {WAIT_SECONDS / 60:.0f} min; run connect again"


@app.command("connect")
def connect(
    name: str = typer.Argument(..., help="an oauth2_authorization_code credential"),
    tenant: str = TENANT,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the consent is done"),
) -> None:
    """Start an OAuth2 consent: print the URL for a person to open, then wait for the callback."""

    async def work(hub: Hub) -> str:
        redirect_uri = callback_url(hub.settings.public_url)
        url = await hub.tokens.start_consent(tenant, name, redirect_uri=redirect_uri)
        typer.echo("open this URL in a browser and allow access:")
        typer.echo(url)  # raw: rich would wrap it, and a wrapped URL does not paste
        if not wait:
            return ""
        return await _wait_for_consent(hub, tenant, name, await hub.vault.stored(tenant, name))

    failure = run(work)
    if failure:
        fail(failure, 1)
    if wait:
        console.print(Text.assemble(("connected", "green"), f" {name}"))


# ---------------------------------------------------------------------------------- audit


@app.command("audit")
def audit(
    name: str = typer.Argument(...),
    tenant: str = TENANT,
    limit: int = typer.Option(20, min=1, max=1000, help="how many of the latest reads"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The latest decryptions of a credential: who, what for, which fields, when."""

    async def work(hub: Hub) -> list[Any]:
        await hub.vault.stored(tenant, name)  # a name that does not exist is an error
        return list(await hub.vault.reads(tenant, name, limit=limit))

    reads = run(work)
    if as_json:
        rows = [{"at": r.at.isoformat(), "actor": r.actor, "purpose": r.purpose,
                 "fields": list(r.fields)} for r in reads]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("when", "actor", "purpose", "fields", title=f"decryptions of {name}")
    for read in reads:
        table.add_row(
            read.at.isoformat(timespec="seconds"), read.actor, read.purpose, ", ".join(read.fields)
        )
    console.print(table)


# --------------------------------------------------------------------------------- remove


@app.command("remove")
def remove(
    name: str = typer.Argument(...),
    tenant: str = TENANT,
    force: bool = typer.Option(False, "--force", help="remove it even if connections use it"),
) -> None:
    """Delete a credential and its sealed secrets."""

    async def work(hub: Hub) -> None:
        users = [c.name for c in await hub.connections.all(tenant) if c.credential == name]
        if users and not force:
            raise ConfigurationError(
                f"credential {name!r} is used by connection(s) {', '.join(users)}; "
                "pass --force to remove it anyway"
            )
        await hub.vault.delete(tenant, name)

    run(work)
    console.print(f"removed credential {name}")
