"""Deterministic Property records of a fictional central-Texas MLS.

Everything comes from ``random.Random`` streams derived from the seed, so the same seed gives the
same records, byte for byte. Initial ModificationTimestamps spread over the 365 days before
``DATA_EPOCH`` (a few share an instant, as a bulk update leaves them, so ties are exercised);
records touched later take the simulator clock's time, so a shared clock should start at or after
``DATA_EPOCH`` for touches to land after the initial data.

Bad data corrupts what the wire shows, not what the server stores: a record served with
ModificationTimestamp "yesterday" is still filtered and ordered by its true timestamp, as a real
MLS whose serialiser has a bug would do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from cadastre.simulators.reso.odata_filter import QueryError, parse_datetime
from cadastre.simulators.reso.schema import BOOLEAN, DATE, DATETIMEOFFSET, STRING, FieldSpec
from cadastre.simulators.reso.vocabulary import (
    CITIES,
    FEATURES,
    FEE_FREQUENCIES,
    FIRST_NAMES,
    HIGH_SCHOOLS,
    HOAS,
    LAST_NAMES,
    OFFICES,
    SCHOOLS,
    SHOWINGS,
    STATUSES,
    STREETS,
    SUBDIVISIONS,
    SUFFIXES,
    TYPES,
    ZONINGS,
)

DATA_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
SPREAD = timedelta(days=365)
ORIGINATING_SYSTEM = "ACT Demo MLS"
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)

ABSENT = object()  # a defect that leaves the field out of the record altogether
DEFECTS: dict[str, tuple[str, object]] = {
    "unknown_status": ("StandardStatus", "Sold-ish"),
    "price_not_a_number": ("ListPrice", "N/A"),
    "missing_key": ("ListingKey", ABSENT),
    "bad_timestamp": ("ModificationTimestamp", "yesterday"),
}

AGENTS, OFFICE_COUNT = 400, len(OFFICES)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 UTC with a "Z" and millisecond precision, as the MLS sends it."""
    return _stamp(to_micros(value) // 1000)


def to_micros(value: datetime) -> int:
    return (value - _UNIX) // timedelta(microseconds=1)


def truncate_to_millis(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass(slots=True)
class Row:
    """One record as the server holds it: ``data`` in wire form, the true key and timestamp beside
    it (for ordering and filtering) and the defect, if any, applied only when serving."""

    key: str
    modified: datetime
    data: dict[str, Any]
    defect: str | None = None

    @property
    def position(self) -> tuple[int, str]:
        return (to_micros(self.modified), self.key)

    def served(self, select: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The record as the wire shows it. Without a select or a defect this is ``data`` itself,
        not a copy (serialising 1,000 records a page is the hot path): do not mutate it."""
        if select is None and self.defect is None:
            return self.data
        out = dict(self.data) if select is None else {name: self.data.get(name) for name in select}
        if self.defect is not None:
            name, value = DEFECTS[self.defect]
            if name in out:
                if value is ABSENT:
                    del out[name]
                else:
                    out[name] = value
        return out


def listing_key(number: int) -> str:
    return f"ACT{number:08d}"


DAY_MS = 86_400_000


@lru_cache(maxsize=8192)
def _day_text(day: int) -> str:
    return (_UNIX + timedelta(days=day)).date().isoformat()


def _stamp(ms: int) -> str:
    # Integer arithmetic and a cache of day strings: ~5x faster than strftime, which matters when
    # 50,000 records are made at start-up.
    day, rest = divmod(ms, DAY_MS)
    seconds, millis = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_day_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


class _Draw:
    """Cheap draws from one ``random.Random`` (``randrange`` and ``choice`` cost several times
    more, and a record takes dozens of draws)."""

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def between(self, low: int, high: int) -> int:  # [low, high)
        return low + int(self.random() * (high - low))

    def pick(self, items: tuple[Any, ...]) -> Any:
        return items[int(self.random() * len(items))]

    def weighted(self, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
        point = self.random() * sum(entry[0] for entry in table)
        for entry in table:
            point -= entry[0]
            if point < 0:
                return entry
        return table[-1]


def generate(number: int, modified: datetime, rng: random.Random, prefix: str) -> Row:
    """One record, every value drawn from ``rng`` so the caller's stream fixes it."""
    draw = _Draw(rng)
    key = listing_key(number)
    _, status, mls_status = draw.weighted(STATUSES)
    _, property_type, sub_types, low, high = draw.weighted(TYPES)
    sub_type = draw.pick(sub_types)
    land = property_type == "Land"
    lease = property_type == "Residential Lease"
    home = property_type in ("Residential", "Residential Lease")
    modified_ms = to_micros(modified) // 1000
    entered = modified_ms - draw.between(DAY_MS, 200 * DAY_MS)
    listed_for = modified_ms - entered
    status_changed = entered + draw.below(listed_for)
    price_changed = entered + draw.below(listed_for) if draw.random() < 0.3 else None
    on_market = min(entered + draw.below(4) * DAY_MS, modified_ms)
    step = 50 if lease else 1000
    price = draw.between(low // step, high // step) * step
    original = price + draw.below(max(1, price // 10 // step)) * step
    closed = status == "Closed"
    under_contract = status in ("Pending", "Active Under Contract", "Closed")
    contract_day = entered + int(listed_for * (0.3 + 0.6 * draw.random()))
    close_price = round(price * (0.95 + 0.08 * draw.random()) / step) * step if closed else None
    city, county, zip_first, zip_count, district = draw.pick(CITIES)
    postal = str(zip_first + draw.below(zip_count))
    street_number, street = str(draw.between(100, 20000)), draw.pick(STREETS)
    suffix = draw.pick(SUFFIXES)
    unit = str(draw.between(101, 2400)) if sub_type in ("Condominium", "Apartment") else None
    address = f"{street_number} {street} {suffix}" + (f" Unit {unit}" if unit else "")
    agent, buyer = draw.below(AGENTS), draw.below(AGENTS)
    office = agent % OFFICE_COUNT
    first, last = FIRST_NAMES[agent % len(FIRST_NAMES)], LAST_NAMES[agent % len(LAST_NAMES)]
    full_baths, half_baths = (draw.between(1, 5), draw.below(3)) if home else (None, None)
    acres = round(0.05 + 1.45 * draw.random() if not land else 0.5 + 39.5 * draw.random(), 4)
    year_built = None if land else draw.between(1950, 2027)
    association = draw.random() < 0.45
    photos = 0 if land and draw.random() < 0.5 else draw.between(1, 60)
    feature = draw.below(len(FEATURES))
    features = (FEATURES[feature], FEATURES[(feature + 1 + draw.below(3)) % len(FEATURES)])
    data: dict[str, Any] = {
        "ListingKey": key,
        "ListingId": str(4_000_000 + number),
        "OriginatingSystemName": ORIGINATING_SYSTEM,
        "StandardStatus": status,
        "MlsStatus": mls_status,
        "ModificationTimestamp": _stamp(modified_ms),
        "OriginalEntryTimestamp": _stamp(entered),
        "StatusChangeTimestamp": _stamp(status_changed),
        "PriceChangeTimestamp": _stamp(price_changed) if price_changed else None,
        "PhotosChangeTimestamp": _stamp(entered) if photos else None,
        "ListingContractDate": _day_text(entered // DAY_MS),
        "OnMarketDate": _day_text(on_market // DAY_MS),
        "PurchaseContractDate": _day_text(contract_day // DAY_MS) if under_contract else None,
        "CloseDate": _day_text(modified_ms // DAY_MS) if closed else None,
        "ExpirationDate": _day_text(entered // DAY_MS + 180),
        "DaysOnMarket": (modified_ms - on_market) // DAY_MS,
        "ListPrice": price,
        "OriginalListPrice": original,
        "PreviousListPrice": original if price_changed else None,
        "ClosePrice": close_price,
        "PropertyType": property_type,
        "PropertySubType": sub_type,
        "UnparsedAddress": f"{address}, {city}, TX {postal}",
        "StreetNumber": street_number,
        "StreetName": street,
        "StreetSuffix": suffix,
        "UnitNumber": unit,
        "City": city,
        "StateOrProvince": "TX",
        "PostalCode": postal,
        "CountyOrParish": county,
        "Country": "US",
        "SubdivisionName": draw.pick(SUBDIVISIONS),
        "MLSAreaMajor": str(draw.between(1, 12)),
        "Latitude": round(30.05 + 0.65 * draw.random(), 6),
        "Longitude": round(-98.05 + 0.6 * draw.random(), 6),
        "ElementarySchool": draw.pick(SCHOOLS),
        "MiddleOrJuniorSchool": draw.pick(SCHOOLS),
        "HighSchool": draw.pick(HIGH_SCHOOLS),
        "YearBuilt": year_built,
        "NewConstructionYN": year_built is not None and year_built >= 2025,
        "StoriesTotal": None if land else draw.between(1, 4),
        "BedroomsTotal": draw.between(1, 7) if home else None,
        "BathroomsTotalInteger": full_baths + half_baths
        if full_baths is not None and half_baths is not None
        else None,
        "BathroomsFull": full_baths,
        "BathroomsHalf": half_baths,
        "LivingArea": None if land else draw.between(600, 5200),
        "LivingAreaUnits": None if land else "Square Feet",
        "LotSizeAcres": acres,
        "LotSizeSquareFeet": round(acres * 43560),
        "GarageYN": not land and draw.random() < 0.8,
        "GarageSpaces": draw.below(4) if home else None,
        "FireplaceYN": home and draw.random() < 0.4,
        "PoolPrivateYN": home and draw.random() < 0.15,
        "AssociationYN": association,
        "AssociationFee": draw.between(20, 400) if association else None,
        "AssociationFeeFrequency": draw.pick(FEE_FREQUENCIES) if association else None,
        "TaxAnnualAmount": round(price * (0.015 + 0.01 * draw.random()), 2) if not lease else None,
        "TaxYear": 2025,
        "ParcelNumber": str(draw.between(10**9, 10**10)),
        "Zoning": draw.pick(ZONINGS),
        "ListAgentKey": f"AGT{agent:05d}",
        "ListAgentMlsId": f"A{agent:05d}",
        "ListAgentFullName": f"{first} {last}",
        "ListAgentEmail": f"{first.lower()}.{last.lower()}{agent}@agents.example.com",
        "ListAgentDirectPhone": f"512-555-{agent:04d}",
        "ListOfficeKey": f"OFC{office:04d}",
        "ListOfficeMlsId": f"O{office:04d}",
        "ListOfficeName": OFFICES[office],
        "ListOfficePhone": f"512-555-{9000 + office:04d}",
        "BuyerAgentKey": f"AGT{buyer:05d}" if closed else None,
        "BuyerAgentFullName": _agent_name(buyer) if closed else None,
        "PublicRemarks": f"{sub_type} in {city} with {features[0]} and {features[1]}.",
        "PhotosCount": photos,
        "VirtualTourURLUnbranded": f"https://tours.example.com/{key}"
        if draw.random() < 0.2
        else None,
        "InternetEntireListingDisplayYN": draw.random() < 0.97,
        "InternetAddressDisplayYN": draw.random() < 0.95,
        f"{prefix}SchoolDistrict": district,
        f"{prefix}HOAName": draw.pick(HOAS) if association else None,
        f"{prefix}Waterfront": draw.random() < 0.05,
        f"{prefix}ShowingInstructions": draw.pick(SHOWINGS),
    }
    modified_at = _UNIX + timedelta(milliseconds=modified_ms)
    return Row(key=key, modified=modified_at, data=data)


def _agent_name(agent: int) -> str:
    return f"{FIRST_NAMES[agent % len(FIRST_NAMES)]} {LAST_NAMES[agent % len(LAST_NAMES)]}"


def initial_records(count: int, seed: int, prefix: str, bad_record_rate: float) -> list[Row]:
    """The records the MLS starts with; ``round(count * bad_record_rate)`` of them are bad."""
    timing = random.Random(seed)  # noqa: S311 - reproducible, not secret
    values = random.Random(seed + 1)  # noqa: S311
    start, spread_ms = DATA_EPOCH - SPREAD, int(SPREAD.total_seconds() * 1000)
    rows: list[Row] = []
    previous: datetime | None = None
    for number in range(1, count + 1):
        if previous is not None and timing.random() < 0.02:  # a bulk update: same instant
            modified = previous
        else:
            modified = start + timedelta(milliseconds=timing.randrange(spread_ms))
        previous = modified
        rows.append(generate(number, modified, values, prefix))
    assign_defects(rows, bad_record_rate, random.Random(seed + 2))  # noqa: S311
    return rows


def assign_defects(rows: list[Row], rate: float, rng: random.Random) -> None:
    kinds = sorted(DEFECTS)
    for row in rng.sample(rows, round(len(rows) * rate)):
        row.defect = rng.choice(kinds)


def sanitize_change(spec: FieldSpec, value: Any) -> Any:
    """A field value set by an admin touch, checked against its type and put in wire form."""
    if value is None:
        return None
    edm, name = spec.edm, spec.name
    if edm == DATETIMEOFFSET:
        try:
            return format_timestamp(parse_datetime(str(value)))
        except QueryError:
            raise ValueError(f"{name}: not a DateTimeOffset: {value!r}") from None
    if edm == DATE:
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"{name}: not a Date: {value!r}") from None
    if edm == BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: not a Boolean: {value!r}")
        return value
    if edm == STRING:
        if not isinstance(value, str):
            raise ValueError(f"{name}: not a String: {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: not a number: {value!r}")
    return value
