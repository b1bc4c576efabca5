"""``/v1/listings``: a tenant's canonical listings, filtered and paged by id, and one listing with
an ETag.

A listing reads ``{"id": <canonical id>, "version": n, "confidence": c, <wire name>: <value>,
...}``, the stored record as it is, less the fields the key's payload class may not read
(``cadastre.api.payloads``); one listing adds ``field_confidence`` (wire name -> score, from
provenance). ``confidence`` is null for a record no scoring system wrote. Pages are keyset pages
(``id > last id``), so a listing changed between two requests is neither skipped nor repeated,
and the last page says ``"next_cursor": null``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict
from starlette.responses import Response

from cadastre.api.auth import Reader, hub_of
from cadastre.api.cursor import InvalidCursor, decode_cursor, encode_cursor, query_fingerprint
from cadastre.api.payloads import PayloadPolicy
from cadastre.api.problems import INVALID_CURSOR, PROBLEM_JSON, Problem, ProblemDetails
from cadastre.contract import StandardStatus
from cadastre.ports import FieldFilter, StoredRecord

ENTITY = "Listing"
KEY_FIELD = "ListingKey"
MAX_PAGE = 500

router = APIRouter(prefix="/v1", tags=["listings"])


class ListingOut(BaseModel):
    """A listing: its canonical id and version, then its fields by RESO wire name."""

    model_config = ConfigDict(extra="allow")

    id: str
    version: int
    confidence: float | None


class ListingDetail(ListingOut):
    field_confidence: dict[str, float]


class ListingPage(BaseModel):
    data: list[ListingOut]
    next_cursor: str | None


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {"model": ProblemDetails, "description": description,
            "content": {PROBLEM_JSON: {"schema": schema}}}  # fmt: skip


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: _problem("No API key, or one that is invalid or revoked"),
    422: _problem("A parameter is invalid; `errors` names each one"),
}

_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")


def _restore_plus(value: object) -> object:
    """``+02:00`` sent unencoded in a query string arrives as `` 02:00``; put the plus back."""
    return _SPACED_OFFSET.sub(r"\1+\2", value) if isinstance(value, str) else value


Price = Annotated[Decimal | None, Query(ge=0, le=Decimal(10**12), decimal_places=6)]
Since = Annotated[
    AwareDatetime | None,
    BeforeValidator(_restore_plus),
    Query(description="ISO 8601 date-time with an offset (Z or +HH:MM); inclusive"),
]


def _listing(record: StoredRecord, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": record.id, "version": record.version, "confidence": record.confidence, **data}


def _json(body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), headers=headers, media_type="application/json")


@router.get(
    "/listings",
    response_model=ListingPage,
    responses={400: _problem("The cursor is garbled or from another query"), **PROBLEMS},
    summary="List listings",
)
async def list_listings(
    request: Request,
    key: Reader,
    status: Annotated[StandardStatus | None, Query(description="RESO StandardStatus")] = None,
    city: Annotated[
        str | None, Query(min_length=1, max_length=50, description="exact, ignoring ASCII case")
    ] = None,
    min_price: Price = None,
    max_price: Price = None,
    modified_since: Since = None,
    min_confidence: Annotated[
        float | None,
        Query(ge=0, le=1, description="listings scored at least this (unscored ones are kept)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024, description="a next_cursor")] = None,
) -> Response:
    filters = _filters(status, city, min_price, max_price, modified_since)
    # min_confidence is part of the query a cursor belongs to; it is not a field filter, so it
    # joins the tenant in the fingerprint's scope (repr: 0.8 and 0.80 are one query)
    scope = key.tenant if min_confidence is None else f"{key.tenant}\n{min_confidence!r}"
    fingerprint = query_fingerprint(scope, filters)
    try:
        after = None if cursor is None else decode_cursor(cursor, fingerprint)
    except InvalidCursor as exc:
        raise Problem(400, str(exc), type=INVALID_CURSOR, title="Invalid cursor") from None
    hub = hub_of(request)
    policy = PayloadPolicy(hub, key.tenant, key.payload_class)
    # A field withheld from the key's class reads as absent, so it matches no filter: a listing
    # the store found through a withheld value is dropped, or the filter would probe that value.
    filtered = {f.field for f in filters}
    kept: list[tuple[StoredRecord, dict[str, Any]]] = []
    size = limit + 1  # one more than asked: whether it comes back says if there is a next page
    async with hub.store.unit_of_work(key.tenant, read_only=True) as uow:
        while len(kept) <= limit:
            found = await uow.records.query(
                ENTITY, filters, after_id=after, limit=size, min_confidence=min_confidence
            )
            served = await policy.mask(uow, ENTITY, found, key=KEY_FIELD)
            kept += [(r, d) for r, d in zip(found, served, strict=True) if filtered <= d.keys()]
            if len(found) < size:
                break
            after = found[-1].id
            size = MAX_PAGE + 1  # refilling after drops: in large reads, not one per listing
    page = kept[:limit]
    following = encode_cursor(page[-1][0].id, fingerprint) if len(kept) > limit else None
    return _json({"data": [_listing(r, data) for r, data in page], "next_cursor": following})


def _filters(
    status: StandardStatus | None,
    city: str | None,
    min_price: Decimal | None,
    max_price: Decimal | None,
    modified_since: datetime | None,
) -> list[FieldFilter]:
    filters = []
    if status is not None:
        filters.append(FieldFilter("StandardStatus", "eq", status.value))
    if city is not None:
        filters.append(FieldFilter("City", "eq", city, casefold=True))
    if min_price is not None:
        filters.append(FieldFilter("ListPrice", "ge", min_price, kind="number"))
    if max_price is not None:
        filters.append(FieldFilter("ListPrice", "le", max_price, kind="number"))
    if modified_since is not None:
        filters.append(FieldFilter("ModificationTimestamp", "ge", modified_since, kind="time"))
    return filters


@router.get(
    "/listings/{listing_id}",
    response_model=ListingDetail,
    responses={
        304: {"description": "Not modified: the ETag in If-None-Match is current"},
        404: _problem("No such listing in the key's tenant"),
        **PROBLEMS,
    },
    summary="Get one listing",
)
async def get_listing(
    request: Request,
    key: Reader,
    listing_id: str,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    hub = hub_of(request)
    policy = PayloadPolicy(hub, key.tenant, key.payload_class)
    async with hub.store.unit_of_work(key.tenant, read_only=True) as uow:
        record = await uow.records.get(ENTITY, listing_id)
        if record is None or record.deleted:
            # the same answer for another tenant's id: its existence is not for this key to know
            raise Problem(404, "no such listing")
        (served,) = await policy.mask(uow, ENTITY, [record], key=KEY_FIELD)
        stamps = await uow.provenance.for_record(ENTITY, record.id)
    etag = f'"{record.version}-{record.content_hash}"'
    headers = {"ETag": etag, "Cache-Control": "private", "Vary": "Authorization"}
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    # only the fields served: the score of a withheld field would say that it exists
    scores = {name: stamps[name].confidence for name in served if name in stamps}
    return _json({**_listing(record, served), "field_confidence": scores}, headers)


_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 section 13.1.2: ``*``, or any tag in the list equal by weak comparison."""
    if if_none_match.strip() == "*":
        return True
    return etag.strip('"') in _ENTITY_TAG.findall(if_none_match)
