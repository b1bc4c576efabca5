"""The Buildium account's data: rental units, leases and tenants, in the field names and shapes of
Buildium's Open API v1 (``RentalUnitMessage``, ``LeaseMessage``, ``TenantMessage``), seeded
deterministically, and the rules of its write messages (``Rental*PutMessage``/``PostMessage``).

Facts from the vendor's OpenAPI document: a GET's ``PhoneNumbers`` is a list of
``{"Number", "Type"}`` (Home, Office, Cell, Personal, Fax, Other) while a write's is one object
``{"Home", "Work", "Mobile", "Fax"}``; tenants and units carry no last-updated time in what is
served (only leases have ``LastUpdatedDateTime``), yet their lists filter on one
(``lastupdatedfrom``/``lastupdatedto``): the time is kept here beside each row. A PUT replaces the
whole object: any field of the put message left out becomes null (or an empty list).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

ACCOUNT_ID = 123456
DATA_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)  # seeded rows were last updated before this
RESOURCES = ("tenants", "units", "leases")
BEDROOMS = ("NotSet", "Studio", "OneBed", "TwoBed", "ThreeBed", "FourBed", "FiveBed", "SixBed",
            "SevenBed", "EightBed", "NineBedPlus")  # fmt: skip
BATHROOMS = ("NotSet", "OneBath", "OnePointFiveBath", "TwoBath", "TwoPointFiveBath",
             "ThreeBath", "FourBath", "FiveBath", "FivePlusBath", "ThreePointFiveBath",
             "FourPointFiveBath")  # fmt: skip
LEASE_TYPES = ("Fixed", "FixedWithRollover", "AtWill")
PHONE_TYPES = ("NotSet", "Home", "Office", "Cell", "Personal", "Fax", "Other")
# A write's PhoneNumbersMessage slot -> the Type a GET lists it under.
PHONE_SLOTS = {"Home": "Home", "Work": "Office", "Mobile": "Cell", "Fax": "Fax"}
FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemal",
         "Lena", "Marta", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara")  # fmt: skip
LAST = ("Alvarez", "Brown", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito",
        "Jones", "Kim", "Lopez", "Moore", "Nguyen", "Okafor", "Patel", "Quist", "Reyes", "Smith",
        "Tan")  # fmt: skip
STREETS = ("Oak St", "Maple Ave", "Cedar Ln", "Pine Rd", "Elm Ct", "Birch Blvd")


def format_time(value: datetime) -> str:
    """Buildium's date-time: UTC, seven fractional digits (.NET ticks), ``Z``."""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"


