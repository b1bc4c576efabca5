"""Media: a listing's photos, inline through ``$expand=Media`` or as the ``Media`` resource.

A listing with ``PhotosCount`` n has n Media records, made from its key, its photo version and its
``PhotosChangeTimestamp`` (nothing is stored): when an agent changes the photos, the version
moves, every URL changes and ``MediaModificationTimestamp`` is the new ``PhotosChangeTimestamp``.
The resource pages in (MediaModificationTimestamp, MediaKey) order with a key-set ``$skiptoken``;
``$filter`` and ``$select`` work over the Media fields, ``$orderby`` only names that order.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.simulators.reso.odata_filter import (
    QueryError,
    compile_filter,
    parse_filter,
    wire_datetime,
)
from cadastre.simulators.reso.schema import DATETIMEOFFSET, INT32, STRING, FieldSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

MEDIA_KEY, MEDIA_TIMESTAMP = "MediaKey", "MediaModificationTimestamp"
MEDIA_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(MEDIA_KEY, STRING, 255),
        FieldSpec("ResourceRecordKey", STRING, 255),
        FieldSpec("ResourceName", STRING, 50),
        FieldSpec("MediaCategory", STRING, 50),
        FieldSpec("MediaType", STRING, 50),
        FieldSpec("Order", INT32),
        FieldSpec("MediaURL", STRING, 8000),
        FieldSpec("ShortDescription", STRING, 50),
        FieldSpec(MEDIA_TIMESTAMP, DATETIMEOFFSET),
    )
}
MEDIA_OPTIONS = frozenset({"$filter", "$select", "$top", "$orderby", "$skiptoken"})
MEDIA_ORDERS = ("", MEDIA_TIMESTAMP, f"{MEDIA_TIMESTAMP},{MEDIA_KEY}")


def media_for(key: str, photos: int, version: int, changed: str | None) -> list[dict[str, Any]]:
    """The Media records of one listing, in Order."""
    if not photos or changed is None:
        return []
    return [
        {
            MEDIA_KEY: f"{key}-{order:02d}",
            "ResourceRecordKey": key,
            "ResourceName": "Property",
            "MediaCategory": "Photo",
            "MediaType": "jpeg",
            "Order": order,
            "MediaURL": f"https://photos.example.com/{key}/{order:02d}.jpg?v={version}",
            "ShortDescription": "Front" if order == 1 else f"Photo {order}",
            MEDIA_TIMESTAMP: changed,
        }
        for order in range(1, photos + 1)
    ]


@dataclass(frozen=True)
class MediaPage:
    value: list[dict[str, Any]]
    next_token: str | None  # the $skiptoken of the next page, None on the last


def query_media(
    media: list[dict[str, Any]],
    options: Mapping[str, str],
    default_top: int,
    max_top: int,
) -> MediaPage:
    """One page of ``media`` (already in MediaModificationTimestamp, MediaKey order)."""
    unknown = sorted(name for name in options if name not in MEDIA_OPTIONS)
    if unknown:
        raise QueryError(f"the query option {unknown[0]} is not supported on Media")
    if options.get("$orderby", "").replace(" asc", "").replace(" ", "") not in MEDIA_ORDERS:
        raise QueryError(f"Media is ordered by {MEDIA_TIMESTAMP},{MEDIA_KEY} only")
    top_text = options.get("$top", str(default_top)).strip()
    if not (top_text.isascii() and top_text.isdigit()):
        raise QueryError("$top is a non-negative integer")
    top = min(int(top_text), max_top) if len(top_text) <= 18 else max_top
    select = None
    if "$select" in options:
        select = [name.strip() for name in options["$select"].split(",")]
        for name in select:
            if name not in MEDIA_FIELDS:
                raise QueryError(f"$select: unknown field {name!r}")
    predicate: Callable[[dict[str, Any]], bool] | None = None
    if "$filter" in options:
        expr = parse_filter(options["$filter"], dict(MEDIA_FIELDS))
        predicate = compile_filter(expr, _getter)
    start = 0
    if "$skiptoken" in options:
        after = _decode(options["$skiptoken"])
        start = next((i for i, item in enumerate(media) if _position(item) > after), len(media))
    chosen: list[dict[str, Any]] = []
    more = False
    for item in media[start:]:
        if predicate is not None and not predicate(item):
            continue
        if len(chosen) == top:
            more = True
            break
        chosen.append(item)
    token = _encode(_position(chosen[-1])) if more and chosen else None
    if select is not None:
        chosen = [{name: item.get(name) for name in select} for item in chosen]
    return MediaPage(chosen, token)


def _getter(name: str) -> Callable[[dict[str, Any]], Any]:
    if MEDIA_FIELDS[name].edm == DATETIMEOFFSET:
        return lambda item: wire_datetime(item[name]) if item.get(name) else None
    return lambda item: item.get(name)


def _position(item: Mapping[str, Any]) -> tuple[Any, str]:
    return (wire_datetime(item[MEDIA_TIMESTAMP]), item[MEDIA_KEY])


def media_order(item: Mapping[str, Any]) -> tuple[Any, str]:
    return _position(item)


def _encode(position: tuple[Any, str]) -> str:
    stamp, key = position
    payload = orjson.dumps([stamp.isoformat(), key])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode(token: str) -> tuple[Any, str]:
    try:
        stamp, key = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return (wire_datetime(stamp), str(key))
    except (binascii.Error, ValueError, TypeError):
        raise QueryError("$skiptoken is not one this server issued") from None
