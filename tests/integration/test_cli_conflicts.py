"""The CLI of issue 8's conflict work against a real SQLite store: ownership drift refused at
configuration load (``connections add`` / ``import``, ``ownership check --connections``), and the
review queue listed, shown and resolved, with the resolution in the record's audit trail."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cadastre.cli import app
from cadastre.contract import Change, Origin
from cadastre.ownership import default_registry_text, load_registry
from cadastre.store import SqliteStore
from cadastre.sync import SyncEngine
from cadastre.testing import EPOCH, FakeClock


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CADASTRE_OWNERSHIP_FILE", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        output = " ".join(result.output.split())
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{output}"
        return output

    return invoke


def _add(cli: Any, name: str, system: str, owns: list[str], code: int = 0) -> str:
    config = {"base_url": "https://mls.example/odata", "owns": owns}
    return str(cli("connections", "add", name, "-t", "acme", "--system", system, "--connector",
                   "mls/reso", "--config", json.dumps(config), code=code))  # fmt: skip


def test_two_systems_claiming_the_lease_fields_are_refused(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme", "--name", "Acme")
    _add(cli, "pms-main", "pms", ["Lease.*", "Unit.*"])
    _add(cli, "pms-second", "pms", ["Lease.*"])  # two accounts of one system: no drift
    refused = _add(cli, "books", "accounting", ["Lease.RentAmount", "LedgerEntry.*"], code=2)
    assert "ownership drift" in refused
    assert "systems accounting (connection 'books') and pms (connection 'pms-main')" in refused
    assert "Lease.RentAmount" in refused
    assert "gives it to pms" in refused  # the registry's rule is named too
    wrong = _add(cli, "crm-main", "crm", ["Listing.ListPrice"], code=2)
    assert "'Listing.*'" in wrong
    assert "gives it to mls" in wrong
    listed = cli("connections", "list", "-t", "acme")
    assert "pms-main" in listed
    assert "books" not in listed
    assert "crm-main" not in listed

    books: list[dict[str, Any]] = [
        {"name": "books", "system": "accounting", "connector": "mls/reso",
         "config": {"owns": ["Lease.*"]}},
    ]  # fmt: skip
    document = {"version": 1, "connections": books}
    (tmp_path / "connections.yaml").write_text(json.dumps(document))
    imported = cli("connections", "import", "connections.yaml", "-t", "acme", code=2)
    assert "both claim" in imported
    assert "books" not in cli("connections", "list", "-t", "acme")
    pms_main: dict[str, Any] = {"name": "pms-main", "system": "pms", "connector": "mls/reso",
                                "config": {"owns": ["Lease.*"]}}  # fmt: skip
    both = {"version": 1, "connections": [pms_main, *books]}
    (tmp_path / "both.yaml").write_text(json.dumps(both))
    default = tmp_path / "own.yaml"
    default.write_text(default_registry_text())
    checked = cli("ownership", "check", str(default), "--connections", "both.yaml", code=1)
    assert "systems accounting (connection 'books') and pms (connection 'pms-main')" in checked
    alone = cli("ownership", "check", str(default), "--connections", "connections.yaml", code=1)
    assert "rule" in alone
    assert "'Lease.*'" in alone
    assert "gives Lease records to pms" in alone
    (tmp_path / "fine.yaml").write_text(json.dumps({"version": 1, "connections": [pms_main]}))
    assert "valid" in cli("ownership", "check", str(default), "--connections", "fine.yaml")


def _phone(system: str, value: str, seconds: float, rid: str | None = None) -> Change:
    return Change(
        tenant="acme", entity="Resident", canonical_id=rid,
        fields={"MobilePhone": value} if rid else {"MobilePhone": value, "FirstName": "Ann"},
        origin=Origin(system=system, connection=f"{system}-main", external_id=f"{system}-R1",
                      source_time=EPOCH + timedelta(seconds=seconds)),
    )  # fmt: skip


async def _seed(path: Path) -> str:
    clock = FakeClock()
    store = SqliteStore(path, clock)
    await store.migrate()
    try:
        engine = SyncEngine(store, load_registry(), clock)
        rid = (await engine.apply(_phone("pms", "555-0001", 0))).canonical_id
        await engine.apply(_phone("crm", "555-0002", 60, rid))  # causal: applies
        await engine.apply(_phone("pms", "555-0003", 120, rid))  # concurrent, later: applies
        await engine.apply(_phone("crm", "555-0004", 121, rid))  # concurrent, 1 s: queued
        return rid
    finally:
        await store.close()


def test_conflicts_list_show_resolve_and_the_audit_trail(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme", "--name", "Acme")
    rid = asyncio.run(_seed(tmp_path / "var" / "cadastre.db"))
    assert "state" in cli("conflicts", "list", "-t", "acme")  # the table (80 columns: cut)
    listed = CliRunner().invoke(
        app, ["conflicts", "list", "-t", "acme", "--entity", "Resident", "--json"]
    )
    [found] = [json.loads(line) for line in listed.output.splitlines()]
    assert (found["record_id"], found["field"], found["state"]) == (rid, "MobilePhone", "open")
    assert cli("conflicts", "list", "-t", "acme", "--entity", "Contact", "--json") == ""
    conflict_id = found["id"]
    shown = json.loads(CliRunner().invoke(app, ["conflicts", "show", conflict_id, "-t", "acme"])
                       .output)  # fmt: skip
    assert shown["current"]["value"] == "555-0003"
    assert shown["incoming"]["value"] == "555-0004"
    assert shown["vector"]["v"] == 3
    cli("conflicts", "resolve", conflict_id, "-t", "acme", code=2)  # which resolution?
    cli("conflicts", "resolve", conflict_id, "-t", "acme", "--keep-current", "--value", "1",
        code=2)  # fmt: skip
    cli("conflicts", "show", "cf_unknown", "-t", "acme", code=2)
    done = cli("conflicts", "resolve", conflict_id, "-t", "acme", "--take-incoming", "--by", "ann")
    assert "take_incoming" in done
    assert "resolved already" in cli("conflicts", "resolve", conflict_id, "-t", "acme",
                                     "--keep-current", code=1)  # fmt: skip
    assert conflict_id in cli("conflicts", "list", "-t", "acme", "--state", "resolved", "--json")
    assert cli("conflicts", "list", "-t", "acme", "--json") == ""  # no longer open
    trail = CliRunner().invoke(app, ["audit", "show", "Resident", rid, "-t", "acme", "--json"])
    entries = [json.loads(line) for line in trail.output.splitlines()]
    actions = [e["action"] for e in entries]
    assert actions.count("conflict.queued") == 1
    resolved = [e for e in entries if e["action"] == "conflict.resolved"]
    assert [e["detail"].get("how") for e in resolved] == ["newest_wins", "review"]
    assert resolved[-1]["actor"] == "ann"
    assert resolved[-1]["detail"]["conflict"] == conflict_id
    assert "intact" in cli("audit", "verify", "-t", "acme")
