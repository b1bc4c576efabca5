"""Bad input reaches the CLI as one clear line and an exit code, never a traceback or a secret.

Each case here is a reproduction from a review: before the fix it crashed (a traceback, a rich
``MarkupError``) or printed something it should not have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli import app

CANARY = "canary-pw-7"

Invoke = Callable[..., str]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.chdir(tmp_path)  # no stray .env, and ./var lands in tmp_path
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    for name in ("CADASTRE_DATABASE_URL", "CADASTRE_LOG_LEVEL", "CADASTRE_LOG_JSON"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        output = result.output
        assert "Traceback" not in output, output
        assert result.exit_code == code, (
            f"{args} -> {result.exit_code}\n{output}\n{result.exception!r}"
        )
        if code != 0:
            # a clean exit, not an exception the runner caught
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(
                result.exception
            )
        return " ".join(output.split())  # rich wraps at the runner's 80 columns

    return invoke


# -- 1. no user- or database-supplied text is read as rich markup ---------------------------------


@pytest.mark.parametrize("text", ["[/x]", "[/bold]", "[red]", "[bold]x[/italic]", "[link=x]y"])
def test_markup_in_a_key_id_is_printed_verbatim(cli: Invoke, text: str) -> None:
    cli("tenants", "create", "acme")
    out = cli("keys", "revoke", "-t", "acme", text, code=2)
    assert "error:" in out
    assert text in out


def test_markup_in_a_tenant_name_is_stored_and_listed_verbatim(cli: Invoke) -> None:
    name = "Acme [/bold] Co [red]x[/red]"
    created = cli("tenants", "create", "acme", "--name", name)
    assert name in created
    assert name in cli("tenants", "list")
    assert "acme" in cli("audit", "verify")


def test_markup_in_key_labels_and_connection_fields_is_printed_verbatim(cli: Invoke) -> None:
    cli("tenants", "create", "acme")
    cli("keys", "create", "-t", "acme", "--scope", "read", "--label", "etl [/b] [red]")
    assert "etl [/b] [red]" in cli("keys", "list", "-t", "acme")
    cli("connections", "add", "austin-mls", "-t", "acme", "--system", "mls",
        "--connector", "mls/reso", "--config", '{"base_url": "[/bold] :smile:"}')  # fmt: skip
    assert "austin-mls" in cli("connections", "list", "-t", "acme")
    shown = cli("connections", "show", "austin-mls", "-t", "acme")
    assert "[/bold] :smile:" in shown
    exported = cli("connections", "export", "-t", "acme")
    assert "[/bold] :smile:" in exported


def test_an_invalid_connection_is_one_line_per_problem(cli: Invoke) -> None:
    cli("tenants", "create", "acme")
    out = cli("connections", "add", "austin-mls", "-t", "acme", "--system", "mls",
              "--connector", "mls/[/x]", code=2)  # fmt: skip
    assert "connector" in out
    assert "errors.pydantic.dev" not in out


def test_markup_in_an_error_message_does_not_crash_the_error_handler(cli: Invoke) -> None:
    out = cli("connections", "show", "[/x]", "-t", "[/y]", code=2)
    assert "error:" in out


# -- 2. bad input is exit 2 with a clear message --------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CADASTRE_LOG_LEVEL", "bogus", "CADASTRE_LOG_LEVEL"),
        ("CADASTRE_LOG_JSON", "maybe", "CADASTRE_LOG_JSON"),
    ],
)
def test_bad_settings_are_a_clear_error(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    out = cli("tenants", "list", code=2)
    assert "error:" in out
    assert expected in out


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        f"postgresql+psycopg://app:{CANARY}@127.0.0.1:notaport/x",
        f"postgresql+psycopg://app:{CANARY}@[::1/x",
        f"app:{CANARY}@127.0.0.1/x",
    ],
)
def test_an_invalid_database_url_is_a_clear_error_without_the_password(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("CADASTRE_DATABASE_URL", url)
    out = cli("tenants", "list", code=2)
    assert "CADASTRE_DATABASE_URL is not a valid database URL" in out
    assert CANARY not in out


def test_importing_a_binary_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    cli("tenants", "create", "acme")
    binary = tmp_path / "connections.yaml"
    binary.write_bytes(b"\xff\xfe\x00connections:\x80\x81")
    out = cli("connections", "import", str(binary), "-t", "acme", code=2)
    assert "not UTF-8" in out


def test_exporting_into_a_missing_folder_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    cli("tenants", "create", "acme")
    out = cli("connections", "export", "-t", "acme", "-o", "missing/dir/x.yaml", code=2)
    assert "cannot write" in out
    assert "x.yaml" in out


def test_schema_export_onto_a_regular_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    existing = tmp_path / "schemas"
    existing.write_text("not a folder", encoding="utf-8")
    out = cli("schema", "export", "-o", str(existing), code=2)
    assert "error:" in out
    assert "schemas" in out
    assert existing.read_text(encoding="utf-8") == "not a folder"


def test_schema_diff_of_malformed_json_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    cli("schema", "export", "-o", "old")
    cli("schema", "export", "-o", "new")
    (tmp_path / "new" / "Listing.json").write_text("{not json", encoding="utf-8")
    out = cli("schema", "diff", "old", "new", code=2)
    assert "Listing.json" in out
    assert "not valid JSON" in out


def test_schema_diff_of_a_non_utf8_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    cli("schema", "export", "-o", "old")
    cli("schema", "export", "-o", "new")
    (tmp_path / "new" / "Listing.json").write_bytes(b"\xff\xfe{}")
    out = cli("schema", "diff", "old", "new", code=2)
    assert "Listing.json" in out
    assert "not UTF-8" in out


def test_ownership_check_of_a_non_utf8_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    binary = tmp_path / "ownership.yaml"
    binary.write_bytes(b"\xff\xfe\x00version: 1\x80")
    out = cli("ownership", "check", str(binary), code=2)
    assert "ownership.yaml" in out
    assert "not UTF-8" in out


def test_ownership_check_with_markup_in_the_path_is_printed_verbatim(
    cli: Invoke, tmp_path: Path
) -> None:
    out = cli("ownership", "check", "[/x]missing.yaml", code=2)
    assert "[/x]missing.yaml" in out


# -- 3. the demo does not print a password ---------------------------------------------------------


def test_demo_prints_the_sqlite_path(cli: Invoke, tmp_path: Path) -> None:
    out = cli("demo", "--records", "20", "--exit-after-sync")
    # the panel may wrap a long temporary path: read it without the borders and spaces
    unwrapped = "".join(ch for ch in out if ch not in "│ ")
    assert str(tmp_path / "var" / "cadastre.db").replace(" ", "") in unwrapped
    assert "aiosqlite" not in out
    assert "///" not in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+psycopg://app:{CANARY}@db.example:5432/cad", "app@db.example:5432/cad"),
        (f"postgresql://app:{CANARY}@db.example/cad?sslmode=require", "app@db.example/cad"),
        ("sqlite+aiosqlite:///var/x.db", "var/x.db"),
        ("postgresql://db.example/cad", "db.example/cad"),
    ],
)
def test_display_url_drops_the_password(url: str, shown: str) -> None:
    from cadastre.cli.demo import display_database_url

    display = display_database_url(url)
    assert CANARY not in display
    assert shown in display


# -- 4. unknown tenants ----------------------------------------------------------------------------


def test_audit_verify_of_an_unknown_tenant_is_an_error(cli: Invoke) -> None:
    cli("tenants", "create", "acme")
    out = cli("audit", "verify", "-t", "nosuchtenant", code=2)
    assert "nosuchtenant" in out
    assert "does not exist" in out
    assert "intact" not in out
