"""What the connector knows of each HubSpot object type: its path, key and last-modified
properties, the properties it asks for, and how canonical wire names translate to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KEY = "hs_object_id"
MERGED_IDS = "hs_merged_object_ids"
CHANGE_SOURCE = "@changeSource"  # beside the properties: who made the change (webhooks only)
SOURCE_ID = "@sourceId"


@dataclass(frozen=True)
class Stream:
    name: str  # the HubSpot object type, also the stream name: "contacts"
    entity: str  # canonical entity
    modified: str  # the last-modified property
    properties: tuple[str, ...]  # asked for on every read
    to_vendor: dict[str, str]  # canonical wire name -> property (what write-back may send)

    @property
    def path(self) -> str:
        return f"/crm/v3/objects/{self.name}"


CONTACTS = Stream(
    "contacts", "Contact", "lastmodifieddate",
    ("firstname", "lastname", "email", "phone", "mobilephone", "company", "jobtitle",
     "createdate", "lastmodifieddate", KEY, MERGED_IDS),
    {"FirstName": "firstname", "LastName": "lastname", "Email": "email",
     "MobilePhone": "mobilephone", "HomePhone": "phone", "Company": "company",
     "JobTitle": "jobtitle"},
)  # fmt: skip
DEALS = Stream(
    "deals", "Deal", "hs_lastmodifieddate",
    ("dealname", "dealstage", "amount", "deal_currency_code", "closedate", "pipeline",
     "hs_contact_ids", "property_id", "createdate", "hs_lastmodifieddate", KEY),
    {"DealName": "dealname", "DealStage": "dealstage", "Amount": "amount",
     "Currency": "deal_currency_code", "CloseDate": "closedate", "Pipeline": "pipeline",
     "ContactIds": "hs_contact_ids", "PropertyId": "property_id"},
)  # fmt: skip
STREAMS = {s.name: s for s in (CONTACTS, DEALS)}
BY_ENTITY = {s.entity: s for s in (CONTACTS, DEALS)}
LIST_PROPERTIES = frozenset({"hs_contact_ids"})  # ";"-joined lists


def flat(stream: Stream, item: Any) -> Any:
    """A HubSpot object answer as the flat record mapping reads: its properties, with the id as
    ``hs_object_id`` when the answer left the property out."""
    if not isinstance(item, dict) or not isinstance(item.get("properties"), dict):
        return item
    data = dict(item["properties"])
    if data.get(KEY) in (None, "") and item.get("id") is not None:
        data[KEY] = str(item["id"])
    return data


def vendor_value(wire: str, value: Any) -> str:
    """A canonical value as a HubSpot property value (text; empty clears the property)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_value(prop: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if prop in LIST_PROPERTIES:
        return [v for v in str(value).split(";") if v]
    return value


def iso_millis(millis: int) -> str:
    when = datetime.fromtimestamp(millis / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
