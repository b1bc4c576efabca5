"""``cadastre operators``: who may sign in to the operations console (docs/console.md).

A password is never a command-line argument (it would sit in the shell history and the process
list): it is prompted for twice with hidden input, or read as one line from stdin with
``--password-stdin`` (for scripts: ``printf '%s\\n' "$PW" | cadastre operators add ...``).
"""

from __future__ import annotations

import sys

import typer
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, fail, run
from cadastre.ports import Secret

app = typer.Typer(
    help="Console operators: sign-ins to the operations console (passwords never as arguments).",
    no_args_is_help=True,
)

PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="read the password as one line from stdin instead of a prompt"
)


def read_password(from_stdin: bool) -> Secret:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("stdin ended before the password (give it as one line)")
        return Secret(line.removesuffix("\n").removesuffix("\r"))
    first = str(typer.prompt("password", hide_input=True, err=True))
    second = str(typer.prompt("password again", hide_input=True, err=True))
    if first != second:
        fail("the two passwords differ; nothing was changed")
    return Secret(first)


@app.command("add")
def add(
    username: str = typer.Argument(..., help="the name to sign in with"),
    tenant: str | None = typer.Option(
        None, "--tenant", "-t", help="the one tenant the operator sees; unset: every tenant"
    ),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add an operator (of one tenant, or of every tenant)."""
    password = read_password(password_stdin)
    operator = run(lambda hub: hub.operators.add(username, password, tenant=tenant))
    sees = f"tenant {operator.tenant}" if operator.tenant else "every tenant"
    console.print(Text.assemble("added operator ", (operator.username, "bold"), f" ({sees})"))


@app.command("list")
def list_() -> None:
    """List operators (never a password or its hash)."""

    async def work(hub: Hub) -> None:
        table = Table("username", "tenant", "status", "created", "changed")
        for each in await hub.operators.all():
            table.add_row(
                each.username, each.tenant or "(every tenant)",
                "disabled" if each.disabled else "active",
                each.created_at.isoformat(timespec="seconds"),
                each.updated_at.isoformat(timespec="seconds"),
            )  # fmt: skip
        console.print(table)

    run(work)


@app.command("remove")
def remove(username: str = typer.Argument(...)) -> None:
    """Remove an operator; their sessions end at once."""
    run(lambda hub: hub.operators.remove(username))
    console.print(f"removed operator {username}")


@app.command("passwd")
def passwd(username: str = typer.Argument(...), password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set an operator's password; their sessions end at once."""
    password = read_password(password_stdin)
    run(lambda hub: hub.operators.set_password(username, password))
    console.print(f"password of {username} changed; their sessions have ended")


@app.command("disable")
def disable(username: str = typer.Argument(...)) -> None:
    """Stop an operator signing in (kept, with their sessions ended)."""
    run(lambda hub: hub.operators.set_disabled(username, True))
    console.print(f"disabled operator {username}")


@app.command("enable")
def enable(username: str = typer.Argument(...)) -> None:
    """Let a disabled operator sign in again."""
    run(lambda hub: hub.operators.set_disabled(username, False))
    console.print(f"enabled operator {username}")