def parse_filter_time(text: str) -> datetime:
    """A ``lastupdatedfrom``/``lastupdatedto`` value: "YYYY-MM-DDTHH:MM:SSZ" in UTC (fractions
    are tolerated, an offset other than Z is not)."""
    if not text.endswith("Z") or len(text) < 20:
        raise ValueError("must be in UTC and formatted as YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError("must be in UTC and formatted as YYYY-MM-DDTHH:MM:SSZ") from None


@dataclass
class Row:
    """One stored object: its fields as the vendor keeps them (computed ones are added when it is
    served) and when it was created and last updated."""

    id: int
    data: dict[str, Any]
    created: datetime
    updated: datetime


@dataclass
class Book:
    """Everything one Buildium account holds of the three resources."""

    tenants: dict[int, Row] = field(default_factory=dict)
    units: dict[int, Row] = field(default_factory=dict)
    leases: dict[int, Row] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # lease id -> tenant ids
    next_id: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 1))

    def rows(self, resource: str) -> dict[int, Row]:
        rows: dict[int, Row] = getattr(self, resource)
        return rows

    def new_id(self, resource: str) -> int:
        found = self.next_id[resource]
        self.next_id[resource] = found + 1
        return found

    def leases_of(self, tenant: int) -> list[int]:
        return [lease for lease, people in self.members.items() if tenant in people]

    # -------------------------------------------------------------------------- serving

    def served(self, resource: str, row: Row) -> dict[str, Any]:
        if resource == "units":
            return self.unit(row)
        if resource == "leases":
            return self.lease(row)
        return self.tenant(row)

    def unit(self, row: Row) -> dict[str, Any]:
        occupied = any(
            lease.data["UnitId"] == row.id and lease.data["LeaseStatus"] == "Active"
            for lease in self.leases.values()
        )
        return {"Id": row.id, **_copy(row.data), "IsUnitOccupied": occupied}

    def lease(self, row: Row, *, nested: bool = False) -> dict[str, Any]:
        people = [self.tenants[t] for t in self.members.get(row.id, []) if t in self.tenants]
        data = _copy(row.data)
        unit = self.units.get(data["UnitId"])
        served = {
            "Id": row.id,
            "PropertyId": unit.data["PropertyId"] if unit else None,
            "UnitId": data["UnitId"],
            "UnitNumber": unit.data["UnitNumber"] if unit else None,
            **{k: v for k, v in data.items() if k not in ("UnitId", "MoveInDate")},
            # Inside a tenant's Leases the tenants are left out (they would nest without end).
            "CurrentTenants": None if nested else [self.tenant(p, nested=True) for p in people],
            "CurrentNumberOfOccupants": len(people),
            "Cosigners": [],
            "CreatedDateTime": format_time(row.created),
            "LastUpdatedDateTime": format_time(row.updated),
            "MoveOutData": [],
            "Tenants": [
                {"Id": p.id, "Status": "Current", "MoveInDate": data.get("MoveInDate")}
                for p in people
            ],
        }
        served["TermType"] = "MonthToMonth" if data.get("LeaseType") == "AtWill" else "Standard"
        return served

    def tenant(self, row: Row, *, nested: bool = False) -> dict[str, Any]:
        data = _copy(row.data)
        leases = [] if nested else [
            self.lease(self.leases[lease], nested=True)
            for lease in self.leases_of(row.id) if lease in self.leases
        ]  # fmt: skip
        return {"Id": row.id, **data, "CreatedDateTime": format_time(row.created),
                "Leases": None if nested else leases}  # fmt: skip


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = dict(value)
        elif isinstance(value, list):
            out[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------ seeding


def seed_book(units: int, seed: int) -> Book:
    """``units`` rental units over a few properties; about four in five leased (a lease of one or
    two tenants), some leases past; every row last updated in the 90 days before DATA_EPOCH."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    book = Book()

    def when() -> datetime:
        return DATA_EPOCH - timedelta(seconds=rng.randint(3600, 90 * 86_400))

    for n in range(units):
        unit_id = book.new_id("units")
        property_id = 1 + n // 10
        created = when()
        book.units[unit_id] = Row(unit_id, {
            "PropertyId": property_id,
            "BuildingName": f"Building {property_id}",
            "UnitNumber": f"{100 + n % 10 + 100 * (n // 10 % 3)}",
            "Description": None,
            "MarketRent": float(rng.randrange(900, 3500, 25)),
            "Address": address(rng, property_id),
            "UnitBedrooms": rng.choice(BEDROOMS[1:6]),
            "UnitBathrooms": rng.choice(BATHROOMS[1:5]),
            "UnitSize": rng.randrange(400, 1800, 10),
            "IsUnitListed": False,
        }, created, created)  # fmt: skip
        if rng.random() >= 0.8:
            continue
        lease_id = book.new_id("leases")
        start = date(2025, 1, 1) + timedelta(days=rng.randint(0, 600))
        kind = rng.choice(LEASE_TYPES)
        status = "Past" if rng.random() < 0.1 else "Active"
        lease_created = when()
        book.leases[lease_id] = Row(lease_id, {
            "UnitId": unit_id,
            "LeaseFromDate": start.isoformat(),
            "LeaseToDate": None if kind == "AtWill" else (start + timedelta(days=365)).isoformat(),
            "LeaseType": kind,
            "LeaseStatus": status,
            "IsEvictionPending": False,
            "RenewalOfferStatus": None,
            "AccountDetails": {"SecurityDeposit": float(rng.randrange(500, 3000, 50)),
                               "Rent": book.units[unit_id].data["MarketRent"]},
            "AutomaticallyMoveOutTenants": False,
            "PaymentDueDay": 1,
            "MoveInDate": start.isoformat(),
        }, lease_created, lease_created)  # fmt: skip
        people = []
        for _ in range(rng.choice((1, 1, 2))):
            tenant_id = book.new_id("tenants")
            first, last = rng.choice(FIRST), rng.choice(LAST)
            tenant_created = when()
            book.tenants[tenant_id] = Row(tenant_id, {
                "FirstName": first,
                "LastName": last,
                "Email": f"{first.lower()}.{last.lower()}{tenant_id}@example.com",
                "AlternateEmail": None,
                "PhoneNumbers": phones(rng),
                "EmergencyContact": None,
                "DateOfBirth": None,
                "SMSOptInStatus": None,
                "Address": dict(book.units[unit_id].data["Address"]),
                "AlternateAddress": None,
                "MailingPreference": "PrimaryAddress",
                "Comment": None,
                "TaxId": None,
            }, tenant_created, tenant_created)  # fmt: skip
            people.append(tenant_id)
        book.members[lease_id] = people
    return book


def address(rng: random.Random, property_id: int) -> dict[str, Any]:
    return {
        "AddressLine1": f"{100 + property_id * 7} {STREETS[property_id % len(STREETS)]}",
        "AddressLine2": None,
        "AddressLine3": None,
        "City": rng.choice(("Austin", "Denver", "Portland")),
        "State": None,
        "PostalCode": f"{rng.randint(10000, 99999)}",
        "Country": "UnitedStates",
    }


def phones(rng: random.Random) -> list[dict[str, Any]]:
    out = [{"Number": f"512555{rng.randint(1000, 9999)}", "Type": "Cell"}]
    if rng.random() < 0.4:
        out.append({"Number": f"512556{rng.randint(1000, 9999)}", "Type": "Home"})
    return out
