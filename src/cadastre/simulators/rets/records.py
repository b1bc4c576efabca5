"""The RETS MLS's data: its metadata (the Property class's fields and lookups, as RETS servers
declare them) and deterministic records of a fictional Texas board.

Field names are the server's own system names (``ListingID``, ``Status``, ``Beds``), not RESO's;
lookup fields hold short codes (``A``, ``U``) whose long values COMPACT-DECODED shows. Timestamps
are RETS DateTime: local wall-clock time in the server's zone, without an offset, to the second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

KEY_FIELD = "ListingID"
TIMESTAMP_FIELD = "ModificationTimestamp"
RESOURCE, CLASS = "Property", "RES"
DATA_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)  # initial records are modified before this
SPREAD = timedelta(days=120)
DEFAULT_TIMEZONE = "America/Chicago"


@dataclass(frozen=True)
class Field:
    name: str
    data_type: str  # RETS DataType: Character, Int, Decimal, Date, DateTime, Boolean
    lookup: str | None = None  # LookupName for lookup fields
    length: int = 0


FIELDS: tuple[Field, ...] = (
    Field(KEY_FIELD, "Character", length=20),
    Field("Status", "Character", lookup="ListingStatus", length=1),
    Field("PropertyType", "Character", lookup="PropertyType", length=2),
    Field("ListPrice", "Int"),
    Field(TIMESTAMP_FIELD, "DateTime"),
    Field("ListDate", "Date"),
    Field("StreetNumber", "Character", length=10),
    Field("StreetName", "Character", length=50),
    Field("City", "Character", length=50),
    Field("StateOrProvince", "Character", length=2),
    Field("PostalCode", "Character", length=10),
    Field("Beds", "Int"),
    Field("Baths", "Int"),
    Field("SqFt", "Int"),
    Field("YearBuilt", "Int"),
    Field("Remarks", "Character", length=1000),
    Field("PhotoCount", "Int"),
    Field("PhotoTimestamp", "DateTime"),
    Field("LOC_SchoolDistrict", "Character", length=40),
)

LOOKUPS: dict[str, dict[str, str]] = {
    "ListingStatus": {
        "A": "Active", "U": "Active Under Contract", "P": "Pending", "S": "Closed",
        "X": "Expired", "W": "Withdrawn",
    },
    "PropertyType": {"RE": "Residential", "LD": "Land", "RL": "Residential Lease"},
}  # fmt: skip

_STATUS_WEIGHTS = {"A": 50, "U": 10, "P": 10, "S": 20, "X": 5, "W": 5}
_CITIES = [("Austin", "787"), ("Round Rock", "786"), ("Georgetown", "786"), ("Dallas", "752"),
           ("Waco", "767")]  # fmt: skip
_STREETS = ["Oak", "Elm", "Cedar", "Pecan", "Mesquite", "Bluebonnet", "Live Oak", "Guadalupe"]
_DISTRICTS = ["AISD", "RRISD", "GISD", "DISD", "WISD"]


def field_map(fields: tuple[Field, ...] = FIELDS) -> dict[str, Field]:
    return {f.name: f for f in fields}


def format_datetime(value: datetime, zone: ZoneInfo, *, millis: bool = False) -> str:
    """RETS DateTime: the server's local time, no offset, to the second (or the millisecond)."""
    local = value.astimezone(zone)
    whole = local.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{local.microsecond // 1000:03d}" if millis else whole


def listing_key(n: int) -> str:
    return f"L{n:07d}"


def generate(
    n: int, seed: int, zone: ZoneInfo, *, millis: bool = False
) -> dict[str, dict[str, Any]]:
    """``n`` records as the server stores them (values are codes and strings, as on the wire);
    with ``millis``, modification timestamps keep milliseconds too."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    fractions = random.Random(seed + 1)  # noqa: S311 - apart, so the rest stays the same
    records: dict[str, dict[str, Any]] = {}
    statuses, weights = list(_STATUS_WEIGHTS), list(_STATUS_WEIGHTS.values())
    for i in range(1, n + 1):
        key = listing_key(i)
        modified = DATA_EPOCH - timedelta(seconds=rng.randrange(int(SPREAD.total_seconds())))
        if i % 50 == 0:  # a few share one second with their neighbour, as bulk edits leave them
            modified = DATA_EPOCH - timedelta(hours=i % 7)
        if millis:
            modified += timedelta(milliseconds=fractions.randrange(1000))
        city, zip3 = rng.choice(_CITIES)
        property_type = rng.choices(["RE", "LD", "RL"], [85, 10, 5])[0]
        photos = rng.randrange(0, 6)
        records[key] = {
            KEY_FIELD: key,
            "Status": rng.choices(statuses, weights)[0],
            "PropertyType": property_type,
            "ListPrice": str(rng.randrange(90, 1500) * 1000),
            TIMESTAMP_FIELD: format_datetime(modified, zone, millis=millis),
            "ListDate": (modified - timedelta(days=rng.randrange(1, 90))).date().isoformat(),
            "StreetNumber": str(rng.randrange(100, 9999)),
            "StreetName": f"{rng.choice(_STREETS)} St",
            "City": city,
            "StateOrProvince": "TX",
            "PostalCode": f"{zip3}{rng.randrange(0, 100):02d}",
            "Beds": "" if property_type == "LD" else str(rng.randrange(1, 6)),
            "Baths": "" if property_type == "LD" else str(rng.randrange(1, 4)),
            "SqFt": "" if property_type == "LD" else str(rng.randrange(700, 4500)),
            "YearBuilt": "" if property_type == "LD" else str(rng.randrange(1950, 2026)),
            "Remarks": f"Listing {key}: a {rng.choice(['charming', 'spacious', 'updated'])} home.",
            "PhotoCount": str(photos),
            "PhotoTimestamp": format_datetime(modified, zone) if photos else "",
            "LOC_SchoolDistrict": rng.choice(_DISTRICTS),
        }
    return records


def photo_bytes(key: str, index: int) -> bytes:
    """A tiny stand-in JPEG (SOI marker, the object's name, EOI): distinct per object."""
    return b"\xff\xd8\xff\xe0" + f"{key}:{index}".encode() + b"\xff\xd9"
