"""The CRM's records: contacts and deals as HubSpot keeps them (every property value a string,
ids numeric strings), archiving, merging, and the search filters.

A record answers as ``{"id", "properties", "createdAt", "updatedAt", "archived"[, "archivedAt"]}``.
Which properties an answer carries: the ones asked for (``properties=``) that exist, else the
type's defaults, and always ``hs_object_id``, ``createdate`` and the type's last-modified property
(HubSpot adds those three to every answer). Unknown names asked for are passed over, as HubSpot
does; unknown names written are refused (``PROPERTY_DOESNT_EXIST``).

A merge folds ``objectIdToMerge`` into ``primaryObjectId``: the primary keeps its values and takes
the merged record's where it has none, lists the merged id in ``hs_merged_object_ids`` (``;``
separated), and the merged id from then on answers as the primary (a GET or a PATCH by it reach
the primary): HubSpot keeps merged ids as aliases of the survivor. HubSpot's newer merges
(``merge_new_id``) make a new record instead, and both old ids answer as it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

CONTACTS, DEALS = "contacts", "deals"
OBJECT_TYPES = (CONTACTS, DEALS)
MODIFIED = {CONTACTS: "lastmodifieddate", DEALS: "hs_lastmodifieddate"}
SINGULAR = {CONTACTS: "contact", DEALS: "deal"}
WRITABLE = {
    CONTACTS: frozenset({
        "firstname", "lastname", "email", "phone", "mobilephone", "company", "jobtitle",
        "address", "city", "state", "zip", "country", "lifecyclestage", "hs_additional_emails",
    }),
    DEALS: frozenset({
        "dealname", "dealstage", "amount", "closedate", "pipeline", "deal_currency_code",
        "description", "hs_contact_ids", "property_id",
    }),
}  # fmt: skip
READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate",
                       "hs_merged_object_ids"})  # fmt: skip
DEFAULTS = {
    CONTACTS: ("firstname", "lastname", "email"),
    DEALS: ("dealname", "amount", "closedate", "pipeline", "dealstage"),
}
ALWAYS = {
    CONTACTS: ("createdate", "hs_object_id", "lastmodifieddate"),
    DEALS: ("createdate", "hs_lastmodifieddate", "hs_object_id"),
}
SEARCH_CAP = 10_000  # HubSpot's search never pages past this many results of one query
OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
                       "HAS_PROPERTY", "NOT_HAS_PROPERTY"})  # fmt: skip
DATE_PROPERTIES = frozenset({"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"})


def stamp(when: datetime) -> str:
    """HubSpot's timestamps: UTC, milliseconds, ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class HubSpotError(Exception):
    """An answer other than success, in HubSpot's error shape."""

    def __init__(
        self, status: int, message: str, category: str, *, context: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.context = context


def not_found() -> HubSpotError:
    return HubSpotError(404, "resource not found", "OBJECT_NOT_FOUND")


def invalid(message: str, **context: Any) -> HubSpotError:
    return HubSpotError(400, message, "VALIDATION_ERROR", context=context or None)


@dataclass(eq=False)
class CrmObject:
    kind: str
    id: str
    properties: dict[str, str | None]
    created: datetime
    updated: datetime
    archived_at: datetime | None = None
    merged_into: str | None = None  # a merged-away record: its id answers as this one

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def answer(self, wanted: Iterable[str] | None = None) -> dict[str, Any]:
        names = list(wanted) if wanted is not None else list(DEFAULTS[self.kind])
        names += [n for n in ALWAYS[self.kind] if n not in names]
        props = {n: self.properties.get(n) for n in names if n in self.properties}
        body: dict[str, Any] = {
            "id": self.id, "properties": props, "createdAt": stamp(self.created),
            "updatedAt": stamp(self.updated), "archived": self.archived,
        }  # fmt: skip
        if self.archived_at is not None:
            body["archivedAt"] = stamp(self.archived_at)
        return body


@dataclass
class Change:
    """What one write did to one record: the webhook events are made from it."""

    kind: str
    object_id: str
    what: str  # "creation", "propertyChange", "deletion", "restore", "merge"
    changed: dict[str, str | None] = field(default_factory=dict)
    merged: tuple[str, ...] = ()
    moved: int = 0
    primary: str | None = None  # a merge into a new record: the primary's id


class ObjectStore:
    def __init__(self) -> None:
        self._objects: dict[str, dict[str, CrmObject]] = {kind: {} for kind in OBJECT_TYPES}
        self._next = {CONTACTS: 1001, DEALS: 5001}
        self._emails: dict[str, str] = {}  # lower-case email -> id of the live contact with it

    def __repr__(self) -> str:
        return f"ObjectStore({ {k: len(v) for k, v in self._objects.items()} })"

    def all(self, kind: str) -> list[CrmObject]:
        """Every record of ``kind`` that is not merged away, archived ones too, in id order."""
        found = [o for o in self._objects[kind].values() if o.merged_into is None]
        return sorted(found, key=lambda o: int(o.id))

    def live(self, kind: str) -> list[CrmObject]:
        return [o for o in self.all(kind) if not o.archived]

    def resolve(self, kind: str, object_id: str, *, archived: bool = False) -> CrmObject:
        """The record ``object_id`` names, following merges; 404 when absent (or archived,
        unless ``archived``: then only archived ones)."""
        found = self._objects[kind].get(str(object_id).strip())
        seen = 0
        while found is not None and found.merged_into is not None and seen < 100:
            found, seen = self._objects[kind].get(found.merged_into), seen + 1
        if found is None or found.archived != archived:
            raise not_found()
        return found

    def by_email(self, email: str) -> CrmObject | None:
        wanted = email.strip().lower()
        found = self._objects[CONTACTS].get(self._emails.get(wanted, ""))
        if found is None or found.archived or found.merged_into is not None:
            return None
        return found if (found.properties.get("email") or "").lower() == wanted else None

    def _index(self, record: CrmObject, *, keep: bool) -> None:
        email = (record.properties.get("email") or "").strip().lower()
        if record.kind != CONTACTS or not email:
            return
        if keep:
            self._emails.setdefault(email, record.id)
        elif self._emails.get(email) == record.id:
            del self._emails[email]

    # ----------------------------------------------------------------------------- writing

    def checked(self, kind: str, properties: Any) -> dict[str, str | None]:
        if not isinstance(properties, dict):
            raise invalid("properties is an object of property names to values")
        unknown = sorted(n for n in properties if n not in WRITABLE[kind] and n not in READ_ONLY)
        if unknown:
            raise invalid(f"Property values were not valid: {', '.join(unknown)} do(es) not "
                          "exist", propertyName=unknown)  # fmt: skip
        fixed = sorted(n for n in properties if n in READ_ONLY)
        if fixed:
            raise invalid(f"{', '.join(fixed)} is a read-only property", propertyName=fixed)
        out: dict[str, str | None] = {}
        for name, value in properties.items():
            if value is None or value == "":
                out[name] = None
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, int | float | str):
                out[name] = str(value)
            else:
                raise invalid(f"{name}: a property value is a string, number or boolean")
        if kind == DEALS and out.get("amount") is not None:
            try:
                float(out["amount"] or "")
            except ValueError:
                raise invalid("amount is a number", propertyName=["amount"]) from None
        return out

    def create(self, kind: str, properties: Mapping[str, str | None], now: datetime) -> CrmObject:
        email = properties.get("email")
        if kind == CONTACTS and email:
            existing = self.by_email(email)
            if existing is not None:
                raise HubSpotError(409, f"Contact already exists. Existing ID: {existing.id}",
                                   "CONFLICT")  # fmt: skip
        object_id = str(self._next[kind])
        self._next[kind] += 1
        props: dict[str, str | None] = {k: v for k, v in properties.items() if v is not None}
        props |= {"hs_object_id": object_id, "createdate": stamp(now), MODIFIED[kind]: stamp(now)}
        created = CrmObject(kind, object_id, props, now, now)
        self._objects[kind][object_id] = created
        self._index(created, keep=True)
        return created

    def update(
        self, record: CrmObject, properties: Mapping[str, str | None], now: datetime
    ) -> dict[str, str | None]:
        """Apply a partial update; what changed (an unchanged value is not a change)."""
        email = properties.get("email")
        if record.kind == CONTACTS and email:
            other = self.by_email(email)
            if other is not None and other is not record:
                raise HubSpotError(409, f"Contact already exists. Existing ID: {other.id}",
                                   "CONFLICT")  # fmt: skip
        changed = {k: v for k, v in properties.items() if record.properties.get(k) != v}
        self._index(record, keep=False)
        for name, value in changed.items():
            if value is None:
                record.properties.pop(name, None)
            else:
                record.properties[name] = value
        self._index(record, keep=True)
        # HubSpot moves the modification time on every accepted write, changed or not.
        record.updated = now
        record.properties[MODIFIED[record.kind]] = stamp(now)
        return changed

    def archive(self, record: CrmObject, now: datetime) -> None:
        self._index(record, keep=False)
        record.archived_at = now
        record.updated = now
        record.properties[MODIFIED[record.kind]] = stamp(now)

    def restore(self, record: CrmObject, now: datetime) -> None:
        email = record.properties.get("email")
        if email and self.by_email(email) is not None:
            raise HubSpotError(409, "a live contact has this record's email", "CONFLICT")
        record.archived_at = None
        self._index(record, keep=True)
        record.updated = now
        record.properties[MODIFIED[record.kind]] = stamp(now)

    def merge(self, primary: CrmObject, merged: CrmObject, now: datetime) -> int:
        """Fold ``merged`` into ``primary``; how many properties moved."""
        if primary is merged:
            raise invalid("Cannot merge an object with itself")
        moved = 0
        for name, value in merged.properties.items():
            if name in READ_ONLY or value is None:
                continue
            if name == "email" and primary.properties.get("email"):
                extra = [e for e in (primary.properties.get("hs_additional_emails") or "")
                         .split(";") if e]  # fmt: skip
                primary.properties["hs_additional_emails"] = ";".join([*extra, value])
                continue
            if not primary.properties.get(name):
                primary.properties[name] = value
                moved += 1
        ids = [i for i in (primary.properties.get("hs_merged_object_ids") or "").split(";") if i]
        earlier = [i for i in (merged.properties.get("hs_merged_object_ids") or "").split(";")
                   if i]  # fmt: skip
        primary.properties["hs_merged_object_ids"] = ";".join([*ids, *earlier, merged.id])
        self._index(merged, keep=False)
        merged.merged_into = primary.id
        primary.updated = now
        primary.properties[MODIFIED[primary.kind]] = stamp(now)
        return moved

    def merge_into_new(
        self, primary: CrmObject, merged: CrmObject, now: datetime
    ) -> tuple[CrmObject, int]:
        """HubSpot's merge since its "updated merge functionality for contacts and companies":
        a new record takes the primary's values, then the merged one's where it has none; both
        old ids answer as the new one. The new record, and how many properties moved."""
        if primary is merged:
            raise invalid("Cannot merge an object with itself")
        object_id = str(self._next[primary.kind])
        self._next[primary.kind] += 1
        made = CrmObject(primary.kind, object_id, {"hs_object_id": object_id,
                         "createdate": stamp(primary.created)}, primary.created, now)  # fmt: skip
        self._objects[primary.kind][object_id] = made
        self.merge(made, primary, now)
        moved = self.merge(made, merged, now)
        self._index(made, keep=True)
        return made, moved


