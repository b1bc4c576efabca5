"""Buildium's three streams and how their objects are read for mapping.

Buildium ids are integers and its objects nest (a tenant's phone numbers are a list of
``{"Number", "Type"}``, its leases a list of lease objects; a lease's rent sits in
``AccountDetails``). The mapping files map flat fields, so each object is read into a *view*: the
vendor's fields as sent, ids as text (the contract's keys are text), plus a few fields derived
here and named in the mapping files:

- tenants: ``CellPhone``, ``HomePhone`` (from ``PhoneNumbers``), ``LeaseId`` (the current lease:
  an Active one, else a Future one, else the latest), ``ObservedDateTime``;
- units: ``Bedrooms``, ``Bathrooms`` (numbers from ``UnitBedrooms``/``UnitBathrooms``),
  ``UnitStatus`` (``Occupied`` / ``Vacant`` from ``IsUnitOccupied``), ``ObservedDateTime``;
- leases: ``RentAmount``, ``DepositAmount`` (from ``AccountDetails``), ``ResidentIds`` (the
  current tenants' ids), ``MoveInDate`` (the earliest of its tenants').

Tenants and units carry no modification time in what Buildium serves (only leases have
``LastUpdatedDateTime``), although their lists filter on one. Their records are stamped with
``ObservedDateTime``, when the request that read them was sent (the object is at least that
new), and versioned by a hash of their content (``sha256:...``), so a record read twice unchanged
is recognised as the same version.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from cadastre.mapping.records import parse_time
from cadastre.ports import RawRecord

TENANTS, UNITS, LEASES = "tenants", "units", "leases"
STREAMS = (TENANTS, UNITS, LEASES)
PATHS = {TENANTS: "/v1/leases/tenants", UNITS: "/v1/rentals/units", LEASES: "/v1/leases"}
ENTITIES = {TENANTS: "Resident", UNITS: "Unit", LEASES: "Lease"}
KEY = "Id"
OBSERVED = "ObservedDateTime"  # tenants, units: when they were read
LAST_UPDATED = "LastUpdatedDateTime"  # leases
TIME_FIELD = {TENANTS: OBSERVED, UNITS: OBSERVED, LEASES: LAST_UPDATED}
ID_FIELDS = ("Id", "PropertyId", "UnitId", "LeaseId")

BEDROOMS: dict[str, int | None] = {
    "NotSet": None, "Studio": 0, "OneBed": 1, "TwoBed": 2, "ThreeBed": 3, "FourBed": 4,
    "FiveBed": 5, "SixBed": 6, "SevenBed": 7, "EightBed": 8, "NineBedPlus": 9,
}  # fmt: skip
BATHROOMS: dict[str, float | None] = {
    "NotSet": None, "OneBath": 1, "OnePointFiveBath": 1.5, "TwoBath": 2, "TwoPointFiveBath": 2.5,
    "ThreeBath": 3, "ThreePointFiveBath": 3.5, "FourBath": 4, "FourPointFiveBath": 4.5,
    "FiveBath": 5, "FivePlusBath": 6,
}  # fmt: skip
LEASE_ORDER = {"Active": 0, "Future": 1}


def filter_time(value: datetime) -> str:
    """``lastupdatedfrom``/``lastupdatedto``: UTC, "YYYY-MM-DDTHH:MM:SSZ" (whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_version(view: dict[str, Any]) -> str:
    """A version for objects the vendor does not version: a hash of what it serves (the
    observation time left out)."""
    served = {k: v for k, v in view.items() if k != OBSERVED}
    digest = hashlib.sha256(orjson.dumps(served, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "sha256:" + digest[:32]


def view(stream: str, item: dict[str, Any], observed: datetime) -> dict[str, Any]:
    """``item`` as the mapping reads it (see the module's doc)."""
    out = dict(item)
    for name in ID_FIELDS:
        value = out.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = str(value)
    if stream == TENANTS:
        phones = out.get("PhoneNumbers")
        kinds = {p.get("Type"): p.get("Number") for p in phones if isinstance(p, dict)} if (
            isinstance(phones, list)) else {}  # fmt: skip
        out["CellPhone"] = kinds.get("Cell")
        out["HomePhone"] = kinds.get("Home")
        out["LeaseId"] = current_lease(out.get("Leases"))
        out[OBSERVED] = observed.astimezone(UTC).isoformat()
    elif stream == UNITS:
        out["Bedrooms"] = BEDROOMS.get(str(out.get("UnitBedrooms")))
        out["Bathrooms"] = BATHROOMS.get(str(out.get("UnitBathrooms")))
        occupied = out.get("IsUnitOccupied")
        out["UnitStatus"] = None if occupied is None else ("Occupied" if occupied else "Vacant")
        out[OBSERVED] = observed.astimezone(UTC).isoformat()
    else:
        details = out.get("AccountDetails")
        details = details if isinstance(details, dict) else {}
        out["RentAmount"] = details.get("Rent")
        out["DepositAmount"] = details.get("SecurityDeposit")
        tenants = out.get("CurrentTenants")
        ids = [str(t["Id"]) for t in tenants if isinstance(t, dict) and t.get("Id") is not None] \
            if isinstance(tenants, list) else None  # fmt: skip
        out["ResidentIds"] = ids
        moves = [t.get("MoveInDate") for t in out.get("Tenants") or [] if isinstance(t, dict)]
        dates = sorted(m for m in moves if isinstance(m, str))
        out["MoveInDate"] = dates[0] if dates else None
    return out


def current_lease(leases: Any) -> str | None:
    if not isinstance(leases, list):
        return None
    found = [lease for lease in leases if isinstance(lease, dict) and lease.get("Id") is not None]
    if not found:
        return None
    found.sort(key=lambda lease: (LEASE_ORDER.get(str(lease.get("LeaseStatus")), 2),
                                  _inverse(str(lease.get("LeaseFromDate") or ""))))  # fmt: skip
    return str(found[0]["Id"])


def _inverse(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)  # the latest date first


def record(stream: str, item: Any, observed: datetime) -> RawRecord:
    """One served object as a raw record: keyed by ``Id``; a lease stamped and versioned by its
    ``LastUpdatedDateTime``, a tenant or unit (or a lease whose ``LastUpdatedDateTime`` is null,
    as on old rows) by ``observed`` and its content."""
    if not isinstance(item, dict):
        return RawRecord(stream, None, {"value": item}, None,
                         problem=f"not a record: a JSON {type(item).__name__}")  # fmt: skip
    data = view(stream, item, observed)
    key = data.get(KEY)
    external_id = key if isinstance(key, str) and key.strip() else None
    if stream == LEASES:
        stamp = data.get(LAST_UPDATED)
        when = parse_time(stamp)
        if when is not None:
            return RawRecord(stream, external_id, data, when, str(stamp))
        # LastUpdatedDateTime is nullable (old rows): dated and versioned like a tenant.
    return RawRecord(stream, external_id, data, observed, content_version(data))
