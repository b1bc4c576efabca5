"""Buildium's write messages: what a POST or PUT body may hold, checked field by field, and what
it does to the stored object.

A PUT *replaces*: every field of the put message that the body leaves out becomes null (an
empty list for ``PhoneNumbers``), as the vendor documents ("Any field not included in the update
request will be set to either an empty string or null"). Fields that are not part of the message
(an object's id, its created time, computed fields) stay. Unknown members are ignored, as the
vendor's JSON binder does. A body that breaks a rule is a 400 whose ``Errors`` name each field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from cadastre.simulators.buildium.records import (
    BATHROOMS,
    BEDROOMS,
    LEASE_TYPES,
    PHONE_SLOTS,
)

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAILING = ("PrimaryAddress", "AlternateAddress")


class Invalid(Exception):
    """A body the vendor refuses: ``errors`` are its ``{"Key", "Value"}`` items."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['Key']}: {e['Value']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    kind: str  # str, int, num, bool, date, enum, address, phones, contact, ints, tenants
    required: bool = False
    max_length: int | None = None
    values: tuple[str, ...] = ()


TENANT_PUT: dict[str, Rule] = {
    "FirstName": Rule("str", True, 127),
    "LastName": Rule("str", True, 127),
    "Email": Rule("email"),
    "AlternateEmail": Rule("email"),
    "PhoneNumbers": Rule("phones"),
    "DateOfBirth": Rule("date"),
    "Comment": Rule("str", max_length=65_535),
    "TaxId": Rule("str", max_length=11),
    "EmergencyContact": Rule("contact"),
    "Address": Rule("address", True),
    "AlternateAddress": Rule("address"),
    "MailingPreference": Rule("enum", values=MAILING),
}
TENANT_POST = {"LeaseId": Rule("int", True), **TENANT_PUT}
UNIT_PUT: dict[str, Rule] = {
    "UnitNumber": Rule("str", True, 30),
    "UnitSize": Rule("int"),
    "MarketRent": Rule("num"),
    "Address": Rule("address", True),
    "UnitBedrooms": Rule("enum", values=BEDROOMS),
    "UnitBathrooms": Rule("enum", values=BATHROOMS),
    "Description": Rule("str", max_length=65_535),
}
UNIT_POST = {"PropertyId": Rule("int", True), **UNIT_PUT}
LEASE_PUT: dict[str, Rule] = {
    "LeaseType": Rule("enum", True, values=LEASE_TYPES),
    "UnitId": Rule("int", True),
    "LeaseFromDate": Rule("date", True),
    "LeaseToDate": Rule("date"),
    "IsEvictionPending": Rule("bool", True),
    "AutomaticallyMoveOutTenants": Rule("bool"),
}
LEASE_POST: dict[str, Rule] = {
    **{k: v for k, v in LEASE_PUT.items() if k != "IsEvictionPending"},
    "SendWelcomeEmail": Rule("bool", True),
    "TenantIds": Rule("ints"),
    "Tenants": Rule("tenants"),
}
PUT = {"tenants": TENANT_PUT, "units": UNIT_PUT, "leases": LEASE_PUT}
POST = {"tenants": TENANT_POST, "units": UNIT_POST, "leases": LEASE_POST}


def check(body: Any, rules: dict[str, Rule]) -> dict[str, Any]:
    """The message's fields from ``body`` (every one, null where left out), or ``Invalid``."""
    if not isinstance(body, dict):
        raise Invalid([{"Key": "", "Value": "The request body must be a JSON object."}])
    errors: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    for name, rule in rules.items():
        value = body.get(name)
        if value is None or (rule.kind == "str" and rule.required and value == ""):
            if rule.required:
                errors.append({"Key": name, "Value": f"The {name} field is required."})
            out[name] = [] if rule.kind in ("phones", "ints", "tenants") else None
            continue
        problem = _problem(name, value, rule)
        if problem is not None:
            errors.append({"Key": name, "Value": problem})
            continue
        out[name] = value
    if errors:
        raise Invalid(errors)
    return out


