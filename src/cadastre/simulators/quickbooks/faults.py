"""QuickBooks Online's answers that are not data: fault bodies, times as Intuit writes them, and
the ``intuit_tid`` every answer carries.

A fault body is ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"?}], "type"},
"time"}`` (IntuitBaseTypes' ``Fault``/``Error``; ``type`` is ValidationFault, AuthenticationFault,
AuthorizationFault or SystemFault). Codes used here are Intuit's: 5010 stale object, 610 object
not found, 6240 duplicate name, 2020 required parameter missing, 2010 unsupported property,
2500 invalid reference, 4000 query parse error, 3200 authentication failed, 003001 throttled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

# QBO writes times in the company's zone, to the second: 2026-11-27T01:00:00-08:00.
COMPANY_OFFSET = timezone(timedelta(hours=-8))


def qbo_time(value: datetime, zone: timezone = COMPANY_OFFSET) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds")


def parse_qbo_time(text: str) -> datetime:
    """An ISO 8601 date-time with an offset (a bare date is midnight UTC); ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        if "T" in text:
            raise ValueError(f"{text!r} has no UTC offset")
        value = value.replace(tzinfo=UTC)
    return value


def transaction_id() -> str:
    """An ``intuit_tid``: what Intuit support asks for."""
    return f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"


@dataclass
class QboFault(Exception):
    status: int
    code: str
    message: str
    detail: str
    kind: str = "ValidationFault"
    element: str | None = None

    def body(self, now: datetime) -> dict[str, Any]:
        error: dict[str, Any] = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element is not None:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.kind}, "time": qbo_time(now)}


def stale(entity: str) -> QboFault:
    return QboFault(
        400, "5010", "Stale Object Error",
        f"Stale Object Error : You and another user were working on this {entity} at the same "
        "time. The other user finished before you did, so your work was not saved.",
    )  # fmt: skip


def not_found(entity: str, object_id: object) -> QboFault:
    return QboFault(
        400, "610", "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. Check the "
        f"fields with accounts, customers, items, vendors or employees. ({entity} {object_id})",
    )  # fmt: skip


def missing(name: str) -> QboFault:
    return QboFault(
        400, "2020", "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request", element=name,
    )  # fmt: skip


def invalid(name: str, why: str) -> QboFault:
    return QboFault(
        400, "2010", "Request has invalid or unsupported property",
        f"Property Name:{name} specified is unsupported or invalid: {why}", element=name,
    )  # fmt: skip


def bad_reference(name: str, value: object) -> QboFault:
    return QboFault(
        400, "2500", "Invalid Reference Id",
        f"Invalid Reference Id : {name} assigned is invalid or inactive: {value}", element=name,
    )  # fmt: skip


def duplicate_name(entity: str) -> QboFault:
    return QboFault(
        400, "6240", "Duplicate Name Exists Error",
        f"The name supplied already exists. : Another {entity} is already using this name.",
    )  # fmt: skip


def business(detail: str) -> QboFault:
    return QboFault(
        400, "6000", "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
    )  # fmt: skip


def unsupported(operation: str) -> QboFault:
    return QboFault(400, "500", "Unsupported Operation", f"Operation {operation} is not supported.")


def query_error(detail: str) -> QboFault:
    return QboFault(400, "4000", "Error parsing query", f"QueryParserError: {detail}")


def auth_failed(detail: str) -> QboFault:
    return QboFault(
        401, "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", detail,
        kind="AuthenticationFault",
    )  # fmt: skip


def not_authorized(detail: str) -> QboFault:
    return QboFault(
        403, "3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        detail, kind="AuthorizationFault",
    )  # fmt: skip


def throttled() -> QboFault:
    # Intuit's advice in the answer itself: there is no Retry-After header.
    return QboFault(
        429, "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached. Wait 60 seconds before making more requests.",
        kind="SERVICE",
    )  # fmt: skip


def system_fault() -> QboFault:
    return QboFault(
        500, "10000", "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred while accessing or saving your data.",
        kind="SystemFault",
    )  # fmt: skip
