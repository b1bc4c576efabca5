"""The four dialect mapping files in ``mappings/`` read their dialect's records: every good record
becomes a valid canonical change with the base record's facts, and only the simulator's planted
defects are refused."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from cadastre.connectors.mls.reso import CONNECTOR
from cadastre.contract import Change, Operation, validate_fields
from cadastre.errors import ContractError
from cadastre.mapping import MappingRegistry, RecordMapper, withheld_fields
from cadastre.ports import RawRecord
from cadastre.simulators import ResoSimulator
from tests.conftest import PROJECT_ROOT

DIALECTS = ("mlsgrid", "trestle", "bridge", "spark")
RECORDS, BAD_RATE = 400, 0.02


def mapper(name: str) -> RecordMapper:
    registry = MappingRegistry(PROJECT_ROOT / "mappings", {"mls/reso": CONNECTOR.family_mapping})
    return registry.load(name)


def raw(record: dict[str, Any]) -> RawRecord:
    stamp = record.get("ModificationTimestamp")
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        when = None
    return RawRecord("Property", record.get("ListingKey"), record, when)


def map_all(name: str, sim: ResoSimulator) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
    """ListingKey -> validated canonical fields, and the count of each refusal code."""
    mapping, good, refused = mapper(name), {}, Counter[str]()
    for key, record in sim.records.items():
        result = mapping.map(raw(dict(record)), tenant="t", connection=name, system="mls")
        if not isinstance(result, Change):
            refused[result.code] += 1
            continue
        try:
            good[key] = validate_fields("Listing", result.fields)
        except ContractError:
            refused["invalid_value"] += 1
    return good, refused


@pytest.mark.parametrize("name", DIALECTS)
def test_at_least_95_percent_map_and_only_defects_are_refused(name: str) -> None:
    sim = ResoSimulator(records=RECORDS, seed=11, dialect=name, bad_record_rate=BAD_RATE)
    good, refused = map_all(name, sim)
    assert len(good) / RECORDS >= 0.95
    assert sum(refused.values()) == len(sim.defects) == round(RECORDS * BAD_RATE)
    assert set(good) == set(sim.records) - set(sim.defects)
    mapping = mapper(name)
    assert not mapping.unknown  # every vendor field is mapped, local or dropped on purpose
    unmapped = {value for values in mapping.unmapped_values.values() for value in values}
    assert unmapped <= {"Sold-ish"}  # the planted defect, nothing else


@pytest.mark.parametrize("name", DIALECTS)
def test_mapped_values_are_the_base_records_facts(name: str) -> None:
    base = ResoSimulator(records=200, seed=5).records
    good, _ = map_all(name, ResoSimulator(records=200, seed=5, dialect=name))
    for key, fields in good.items():
        expected = base[key]
        # validate_fields answers the JSON form: decimals and dates as text
        assert Decimal(fields["ListPrice"]) == expected["ListPrice"]
        if expected["StandardStatus"] == "Active Under Contract":
            assert fields["StandardStatus"] == "ActiveUnderContract"
        assert fields["PropertyType"] == expected["PropertyType"].replace(" ", "")
        assert fields["PropertySubType"] == expected["PropertySubType"].replace(" ", "")
        assert fields["ListingContractDate"] == expected["ListingContractDate"]
        if expected["LivingArea"] is not None:
            assert abs(Decimal(fields["LivingArea"]) - expected["LivingArea"]) <= 1
        if name != "bridge":  # the one region without showing instructions
            assert fields["ShowingInstructions"] == expected["ACT_ShowingInstructions"]


def test_bridge_living_area_comes_back_in_square_feet() -> None:
    good, _ = map_all("bridge", ResoSimulator(records=50, seed=5, dialect="bridge"))
    homes = [fields for fields in good.values() if fields.get("LivingArea") is not None]
    assert homes
    assert all(fields["LivingAreaUnits"] == "SquareFeet" for fields in homes)


def test_mlsgrid_mlgcanview_false_becomes_a_delete() -> None:
    sim = ResoSimulator(records=20, seed=5, dialect="mlsgrid", rate_limit=None)
    (gone,) = sim.delete(count=1)
    mapping = mapper("mlsgrid")
    result = mapping.map(raw(dict(sim.records[gone])), tenant="t", connection="g", system="mls")
    assert isinstance(result, Change)
    assert result.operation is Operation.DELETE
    kept = next(key for key in sim.records if key != gone)
    other = mapping.map(raw(dict(sim.records[kept])), tenant="t", connection="g", system="mls")
    assert isinstance(other, Change)
    assert other.operation is not Operation.DELETE


def test_regional_rules_live_in_the_mapping_files() -> None:
    spark = mapper("spark").spec
    assert spark.refresh is not None
    assert spark.refresh.overlap_minutes == 20
    for name in DIALECTS:
        spec = mapper(name).spec
        idx, vow = withheld_fields(spec, "idx"), withheld_fields(spec, "vow")
        assert {"ListAgentEmail", "ListAgentDirectPhone"} <= idx
        assert vow < idx  # VOW (registered consumers) is withheld less than IDX
        assert withheld_fields(spec, "full") == frozenset()
        assert {"ListingKey", "StandardStatus", "ListPrice"} <= set(spec.required)
