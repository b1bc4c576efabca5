"""Writes to Buildium: canonical fields in, Buildium's write messages out.

A Buildium ``PUT`` replaces the whole object: a field the body leaves out is set to null or an
empty string. So an UPDATE reads the object (``GET``), turns what is served into the put message
*with every field of it* (``put_message``: a GET's ``PhoneNumbers`` list becomes the write's
``{"Home", "Work", "Mobile", "Fax"}`` object, addresses keep their parts), lays our fields over it
and PUTs that. Between the GET and the PUT a person may edit the same object: Buildium has no ETag
to refuse our PUT, and that edit is overwritten (the lost update the vendor's own guide accepts);
the window is one round trip.

A CREATE POSTs (tenants need the lease, whose unit's address becomes the tenant's address, as
Buildium's UI does; leases are created with ``SendWelcomeEmail: false``). Buildium has no
idempotency key and no upsert: ``idempotency`` is ``NONE`` and after a crash the write-back
worker calls ``read_back``, never ``write`` again. ``read_back`` reads the object by its id, or,
for a create that never learned one, searches by natural fields: a tenant by e-mail (Buildium's
``email`` filter) and lease, else by name on the lease; a lease by unit and start date. Several
candidates raise ``WriteIndeterminate``: a person decides.

What cannot be written: units cannot be created here (Buildium wants the rental property's
structure), nothing is deleted (Buildium's API deletes none of these), a tenant is not moved to
another lease by a PUT, and a phone number Buildium lists as ``Personal`` or ``Other`` has no slot
in the write message (it is lost by any PUT of that tenant; logged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.connectors.pms.buildium.streams import (
    BATHROOMS,
    BEDROOMS,
    LEASES,
    PATHS,
    TENANTS,
    UNITS,
    content_version,
    view,
)
from cadastre.errors import ContractError, VendorRejected, WriteIndeterminate
from cadastre.mapping.records import parse_time
from cadastre.ports import OutboundWrite, WriteOperation, WriteReceipt

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cadastre.gateway import Gateway
    from cadastre.ports import Clock

log = logging.getLogger(__name__)

STREAM_OF = {"Resident": TENANTS, "Unit": UNITS, "Lease": LEASES}
# canonical wire name -> the field of the connector's view that holds it (streams.view)
CANONICAL: dict[str, dict[str, str]] = {
    "Resident": {"FirstName": "FirstName", "LastName": "LastName", "Email": "Email",
                 "MobilePhone": "CellPhone", "HomePhone": "HomePhone", "LeaseId": "LeaseId"},
    "Unit": {"UnitNumber": "UnitNumber", "MarketRent": "MarketRent", "SquareFeet": "UnitSize",
             "Bedrooms": "Bedrooms", "Bathrooms": "Bathrooms"},
    "Lease": {"StartDate": "LeaseFromDate", "EndDate": "LeaseToDate", "LeaseType": "LeaseType",
              "UnitId": "UnitId"},
}  # fmt: skip
KEYS = {"Resident": "ResidentId", "Unit": "UnitId", "Lease": "LeaseId"}
PHONE_SLOTS = {"Home": "Home", "Office": "Work", "Cell": "Mobile", "Fax": "Fax"}
ADDRESS_PARTS = ("AddressLine1", "AddressLine2", "AddressLine3", "City", "State", "PostalCode",
                 "Country")  # fmt: skip
TENANT_PUT = ("FirstName", "LastName", "Email", "AlternateEmail", "PhoneNumbers", "DateOfBirth",
              "Comment", "TaxId", "EmergencyContact", "Address", "AlternateAddress",
              "MailingPreference")  # fmt: skip
UNIT_PUT = ("UnitNumber", "UnitSize", "MarketRent", "Address", "UnitBedrooms", "UnitBathrooms",
            "Description")  # fmt: skip
LEASE_PUT = ("LeaseType", "UnitId", "LeaseFromDate", "LeaseToDate", "IsEvictionPending",
             "AutomaticallyMoveOutTenants")  # fmt: skip
CANONICAL_LEASE_TYPE = {"Fixed": "FixedTerm", "FixedWithRollover": "FixedTerm",
                        "AtWill": "MonthToMonth"}  # fmt: skip


def put_message(stream: str, served: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of the put message, from the object as a GET serves it."""
    if stream == TENANTS:
        body = {name: served.get(name) for name in TENANT_PUT}
        phones: dict[str, Any] = {}
        for phone in served.get("PhoneNumbers") or []:
            slot = PHONE_SLOTS.get(str(phone.get("Type"))) if isinstance(phone, dict) else None
            if slot is None:
                log.warning("tenant %s: a %s phone number has no place in Buildium's write "
                            "message; a PUT drops it", served.get("Id"),
                            phone.get("Type") if isinstance(phone, dict) else "?")  # fmt: skip
                continue
            phones[slot] = phone.get("Number")
        body["PhoneNumbers"] = phones
        for name in ("Address", "AlternateAddress"):
            body[name] = _address(served.get(name))
        return body
    if stream == UNITS:
        body = {name: served.get(name) for name in UNIT_PUT}
        body["Address"] = _address(served.get("Address"))
        return body
    return {name: served.get(name) for name in LEASE_PUT}


