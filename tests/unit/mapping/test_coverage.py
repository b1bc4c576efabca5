"""What ``mappings check`` computes from a mapper's counters and the changes it made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadastre.mapping.coverage import MappingCheck
from tests.unit.mapping.test_mapper import mapped, raw, registry

FILE = """
mapping: m
version: 1
extends: mls/reso
local_prefixes: [X_]
fields: {Status: StandardStatus, Junk: null}
deletion: {field: CanView, equals: false}
"""


def test_coverage_counts_mapped_and_local_fields_over_all_seen(tmp_path: Path) -> None:
    mapper = registry(tmp_path, m=FILE).load("m")
    check = MappingCheck(mapper)
    records: list[dict[str, Any]] = [
        {"ListingKey": "L1", "Status": "Active", "X_Pool": 1, "Junk": 2, "CanView": True,
         "@odata.etag": "W/1", "Flux": 1, "BuilderName": "Acme"},
        {"ListingKey": "L2", "Status": "Sold-ish", "City": None},
        {"ListingKey": "L3", "CanView": False},
    ]  # fmt: skip
    for record in records:
        check.observe(mapped(mapper, raw(record)))
    report = check.report()
    assert mapper.disposition("Status") == "mapped"
    assert mapper.disposition("CanView") == "mapped"
    assert mapper.disposition("X_Pool") == "local"
    assert mapper.disposition("Junk") == "dropped"
    assert mapper.disposition("Flux") == "unmapped"
    # seen: BuilderName CanView City Flux Junk ListingKey Status X_Pool (no annotation)
    assert report["vendor_fields"] == 8
    assert report["coverage"] == round(5 / 8, 4)  # CanView City ListingKey Status X_Pool
    assert report["unmapped_fields"] == ["BuilderName", "Flux"]
    assert report["dropped_fields"] == ["Junk"]
    assert report["unmapped_enum_values"] == {"Status": ["Sold-ish"]}
    assert report["rejected"] == {"unknown_enum_value": 1}
    assert report["deleted"] == 1
    assert report["records"] == 3
    # BuilderName is a RESO standard Property field the canonical Listing does not carry
    assert report["dd_fields_not_in_contract"] == ["BuilderName"]
    # ListingKey and StandardStatus filled; City only with null, so not filled
    assert report["unfilled_fields"].count("City") == 1
    assert 0 < report["dd_coverage"] < 0.05

    mapper.reset_observations()
    assert mapper.seen_fields == {}
    assert mapper.unmapped_values == {}
    assert mapper.unknown == {}


def test_a_feed_leaving_out_its_nulls_is_counted_in_bounded_memory(tmp_path: Path) -> None:
    # Nearly every record of such a feed has a field set of its own: the mapper must not keep
    # one set per record, and must still count every field it saw.
    mapper = registry(tmp_path, m=FILE).load("m")
    optional = [f"X_F{i}" for i in range(14)]
    for n in range(3000):
        record: dict[str, Any] = {"ListingKey": f"L{n}", "Status": "Active"}
        record.update((name, 1) for i, name in enumerate(optional) if n >> i & 1)
        mapped(mapper, raw(record))
    assert len(mapper._shapes) <= 1000
    seen = mapper.seen_fields
    assert seen["ListingKey"] == seen["Status"] == 3000
    assert seen["X_F0"] == sum(n & 1 for n in range(3000))
    mapper.reset_observations()
    assert mapper.seen_fields == {}
