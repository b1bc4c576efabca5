from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change
from cadastre.errors import MappingError
from cadastre.mapping import MappingRegistry, MappingSpec, RecordMapper, Rejection
from cadastre.ports import RawRecord

FAMILY = Path(__file__).resolve().parents[3] / "src/cadastre/connectors/mls/reso/mapping.yaml"
AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def registry(tmp_path: Path, **files: str) -> MappingRegistry:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return MappingRegistry(tmp_path, {"mls/reso": FAMILY})


def raw(data: dict[str, Any], key: str | None = "L1", at: datetime | None = AT, **kw) -> RawRecord:
    return RawRecord("Property", key, data, at, **kw)


def mapped(mapper: RecordMapper, record: RawRecord) -> Change | Rejection:
    return mapper.map(record, tenant="t", connection="austin", system="mls")


AUSTIN = """
mapping: austin
version: 3
extends: mls/reso
local_prefixes: [ACT_]
fields: {Status: StandardStatus, ACT_Internal: null, ListOfficeName: null}
enums: {StandardStatus: {AUC: ActiveUnderContract, Contingent: ActiveUnderContract}}
"""


def test_family_defaults_map_standard_names_and_display_names(tmp_path: Path) -> None:
    mapper = registry(tmp_path).load("mls/reso")
    out = mapped(
        mapper,
        raw(
            {
                "ListingKey": "L1",
                "StandardStatus": "Active Under Contract",
                "ListPrice": 350000,
                "City": "Austin",
                "Flux": 1,
            }
        ),
    )
    assert isinstance(out, Change)
    assert out.fields == {
        "ListingKey": "L1",
        "StandardStatus": "ActiveUnderContract",
        "ListPrice": 350000,
        "City": "Austin",
    }
    assert out.origin.external_id == "L1"
    assert out.origin.source_time == AT
    assert out.origin.connection == "austin"
    assert out.origin.system == "mls"
    assert mapper.unknown == {"Flux": 1}  # reported, not stored


def test_a_per_mls_file_renames_drops_keeps_local_and_adds_spellings(tmp_path: Path) -> None:
    mapper = registry(tmp_path, austin=AUSTIN).load("austin")
    out = mapped(
        mapper,
        raw(
            {
                "ListingKey": "L1",
                "Status": "AUC",
                "ACT_Internal": "x",
                "ACT_SchoolDistrict": "Eanes",
                "ListOfficeName": "Acme",
            }
        ),
    )
    assert isinstance(out, Change)
    assert out.fields == {
        "ListingKey": "L1",
        "StandardStatus": "ActiveUnderContract",
        "LocalFields": {"ACT_SchoolDistrict": "Eanes"},
    }
    out = mapped(mapper, raw({"ListingKey": "L1", "Status": "contingent"}))
    assert isinstance(out, Change)
    assert out.fields["StandardStatus"] == "ActiveUnderContract"


def test_the_standard_named_field_yields_to_an_explicit_rename(tmp_path: Path) -> None:
    mapper = registry(tmp_path, austin=AUSTIN).load("austin")
    out = mapped(mapper, raw({"Status": "Pending", "StandardStatus": "Closed"}))
    assert isinstance(out, Change)
    assert out.fields["StandardStatus"] == "Pending"


@pytest.mark.parametrize(
    ("record", "code", "words"),
    [
        (raw({"StandardStatus": "Sold-ish"}), "unknown_enum_value", "'Sold-ish'"),
        (raw({"ListPrice": 1}, key=None), "missing_key", "ListingKey"),
        (raw({"ListPrice": 1}, at=None), "missing_timestamp", "ModificationTimestamp"),
        (raw({}, problem="not a record: a JSON list"), "unreadable", "JSON list"),
    ],
)
def test_records_that_cannot_be_mapped_are_rejected_with_a_reason(
    tmp_path: Path, record: RawRecord, code: str, words: str
) -> None:
    out = mapped(registry(tmp_path).load("mls/reso"), record)
    assert isinstance(out, Rejection)
    assert out.code == code
    assert words in out.reason


