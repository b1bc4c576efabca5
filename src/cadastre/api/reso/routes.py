"""``/reso/odata``: a read-only RESO Web API (OData v4) over the tenant's canonical records.

``/reso/odata/`` is the service document, ``$metadata`` the CSDL, ``/reso/odata/Property`` (and
``Member``, ``Office``, ``Media``, ``Lookup``) the collections, ``Property/$count`` their size
and ``Property('KEY')`` one record by its RESO key; canonical ids never appear. The bearer API
key of ``/v1`` scopes every read to its tenant, and its payload class withholds fields
(``cadastre.api.payloads``).

Records are read from the store in id order, in batches, narrowed by the store where the filter
allows, then filtered, ordered and sliced here. Pages hold at most ``MAX_PAGE`` records and end
with an ``@odata.nextLink`` carrying ``$skip`` (and what is left of ``$top``); ``$skip`` rather
than a keyset token because ``$orderby`` may sort on any field. Errors are OData error bodies
(``{"error": {"code", "message", "target"}}``), not the problem details of ``/v1``, since OData
clients read those; a missing or bad API key is still the ``/v1`` 401.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from cadastre.api.auth import Reader, hub_of
from cadastre.api.payloads import PayloadPolicy
from cadastre.api.reso.edm import LOOKUP, EdmProperty, Resource, lookups, resources
from cadastre.api.reso.filters import read_value
from cadastre.api.reso.metadata import metadata_xml, service_document
from cadastre.api.reso.query import ODataQuery, QueryError, parse_query, parse_select
from cadastre.contract import display_name
from cadastre.ports import ApiKey, FieldFilter

MAX_PAGE = 200
_INT64 = 2**63
_BATCH = 500  # records read from the store at a time
_HEADERS = {"OData-Version": "4.0"}
_JSON = "application/json; odata.metadata=minimal"
_SEGMENT = re.compile(r"(?P<name>[A-Za-z]+)(?:\((?P<key>.*)\)|(?P<count>/\$count))?")
_KEY = re.compile(r"(?:(?P<field>[A-Za-z0-9_]+)=)?'(?P<value>(?:[^']|'')*)'")

router = APIRouter(prefix="/reso/odata", tags=["reso"])


class ODataError(Exception):
    def __init__(self, status: int, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.target = target


def error_response(exc: ODataError) -> Response:
    body: dict[str, Any] = {"code": str(exc.status), "message": exc.message}
    if exc.target is not None:
        body["target"] = exc.target
    return Response(orjson.dumps({"error": body}), exc.status, headers=_HEADERS,
                    media_type="application/json")  # fmt: skip


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), headers=_HEADERS, media_type=_JSON)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


@router.get("", include_in_schema=False)
@router.get("/", summary="RESO service document: the resources served")
async def service(request: Request, key: Reader) -> Response:
    return _json(service_document(_base(request)))


@router.get("/$metadata", summary="RESO metadata (OData CSDL XML, Lookup-resource style)")
async def metadata(request: Request, key: Reader) -> Response:
    fmt = request.query_params.get("$format")
    if fmt is not None and fmt.split(";")[0].strip().lower() not in ("xml", "application/xml"):
        return error_response(ODataError(400, "$metadata is served as XML only", "$format"))
    return Response(metadata_xml(), headers=_HEADERS, media_type="application/xml")


@router.get("/{segment:path}", summary="A RESO resource, or one record by key: Property('KEY')")
async def resource(request: Request, key: Reader, segment: str) -> Response:
    try:
        return await _answer(request, key, segment)
    except QueryError as exc:
        return error_response(ODataError(400, str(exc), exc.target))
    except ODataError as exc:
        return error_response(exc)


async def _answer(request: Request, key: ApiKey, segment: str) -> Response:
    match = _SEGMENT.fullmatch(segment)
    name = match.group("name") if match else ""
    found = LOOKUP if name == LOOKUP.name else resources().get(name)
    if match is None or found is None:
        raise ODataError(404, f"no resource {segment!r}; see the service document")
    params = request.query_params.multi_items()
    base = _base(request)
    if match.group("key") is not None:
        value = _key_value(match.group("key"), found)
        select = parse_select(params, found)
        row = await _one(request, key, found, value)
        if row is None:
            raise ODataError(404, f"no {found.name} with {found.key} {value!r}")
        context = f"{base}/$metadata#{found.name}/$entity"
        return _json({"@odata.context": context, **_entity(row, found, select)})
    query = parse_query(params, found, hub_of(request).clock.now)
    if match.group("count") is not None:  # Property/$count: the number alone, as text
        query = replace(query, count=True, top=None, skip=0)
        _, total, _ = await _collection(request, key, found, query)
        return Response(str(total), headers=_HEADERS, media_type="text/plain")
    page, total, more = await _collection(request, key, found, query)
    body: dict[str, Any] = {"@odata.context": _context(base, found, query.select)}
    if total is not None:
        body["@odata.count"] = total
    body["value"] = [_entity(row, found, query.select) for row in page]
    if more:
        body["@odata.nextLink"] = _next_link(request, base, found, query, len(page))
    return _json(body)


def _key_value(text: str, resource: Resource) -> str:
    match = _KEY.fullmatch(text.strip())
    if match is None or match.group("field") not in (None, resource.key):
        raise ODataError(400, f"the key is a quoted string: {resource.name}('KEY')", "key")
    return match.group("value").replace("''", "'")


async def _one(
    request: Request, key: ApiKey, resource: Resource, value: str
) -> dict[str, Any] | None:
    if resource is LOOKUP:
        return next((row for row in _lookup_rows() if row["LookupKey"] == value), None)
    if not value or len(value) > 255:
        return None
    hub = hub_of(request)
    policy = PayloadPolicy(hub, key.tenant, key.payload_class)
    async with hub.store.unit_of_work(key.tenant, read_only=True) as uow:
        # two connections may carry one RESO key (two MLSs); the first by id answers
        records = await uow.records.query(
            resource.entity, [FieldFilter(resource.key, "eq", value)], limit=1
        )
        rows = await policy.mask(uow, resource.entity, records, key=resource.key)
    return rows[0] if rows else None


async def _collection(
    request: Request, key: ApiKey, resource: Resource, query: ODataQuery
) -> tuple[list[Mapping[str, Any]], int | None, bool]:
    """The page, the total count (when asked), and whether records follow the page."""
    size = MAX_PAGE if query.top is None else min(MAX_PAGE, query.top)
    # Without an order or a count, reading stops once the page and one more are found.
    enough = None if (query.orderby or query.count) else query.skip + size + 1
    predicate = query.filter.predicate if query.filter else None
    matches: list[Mapping[str, Any]] = []
    if resource is LOOKUP:
        matches = [row for row in _lookup_rows() if predicate is None or predicate(row)]
    else:
        hub = hub_of(request)
        policy = PayloadPolicy(hub, key.tenant, key.payload_class)
        after = None
        async with hub.store.unit_of_work(key.tenant, read_only=True) as uow:
            while enough is None or len(matches) < enough:
                records = await uow.records.query(
                    resource.entity, query.narrowing, after_id=after, limit=_BATCH,
                    min_confidence=query.min_confidence,
                )  # fmt: skip
                rows = await policy.mask(uow, resource.entity, records, key=resource.key)
                matches.extend(row for row in rows if predicate is None or predicate(row))
                if len(records) < _BATCH:
                    break
                after = records[-1].id
    total = len(matches) if query.count else None
    for prop, descending in reversed(query.orderby):  # stable sorts, last key first
        matches.sort(key=partial(_sort_key, prop), reverse=descending)
    window = matches[query.skip :]
    if query.top is not None:
        window = window[: query.top]
    return window[:MAX_PAGE], total, len(window) > MAX_PAGE


def _sort_key(prop: EdmProperty, row: Mapping[str, Any]) -> tuple[Any, ...]:
    value = read_value(prop, row.get(prop.name))
    return (0,) if value is None else (1, value)  # null first ascending, as OData orders


def _context(base: str, resource: Resource, select: Sequence[str] | None) -> str:
    shown = f"({','.join(select)})" if select else ""
    return f"{base}/$metadata#{resource.name}{shown}"


def _next_link(
    request: Request, base: str, resource: Resource, query: ODataQuery, served: int
) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("$skip", "$top")]
    params.append(("$skip", str(query.skip + served)))
    if query.top is not None:
        params.append(("$top", str(query.top - served)))
    return f"{base}/{resource.name}?{urlencode(params, quote_via=quote, safe='$,()')}"


def _entity(
    row: Mapping[str, Any], resource: Resource, select: Sequence[str] | None
) -> dict[str, Any]:
    names = select if select is not None else resource.properties
    return {name: to_json(resource.properties[name], row.get(name)) for name in names}


def to_json(prop: EdmProperty, raw: Any) -> Any:
    """A stored value as OData JSON writes its type: numbers as numbers (a decimal as the
    nearest double: prices and coordinates have far fewer than its 15 significant digits)."""
    value = read_value(prop, raw)
    if value is None or prop.collection:
        return value
    # JSON writers stop at 64-bit integers: a larger whole number goes as a double too
    if isinstance(value, Decimal):
        whole = value == value.to_integral_value() and -_INT64 <= value < _INT64
        return int(value) if whole else float(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return float(value)
    if prop.edm in ("Edm.Date", "Edm.DateTimeOffset"):
        return raw  # as stored: read_value has checked it is an ISO 8601 date or instant
    return value


def _lookup_rows() -> list[dict[str, Any]]:
    return [
        {
            "LookupKey": f"{name}.{value.value}",
            "LookupName": name,
            "LookupValue": value.value,  # what records carry
            "StandardLookupValue": display_name(value),
            "LegacyODataValue": value.value,
            "ModificationTimestamp": None,
        }
        for name, enum in lookups().items()
        for value in enum
    ]
