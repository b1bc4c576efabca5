"""``cadastre alerts list | show | resolve | rules``: a tenant's alerts (docs/alerts.md) and the
rules in force. ``rules --check FILE`` validates a rules file without starting a hub, so a file can
be checked before ``CADASTRE_ALERT_RULES`` points at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from cadastre.cli.runtime import console, fail, load_settings, run
from cadastre.errors import CadastreError, ConfigurationError
from cadastre.observe.alert_service import STATES
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import load_rules

if TYPE_CHECKING:
    from datetime import datetime

    from cadastre.bootstrap import Hub
    from cadastre.observe.rules import AlertRules
    from cadastre.ports import Alert

app = typer.Typer(help="Alerts: what needs a person, and the rules that raise them.",
                  no_args_is_help=True)  # fmt: skip

TENANT = typer.Option(..., "--tenant", "-t", help="tenant id")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")
_STYLE = {"critical": "red", "warning": "yellow", "info": "cyan"}


def describe(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id, "tenant": alert.tenant, "rule": alert.rule, "key": alert.key,
        "state": alert.state.value, "severity": alert.severity, "owner": alert.owner,
        "vendor": alert.vendor, "connection": alert.connection, "summary": alert.summary,
        "changed": alert.changed, "since": alert.since.isoformat(), "action": alert.action,
        "rollback": alert.rollback, "facts": dict(alert.facts),
        "occurrences": alert.occurrences, "raised_at": _iso(alert.raised_at),
        "last_seen_at": alert.last_seen_at.isoformat(), "resolved_at": _iso(alert.resolved_at),
        "source": alert.source,
    }  # fmt: skip


@app.command("list")
def list_(
    tenant: str = TENANT,
    state: str = typer.Option(
        "open", "--state", "-s", help=f"one of {', '.join(STATES)} (open: pending and firing)"
    ),
    connection: str | None = typer.Option(None, "--connection", "-c", help="only this one's"),
    rule: str | None = typer.Option(None, "--rule", help="only this rule's"),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=10_000),
    as_json: bool = AS_JSON,
) -> None:
    """The tenant's alerts, newest first (open ones by default)."""
    if state not in STATES:
        fail(f"--state {state!r} is not one of {', '.join(STATES)}")

    async def work(hub: Hub) -> list[Alert]:
        return await hub.alerts.list(tenant, state=state, connection=connection, rule=rule,
                                     limit=limit)  # fmt: skip

    found = run(work)
    if as_json:
        typer.echo(json.dumps([describe(a) for a in found], indent=2))
        return
    if not found:
        console.print("no alerts" if state == "all" else f"no {state} alerts")
        return
    table = Table(title=f"alerts of {tenant} ({state}, {len(found):,} shown)")
    table.add_column("id", no_wrap=True)  # typed back into `show` and `resolve`: never cut
    for name in ("state", "severity", "rule", "where", "summary", "since", "seen"):
        table.add_column(name)
    for a in found:
        where = " / ".join(x for x in (a.vendor, a.connection) if x) or a.key
        table.add_row(
            a.id, a.state.value, Text(a.severity, style=_STYLE.get(a.severity, "")), a.rule,
            where, a.summary, _short(a.since), str(a.occurrences),
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    alert_id: str = typer.Argument(..., metavar="ID"), tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:  # fmt: skip
    """One alert: what changed, since when, and what to do (with the rollback command)."""
    alert = run(lambda hub: hub.alerts.get(tenant, alert_id))
    if as_json:
        typer.echo(json.dumps(describe(alert), indent=2))
        return
    print_alert(alert)


@app.command("resolve")
def resolve(
    alert_id: str = typer.Argument(..., metavar="ID"), tenant: str = TENANT,
    by: str = typer.Option("cli", "--by", help="who resolves it (recorded in the audit log)"),
) -> None:  # fmt: skip
    """Resolve an alert by hand (subsystem alerts wait for this; detector alerts resolve by
    themselves once their condition clears)."""
    alert = run(lambda hub: hub.alerts.resolve(tenant, alert_id, actor=by))
    when = _short(alert.resolved_at) if alert.resolved_at else "-"
    console.print(Text.assemble(("resolved", "green"), f" {alert.id} ({alert.rule}) at {when}"))


@app.command("rules")
def rules(
    check: Path | None = typer.Option(
        None, "--check", help="validate this rules file (nothing starts; nothing changes)"
    ),
    as_json: bool = AS_JSON,
) -> None:
    """The alert rules in force (CADASTRE_ALERT_RULES, else the packaged default), or with
    --check FILE whether a file would load."""
    try:
        path = check if check is not None else load_settings().alert_rules
        loaded = load_rules(path, detectors=DETECTORS)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except CadastreError as exc:
        fail(str(exc), 1)
    if as_json:
        typer.echo(json.dumps({
            "source": loaded.source,
            "rules": [r.model_dump(by_alias=True) for r in loaded],
        }, indent=2))  # fmt: skip
        return
    if check is not None:
        console.print(Text.assemble(("valid", "green"), f": {loaded.source}: {len(loaded)} rules"))
    print_rules(loaded)


def print_alert(alert: Alert) -> None:
    style = _STYLE.get(alert.severity, "")
    console.print(Text.assemble((f"{alert.severity.upper()} ", style), (alert.summary, "bold")))
    rows = [
        ("id", alert.id), ("state", alert.state.value), ("rule", f"{alert.rule} ({alert.key})"),
        ("owner", alert.owner),
        ("vendor / connection", " / ".join(x for x in (alert.vendor, alert.connection) if x)
         or "-"),
        ("what changed", alert.changed), ("since", _short(alert.since)),
        ("raised", _short(alert.raised_at) if alert.raised_at else "not yet (pending)"),
        ("last seen", _short(alert.last_seen_at)), ("occurrences", str(alert.occurrences)),
        ("resolved", _short(alert.resolved_at) if alert.resolved_at else "-"),
        ("what to do", alert.action), ("rollback", alert.rollback or "-"),
        ("source", alert.source),
    ]  # fmt: skip
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if alert.facts:
        console.print("facts:")
        console.print(json.dumps(dict(alert.facts), indent=2, sort_keys=True), soft_wrap=True)


def print_rules(loaded: AlertRules) -> None:
    table = Table(title=f"alert rules ({loaded.source})")
    table.add_column("name", no_wrap=True)
    for name in ("detector", "params", "for", "clear for", "severity", "owner", "rollback"):
        table.add_column(name)
    for r in loaded:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        table.add_row(
            r.name, r.detector, params, f"{r.for_:g} s", f"{r.clear_for:g} s",
            Text(r.severity, style=_STYLE.get(r.severity, "")), r.owner,
            "yes" if r.rollback else "-",
        )  # fmt: skip
    console.print(table)


def _short(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