# ----------------------------------------------------------------------------------- search


def search_filter(kind: str, body: Mapping[str, Any]) -> Any:
    """A predicate over records for a search body's ``filterGroups`` (groups OR, filters AND);
    ``HubSpotError`` 400 naming what is wrong."""
    groups = body.get("filterGroups", [])
    if not isinstance(groups, list):
        raise invalid("filterGroups is a list")
    if len(groups) > 5:
        raise invalid("Too many filter groups: at most 5")
    parsed: list[list[tuple[str, str, Any]]] = []
    total = 0
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise invalid("each filter group has a list of filters")
        if len(filters) > 6:
            raise invalid("Too many filters in a group: at most 6")
        total += len(filters)
        parsed.append([_one_filter(kind, f) for f in filters])
    if total > 18:
        raise invalid("Too many filters: at most 18 in all")

    def matches(record: CrmObject) -> bool:
        if not parsed:
            return True
        return any(all(_test(record, *f) for f in group) for group in parsed)

    return matches


def _one_filter(kind: str, raw: Any) -> tuple[str, str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("propertyName"), str):
        raise invalid("a filter has a propertyName and an operator")
    name, operator = raw["propertyName"], raw.get("operator", "EQ")
    if operator not in OPERATORS:
        raise invalid(f"unknown operator {operator!r}")
    if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return name, operator, None
    if operator == "BETWEEN":
        return name, operator, (_value(name, raw.get("value")), _value(name, raw.get("highValue")))
    if operator in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list):
            raise invalid(f"{operator} needs values")
        return name, operator, [_value(name, v) for v in values]
    if "value" not in raw:
        raise invalid(f"the filter on {name} has no value")
    return name, operator, _value(name, raw.get("value"))


