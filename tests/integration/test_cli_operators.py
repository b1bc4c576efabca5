"""``cadastre operators`` as an operator runs it: passwords from stdin or a prompt (never an
argument, never printed), clear refusals that change nothing, and a listing without hashes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli import app
from cadastre.directory.operators import verify_password
from cadastre.store import open_store
from tests.integration.cli_env import CADASTRE, cli

PASSWORD = "correct horse battery staple"


def run(cwd: Path, *args: str, stdin: str = "", code: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADASTRE_")}
    env |= {"COLUMNS": "160", "CADASTRE_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [str(CADASTRE), *args], cwd=cwd, env=env,
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def stored_hash(cwd: Path, username: str) -> str | None:
    async def read() -> str | None:
        store = await open_store(f"sqlite:///{cwd / 'var' / 'cadastre.db'}")
        try:
            found = await store.find_operator(username)
            return None if found is None else found.password_hash
        finally:
            await store.close()

    return asyncio.run(read())


def test_operators_add_list_passwd_remove(tmp_path: Path) -> None:
    cli(tmp_path)("tenants", "create", "acme")
    said = run(tmp_path, "operators", "add", "anna", "--tenant", "acme", "--password-stdin",
               stdin=PASSWORD + "\n")  # fmt: skip
    assert "added operator anna (tenant acme)" in said
    run(tmp_path, "operators", "add", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert verify_password(PASSWORD, stored_hash(tmp_path, "anna") or "")

    listed = run(tmp_path, "operators", "list")
    assert "anna" in listed
    assert "acme" in listed
    assert "every tenant" in listed
    assert "scrypt" not in listed
    assert PASSWORD not in listed

    run(tmp_path, "operators", "passwd", "anna", "--password-stdin",
        stdin="another fine password\r\n")  # fmt: skip
    anna = stored_hash(tmp_path, "anna") or ""
    assert verify_password("another fine password", anna)
    assert not verify_password(PASSWORD, anna)

    assert "removed operator anna" in run(tmp_path, "operators", "remove", "anna")
    assert stored_hash(tmp_path, "anna") is None


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["add", "bob", "--tenant", "nowhere", "--password-stdin"], PASSWORD + "\n",
         "tenant 'nowhere' does not exist"),
        (["add", "bob", "--password-stdin"], "short\n", "at least 10 characters"),
        (["add", "bob", "--password-stdin"], "", "stdin ended before the password"),
        (["add", "b o b", "--password-stdin"], PASSWORD + "\n", "operator name"),
        (["passwd", "nobody", "--password-stdin"], PASSWORD + "\n",
         "operator 'nobody' does not exist"),
        (["remove", "nobody"], "", "operator 'nobody' does not exist"),
        (["disable", "nobody"], "", "operator 'nobody' does not exist"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_clearly_and_changes_nothing(
    tmp_path: Path, args: list[str], stdin: str, says: str
) -> None:
    said = run(tmp_path, "operators", *args, stdin=stdin, code=2)
    assert says in said
    assert "Traceback" not in said
    assert PASSWORD not in said
    assert stored_hash(tmp_path, "bob") is None
    assert stored_hash(tmp_path, "b o b") is None


def test_a_username_taken_is_refused(tmp_path: Path) -> None:
    run(tmp_path, "operators", "add", "root", "--password-stdin", stdin=PASSWORD + "\n")
    said = run(tmp_path, "operators", "add", "root", "--password-stdin",
               stdin="another fine password\n", code=1)  # fmt: skip
    assert "operator 'root' already exists" in said
    assert verify_password(PASSWORD, stored_hash(tmp_path, "root") or "")


def test_the_password_is_prompted_for_twice_and_must_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CADASTRE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CADASTRE_LOG_LEVEL", "WARNING")
    runner = CliRunner()
    differ = runner.invoke(app, ["operators", "add", "root"],
                           input=f"{PASSWORD}\nsomething else entirely\n")  # fmt: skip
    assert differ.exit_code == 2
    assert "the two passwords differ" in differ.output
    assert PASSWORD not in differ.output  # hidden input is not echoed
    same = runner.invoke(app, ["operators", "add", "root"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert same.exit_code == 0, same.output
    assert PASSWORD not in same.output
    assert verify_password(PASSWORD, stored_hash(tmp_path, "root") or "")