def _address(value: Any) -> dict[str, Any] | None:
    return {part: value.get(part) for part in ADDRESS_PARTS} if isinstance(value, dict) else None


def vendor_values(entity: str, fields: Mapping[str, Any], body: dict[str, Any]) -> None:
    """Lay canonical ``fields`` over the put (or post) message ``body``, in Buildium's names."""
    for name, value in fields.items():
        if entity == "Resident":
            if name in ("MobilePhone", "HomePhone"):
                phones = dict(body.get("PhoneNumbers") or {})
                phones["Mobile" if name == "MobilePhone" else "Home"] = value
                body["PhoneNumbers"] = phones
            elif name in ("FirstName", "LastName", "Email"):
                body[name] = value
            elif name == "LeaseId":
                if "LeaseId" not in body:
                    raise ContractError("Buildium moves a tenant to another lease by a move-in, "
                                        "not by an update of the tenant")  # fmt: skip
                body["LeaseId"] = _id(name, value)
            else:
                raise ContractError(f"Resident.{name} is not written to Buildium")
        elif entity == "Unit":
            if name == "UnitNumber" or name == "MarketRent":
                body[name] = value if name == "UnitNumber" or value is None else float(value)
            elif name == "SquareFeet":
                body["UnitSize"] = None if value is None else int(float(value))
            elif name == "Bedrooms":
                body["UnitBedrooms"] = _enum(name, value, BEDROOMS)
            elif name == "Bathrooms":
                body["UnitBathrooms"] = _enum(name, value, BATHROOMS)
            else:
                raise ContractError(f"Unit.{name} is not written to Buildium")
        elif entity == "Lease":
            if name == "StartDate":
                body["LeaseFromDate"] = value
            elif name == "EndDate":
                body["LeaseToDate"] = value
            elif name == "UnitId":
                body["UnitId"] = _id(name, value)
            elif name == "LeaseType":
                current = body.get("LeaseType")
                if CANONICAL_LEASE_TYPE.get(str(current)) != value:  # FixedWithRollover stays
                    body["LeaseType"] = {"FixedTerm": "Fixed", "MonthToMonth": "AtWill"}.get(
                        str(value)) or _refuse(name, value)  # fmt: skip
            else:
                raise ContractError(f"Lease.{name} is not written to Buildium")
        else:
            raise ContractError(f"{entity} is not written to Buildium")


