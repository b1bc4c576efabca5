"""The CLI against a real SQLite store in a temporary folder."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray .env, and ./var lands in tmp_path
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        output = " ".join(result.output.split())  # rich wraps at the runner's 80 columns
        assert result.exit_code == code, (
            f"{args} -> {result.exit_code}\n{output}\n{result.exception}"
        )
        return output

    return invoke


def _database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp_path / "var").glob("cadastre.db*"))


def test_tenant_and_key_lifecycle_never_stores_the_secret(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme", "--name", "Acme Realty")
    cli("tenants", "create", "acme", code=1)
    assert "tenant id" in cli("tenants", "create", "Not Valid", code=2)
    assert "acme" in cli("tenants", "list")

    out = cli("keys", "create", "--tenant", "acme", "--scope", "write", "--label", "etl")
    key = re.search(r"cad_(k[0-9a-f]{12})_([A-Za-z0-9_-]{43})", out)
    assert key is not None
    key_id, secret = key.group(1), key.group(2)
    assert secret.encode() not in _database_bytes(tmp_path)
    listing = cli("keys", "list", "--tenant", "acme")
    assert key_id in listing
    assert secret not in listing

    rotated = cli("keys", "rotate", "--tenant", "acme", key_id)
    assert f"{key_id} revoked" in rotated
    cli("keys", "revoke", "--tenant", "acme", "knotakey00000", code=2)
    cli("keys", "create", "--tenant", "nobody", "--scope", "read", code=2)
    cli("keys", "create", "--tenant", "acme", "--scope", "admin", code=2)


def test_connections_are_versioned_and_round_trip_as_yaml(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme")
    cli("connections", "add", "austin-mls", "--tenant", "acme", "--system", "mls",
        "--connector", "mls/reso", "--credential", "austin-mls",
        "--config", '{"base_url": "https://mls.example/odata"}')  # fmt: skip
    bad = cli("connections", "add", "x", "--tenant", "acme", "--system", "mls",
              "--connector", "mls/reso", "--config", '{"client_secret": "s3cr3t-value"}',
              code=2)  # fmt: skip
    assert "never store secrets" in bad
    assert b"s3cr3t-value" not in _database_bytes(tmp_path)
    cli("connections", "add", "x", "--tenant", "acme", "--system", "mls",
        "--connector", "mls/reso", "--config", "[1]", code=2)  # fmt: skip

    assert "paused (v2)" in cli("connections", "pause", "austin-mls", "--tenant", "acme")
    assert "active (v3)" in cli("connections", "resume", "austin-mls", "--tenant", "acme")
    shown = cli("connections", "show", "austin-mls", "--tenant", "acme")
    for change in ("added", "paused", "resumed"):
        assert change in shown
    cli("connections", "show", "missing", "--tenant", "acme", code=2)

    exported = tmp_path / "connections.yaml"
    cli("connections", "export", "--tenant", "acme", "-o", str(exported))
    assert "austin-mls: unchanged" in cli(
        "connections", "import", str(exported), "--tenant", "acme"
    )
    cli("tenants", "create", "globex")
    assert "austin-mls: added" in cli("connections", "import", str(exported), "--tenant", "globex")
    broken = tmp_path / "broken.yaml"
    broken.write_text("connections: [ {name: a", encoding="utf-8")
    assert "not valid YAML" in cli("connections", "import", str(broken), "--tenant", "acme", code=2)
    assert "austin-mls" in cli("connections", "list", "--tenant", "globex")


def test_audit_verify_reports_every_tenant(cli) -> None:
    cli("tenants", "create", "acme")
    cli("tenants", "create", "globex")
    cli("keys", "create", "--tenant", "acme", "--scope", "read")
    out = cli("audit", "verify")
    assert "acme" in out
    assert "globex" in out
    assert "intact" in out


def test_audit_verify_fails_and_names_the_entry_after_tampering(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme")
    for _ in range(3):
        cli("keys", "create", "--tenant", "acme", "--scope", "read")
    with sqlite3.connect(tmp_path / "var" / "cadastre.db") as db:
        # what someone with file access could do: drop the append-only trigger and edit history
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE tenant = 'acme' AND seq = 3")
    out = cli("audit", "verify", "--tenant", "acme", code=1)
    assert "broken at entry 3" in out


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CADASTRE_DATABASE_URL", "postgresql+psycopg://app:canary-pw-5@127.0.0.1:1/x"
    )
    out = cli("tenants", "list", code=1)
    assert "connection failed" in out
    assert "try again" in out
    assert "canary-pw-5" not in out
    monkeypatch.setenv("CADASTRE_DATABASE_URL", "mysql://app:canary-pw-5@127.0.0.1/x")
    out = cli("tenants", "list", code=2)
    assert "no store for database URL scheme 'mysql'" in out
    assert "canary-pw-5" not in out
