"""``cadastre keys create --class idx|vow|full``: the key's payload class, stored and listed,
kept by a rotation, and an unknown class refused without a key being made."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli import app

KEY = re.compile(r"cad_(k[0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        output = " ".join(result.output.split())
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{output}"
        return output

    return invoke


def test_keys_carry_a_payload_class(cli: Callable[..., str]) -> None:
    cli("tenants", "create", "acme")
    idx = cli("keys", "create", "-t", "acme", "--scope", "read", "--class", "idx")
    assert "class idx" in idx
    plain = cli("keys", "create", "-t", "acme", "--scope", "read")
    assert "class full" in plain  # the default
    idx_id = KEY.search(idx)
    assert idx_id is not None
    listing = cli("keys", "list", "-t", "acme")
    assert re.search(rf"{idx_id.group(1)} .*read .*idx", listing)
    rotated = cli("keys", "rotate", "-t", "acme", idx_id.group(1))
    new_id = KEY.search(rotated)
    assert new_id is not None
    assert re.search(rf"{new_id.group(1)} .*read .*idx", cli("keys", "list", "-t", "acme"))
    before = len(re.findall(r"k[0-9a-f]{12}", cli("keys", "list", "-t", "acme")))
    refused = cli("keys", "create", "-t", "acme", "--scope", "read", "--class", "mls", code=2)
    assert "mls" in refused
    after = len(re.findall(r"k[0-9a-f]{12}", cli("keys", "list", "-t", "acme")))
    assert after == before == 3  # idx (revoked), its replacement, the full key
