from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.cli.ownership import app
from cadastre.contract import ENTITY_MODELS, field_names
from cadastre.ownership import ConflictPolicy, default_registry_text, load_registry

EXPECTED_OWNERS = {
    "Listing": "mls", "Member": "mls", "Office": "mls", "Media": "mls", "OpenHouse": "mls",
    "Property": "core", "Contact": "crm", "Unit": "pms", "Lease": "pms", "Resident": "pms",
    "LedgerAccount": "accounting", "LedgerEntry": "accounting", "Payment": "accounting",
    "Deal": "crm",
}  # fmt: skip


def test_default_loads_against_the_real_contract_and_covers_every_field() -> None:
    registry = load_registry()
    assert set(registry.entities()) == set(ENTITY_MODELS)
    for entity in ENTITY_MODELS:
        assert registry.coverage(entity) == frozenset(), entity
        assert registry.fields(entity) == field_names(entity)


@pytest.mark.parametrize(("entity", "owner"), sorted(EXPECTED_OWNERS.items()))
def test_default_record_owners(entity: str, owner: str) -> None:
    registry = load_registry()
    assert registry.record_owner(entity) == owner
    key = ENTITY_MODELS[entity].key_field
    assert key is not None
    assert registry.owner_of(entity, key) == owner


def test_default_shared_fields_are_the_documented_ones() -> None:
    shared = {
        (e, f): (r.owner, r.writers, r.conflict) for e, f, r in load_registry().shared_fields()
    }
    pms, crm, mls = frozenset({"pms"}), frozenset({"crm"}), frozenset({"mls"})
    # a linked contact and resident share the person fields both ways (docs/identity.md)
    for field in ("FirstName", "LastName", "Email", "MobilePhone", "HomePhone"):
        assert shared[("Resident", field)] == ("pms", crm, ConflictPolicy.NEWEST_WINS)
        assert shared[("Contact", field)] == ("crm", pms, ConflictPolicy.NEWEST_WINS)
    assert load_registry().owner_of("Resident", "ContactKey") == "core"
    assert shared[("Property", "YearBuilt")] == ("core", mls, ConflictPolicy.OWNER_WINS)
    assert load_registry().owner_of("Listing", "PropertyId") == "core"


runner = CliRunner()


def test_check_valid_file_exits_0_with_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(default_registry_text())
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "Listing" in result.output


def test_check_two_owners_exits_1_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(
        "version: 1\nsystems: {mls: {}, core: {}}\nrules:\n"
        "  - {match: Listing.ListP*, owner: mls}\n"
        "  - {match: Listing.*Price, owner: core}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "'mls'" in output
    assert "'core'" in output
    assert "Listing.ListPrice" in output


def test_check_unknown_field_exits_1_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(
        "version: 1\nsystems: {mls: {}}\nrules:\n  - {match: Listing.Nope, owner: mls}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "Listing has no field Nope" in " ".join(result.output.split())


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_check_strict_fails_on_fields_without_owner(tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text("version: 1\nsystems: {mls: {}}\nrules:\n  - {match: Listing.*, owner: mls}\n")
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    result = runner.invoke(app, ["check", "--strict", str(path)])
    assert result.exit_code == 1
    assert "no owner" in result.output


def test_default_command_prints_the_packaged_file() -> None:
    result = runner.invoke(app, ["default"])
    assert result.exit_code == 0
    assert result.output == default_registry_text()
