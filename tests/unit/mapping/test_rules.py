"""The newer mapping keys: transforms, defaults, deletion, refresh, payloads, required - how they
load, merge through ``extends``, and how a mistake is refused naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.contract import Operation
from cadastre.errors import MappingError
from cadastre.mapping import MappingSpec, withheld_fields
from cadastre.ports import PayloadClass
from tests.unit.mapping.test_mapper import mapped, raw, registry

HEAD = "mapping: bad\nversion: 1\nextends: mls/reso\n"

GRID = """
mapping: grid
version: 2
extends: mls/reso
local_prefixes: [NWM_]
transforms:
  LivingArea: [{unit: {from: square_meters, to: square_feet}}]
  ListingContractDate: [{date_format: "%m/%d/%Y"}]
  PoolPrivateYN: [{boolean: {"Y": true, "N": false}}]
defaults: {Country: US, LivingAreaUnits: SquareFeet}
deletion: {field: MlgCanView, equals: false}
refresh: {every_minutes: 15, overlap_minutes: 5}
payloads:
  IDX: {exclude: [PrivateRemarks, ShowingInstructions]}
  VOW: {include: [ListPrice, StandardStatus, City]}
required: [BedroomsTotal]
"""


def test_a_file_with_every_new_key_loads_and_merges_over_the_family(tmp_path: Path) -> None:
    mapper = registry(tmp_path, grid=GRID).load("grid")
    spec = mapper.spec
    assert spec.defaults == {"Country": "US", "LivingAreaUnits": "SquareFeet"}
    assert spec.deletion is not None
    assert spec.deletion.equals is False
    assert spec.refresh is not None
    assert spec.refresh.every_minutes == 15
    # the family's required fields, then the file's
    assert spec.required[0] == "ListingKey"
    assert spec.required[-1] == "BedroomsTotal"


def test_later_files_override_the_new_keys_field_by_field() -> None:
    base = MappingSpec(
        mapping="b",
        version=1,
        transforms={"ListPrice": [{"scale": 2}], "LivingArea": [{"scale": 3}]},
        defaults={"Country": "US"},
        required=["ListPrice"],
        payloads={"IDX": {"exclude": ["PrivateRemarks"]}},  # type: ignore[dict-item]
        refresh={"every_minutes": 60},  # type: ignore[arg-type]
    )
    top = MappingSpec(
        mapping="t",
        version=1,
        transforms={"ListPrice": [{"scale": 0.5}]},
        defaults={"City": "Austin"},
        required=["City", "ListPrice"],
        payloads={"VOW": {"exclude": ["ListPrice"]}},  # type: ignore[dict-item]
    )
    merged = top.over(base)
    assert merged.transforms == {"ListPrice": [{"scale": 0.5}], "LivingArea": [{"scale": 3}]}
    assert merged.defaults == {"Country": "US", "City": "Austin"}
    assert merged.required == ["ListPrice", "City"]
    assert set(merged.payloads) == {"IDX", "VOW"}
    assert merged.refresh is not None
    assert merged.refresh.every_minutes == 60


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("transforms: {NoSuch: [{scale: 2}]}", "transforms.NoSuch: not a field of Listing"),
        ("transforms: {ListPrice: [{stretch: 2}]}", "transforms.ListPrice[0]: a step is one of"),
        ("transforms: {ListPrice: [{scale: x}]}", "transforms.ListPrice[0]: scale takes a number"),
        (
            "transforms: {LivingArea: [{unit: {from: acres, to: feet}}]}",
            "transforms.LivingArea[0]: unit: cannot convert acres (area) to feet",
        ),
        (
            "transforms: {LivingArea: [{unit: {from: furlongs, to: feet}}]}",
            "units are",
        ),
        (
            "transforms: {ModificationTimestamp: [{datetime_format: '%Y %H'}]}",
            "needs a 'timezone'",
        ),
        (
            "transforms: {ModificationTimestamp: [{datetime_format: '%Y', timezone: Mars/Base}]}",
            "unknown timezone 'Mars/Base'",
        ),
        ("transforms: {City: [{split: ';', timezone: UTC}]}", "'timezone' goes with"),
        ("transforms: {PoolPrivateYN: [{boolean: {Y: 1}}]}", "boolean takes"),
        ("transforms: {ListPrice: {scale: 2}}", "transforms.ListPrice"),
        ("defaults: {NoSuch: 1}", "defaults.NoSuch: not a field of Listing"),
        ("defaults: {StandardStatus: Sold}", "defaults.StandardStatus: not one of the values"),
        ("defaults: {BedroomsTotal: many}", "defaults.BedroomsTotal:"),
        ("deletion: {field: MlgCanView}", "deletion.equals"),
        ("deletion: {equals: false}", "deletion.field"),
        ("refresh: {every_minutes: 0}", "refresh.every_minutes"),
        ("refresh: {overlap_minutes: 5}", "refresh.every_minutes"),
        ("payloads: {RETS: {exclude: [City]}}", "payloads.RETS"),
        ("payloads: {IDX: {exclude: [Nope]}}", "payloads.IDX.exclude: 'Nope' is not a field"),
        ("payloads: {IDX: {exclude: [City], include: [City]}}", "exactly one of"),
        ("payloads: {IDX: {}}", "exactly one of"),
        ("required: [Nope]", "required: 'Nope' is not a field of Listing"),
    ],
)
def test_a_bad_new_key_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(MappingError) as caught:
        registry(tmp_path, bad=HEAD + text + "\n").load("bad")
    message = str(caught.value)
    assert "bad.yaml" in message
    assert words in message


def test_the_deletion_rule_turns_a_record_into_a_delete(tmp_path: Path) -> None:
    mapper = registry(tmp_path, grid=GRID).load("grid")
    gone = mapped(mapper, raw({"ListingKey": "L1", "MlgCanView": False, "StandardStatus": "??"}))
    assert not isinstance(gone, Exception)
    assert getattr(gone, "operation", None) is Operation.DELETE
    assert gone.fields == {}  # type: ignore[union-attr]
    assert gone.origin.external_id == "L1"  # type: ignore[union-attr]
    kept = mapped(mapper, raw({"ListingKey": "L1", "MlgCanView": True, "City": "Austin"}))
    assert getattr(kept, "operation", None) is Operation.UPSERT
    assert "MlgCanView" not in kept.fields  # type: ignore[union-attr]
    # a 0 is not false: a feed's types are kept apart
    zero = mapped(mapper, raw({"ListingKey": "L1", "MlgCanView": 0, "City": "Austin"}))
    assert getattr(zero, "operation", None) is Operation.UPSERT
    assert mapper.unknown == {}  # the rule's field is consumed, not reported as unmapped
    assert "MlgCanView" in mapper.vendor_fields(frozenset({"MlgCanView", "ListingKey"}))


def test_defaults_fill_what_the_vendor_leaves_out_or_sends_empty(tmp_path: Path) -> None:
    mapper = registry(tmp_path, grid=GRID).load("grid")
    out = mapped(mapper, raw({"ListingKey": "L1", "LivingAreaUnits": None}))
    assert getattr(out, "fields", None) == {
        "ListingKey": "L1",
        "LivingAreaUnits": "SquareFeet",
        "Country": "US",
    }
    out = mapped(mapper, raw({"ListingKey": "L1", "Country": "CA"}))
    assert out.fields["Country"] == "CA"  # type: ignore[union-attr]


def test_payload_rules_say_which_fields_a_class_withholds(tmp_path: Path) -> None:
    spec = registry(tmp_path, grid=GRID).load("grid").spec
    assert withheld_fields(spec, "IDX") == {"PrivateRemarks", "ShowingInstructions"}
    assert withheld_fields(spec, PayloadClass.IDX) == {"PrivateRemarks", "ShowingInstructions"}
    vow = withheld_fields(spec, PayloadClass.VOW)
    assert "PrivateRemarks" in vow
    assert "LocalFields" in vow
    assert {"ListPrice", "StandardStatus", "City", "ListingKey"}.isdisjoint(vow)
    assert withheld_fields(spec, PayloadClass.FULL) == frozenset()
    family = registry(tmp_path).load("mls/reso").spec
    assert withheld_fields(family, "idx") == frozenset()
    with pytest.raises(ValueError, match="payload class 'rets'"):
        withheld_fields(spec, "rets")
