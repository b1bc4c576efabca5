"""``cadastre rollback`` and the ``put`` commands as an operator runs them (in-process, on a SQLite
hub in a folder of its own, against the RESO simulator in its own process): a mapping's bad
version quarantines records, a rollback restores the file byte for byte, versions it and replays
the quarantine so those records are applied; bad files, versions and names are refused and
change nothing; a dry run writes nothing; a connection and the ownership registry roll back."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cadastre.cli import app
from cadastre.ownership import default_registry_text
from tests.integration.cli_env import LOOPBACK, simulator

V1 = (
    "mapping: austin\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
    "enums: {StandardStatus: {Sold-ish: Closed}}\n"
)
V2 = "mapping: austin\nversion: 2\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"  # enum map gone

Cli = Callable[..., str]


@pytest.fixture(scope="module")
def mls() -> Iterator[str]:
    yield from simulator(
        "reso", "--port", "0", "--records", "200", "--bad-record-rate", "0.1", "--no-rate-limit"
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)  # ./mappings and ./var land in tmp_path
    for name in [n for n in os.environ if n.startswith("CADASTRE_")]:
        monkeypatch.delenv(name)
    env = {
        "CADASTRE_DATA_DIR": str(tmp_path / "var"), "CADASTRE_LOG_LEVEL": "WARNING",
        "CADASTRE_GATEWAY_ALLOW_HOSTS": json.dumps(LOOPBACK), "COLUMNS": "200",
        "CADASTRE_AUSTIN__CLIENT_ID": "demo-client",
        "CADASTRE_AUSTIN__CLIENT_SECRET": "demo-secret",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, input: str | None = None) -> str:
        result = runner.invoke(app, list(args), input=input)
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result.output

    invoke("tenants", "create", "acme", "--name", "Acme")
    return invoke


def add_reso(cli: Cli, url: str, **config: Any) -> None:
    settings = {"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "gateway": {"allow_hosts": LOOPBACK}, "mapping": "austin", **config}  # fmt: skip
    cli("credentials", "add", "austin", "-t", "acme", "--scheme", "oauth2_client_credentials",
        "--from-env", "CADASTRE_AUSTIN")  # fmt: skip
    cli("connections", "add", "austin", "-t", "acme", "--system", "mls", "--connector",
        "mls/reso", "--credential", "austin", "--config", json.dumps(settings))  # fmt: skip


def rows(output: str) -> list[list[str]]:
    """The cells of each row of the rich tables in ``output``."""
    return [
        [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


def versions(cli: Cli, *what: str) -> list[list[str]]:
    return rows(cli("rollback", "history", *what))


def quarantined(cli: Cli) -> dict[str, dict[str, Any]]:
    shown = json.loads(cli("quarantine", "list", "--json", "--limit", "10000"))
    return {e["id"]: e for e in shown["entries"]}


def recorded(tmp_path: Path) -> int:
    """How many mapping versions the hub's SQLite file holds (read without a hub, which
    would version what it reads)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "cadastre.db")) as db:
        return int(
            db.execute("SELECT count(*) FROM config_versions WHERE kind = 'mapping'").fetchone()[0]
        )


def put(cli: Cli, tmp_path: Path, name: str, text: str, *args: str, code: int = 0) -> str:
    file = tmp_path / f"new-{name.replace('/', '-')}.yaml"
    file.write_text(text)
    return cli("mappings", "put", name, str(file), *args, code=code)


def test_a_rollback_restores_the_mapping_and_applies_what_the_bad_version_set_aside(
    cli: Cli, tmp_path: Path, mls: str
) -> None:
    assert "version 1 written" in put(cli, tmp_path, "austin", V1, "--note", "first cut")
    add_reso(cli, mls, page_size=50)
    mapping = tmp_path / "mappings" / "austin.yaml"
    mapping.write_text(V2)  # a hand edit that drops the enum map
    assert "quarantined because unknown enum value" in cli("sync", "austin", "-t", "acme")
    history = versions(cli, "mapping", "austin")  # the sync's read versioned the hand edit
    assert [(r[0], r[2], r[3]) for r in history] == [
        ("1", "cli", "first cut"), ("2", "hub", "found on disk"),
    ]  # fmt: skip
    assert history[1][5] == "on disk"
    before = quarantined(cli)
    enums = {i for i, e in before.items() if e["code"] == "unknown_enum_value"}
    assert enums, "the simulator's bad records include unknown StandardStatus values"

    dry = cli("rollback", "mapping", "austin", "--to", "previous", "--dry-run")
    assert "+enums: {StandardStatus: {Sold-ish: Closed}}" in dry
    assert "quarantine replay: austin (tenant acme)" in dry
    assert "dry run: nothing written" in dry
    assert mapping.read_text() == V2
    assert len(versions(cli, "mapping", "austin")) == 2
    assert quarantined(cli) == before

    out = cli("rollback", "mapping", "austin", "--to", "1", "--yes", "--by", "ann")
    assert "version 1 restored as version 3" in out
    assert mapping.read_bytes() == V1.encode()
    [table] = [r for r in rows(out) if r[:2] == ["acme", "austin"]]
    assert table[2:] == [str(len(before)), str(len(enums)), str(len(before) - len(enums))]
    latest = versions(cli, "mapping", "austin")[-1]
    assert (latest[0], latest[2], latest[3], latest[5]) == ("3", "ann", "rollback to v1", "on disk")
    after = quarantined(cli)
    assert after.keys() == before.keys() - enums  # applied: their entries are resolved
    assert all(e["code"] != "unknown_enum_value" for e in after.values())

    again = cli("rollback", "mapping", "austin", "--to", "1", "--yes")
    assert "nothing to do" in again
    assert len(versions(cli, "mapping", "austin")) == 3