def _problem(name: str, value: Any, rule: Rule) -> str | None:
    kind = rule.kind
    if kind in ("str", "email"):
        if not isinstance(value, str):
            return f"The {name} field must be a string."
        if rule.max_length is not None and len(value) > rule.max_length:
            return f"The {name} field cannot exceed {rule.max_length} characters."
        if kind == "email" and not EMAIL.match(value):
            return f"The {name} field is not a valid e-mail address."
        return None
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok and -(2**31) <= value < 2**31 else f"The {name} field must be an integer."
    if kind == "num":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"The {name} field must be a number."
    if kind == "bool":
        return None if isinstance(value, bool) else f"The {name} field must be true or false."
    if kind == "date":
        if isinstance(value, str) and len(value) == 10:
            try:
                date.fromisoformat(value)
            except ValueError:
                pass
            else:
                return None
        return f"The {name} field must be formatted as YYYY-MM-DD."
    if kind == "enum":
        return None if value in rule.values else f"The {name} field is not a valid value."
    if kind == "address":
        return _address(name, value)
    if kind == "phones":
        if not isinstance(value, dict) or set(value) - set(PHONE_SLOTS):
            return f"The {name} field must be an object of Home, Work, Mobile and Fax."
        for slot, number in value.items():
            if number is not None and (not isinstance(number, str) or not 10 <= len(number) <= 20):
                return f"{name}.{slot} must be between 10 and 20 characters."
        return None
    if kind == "contact":
        return None if isinstance(value, dict) else f"The {name} field must be an object."
    if kind == "ints":
        ok = isinstance(value, list) and all(isinstance(v, int) for v in value) and len(value) <= 5
        return None if ok else f"The {name} field must be a list of at most five identifiers."
    if kind == "tenants":
        if not isinstance(value, list) or len(value) > 5:
            return f"The {name} field must be a list of at most five tenants."
        for item in value:
            try:
                check(item, TENANT_PUT)
            except Invalid as exc:
                return f"{name}: {exc}"
        return None
    raise AssertionError(kind)


def _address(name: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"The {name} field must be an object."
    for part in ("AddressLine1", "PostalCode", "Country"):
        if not isinstance(value.get(part), str) or not value[part]:
            return f"{name}.{part} is required."
    return None


def stored_address(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    parts = ("AddressLine1", "AddressLine2", "AddressLine3", "City", "State", "PostalCode",
             "Country")  # fmt: skip
    return {part: value.get(part) for part in parts}


def stored_phones(value: dict[str, Any] | list[Any] | None) -> list[dict[str, Any]]:
    """A write's PhoneNumbersMessage as a GET lists it."""
    if not isinstance(value, dict):
        return []
    return [{"Number": number, "Type": PHONE_SLOTS[slot]}
            for slot, number in value.items() if number]  # fmt: skip


def tenant_fields(message: dict[str, Any]) -> dict[str, Any]:
    """A checked tenant message as the tenant's stored fields (what the PUT replaces)."""
    return {
        "FirstName": message["FirstName"],
        "LastName": message["LastName"],
        "Email": message["Email"],
        "AlternateEmail": message["AlternateEmail"],
        "PhoneNumbers": stored_phones(message["PhoneNumbers"]),
        "EmergencyContact": message["EmergencyContact"],
        "DateOfBirth": message["DateOfBirth"],
        "Address": stored_address(message["Address"]),
        "AlternateAddress": stored_address(message["AlternateAddress"]),
        "MailingPreference": message["MailingPreference"],
        "Comment": message["Comment"],
        "TaxId": message["TaxId"],
    }


def unit_fields(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "UnitNumber": message["UnitNumber"],
        "Description": message["Description"],
        "MarketRent": message["MarketRent"],
        "Address": stored_address(message["Address"]),
        "UnitBedrooms": message["UnitBedrooms"],
        "UnitBathrooms": message["UnitBathrooms"],
        "UnitSize": message["UnitSize"],
    }


def lease_fields(message: dict[str, Any]) -> dict[str, Any]:
    out = {name: message[name] for name in LEASE_PUT if name in message}
    out.setdefault("IsEvictionPending", False)
    if out.get("AutomaticallyMoveOutTenants") is None:
        out["AutomaticallyMoveOutTenants"] = None
    return out
