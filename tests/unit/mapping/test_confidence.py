"""Data confidence as mapped (docs/confidence.md), and what the mapper counts as it maps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change
from cadastre.mapping import Rejection
from cadastre.mapping.confidence import completeness, freshness, record_score
from tests.unit.mapping.test_mapper import AT, mapped, raw, registry

MLS = """
mapping: mls
version: 1
extends: mls/reso
local_prefixes: [X_]
enums: {StandardStatus: {AUC: ActiveUnderContract}}
transforms: {LivingArea: [{unit: {from: square_meters, to: square_feet}}]}
defaults: {Country: US}
refresh: {every_minutes: 10, overlap_minutes: 5, stale_after_days: 1}
"""
BASE = {
    "ListingKey": "L1", "StandardStatus": "Active", "ListPrice": 100, "PropertyType": "Land",
    "City": "Austin", "PostalCode": "78701", "Country": "US",
}  # fmt: skip  # every required field (the family's six) and no default needed


@pytest.mark.parametrize(
    ("changes", "field_confidence", "confidence"),
    [
        ({}, {}, 1.0),
        ({"StandardStatus": "Active Under Contract"}, {}, 1.0),  # the StandardName: exact
        ({"StandardStatus": "AUC"}, {"StandardStatus": 0.95}, round(6.95 / 7, 4)),  # alias
        ({"StandardStatus": "active-under contract"}, {"StandardStatus": 0.9}, round(6.9 / 7, 4)),
        ({"StandardStatus": "auc"}, {"StandardStatus": 0.9}, round(6.9 / 7, 4)),  # folded alias
        ({"ListPrice": "100"}, {"ListPrice": 0.95}, round(6.95 / 7, 4)),  # coerced text
        ({"LivingArea": 10}, {"LivingArea": 0.95}, round(7.95 / 8, 4)),  # transformed
        ({"Country": None}, {"Country": 0.8}, round(6.8 / 7, 4)),  # defaulted
        ({"City": None, "PostalCode": None}, {}, round(0.5 + 0.5 * 4 / 6, 4)),  # 2 required gone
        (
            {"StandardStatus": "AUC", "City": None},
            {"StandardStatus": 0.95},
            round(6.95 / 7 * (0.5 + 0.5 * 5 / 6), 4),
        ),
    ],
)
def test_confidence_of_a_record_and_its_fields(
    tmp_path: Path, changes: dict[str, Any], field_confidence: dict[str, float], confidence: float
) -> None:
    mapper = registry(tmp_path, mls=MLS).load("mls")
    out = mapped(mapper, raw({**BASE, **changes}))
    assert isinstance(out, Change), out
    assert out.field_confidence == field_confidence
    assert out.confidence == confidence


def test_multi_select_scores_its_worst_item(tmp_path: Path) -> None:
    mapper = registry(tmp_path, mls=MLS).load("mls")
    out = mapped(mapper, raw({**BASE, "ListingTerms": ["Cash", "conventional"]}))
    assert isinstance(out, Change)
    assert out.field_confidence == {"ListingTerms": 0.9}


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(minutes=-5), 1.0),  # a clock ahead of ours: not stale
        (timedelta(hours=20), 1.0),  # within stale_after_days
        (timedelta(days=10), 0.9),  # ten windows
        (timedelta(days=100), 0.8),  # a hundred
        (timedelta(days=5000), 0.7),  # the floor
    ],
)
def test_freshness_is_a_live_listings_age_at_the_source_beyond_its_stale_window(
    tmp_path: Path, age: timedelta, expected: float
) -> None:
    mapper = registry(tmp_path, mls=MLS).load("mls")
    out = mapper.map(raw(BASE), tenant="t", connection="c", system="mls", now=AT + age)
    assert isinstance(out, Change)
    assert out.confidence == pytest.approx(expected, abs=1e-4)
    # without an arrival time freshness plays no part
    assert getattr(mapped(mapper, raw(BASE)), "confidence", None) == 1.0
    # a Closed listing's values are final: its age says nothing about how current they are
    closed = mapper.map(raw({**BASE, "StandardStatus": "Closed"}), tenant="t", connection="c",
                        system="mls", now=AT + age)  # fmt: skip
    assert getattr(closed, "confidence", None) == 1.0
    # without a refresh rule the window is 30 days
    family = registry(tmp_path).load("mls/reso")
    old = family.map(raw(BASE), tenant="t", connection="c", system="mls", now=AT + age * 30)
    assert getattr(old, "confidence", None) == pytest.approx(expected, abs=1e-4)


def test_score_helpers() -> None:
    assert freshness(10, 10) == 1.0
    assert completeness(0, 0) == 1.0
    assert completeness(0, 4) == 0.5
    assert record_score(0, {}, 0, 0, 1.0) == 1.0
    assert record_score(4, {"A": 0.6}, 1, 2, 0.8) == round(3.6 / 4 * 0.75 * 0.8, 4)


def test_the_mapper_counts_fields_values_and_misses(tmp_path: Path) -> None:
    mapper = registry(tmp_path, mls=MLS).load("mls")
    records = [
        {**BASE, "StandardStatus": "AUC", "Flux": 1, "X_Pool": "y", "@odata.etag": "W/1"},
        {**BASE, "StandardStatus": "Sold-ish", "ListingTerms": "Cash, Barter"},
        {**BASE, "StandardStatus": "Sold-ish"},
    ]
    outs = [mapped(mapper, raw(r)) for r in records]
    assert [type(o) for o in outs] == [Change, Rejection, Rejection]
    assert mapper.seen_fields["ListingKey"] == 3
    assert mapper.seen_fields["Flux"] == 1
    assert mapper.seen_fields["X_Pool"] == 1
    assert "@odata.etag" not in mapper.seen_fields
    assert mapper.unknown == {"Flux": 1}
    assert mapper.seen_values["StandardStatus"] == {"AUC": 1, "Sold-ish": 2}
    assert mapper.seen_values["ListingTerms"] == {"Cash": 1, "Barter": 1}
    assert mapper.unmapped_values == {
        "StandardStatus": {"Sold-ish": 2},
        "ListingTerms": {"Barter": 1},
    }
    assert "City" not in mapper.seen_values  # only enumerated fields keep their values


PADDING = [
    "ListOfficeName",
    "PublicRemarks",
    "Directions",
    "SubdivisionName",
    "Zoning",
    "StreetName",
    "StreetNumber",
    "StreetSuffix",
    "UnitNumber",
    "CountyOrParish",
    "ElementarySchool",
    "MiddleOrJuniorSchool",
    "HighSchool",
    "ParcelNumber",
    "ListAgentFullName",
    "ListAgentFirstName",
    "ListAgentLastName",
    "ListAgentMlsId",
    "ListOfficeKey",
    "ListOfficeMlsId",
    "ListOfficePhone",
    "BuyerAgentKey",
    "BuyerAgentFullName",
    "BuyerOfficeKey",
    "BuyerOfficeName",
    "CoListAgentKey",
    "CoListAgentFullName",
    "CoListOfficeKey",
    "CoListOfficeName",
    "OriginatingSystemName",
    "SourceSystemName",
    "MlsStatus",
    "UnparsedAddress",
]


def test_the_worked_example_of_docs_confidence(tmp_path: Path) -> None:
    bridge = """
mapping: b
version: 1
extends: mls/reso
fields: {LivingAreaSqM: LivingArea}
transforms: {LivingArea: [{unit: {from: square_meters, to: square_feet}}]}
defaults: {LivingAreaUnits: SquareFeet}
enums: {StandardStatus: {AUC: ActiveUnderContract}}
refresh: {every_minutes: 30, overlap_minutes: 5, stale_after_days: 35}
required: [ListingId, ListAgentKey]
"""
    mapper = registry(tmp_path, b=bridge).load("b")
    record: dict[str, Any] = {**BASE, "StandardStatus": "AUC", "LivingAreaSqM": 100}
    del record["Country"]
    record["ListingId"] = "1"
    # 40 vendor fields in all, ListAgentKey not among them: pad with plain text fields
    for name in PADDING[: 40 - len(record)]:
        record[name] = "x"
    assert len(record) == 40
    now = AT + timedelta(days=350)
    out = mapper.map(raw(record), tenant="t", connection="c", system="mls", now=now)
    assert isinstance(out, Change)
    assert out.field_confidence == {
        "StandardStatus": 0.95,
        "LivingArea": 0.95,
        "LivingAreaUnits": 0.8,
    }
    assert len(out.fields) == 41
    assert out.confidence == 0.8376