def test_put_refuses_a_broken_file_and_loses_nothing(cli: Cli, tmp_path: Path) -> None:
    put(cli, tmp_path, "austin", V1)
    mapping = tmp_path / "mappings" / "austin.yaml"
    refused = {
        "not valid YAML": "mapping: austin\nversion: [\n",
        "a registry file's name must match": V2.replace("mapping: austin", "mapping: denver"),
        "StandardStatus.Sold-ish": V2 + "enums: {StandardStatus: {Sold-ish: Nope}}\n",
        "mapping 'no-such-base' not found": V2.replace("mls/reso", "no-such-base"),
    }
    for reason, text in refused.items():
        assert reason in put(cli, tmp_path, "austin", text, code=1)
        assert mapping.read_bytes() == V1.encode()
    assert "family default" in put(cli, tmp_path, "mls/reso", V1, code=2)
    missing = cli("mappings", "put", "austin", str(tmp_path / "nope.yaml"), code=2)
    assert "cannot read mapping file" in missing
    assert [r[0] for r in versions(cli, "mapping", "austin")] == ["1"]
    assert sorted(p.name for p in mapping.parent.iterdir()) == ["austin.yaml"]  # no temporary

    assert "unchanged" in put(cli, tmp_path, "austin", V1)
    assert "version 2 written" in put(cli, tmp_path, "austin", V2)
    assert mapping.read_bytes() == V2.encode()


def test_bad_versions_and_unknown_names_are_clear_errors(cli: Cli, tmp_path: Path) -> None:
    put(cli, tmp_path, "austin", V1)
    assert "only version 1; there is no previous" in cli(
        "rollback", "mapping", "austin", "--to", "previous", "--yes", code=2
    )
    put(cli, tmp_path, "austin", V2)
    for bad, says in [("7", "has no version 7 (it has 1 to 2)"), ("0", "numbered from 1"),
                      ("last", "not a version number or 'previous'")]:  # fmt: skip
        assert says in cli("rollback", "mapping", "austin", "--to", bad, "--yes", code=2)
    assert "no versions of mapping 'denver'" in cli(
        "rollback", "mapping", "denver", "--to", "1", "--yes", code=2
    )
    assert "not found" in cli("rollback", "history", "mapping", "denver", code=2)
    assert "family default" in cli("rollback", "mapping", "mls/reso", "--to", "1", code=2)
    assert "does not exist" in cli(
        "rollback", "connection", "nope", "-t", "acme", "--to", "1", "--yes", code=2
    )
    assert "does not exist" in cli("rollback", "history", "connection", "nope", "-t", "x", code=2)
    # declining the question changes nothing
    assert "nothing changed" in cli(
        "rollback", "mapping", "austin", "--to", "1", input="n\n", code=1
    )
    assert (tmp_path / "mappings" / "austin.yaml").read_bytes() == V2.encode()
    assert len(versions(cli, "mapping", "austin")) == 2


def test_a_hand_edit_nobody_read_is_kept_when_a_rollback_overwrites_it(
    cli: Cli, tmp_path: Path
) -> None:
    put(cli, tmp_path, "austin", V1)
    put(cli, tmp_path, "austin", V2)
    mapping = tmp_path / "mappings" / "austin.yaml"
    edited = V2 + "# tried something\n"
    mapping.write_text(edited)  # not read by the hub yet
    dry = cli("rollback", "mapping", "austin", "--to", "previous", "--dry-run")
    assert "austin.yaml (v3, now)" in dry  # the edit counts as the current version...
    assert "austin.yaml (v2)" in dry  # ...so "previous" is the last one recorded
    assert "nothing changed" in cli(
        "rollback", "mapping", "austin", "--to", "1", input="n\n", code=1
    )
    assert mapping.read_text() == edited
    assert recorded(tmp_path) == 2  # neither the dry run nor the "no" recorded the edit
    assert len(versions(cli, "mapping", "austin")) == 3  # reading it did: v3, found on disk
    mapping.write_text(edited + "# and more\n")
    cli("rollback", "mapping", "austin", "--to", "1", "--yes")
    history = versions(cli, "mapping", "austin")
    assert [(r[0], r[2], r[3]) for r in history[3:]] == [
        ("4", "hub", "found on disk before rollback"), ("5", "cli", "rollback to v1"),
    ]  # fmt: skip
    assert mapping.read_bytes() == V1.encode()


