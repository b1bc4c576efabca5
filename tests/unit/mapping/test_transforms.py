"""Transforms applied by the mapper to vendor values, and values a transform cannot read."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change, validate_fields
from cadastre.mapping import Rejection
from cadastre.mapping.transforms import TransformError, compile_steps
from tests.unit.mapping.test_mapper import mapped, raw, registry

FILE = """
mapping: t
version: 1
extends: mls/reso
fields: {Sqm: LivingArea, Listed: ListingContractDate, Pool: PoolPrivateYN, Feats: LotFeatures}
transforms:
  LivingArea: [{unit: {from: square_meters, to: square_feet}}]
  LotSizeAcres: [{unit: {from: hectares, to: acres}, places: 4}]
  ListPrice: [{scale: 1000}]
  ListingContractDate: [{date_format: "%m/%d/%Y"}]
  OriginalEntryTimestamp: [{datetime_format: "%m/%d/%Y %H:%M", timezone: America/Chicago}]
  PoolPrivateYN: [{boolean: {"Y": true, "N": false}}]
  LotFeatures: [{split: ";"}]
"""


@pytest.mark.parametrize(
    ("vendor", "value", "field", "expected"),
    [
        ("Sqm", 100, "LivingArea", Decimal("1076.39")),
        ("Sqm", "92.9", "LivingArea", Decimal("999.97")),
        ("LotSizeAcres", 1, "LotSizeAcres", Decimal("2.4711")),
        ("ListPrice", "350.5", "ListPrice", Decimal("350500.0")),
        ("Listed", "03/07/2026", "ListingContractDate", "2026-03-07"),
        (
            "OriginalEntryTimestamp",
            "07/01/2026 09:30",
            "OriginalEntryTimestamp",
            "2026-07-01T09:30:00-05:00",  # CDT
        ),
        (
            "OriginalEntryTimestamp",
            "01/15/2026 09:30",
            "OriginalEntryTimestamp",
            "2026-01-15T09:30:00-06:00",  # CST
        ),
        ("Pool", "y", "PoolPrivateYN", True),
        ("Pool", "N", "PoolPrivateYN", False),
        ("Pool", False, "PoolPrivateYN", False),
        ("Feats", "Corner Lot; Cul-De-Sac;", "LotFeatures", ["CornerLot", "CulDeSac"]),
    ],
)
def test_a_transform_rewrites_the_vendor_value_before_the_contract_sees_it(
    tmp_path: Path, vendor: str, value: Any, field: str, expected: Any
) -> None:
    out = mapped(registry(tmp_path, t=FILE).load("t"), raw({"ListingKey": "L1", vendor: value}))
    assert isinstance(out, Change), out
    assert out.fields[field] == expected
    validate_fields("Listing", out.fields)  # and the contract takes it


@pytest.mark.parametrize(
    ("vendor", "value", "words"),
    [
        ("Sqm", "large", "LivingArea: unit(square_meters->square_feet) cannot read 'large'"),
        ("Sqm", True, "not a number"),
        ("ListPrice", "NaN", "scale(1000) cannot read 'NaN': not a finite number"),
        ("Listed", "2026-03-07", "date_format(%m/%d/%Y) cannot read '2026-03-07'"),
        ("OriginalEntryTimestamp", "soon", "datetime_format(%m/%d/%Y %H:%M) cannot read"),
        ("Pool", "maybe", "PoolPrivateYN: boolean(Y, N) cannot read 'maybe'"),
        ("Feats", 7, "split(;) cannot read 7: not text"),
        # numbers past what the arithmetic holds are bad values, not a crash of the sync
        ("Sqm", 1e30, "unit(square_meters->square_feet) cannot read 1e+30: out of range"),
        ("Sqm", "12345678901234567890123456789", "out of range"),
        ("ListPrice", "9e999999", "scale(1000) cannot read '9e999999': out of range"),
    ],
)
def test_a_value_a_transform_cannot_read_is_an_invalid_value_naming_the_transform(
    tmp_path: Path, vendor: str, value: Any, words: str
) -> None:
    out = mapped(registry(tmp_path, t=FILE).load("t"), raw({"ListingKey": "L1", vendor: value}))
    assert isinstance(out, Rejection)
    assert out.code == "invalid_value"
    assert words in out.reason
    assert "mapping t v1" in out.reason


def test_a_null_passes_through_untransformed(tmp_path: Path) -> None:
    out = mapped(registry(tmp_path, t=FILE).load("t"), raw({"ListingKey": "L1", "Sqm": None}))
    assert isinstance(out, Change)
    assert out.fields["LivingArea"] is None
    assert "LivingArea" not in out.field_confidence


def test_steps_run_in_order() -> None:
    steps, problems = compile_steps([{"scale": 10}, {"unit": {"from": "meters", "to": "feet"}}])
    assert problems == []
    value: Any = "1"
    for _label, step in steps:
        value = step(value)
    assert value == Decimal("32.81")
    with pytest.raises(TransformError):
        steps[0][1]([1, 2])