def _enum(name: str, value: Any, table: Mapping[str, float | int | None]) -> str:
    if value is None:
        return "NotSet"
    number = float(value)
    for spelling, amount in table.items():
        if amount is not None and float(amount) == number:
            return spelling
    if name == "Bedrooms" and number > 9:
        return "NineBedPlus"
    return _refuse(name, value)


def _refuse(name: str, value: Any) -> str:
    raise ContractError(f"{name} {value!r} has no Buildium value")


def _id(name: str, value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ContractError(f"{name} {value!r} is not a Buildium id") from None


class BuildiumWriter:
    def __init__(self, base_url: str, gateway: Gateway, clock: Clock) -> None:
        self._base = base_url
        self._gateway = gateway
        self._clock = clock

    def writable(self) -> Mapping[str, frozenset[str]]:
        return {entity: frozenset(names) for entity, names in CANONICAL.items()}

    async def write(self, write: OutboundWrite) -> WriteReceipt:
        stream = STREAM_OF.get(write.entity)
        if stream is None:
            raise ContractError(f"{write.entity} is not written to Buildium")
        if write.operation is WriteOperation.DELETE:
            raise ContractError(f"Buildium's API deletes no {write.entity}")
        if write.operation is WriteOperation.UPDATE:
            if write.external_id is None:
                raise ContractError(f"an update of {write.entity} {write.canonical_id} names no "
                                    "Buildium id")  # fmt: skip
            return await self._update(stream, write)
        return await self._create(stream, write)

    async def _update(self, stream: str, write: OutboundWrite) -> WriteReceipt:
        url = f"{self._base}{PATHS[stream]}/{write.external_id}"
        served = await self._gateway.get_json(url)
        if not isinstance(served, dict):
            raise ContractError(f"{url}: Buildium served no object to merge into")
        body = put_message(stream, served)
        fields = dict(write.fields)
        if stream == TENANTS and "LeaseId" in fields:
            # Unchanged (a whole record propagated): nothing to write. Another lease: refused by
            # vendor_values (a move-in, not a PUT), before anything is sent.
            current = view(TENANTS, served, self._clock.now()).get("LeaseId")
            if current is not None and str(fields["LeaseId"]) == current:
                del fields["LeaseId"]
        vendor_values(write.entity, fields, body)
        sent = self._clock.now()
        answer = await self._gateway.request("PUT", url, json=body)
        return self._receipt(write.entity, stream, _json(answer.content), sent)

    async def _create(self, stream: str, write: OutboundWrite) -> WriteReceipt:
        fields = write.fields
        if stream == UNITS:
            raise ContractError("units are created in Buildium with their rental property, not "
                                "through the platform")  # fmt: skip
        if stream == TENANTS:
            lease = fields.get("LeaseId")
            if lease is None:
                raise ContractError("a Buildium tenant is created on a lease: LeaseId is needed")
            body: dict[str, Any] = {"LeaseId": _id("LeaseId", lease), "PhoneNumbers": {}}
            body["Address"] = await self._lease_address(str(lease))
        else:
            body = {"SendWelcomeEmail": False, "IsEvictionPending": False}
        vendor_values(write.entity, {k: v for k, v in fields.items() if k != "LeaseId"}, body)
        sent = self._clock.now()
        answer = await self._gateway.request("POST", f"{self._base}{PATHS[stream]}", json=body)
        return self._receipt(write.entity, stream, _json(answer.content), sent)

    async def _lease_address(self, lease: str) -> dict[str, Any] | None:
        found = await self._gateway.get_json(f"{self._base}{PATHS[LEASES]}/{lease}")
        unit = found.get("UnitId") if isinstance(found, dict) else None
        if unit is None:
            return None
        served = await self._gateway.get_json(f"{self._base}{PATHS[UNITS]}/{unit}")
        return _address(served.get("Address")) if isinstance(served, dict) else None

    def _receipt(self, entity: str, stream: str, served: Any, sent: Any) -> WriteReceipt:
        if not isinstance(served, dict) or served.get("Id") is None:
            raise ContractError(f"Buildium answered the {entity} write without the object")
        data = view(stream, served, sent)
        values = {name: data.get(field) for name, field in CANONICAL[entity].items()}
        if entity == "Lease" and values.get("LeaseType") is not None:
            values["LeaseType"] = CANONICAL_LEASE_TYPE.get(str(values["LeaseType"]))
        stamp = data.get("LastUpdatedDateTime") if stream == LEASES else None
        when = parse_time(stamp)
        if when is not None:
            return WriteReceipt(str(served["Id"]), str(stamp), when, values)
        # tenants, units (and a lease whose LastUpdatedDateTime is null): as streams.record
        return WriteReceipt(str(served["Id"]), content_version(data), sent, values)

    # -------------------------------------------------------------------------- read back

    async def read_back(self, write: OutboundWrite) -> WriteReceipt | None:
        stream = STREAM_OF.get(write.entity)
        if stream is None:
            raise ContractError(f"{write.entity} is not written to Buildium")
        if write.external_id is not None:
            return await self._by_id(write.entity, stream, write.external_id)
        candidates = await self._candidates(stream, write.fields)
        if not candidates:
            return None
        if len(candidates) > 1:
            ids = ", ".join(sorted(str(c.get("Id")) for c in candidates))
            raise WriteIndeterminate(
                f"write {write.write_id}: {len(candidates)} Buildium {stream} match the "
                f"{write.entity} it created ({ids}); a person must tell which is ours"
            )
        return self._receipt(write.entity, stream, candidates[0], self._clock.now())

    async def _by_id(self, entity: str, stream: str, key: str) -> WriteReceipt | None:
        observed = self._clock.now()
        try:
            served = await self._gateway.get_json(f"{self._base}{PATHS[stream]}/{key}")
        except VendorRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._receipt(entity, stream, served, observed)

    async def _candidates(self, stream: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
        if stream == UNITS:
            raise ContractError("units are not created through the platform")
        if stream == TENANTS:
            lease = str(fields["LeaseId"]) if fields.get("LeaseId") is not None else None
            email = fields.get("Email")
            if email:
                found = await self._all(PATHS[TENANTS], {"email": str(email)})
                return [t for t in found
                        if str(t.get("Email") or "").lower() == str(email).lower()
                        and (lease is None or lease in _lease_ids(t))
                        and _same_name(t, fields)]  # fmt: skip
            if lease is None:
                raise WriteIndeterminate("a tenant create without e-mail or lease cannot be "
                                         "found again")  # fmt: skip
            held = await self._gateway.get_json(f"{self._base}{PATHS[LEASES]}/{lease}")
            tenants = held.get("CurrentTenants") if isinstance(held, dict) else None
            return [t for t in tenants or [] if isinstance(t, dict) and _same_name(t, fields)]
        found = await self._all(PATHS[LEASES], {})
        unit, start = fields.get("UnitId"), fields.get("StartDate")
        return [lease for lease in found if str(lease.get("UnitId")) == str(unit)
                and lease.get("LeaseFromDate") == start]  # fmt: skip

    async def _all(self, path: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            params = {**query, "limit": "1000", "offset": str(offset), "orderby": "Id asc"}
            page = await self._gateway.get_json(f"{self._base}{path}", params=params)
            if not isinstance(page, list):
                raise ContractError(f"{path}: Buildium answered a list request without a list")
            out.extend(item for item in page if isinstance(item, dict))
            if len(page) < 1000:
                return out
            offset += len(page)


def _lease_ids(tenant: Mapping[str, Any]) -> set[str]:
    return {str(lease.get("Id")) for lease in tenant.get("Leases") or [] if isinstance(lease, dict)}


def _same_name(tenant: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(fields.get(name) is None or str(tenant.get(name) or "").lower()
               == str(fields[name]).lower() for name in ("FirstName", "LastName"))  # fmt: skip


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
