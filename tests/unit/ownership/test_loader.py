from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.errors import OwnershipRegistryError
from cadastre.ownership import load_registry, parse_registry


def test_invalid_yaml_names_the_line(catalogue) -> None:
    text = "version: 1\nsystems:\n  mls: {}\nrules:\n  - match: [Listing.*\n"
    with pytest.raises(OwnershipRegistryError, match=r"reg\.yaml: not valid YAML at line \d+"):
        parse_registry(text, catalogue=catalogue, source="reg.yaml")


def test_structure_errors_name_the_rule_and_its_line(catalogue) -> None:
    text = (
        "version: 1\n"
        "systems: {mls: {}}\n"
        "rules:\n"
        "  - match: Listing.*\n"
        "    owner: mls\n"
        "  - match: Listing.City\n"  # line 6: no owner
        "    conflict: whoever\n"
    )
    with pytest.raises(OwnershipRegistryError) as caught:
        parse_registry(text, catalogue=catalogue)
    message = str(caught.value)
    assert "rule 2 (line 6) owner: Field required" in message
    assert "rule 2 (line 6) conflict" in message


def test_contract_errors_carry_the_line(catalogue) -> None:
    text = "version: 1\nsystems: {mls: {}}\nrules:\n  - match: Listing.Nope\n    owner: mls\n"
    with pytest.raises(OwnershipRegistryError, match=r"rule 1 'Listing.Nope', line 4"):
        parse_registry(text, catalogue=catalogue)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("version: 2\nsystems: {mls: {}}\nrules: [{match: Listing.*, owner: mls}]\n", "version"),
        ("version: 1\nsystems: {MLS: {}}\nrules: [{match: Listing.*, owner: MLS}]\n", "lowercase"),
        ("version: 1\nsystems: {mls: {}}\nrules: []\n", "rules"),
        ("version: 1\nsystems: {mls: {}}\nrules: [{match: Listing.*, owner: mls, x: 1}]\n", "x"),
    ],
)
def test_structure_is_checked(catalogue, text: str, expected: str) -> None:
    with pytest.raises(OwnershipRegistryError, match=expected):
        parse_registry(text, catalogue=catalogue)


def test_bare_system_name_reads_as_no_description(catalogue) -> None:
    registry = parse_registry(
        "version: 1\nsystems:\n  mls:\nrules: [{match: Listing.*, owner: mls}]\n",
        catalogue=catalogue,
    )
    assert registry.systems == {"mls": ""}


def test_load_from_a_file(tmp_path: Path, catalogue, registry_text) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(registry_text({"match": "*.*", "owner": "core"}))
    registry = load_registry(path, catalogue=catalogue)
    assert registry.owner_of("Listing", "ListPrice") == "core"
    assert registry.source == str(path)


def test_missing_file_raises_file_not_found(tmp_path: Path, catalogue) -> None:
    with pytest.raises(FileNotFoundError):
        load_registry(tmp_path / "absent.yaml", catalogue=catalogue)


def test_a_key_given_twice_in_a_rule_is_refused_with_its_line(catalogue) -> None:
    text = (
        "version: 1\n"
        "systems: {mls: {}, crm: {}}\n"
        "rules:\n"
        "  - match: Listing.*\n"
        "    owner: mls\n"
        "    owner: crm\n"  # line 6
    )
    with pytest.raises(OwnershipRegistryError) as caught:
        parse_registry(text, catalogue=catalogue, source="reg.yaml")
    message = str(caught.value)
    assert message.startswith("reg.yaml: not valid YAML at line 6")
    assert "duplicate key 'owner'" in message
    assert "line 5" in message


def test_a_second_rules_section_is_refused_not_silently_replacing_the_first(catalogue) -> None:
    text = (
        "version: 1\n"
        "systems: {mls: {}, crm: {}}\n"
        "rules:\n"
        "  - {match: Listing.*, owner: mls}\n"
        "rules:\n"  # line 5
        "  - {match: Listing.City, owner: crm}\n"
    )
    with pytest.raises(OwnershipRegistryError, match=r"line 5.*duplicate key 'rules'"):
        parse_registry(text, catalogue=catalogue)


def test_rule_lines_point_at_the_rules_that_were_loaded(catalogue) -> None:
    text = (
        "version: 1\n"
        "systems: {mls: {}}\n"
        "notes:\n"
        "  rules:\n"  # a nested 'rules' key is not the rules section
        "    - ignored\n"
        "rules:\n"
        "  - match: Listing.*\n"
        "    owner: mls\n"
        "  - match: Listing.City\n"  # line 9: no owner
    )
    with pytest.raises(OwnershipRegistryError, match=r"rule 2 \(line 9\) owner"):
        parse_registry(text, catalogue=catalogue)


def test_a_directory_is_a_clear_registry_error(tmp_path: Path, catalogue) -> None:
    with pytest.raises(OwnershipRegistryError, match="is a directory"):
        load_registry(tmp_path, catalogue=catalogue)


def test_a_file_that_is_not_utf8_is_a_clear_registry_error(tmp_path: Path, catalogue) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_bytes(b"version: 1\nsystems: {mls: {}}\n# caf\xe9\n")
    with pytest.raises(OwnershipRegistryError, match=r"ownership\.yaml.*not UTF-8.*offset 35"):
        load_registry(path, catalogue=catalogue)