def _value(name: str, value: Any) -> Any:
    """A filter value in the property's order: dates as epoch milliseconds (HubSpot takes
    either milliseconds or ISO text), numbers as numbers, text lower-cased."""
    if name in DATE_PROPERTIES:
        return _millis(value, name)
    if name in ("hs_object_id", "amount"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid(f"{name}: {value!r} is not a number") from None
    return str(value).lower() if value is not None else None


def _millis(value: Any, name: str) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if value.strip().isdigit():
            return int(value.strip())
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return int(parsed.timestamp() * 1000)
    raise invalid(f"{name}: {value!r} is not a date (epoch milliseconds or ISO 8601)")


def sort_value(record: CrmObject, name: str) -> Any:
    held = record.properties.get(name)
    if held is None:
        return (1, 0)
    return (0, _value(name, held))


def _test(record: CrmObject, name: str, operator: str, wanted: Any) -> bool:
    held = record.properties.get(name)
    if operator == "HAS_PROPERTY":
        return held is not None
    if operator == "NOT_HAS_PROPERTY":
        return held is None
    if held is None:
        return operator in ("NEQ", "NOT_IN")
    value = _value(name, held)
    match operator:
        case "EQ":
            return bool(value == wanted)
        case "NEQ":
            return bool(value != wanted)
        case "LT":
            return bool(value < wanted)
        case "LTE":
            return bool(value <= wanted)
        case "GT":
            return bool(value > wanted)
        case "GTE":
            return bool(value >= wanted)
        case "BETWEEN":
            return bool(wanted[0] <= value <= wanted[1])
        case "IN":
            return value in wanted
        case _:  # NOT_IN
            return value not in wanted
