"""``cadastre credentials`` and ``cadastre vault`` against a real SQLite store in a temporary
folder; secrets go in on stdin, and no output, error or database byte shows one."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from cadastre.cli import app
from cadastre.cli import credentials as credentials_cli
from cadastre.cli.credentials import relative
from cadastre.simulators.server import spawn
from cadastre.vault import EnvMasterKeys

CANARY = "canary-Secret-7f3a9c"  # a value no output may contain


@dataclass(frozen=True)
class Ran:
    code: int
    out: str  # stdout and stderr, whitespace folded (rich wraps at the runner's 80 columns)
    raw: str  # stdout as printed


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray .env, and ./var lands in tmp_path
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    for name in ("CADASTRE_DATABASE_URL", "CADASTRE_VAULT_MASTER_KEY",
                 "CADASTRE_VAULT_PREVIOUS_KEYS", "CADASTRE_VAULT_KEY_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> Ran:
        result = runner.invoke(app, list(args), input=stdin)
        out = " ".join(result.output.split())
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{out}\n{result.exception}"
        return Ran(result.exit_code, out, result.stdout)

    invoke("tenants", "create", "acme")
    return invoke


def _database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp_path / "var").glob("cadastre.db*"))


def add_basic(
    cli: Callable[..., Ran], name: str = "rets", password: str = CANARY, *extra: str, code: int = 0
) -> Ran:
    return cli("credentials", "add", name, "-t", "acme", "--scheme", "basic",
               "--field", "username=agent", "--secret-field", "password", *extra,
               stdin=f"{password}\n", code=code)  # fmt: skip


def test_secrets_come_from_stdin_and_never_come_back(cli, tmp_path: Path) -> None:
    added = cli("credentials", "add", "mls", "-t", "acme", "--scheme", "oauth2_client_credentials",
                "--field", "client_id=app-1", "--secret-field", "client_secret",
                "--meta", "token_url=https://auth.example/token",
                "--meta", "egress_ips=203.0.113.7, 198.51.100.0/24",
                stdin=f"{CANARY}\n")  # fmt: skip
    assert "added credential mls" in added.out
    assert CANARY not in added.out
    assert CANARY.encode() not in _database_bytes(tmp_path)

    listing = cli("credentials", "list", "-t", "acme")
    assert "mls" in listing.out
    assert "active" in listing.out
    assert "203.0.113.7" in listing.out
    assert CANARY not in listing.out
    rows = json.loads(cli("credentials", "list", "-t", "acme", "--json").raw)
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["scheme"], row["status"]) == (
        "mls", "oauth2_client_credentials", "active"
    )  # fmt: skip
    assert row["fields"] == ["client_id", "client_secret"]
    assert row["egress_ips"] == ["203.0.113.7", "198.51.100.0/24"]
    assert len(row["key_ids"]) == 1
    assert CANARY not in json.dumps(rows)
    assert json.loads(cli("credentials", "list", "-t", "nobody", "--json").raw) == []


def test_static_credentials_test_audit_and_remove(cli) -> None:
    add_basic(cli)
    tested = cli("credentials", "test", "rets", "-t", "acme")
    assert "ok: rets: basic with fields password, username" in tested.out
    assert CANARY not in tested.out
    audit = cli("credentials", "audit", "rets", "-t", "acme")
    assert "cli" in audit.out
    assert "test" in audit.out
    reads = json.loads(cli("credentials", "audit", "rets", "-t", "acme", "--json").raw)
    assert [(r["actor"], r["purpose"], r["fields"]) for r in reads] == [
        ("cli", "test", ["password", "username"])
    ]
    cli("credentials", "audit", "missing", "-t", "acme", code=1)

    cli("connections", "add", "feed", "-t", "acme", "--system", "mls",
        "--connector", "mls/reso", "--credential", "rets",
        "--config", '{"base_url": "https://mls.example/odata"}')  # fmt: skip
    used = cli("credentials", "remove", "rets", "-t", "acme", code=2)
    assert "used by connection(s) feed" in used.out
    assert "removed credential rets" in cli("credentials", "remove", "rets", "-t", "acme",
                                            "--force").out  # fmt: skip
    cli("credentials", "remove", "rets", "-t", "acme", code=2)
    assert "failed: rets" in cli("credentials", "test", "rets", "-t", "acme", code=1).out


def test_bad_input_exits_non_zero_and_echoes_no_secret(cli, tmp_path: Path) -> None:
    unknown = cli("credentials", "add", "x", "-t", "acme", "--scheme", "kerberos", code=2)
    assert "unknown credential scheme 'kerberos'" in unknown.out
    missing = cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic",
                  "--field", "username=agent", code=2)  # fmt: skip
    assert "needs secret field(s): password" in missing.out
    extra = cli("credentials", "add", "x", "-t", "acme", "--scheme", "api_key",
                "--secret-field", "api_key", "--secret-field", "token", code=2,
                stdin="a\nb\n")  # fmt: skip
    assert "has no field(s) token" in extra.out

    # a secret on the command line is refused, in every shape, and never repeated
    for argv in (
        ("--field", f"password={CANARY}"),  # a secret field given as an identifier
        ("--field", CANARY),  # no name=
        ("--secret-field", "password", CANARY),  # the value as a stray argument
        (f"--password={CANARY}",),  # an option that does not exist
        ("--meta", f"password={CANARY}"),  # a secret as a setting (stored in the clear)
        ("--meta-json", json.dumps({"password": CANARY})),
    ):
        refused = cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic",
                      "--field", "username=agent", *argv,
                      code=2, stdin="pw-from-stdin\n")  # fmt: skip
        assert CANARY not in refused.out, argv
        assert "error:" in refused.out, argv
    assert CANARY.encode() not in _database_bytes(tmp_path)

    short = cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic",
                "--secret-field", "username", "--secret-field", "password", code=2,
                stdin="agent\n")  # fmt: skip
    assert "stdin ended before secret field password" in short.out
    empty = cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic",
                "--field", "username=agent", "--secret-field", "password",
                code=2, stdin="\n")  # fmt: skip
    assert "secret field password is empty" in empty.out
    bad_ip = cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic",
                 "--field", "username=agent", "--secret-field", "password",
                 "--meta", "egress_ips=not-an-address", code=2, stdin="pw\n")  # fmt: skip
    assert "egress_ips" in bad_ip.out
    for meta_json in ("[1]", "{nope"):
        cli("credentials", "add", "x", "-t", "acme", "--scheme", "basic", "--field",
            "username=agent", "--secret-field", "password", "--meta-json", meta_json, code=2,
            stdin="pw\n")  # fmt: skip
    assert json.loads(cli("credentials", "list", "-t", "acme", "--json").raw) == []


def test_replace_and_import_from_the_environment(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_basic(cli)
    again = add_basic(cli, "rets", "other-password", code=1)
    assert "--replace" in again.out
    replaced = add_basic(cli, "rets", "new-password", "--replace")
    assert "replaced credential rets" in replaced.out
    assert "v2" in replaced.out
    other = cli("credentials", "add", "rets", "-t", "acme", "--scheme", "api_key",
                "--secret-field", "api_key", "--replace", code=2, stdin="k\n")  # fmt: skip
    assert "remove it first" in other.out

    monkeypatch.setenv("AUSTIN_MLS__CLIENT_ID", "austin-app")
    monkeypatch.setenv("AUSTIN_MLS__CLIENT_SECRET", CANARY)
    imported = cli("credentials", "add", "austin", "-t", "acme", "--scheme",
                   "oauth2_client_credentials", "--from-env", "austin_mls",
                   "--meta", "token_url=https://auth.example/token")  # fmt: skip
    assert "fields: client_id, client_secret" in imported.out
    assert CANARY not in imported.out
    assert CANARY.encode() not in _database_bytes(tmp_path)
    none = cli("credentials", "add", "y", "-t", "acme", "--scheme", "basic",
               "--from-env", "NOTHING_HERE", code=2)  # fmt: skip
    assert "NOTHING_HERE__<FIELD>" in none.out


def test_oauth_test_and_api_key_rotation_against_the_auth_simulator(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", "127.0.0.1")
    with spawn("auth", "--api-key", "key-one-abcdef") as url:
        cli("credentials", "add", "cc", "-t", "acme", "--scheme", "oauth2_client_credentials",
            "--field", "client_id=demo-client", "--secret-field", "client_secret",
            "--meta", f"token_url={url}/oauth/token", stdin="demo-secret\n")  # fmt: skip
        tested = cli("credentials", "test", "cc", "-t", "acme")
        assert "ok: cc: the vendor issued an access token, expires in 30 min" in tested.out
        again = cli("credentials", "test", "cc", "-t", "acme")
        assert "ok: cc: the stored access token is still good, expires in 30 min" in again.out
        assert "in 30 min" in cli("credentials", "list", "-t", "acme").out
        cli("credentials", "add", "cc", "-t", "acme", "--scheme", "oauth2_client_credentials",
            "--field", "client_id=demo-client", "--secret-field", "client_secret", "--replace",
            "--meta", f"token_url={url}/oauth/token", stdin="wrong-secret\n")  # fmt: skip
        refused = cli("credentials", "test", "cc", "-t", "acme", code=1)
        assert "failed: cc" in refused.out
        assert "invalid_client" in refused.out
        assert "wrong-secret" not in refused.out

        cli("credentials", "add", "key", "-t", "acme", "--scheme", "api_key",
            "--secret-field", "api_key", "--meta", f"rotate_url={url}/keys/rotate",
            "--meta", "rotate_every_days=30", stdin="key-one-abcdef\n")  # fmt: skip
        rotated = cli("credentials", "rotate", "key", "-t", "acme")
        assert "rotated key (tenant acme); the previous key works until" in rotated.out
        assert "key-one-abcdef" not in rotated.out
        assert "no credential is due" in cli("credentials", "rotate", "--due").out
        stuck = cli("credentials", "rotate", "cc", "-t", "acme", code=1)
        assert "credential 'cc' needs_reauth" in stuck.out
        cli("credentials", "rotate", code=2)
        cli("credentials", "rotate", "key", "--due", code=2)
        fields = json.loads(cli("credentials", "list", "-t", "acme", "--json").raw)
        assert {r["name"]: r["fields"] for r in fields}["key"] == ["api_key", "previous_api_key"]


def test_rotate_due_rotates_every_tenants_overdue_keys(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", "127.0.0.1")
    cli("tenants", "create", "globex")
    with spawn("auth", "--api-key", "acme-key-0001", "--api-key", "globex-key-01") as url:
        for tenant, key in (("acme", "acme-key-0001"), ("globex", "globex-key-01")):
            cli("credentials", "add", "feed", "-t", tenant, "--scheme", "api_key",
                "--secret-field", "api_key", "--meta", f"rotate_url={url}/keys/rotate",
                "--meta", "rotate_every_days=0.000001", stdin=f"{key}\n")  # fmt: skip
        cli("credentials", "add", "dead", "-t", "globex", "--scheme", "api_key",
            "--secret-field", "api_key", "--meta", f"rotate_url={url}/keys/rotate",
            "--meta", "rotate_every_days=0.000001", stdin="unknown-key\n")  # fmt: skip
        time.sleep(0.2)  # 0.000001 days have passed since the last was added
        ran = cli("credentials", "rotate", "--due", code=1)  # one of three is refused
        cells = " ".join(ran.out.replace("│", " ").split())
        assert "acme feed rotated" in cells
        assert "globex feed rotated" in cells
        assert "globex dead failed" in cells
        assert "unknown-key" not in cells


def test_connect_prints_a_pkce_consent_url(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADASTRE_PUBLIC_URL", "https://hub.example/")
    added = cli("credentials", "add", "xero", "-t", "acme", "--scheme",
                "oauth2_authorization_code", "--field", "client_id=app-9",
                "--secret-field", "client_secret",
                "--meta", "authorize_url=https://login.example/authorize",
                "--meta", "token_url=https://login.example/token", stdin=f"{CANARY}\n")  # fmt: skip
    assert "credentials connect xero" in added.out
    assert "pending" in cli("credentials", "list", "-t", "acme").out
    out = cli("credentials", "connect", "xero", "-t", "acme", "--no-wait").raw
    url = next(line for line in out.splitlines() if line.startswith("https://login.example/"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["redirect_uri"] == "https://hub.example/v1/oauth/callback"
    assert (query["response_type"], query["client_id"]) == ("code", "app-9")
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["state"]
    assert CANARY not in out

    monkeypatch.setattr(credentials_cli, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(credentials_cli, "WAIT_SECONDS", 0.05)
    waited = cli("credentials", "connect", "xero", "-t", "acme", code=1)
    assert "no consent within" in waited.out
    cli("credentials", "connect", "rets-missing", "-t", "acme", "--no-wait", code=1)
    add_basic(cli)
    wrong = cli("credentials", "connect", "rets", "-t", "acme", "--no-wait", code=2)
    assert "not an authorization-code credential" in wrong.out


def test_rotate_master_with_a_key_file(cli, tmp_path: Path) -> None:
    add_basic(cli)
    add_basic(cli, "second", "second-password")
    before = json.loads(cli("credentials", "list", "-t", "acme", "--json").raw)
    old_key = before[0]["key_ids"][0]

    rotated = cli("vault", "rotate-master", "--new-key")
    new_key = re.search(r"new current master key (\S+)", rotated.out)
    assert new_key is not None
    assert f"re-wrapped 4 secret(s) under {new_key.group(1)}; 0 left under other keys" in (
        rotated.out
    )
    after = json.loads(cli("credentials", "list", "-t", "acme", "--json").raw)
    assert {k for row in after for k in row["key_ids"]} == {new_key.group(1)}
    assert "ok: rets" in cli("credentials", "test", "rets", "-t", "acme").out

    status = cli("vault", "status").out
    assert f"current key {new_key.group(1)}" in status
    cells = " ".join(status.replace("│", " ").split())
    assert f"{old_key} yes 0 0" in cells
    assert f"{new_key.group(1)} yes yes 4 2" in cells

    retired = cli("vault", "rotate-master", "--retire")
    assert "re-wrapped 0 secret(s)" in retired.out
    assert f"retired key(s): {old_key}" in retired.out
    keyring = orjson.loads((tmp_path / "var" / "vault.keys").read_bytes())
    assert list(keyring["keys"]) == [new_key.group(1)]
    assert "ok: second" in cli("credentials", "test", "second", "-t", "acme").out


def test_new_key_and_rotate_master_with_keys_from_the_environment(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cli("vault", "new-key").raw.strip()
    second = cli("vault", "new-key").raw.strip()
    assert re.fullmatch(r"mk-\d{8}-[0-9a-f]{6}:[A-Za-z0-9+/]{43}=", first)
    keyring = EnvMasterKeys.parse(second, first)
    assert keyring.current_key_id() == second.split(":")[0]
    assert keyring.key_ids == sorted(k.split(":")[0] for k in (first, second))

    monkeypatch.setenv("CADASTRE_VAULT_MASTER_KEY", first)
    add_basic(cli)
    refused = cli("vault", "rotate-master", "--new-key", code=2)
    assert "CADASTRE_VAULT_PREVIOUS_KEYS" in refused.out
    monkeypatch.setenv("CADASTRE_VAULT_MASTER_KEY", second)
    lost = cli("vault", "rotate-master", code=1)  # the old key is not given: nothing opens
    assert "CADASTRE_VAULT_PREVIOUS_KEYS" in lost.out
    assert first.split(":")[1] not in lost.out
    monkeypatch.setenv("CADASTRE_VAULT_PREVIOUS_KEYS", first)
    done = cli("vault", "rotate-master", "--retire")
    assert "re-wrapped 2 secret(s)" in done.out
    assert "drop them from CADASTRE_VAULT_PREVIOUS_KEYS" in done.out
    monkeypatch.delenv("CADASTRE_VAULT_PREVIOUS_KEYS")
    assert "ok: rets" in cli("credentials", "test", "rets", "-t", "acme").out
    assert "environment" in cli("vault", "status").out


def test_relative_times_read_like_a_person_says_them() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert relative(now + timedelta(minutes=54), now) == "in 54 min"
    assert relative(now - timedelta(minutes=3), now) == "3 min ago"
    assert relative(now + timedelta(seconds=20), now) == "in 20 s"
    assert relative(now + timedelta(hours=5), now) == "in 5 h"
    assert relative(now - timedelta(days=9), now) == "9 d ago"


def test_the_consent_url_reaches_a_vendor(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL ``connect`` prints is one the auth simulator accepts: it redirects to the hub's
    callback with a code and the same state."""
    monkeypatch.setenv("CADASTRE_PUBLIC_URL", "http://127.0.0.1:8000")
    with spawn("auth", "--redirect-uri", "http://127.0.0.1:8000/v1/oauth/callback") as url:
        cli("credentials", "add", "xero", "-t", "acme", "--scheme", "oauth2_authorization_code",
            "--field", "client_id=demo-client", "--secret-field", "client_secret",
            "--meta", f"authorize_url={url}/oauth/authorize",
            "--meta", f"token_url={url}/oauth/token", stdin="demo-secret\n")  # fmt: skip
        out = cli("credentials", "connect", "xero", "-t", "acme", "--no-wait").raw
        consent = next(line for line in out.splitlines() if line.startswith(url))
        answer = httpx.get(consent, follow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "http://127.0.0.1:8000/v1/oauth/callback"
    )
    back = parse_qs(location.query)
    assert back["state"] == parse_qs(urlsplit(consent).query)["state"]
    assert back["code"][0]