def test_multi_select_lookups_map_each_value(tmp_path: Path) -> None:
    mapper = registry(tmp_path).load("mls/reso")
    out = mapped(mapper, raw({"ListingTerms": "Cash, Conventional"}))
    assert isinstance(out, Change)
    assert out.fields["ListingTerms"] == ["Cash", "Conventional"]
    out = mapped(mapper, raw({"ListingTerms": ["Cash", "Barter Maybe"]}))
    assert isinstance(out, Rejection)
    assert "'Barter Maybe'" in out.reason


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "mapping: bad\nversion: 1\nextends: mls/reso\nfields: {X: NoSuchField}\n",
            "'NoSuchField' is not a field of Listing",
        ),
        (
            "mapping: bad\nversion: 1\nextends: mls/reso\nenums: {StandardStatus: {A: Sold}}\n",
            "'Sold' is not a value of StandardStatus",
        ),
        (
            "mapping: bad\nversion: 1\nextends: mls/reso\nenums: {City: {A: B}}\n",
            "not an enumerated field",
        ),
        (
            "mapping: bad\nversion: 1\nextends: mls/reso\nfields: {A: City, B: City}\n",
            "already the target of A",
        ),
        ("mapping: bad\nversion: 1\nextends: nowhere\n", "mapping 'nowhere' not found"),
        ("mapping: bad\nversion: 1\nextends: bad\n", "loops"),
        ("mapping: other\nversion: 1\n", "a registry file's name must match"),
        ("mapping: bad\nversion: 0\n", "version"),
        ("mapping: bad\nversion: 1\nflavour: x\n", "flavour"),
        ("mapping: bad\nversion: 1\nversion: 2\n", "duplicate key"),
        ("mapping: bad\nversion: 1\n", "must name entity"),
    ],
)
def test_a_bad_mapping_file_is_refused_with_what_is_wrong(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(MappingError, match=None) as caught:
        registry(tmp_path, bad=text).load("bad")
    assert words in str(caught.value)


def test_names_outside_the_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not a file name"):
        registry(tmp_path).load("../etc/passwd")


def test_later_files_override_and_merge_enums() -> None:
    base = MappingSpec(
        mapping="b",
        version=1,
        entity="Listing",
        enums={"StandardStatus": {"A": "Active"}},
        local_prefixes=["X_"],
    )
    top = MappingSpec(
        mapping="t", version=2, enums={"StandardStatus": {"P": "Pending"}}, local_prefixes=["Y_"]
    )
    merged = top.over(base)
    assert merged.entity == "Listing"
    assert merged.version == 2
    assert merged.enums == {"StandardStatus": {"A": "Active", "P": "Pending"}}
    assert merged.local_prefixes == ["X_", "Y_"]


def test_vendor_fields_for_select(tmp_path: Path) -> None:
    mapper = registry(tmp_path, austin=AUSTIN).load("austin")
    offered = frozenset(
        {
            "ListingKey",
            "ModificationTimestamp",
            "Status",
            "ACT_Pool",
            "Weird",
            "ListPrice",
            "ACT_Internal",
        }
    )
    assert mapper.vendor_fields(offered) == [
        "ACT_Pool",
        "ListPrice",
        "ListingKey",
        "ModificationTimestamp",
        "Status",
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        # a status that is not text: the contract names the wrong type when it is applied
        ({"StandardStatus": ["Active"]}, None),
        ({"StandardStatus": {"v": "Active"}}, None),
        # an integer no idempotency key can hold: a bad value, not a crashed sync
        ({"ListPrice": 2**70}, "64-bit"),
    ],
)
def test_values_of_the_wrong_shape_never_raise(
    tmp_path: Path, data: dict[str, Any], words: str | None
) -> None:
    mapper = registry(tmp_path).load("mls/reso")
    record = raw({"ListingKey": "L1", "ModificationTimestamp": AT.isoformat(), **data})
    out = mapper.map(record, tenant="t", connection="c", system="mls", now=AT)
    if words is None:
        assert isinstance(out, Change)
    else:
        assert isinstance(out, Rejection)
        assert out.code == "invalid_value"
        assert words in out.reason
