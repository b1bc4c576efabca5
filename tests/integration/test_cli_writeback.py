"""``cadastre writeback mode | stop | resume | status`` and ``cadastre writes list | show``: modes
and kill switches set in the store (and audited), bad input refused with exit 2, writes shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{result.output}"
        return result.output

    return invoke


def test_modes_and_kill_switches(cli) -> None:
    cli("tenants", "create", "acme")
    config = '{"base_url": "https://qbo.example/odata"}'
    cli("connections", "add", "qbo", "--tenant", "acme", "--system", "accounting",
        "--connector", "mls/reso", "--config", config)  # fmt: skip
    status = json.loads(cli("writeback", "status", "-t", "acme", "--json"))
    assert status["connections"][0]["mode"] == "live"
    assert not status["stopped"]
    cli("writeback", "mode", "qbo", "shadow", "-t", "acme")
    cli("writeback", "stop", "-t", "acme", "--connection", "qbo", "--reason", "totals wrong")
    cli("writeback", "stop", "-t", "acme", "--reason", "incident 7")
    status = json.loads(cli("writeback", "status", "-t", "acme", "--json"))
    (qbo,) = status["connections"]
    assert (qbo["mode"], qbo["mode_set"], qbo["stopped"]) == ("shadow", True, True)
    assert (status["stopped"], status["reason"]) == (True, "incident 7")
    assert "0 held" in cli("writeback", "resume", "-t", "acme")
    status = json.loads(cli("writeback", "status", "-t", "acme", "--json"))
    assert not status["stopped"]
    assert status["connections"][0]["stopped"]  # its own switch is still on
    cli("writeback", "resume", "-t", "acme", "--connection", "qbo")
    assert not json.loads(cli("writeback", "status", "-t", "acme", "--json"))["connections"][0][
        "stopped"
    ]
    audit = cli("audit", "verify")  # connection added + 5 switches turned, the chain intact
    assert "│ 6 " in audit or "│ 7 " in audit
    assert "intact" in audit


def test_bad_input_is_refused(cli) -> None:
    cli("tenants", "create", "acme")
    assert "not found" in cli("writeback", "mode", "nope", "live", "-t", "acme", code=2)
    cli("writeback", "mode", "nope", "sometimes", "-t", "acme", code=2)
    assert "reason" in cli("writeback", "stop", "-t", "acme", "--reason", " ", code=2)
    assert "not found" in cli("writes", "show", "wr_nope", "-t", "acme", code=2)
    assert "does not exist" in cli("writes", "list", "-t", "globex", code=2)
    assert "no writes" in cli("writes", "list", "-t", "acme")
    assert json.loads(cli("writes", "list", "-t", "acme", "--json")) == []
