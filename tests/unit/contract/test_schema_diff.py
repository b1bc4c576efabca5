"""``diff_schemas`` and ``cadastre schema diff``: each kind of change, classified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cadastre.cli.schema import app
from cadastre.contract import ENTITY_MODELS, SchemaChange, diff_schemas, export_json_schemas

NULL = {"type": "null"}


def _write(folder: Path, entity: str, properties: dict[str, Any], **extra: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    schema = {"x-entity": entity, "type": "object", "properties": properties, **extra}
    (folder / f"{entity}.json").write_text(json.dumps(schema), encoding="utf-8")


def _diff(tmp_path: Path, old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, bool]]:
    _write(tmp_path / "old", "Thing", {"Field": old})
    _write(tmp_path / "new", "Thing", {"Field": new})
    return [(c.change, c.breaking) for c in diff_schemas(tmp_path / "old", tmp_path / "new")]


def _opt(branch: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [branch, NULL], "default": None}


DECIMAL = {"anyOf": [{"type": "number"}, {"type": "string"}, NULL]}
STATUS = {"type": "string", "enum": ["Active", "Closed"]}

CASES = [
    ("same", _opt({"type": "string"}), _opt({"type": "string"}), []),
    (
        "nullable removed",
        _opt({"type": "string"}),
        {"type": "string"},
        [("no longer nullable", True)],
    ),
    ("nullable added", {"type": "string"}, _opt({"type": "string"}), [("became nullable", False)]),
    (
        "integer to number widens",
        {"type": "integer"},
        {"type": "number"},
        [("type widened: integer -> number", False)],
    ),
    (
        "number to integer narrows",
        {"type": "number"},
        {"type": "integer"},
        [("type narrowed: number -> integer", True)],
    ),
    (
        "decimal to integer narrows and drops strings",
        DECIMAL,
        _opt({"type": "integer"}),
        [("type narrowed: number -> integer", True), ("no longer accepts string", True)],
    ),
    (
        "anyOf branch removed",
        {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        {"type": "string"},
        [("no longer accepts boolean", True)],
    ),
    (
        "anyOf branch added",
        {"type": "string"},
        {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        [("now accepts boolean", False)],
    ),
    (
        "maxLength reduced",
        {"type": "string", "maxLength": 50},
        {"type": "string", "maxLength": 25},
        [("maxLength 50 -> 25", True)],
    ),
    (
        "maxLength raised",
        {"type": "string", "maxLength": 25},
        {"type": "string", "maxLength": 50},
        [("maxLength 25 -> 50", False)],
    ),
    (
        "maxLength added",
        {"type": "string"},
        {"type": "string", "maxLength": 50},
        [("maxLength None -> 50", True)],
    ),
    (
        "minimum raised",
        {"type": "number", "minimum": 0},
        {"type": "number", "minimum": 1},
        [("minimum 0 -> 1", True)],
    ),
    (
        "pattern added",
        {"type": "string"},
        {"type": "string", "pattern": "^[A-Z]{3}$"},
        [("pattern None -> ^[A-Z]{3}$", True)],
    ),
    (
        "format changed",
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        [("format date-time -> date", True)],
    ),
    (
        "enumeration value removed",
        STATUS,
        {"type": "string", "enum": ["Active"]},
        [("enumeration value 'Closed' removed", True)],
    ),
    (
        "enumeration value added",
        STATUS,
        {"type": "string", "enum": ["Active", "Closed", "Hold"]},
        [("enumeration value 'Hold' added", False)],
    ),
    (
        "enumeration imposed on a string",
        {"type": "string"},
        STATUS,
        [("restricted to an enumeration", True)],
    ),
    (
        "list items narrowed",
        {"type": "array", "items": STATUS},
        {"type": "array", "items": {"type": "string", "enum": ["Closed"]}},
        [("items: enumeration value 'Active' removed", True)],
    ),
    (
        "annotations do not count",
        {"type": "string", "title": "Old", "description": "x"},
        {"type": "string", "title": "New"},
        [],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_field_changes_are_classified(
    tmp_path: Path, old: dict[str, Any], new: dict[str, Any], expected: list[tuple[str, bool]]
) -> None:
    assert _diff(tmp_path, old, new) == expected


def test_enum_changes_are_seen_through_refs_in_the_referencing_field(tmp_path: Path) -> None:
    field = {"anyOf": [{"$ref": "#/$defs/Status"}, NULL]}
    _write(tmp_path / "old", "Thing", {"Status": field}, **{"$defs": {"Status": STATUS}})
    narrowed = {"Status": {"type": "string", "enum": ["Active"]}}
    _write(tmp_path / "new", "Thing", {"Status": field}, **{"$defs": narrowed})
    assert diff_schemas(tmp_path / "old", tmp_path / "new") == [
        SchemaChange("Thing", "Status", "enumeration value 'Closed' removed", breaking=True)
    ]


def test_fields_and_entities_added_removed_and_required(tmp_path: Path) -> None:
    text = {"type": "string"}
    _write(tmp_path / "old", "Gone", {})
    _write(tmp_path / "old", "Thing", {"Key": text, "Kept": text, "Dropped": text})
    _write(
        tmp_path / "new",
        "Thing",
        {"Key": text, "Kept": text, "Optional": text, "Mandatory": text},
        required=["Key", "Kept", "Mandatory"],
    )
    _write(tmp_path / "new", "Fresh", {})
    changes = {
        (c.entity, c.field, c.change, c.breaking)
        for c in diff_schemas(tmp_path / "old", tmp_path / "new")
    }
    assert changes == {
        ("Gone", "", "entity removed", True),
        ("Fresh", "", "entity added", False),
        ("Thing", "Dropped", "field removed", True),
        ("Thing", "Optional", "optional field added", False),
        ("Thing", "Mandatory", "new required field", True),
        ("Thing", "Kept", "became required", True),
        ("Thing", "Key", "became required", True),
    }


def test_a_real_breaking_change_to_the_exported_contract(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    export_json_schemas(old)
    shutil.copytree(old, new)
    listing = json.loads((new / "Listing.json").read_text(encoding="utf-8"))
    del listing["properties"]["ListPrice"]
    listing["$defs"]["StandardStatus"]["enum"].remove("ComingSoon")
    listing["properties"]["Zoning"] = {"type": "string", "maxLength": 25}  # null refused
    listing["x-schema-version"] = "2.0.0"
    (new / "Listing.json").write_text(json.dumps(listing), encoding="utf-8")

    changes = {(c.field, c.change, c.compatibility) for c in diff_schemas(old, new)}
    assert changes == {
        ("", "schema version 1.0.0 -> 2.0.0", "compatible"),
        ("ListPrice", "field removed", "breaking"),
        ("StandardStatus", "enumeration value 'ComingSoon' removed", "breaking"),
        ("Zoning", "no longer nullable", "breaking"),
    }


# ------------------------------------------------------------------------------------ the CLI


def test_cli_exits_0_when_compatible_and_1_when_breaking(tmp_path: Path) -> None:
    runner = CliRunner()
    old, new = tmp_path / "old", tmp_path / "new"
    result = runner.invoke(app, ["export", "--out", str(old)])
    assert result.exit_code == 0, result.output
    assert len(list(old.glob("*.json"))) == len(ENTITY_MODELS)
    shutil.copytree(old, new)

    result = runner.invoke(app, ["diff", str(old), str(new)])
    assert (result.exit_code, "no changes") == (0, result.output.strip())

    _write(new, "Extra", {})
    result = runner.invoke(app, ["diff", str(old), str(new)])
    assert result.exit_code == 0, result.output
    assert "entity added" in result.output
    assert "compatible" in result.output

    (new / "Member.json").unlink()
    result = runner.invoke(app, ["diff", str(old), str(new)])
    assert result.exit_code == 1, result.output
    assert "Member" in result.output
    assert "breaking" in result.output


def test_cli_exits_2_for_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["diff", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2
    assert "not a folder" in result.output