def test_a_version_that_no_longer_loads_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "texas.yaml").write_text(
        "mapping: texas\nversion: 1\nextends: mls/reso\n"
    )
    put(cli, tmp_path, "austin", V1.replace("mls/reso", "texas"))
    put(cli, tmp_path, "austin", V2)
    (tmp_path / "mappings" / "texas.yaml").unlink()  # what version 1 extends is gone
    out = cli("rollback", "mapping", "austin", "--to", "1", "--yes", code=1)
    assert "version 1 of mapping 'austin' does not load today" in out
    assert "texas" in out
    assert (tmp_path / "mappings" / "austin.yaml").read_bytes() == V2.encode()


def test_a_connection_rolls_back_to_an_earlier_configuration(
    cli: Cli, tmp_path: Path, mls: str
) -> None:
    add_reso(cli, mls, page_size=50)
    exported = tmp_path / "connections.yaml"
    cli("connections", "export", "-t", "acme", "-o", str(exported))
    exported.write_text(exported.read_text().replace("page_size: 50", "page_size: 7"))
    cli("connections", "import", str(exported), "-t", "acme")
    cli("connections", "pause", "austin", "-t", "acme")  # v3: no configuration change

    dry = cli("rollback", "connection", "austin", "-t", "acme", "--to", "previous", "--dry-run")
    assert '-    "page_size": 7' in dry
    assert '+    "page_size": 50' in dry
    assert len(versions(cli, "connection", "austin", "-t", "acme")) == 3

    out = cli("rollback", "connection", "austin", "-t", "acme", "--to", "previous", "--yes")
    assert "version 1 restored as version 4 (status paused)" in out
    history = versions(cli, "connection", "austin", "-t", "acme")
    assert [(r[0], r[3], r[4]) for r in history] == [
        ("1", "added", "active"), ("2", "imported", "active"), ("3", "paused", "paused"),
        ("4", "rollback to v1", "paused"),
    ]  # fmt: skip
    assert history[3][5] != history[2][5]  # another configuration, another hash
    shown = cli("connections", "export", "-t", "acme")
    assert "page_size: 50" in shown
    assert "nothing to do" in cli(
        "rollback", "connection", "austin", "-t", "acme", "--to", "1", "--yes"
    )
    assert "has no version 9" in cli(
        "rollback", "connection", "austin", "-t", "acme", "--to", "9", "--yes", code=2
    )
    assert "secret" not in json.dumps(history).lower()


def test_the_ownership_registry_is_checked_against_the_connections_before_it_changes(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = default_registry_text()
    theirs = default.replace(
        "  - match: LedgerEntry.*\n    owner: accounting",
        "  - match: LedgerEntry.*\n    owner: pms",
    )
    assert theirs != default
    own = tmp_path / "ownership.yaml"
    own.write_text(theirs)
    # the hub has run on the packaged default so far (version 1)
    assert "CADASTRE_OWNERSHIP_FILE" in cli("ownership", "put", str(own), code=2)
    monkeypatch.setenv("CADASTRE_OWNERSHIP_FILE", str(own))  # the next start reads it: v2
    (tmp_path / "default.yaml").write_text(default)
    assert "version 3 written" in cli("ownership", "put", str(tmp_path / "default.yaml"))
    cli("connections", "add", "books", "-t", "acme", "--system", "accounting", "--connector",
        "mls/reso", "--config", json.dumps({"owns": ["LedgerEntry.*"]}))  # fmt: skip

    refused = cli("rollback", "ownership", "--to", "previous", "--yes", code=1)
    assert "version 2 contradicts the connections of tenant 'acme'" in refused
    assert "LedgerEntry" in refused
    (tmp_path / "theirs.yaml").write_text(theirs)
    assert "contradicts" in cli("ownership", "put", str(tmp_path / "theirs.yaml"), code=1)
    (tmp_path / "bad.yaml").write_text("version: 1\nrules: [\n")
    assert "not valid YAML" in cli("ownership", "put", str(tmp_path / "bad.yaml"), code=1)
    assert own.read_text() == default
    history = versions(cli, "ownership")
    assert [(r[0], r[2], r[5]) for r in history] == [
        ("1", "hub", ""), ("2", "hub", ""), ("3", "cli", "on disk"),
    ]  # fmt: skip

    (tmp_path / "noted.yaml").write_text(default + "# reviewed\n")
    cli("ownership", "put", str(tmp_path / "noted.yaml"))
    assert "dry run" in cli("rollback", "ownership", "--to", "previous", "--dry-run")
    assert own.read_text() == default + "# reviewed\n"
    out = cli("rollback", "ownership", "--to", "previous", "--yes")
    assert "version 3 restored as version 5" in out
    assert own.read_bytes() == default.encode()
    assert versions(cli, "ownership")[-1][3] == "rollback to v3"
