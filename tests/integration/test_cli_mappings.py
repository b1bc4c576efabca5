"""``cadastre mappings`` as a user runs it, against the RESO simulator in its own process."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.cli_env import add_reso, cli, set_up_austin, simulator

RECORDS = 250


@pytest.fixture(scope="module")
def mls() -> Iterator[str]:
    # every record with a defect at 10 %: some of them an unknown StandardStatus
    yield from reso("--bad-record-rate", "0.1")


@pytest.fixture(scope="module")
def grid() -> Iterator[str]:
    yield from reso("--dialect", "mlsgrid")


def reso(*args: str) -> Iterator[str]:
    return simulator("reso", "--port", "0", "--records", str(RECORDS), "--no-rate-limit", *args)


@pytest.fixture
def run(tmp_path: Path):
    invoke = cli(tmp_path, columns=200, stderr=False)
    # no local_prefixes: the simulator's ACT_ fields are unmapped
    set_up_austin(tmp_path, invoke, {"austin": "mapping: austin\nversion: 1\nextends: mls/reso\n"})
    return invoke


def add(run, url: str, name: str = "austin", mapping: str = "austin") -> None:
    add_reso(run, url, name, mapping=mapping, page_size=100)


def stored(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "var" / "cadastre.db") as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def test_check_json_reports_coverage_and_what_is_not_mapped(run, mls: str, tmp_path: Path) -> None:
    add(run, mls)
    report = json.loads(run("mappings", "check", "austin", "--json"))
    assert report["records"] == RECORDS
    assert 0 < report["coverage"] < 1
    assert all(name.startswith("ACT_") for name in report["unmapped_fields"])
    assert report["unmapped_fields"]
    assert 0 < report["dd_coverage"] < 1
    assert "Sold-ish" in report["unmapped_enum_values"]["StandardStatus"]
    assert report["rejected"]["unknown_enum_value"] >= 1
    assert stored(tmp_path) == 0  # a check stores nothing

    # the fixed mapping keeps the local fields: every vendor field is now covered
    (tmp_path / "mappings" / "austin.yaml").write_text(
        "mapping: austin\nversion: 2\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
        "enums: {StandardStatus: {Sold-ish: Closed}}\n"
    )
    fixed = json.loads(run("mappings", "check", "austin", "--json", "--sample", "120"))
    assert fixed["records"] == 120
    assert fixed["coverage"] == 1.0
    assert fixed["unmapped_fields"] == []
    assert fixed["unmapped_enum_values"] == {}


def test_check_prints_a_report_for_a_person(run, mls: str) -> None:
    add(run, mls)
    out = run("mappings", "check", "austin", "--sample", "50")
    assert "records sampled" in out
    assert "coverage" in out
    assert "vendor fields not mapped: ACT_" in out
    assert "RESO Data Dictionary standard names the canonical contract does not carry" in out


def test_check_of_an_mls_grid_feed_with_its_mapping_file(run, grid: str, tmp_path: Path) -> None:
    mapping = (PROJECT_ROOT / "mappings" / "mlsgrid.yaml").read_text(encoding="utf-8")
    (tmp_path / "mappings" / "mlsgrid.yaml").write_text(mapping)
    add(run, grid, name="grid", mapping="mlsgrid")
    report = json.loads(run("mappings", "check", "grid", "--json"))
    assert report["records"] == RECORDS
    assert report["coverage"] == 1.0, report["unmapped_fields"]
    assert report["unmapped_enum_values"] == {}
    assert report["rejected"] == {}


def test_errors_are_one_line_and_exit_2(run, mls: str, tmp_path: Path) -> None:
    out = run("mappings", "check", "nowhere", code=2)
    assert "no tenant has a connection named 'nowhere'" in out
    assert "Traceback" not in out
    (tmp_path / "mappings" / "bad.yaml").write_text(
        "mapping: bad\nversion: 1\nextends: mls/reso\ntransforms: {ListPrice: [{stretch: 2}]}\n"
    )
    out = run("mappings", "check", "--file", "bad", code=2)
    assert "mapping 'bad' (bad.yaml): transforms.ListPrice[0]: a step is one of" in out
    assert "Traceback" not in out
    add(run, mls, name="dallas", mapping="bad")
    out = run("mappings", "check", "dallas", code=2)
    assert "transforms.ListPrice[0]" in out
    out = run("mappings", "check", code=2)
    assert "name a connection" in out


def test_file_check_and_list(run, tmp_path: Path) -> None:
    summary = json.loads(run("mappings", "check", "--file", "austin", "--json"))
    assert summary["valid"] is True
    assert summary["entity"] == "Listing"
    out = run("mappings", "list")
    assert "austin" in out
    assert "mls/reso" in out


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    yield from reso("--dialect", "bridge")


FIFTH = """
mapping: gulf-coast
version: 1
extends: mls/reso
local_prefixes: [BRG_]
fields: {LivingAreaSqM: LivingArea, BRG_Waterfront: WaterfrontYN}
transforms: {LivingArea: [{unit: {from: square_meters, to: square_feet}}]}
defaults: {LivingAreaUnits: SquareFeet}
enums:
  StandardStatus: {AUC: ActiveUnderContract}
  PropertySubType: {Single Family: SingleFamilyResidence, Townhome: Townhouse}
refresh: {every_minutes: 30, overlap_minutes: 5}
payloads: {IDX: {exclude: [ListAgentEmail]}}
"""


def fingerprint() -> dict[str, str]:
    """Every file of the repository's code and mapping registry, by content hash."""
    out: dict[str, str] = {}
    for top in ("src", "mappings"):
        for path in sorted((PROJECT_ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path.relative_to(PROJECT_ROOT))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return out


def test_onboarding_a_fifth_mls_is_a_mapping_file_and_a_connection(
    run, bridge: str, tmp_path: Path
) -> None:
    before = fingerprint()
    (tmp_path / "mappings" / "gulf-coast.yaml").write_text(FIFTH)
    add(run, bridge, name="gulf", mapping="gulf-coast")
    report = json.loads(run("mappings", "check", "gulf", "--json"))
    assert report["coverage"] == 1.0, report["unmapped_fields"]
    assert report["unmapped_enum_values"] == {}
    out = run("sync", "gulf", "-t", "acme")
    assert f"{RECORDS:,}" in out
    assert stored(tmp_path) == RECORDS
    with sqlite3.connect(tmp_path / "var" / "cadastre.db") as db:
        rows = [json.loads(row[0]) for row in db.execute("SELECT data FROM records")]
    # the file's transform and default at work: every area in square feet
    assert {row.get("LivingAreaUnits") for row in rows} == {"SquareFeet"}
    assert fingerprint() == before  # no file of the repository changed
