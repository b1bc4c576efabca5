"""The system query options of a collection request, read and checked against the resource.

Supported: ``$filter``, ``$select``, ``$orderby``, ``$top``, ``$skip``, ``$count`` and ``$format``
(JSON only; ``$metadata`` takes ``application/xml``). Any other ``$`` option (``$expand``,
``$search``, ``$apply``...) is a 400 rather than silently ignored, so a client never mistakes an
unfiltered answer for a filtered one. One custom option: ``min_confidence`` (0 to 1), as on
``/v1/listings``. Other custom options are ignored, as OData allows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cadastre.api.reso.edm import EdmProperty, Resource
from cadastre.api.reso.filters import Compiled, FilterError, compile_filter
from cadastre.ports import FieldFilter

_KNOWN = {"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$format"}
_JSON_FORMATS = {"json", "application/json"}
_ORDER_ITEM = re.compile(r"([A-Za-z0-9_]+)(?:\s+(asc|desc))?", re.IGNORECASE)
_MAX_INT = 2**31 - 1
MAX_ORDERBY = 8  # properties; each is one sort of every match


class QueryError(ValueError):
    def __init__(self, message: str, target: str) -> None:
        super().__init__(message)
        self.target = target


@dataclass(frozen=True)
class ODataQuery:
    filter: Compiled | None = None
    select: list[str] | None = None  # None: every property
    orderby: list[tuple[EdmProperty, bool]] = field(default_factory=list)  # (property, desc)
    top: int | None = None
    skip: int = 0
    count: bool = False
    min_confidence: float | None = None

    @property
    def narrowing(self) -> list[FieldFilter]:
        return self.filter.narrowing if self.filter else []


def parse_query(
    params: Sequence[tuple[str, str]], resource: Resource, now: Callable[[], datetime]
) -> ODataQuery:
    options = _single(params)
    for name in options:
        if name.startswith("$") and name not in _KNOWN:
            raise QueryError(f"the query option {name} is not supported here", name)
    fmt = options.get("$format")
    if fmt is not None and fmt.split(";")[0].strip().lower() not in _JSON_FORMATS:
        raise QueryError("collections are served as JSON only ($format=json)", "$format")
    compiled = None
    if (text := options.get("$filter")) is not None:
        try:
            compiled = compile_filter(text, resource, now)
        except FilterError as exc:
            raise QueryError(str(exc), "$filter") from None
    return ODataQuery(
        filter=compiled,
        select=_select(options.get("$select"), resource),
        orderby=_orderby(options.get("$orderby"), resource),
        top=_integer(options, "$top"),
        skip=_integer(options, "$skip") or 0,
        count=_boolean(options.get("$count"), "$count"),
        min_confidence=_confidence(options.get("min_confidence")),
    )


def parse_select(params: Sequence[tuple[str, str]], resource: Resource) -> list[str] | None:
    """``$select`` alone, for a fetch by key (which takes no other option but ``$format``)."""
    options = _single(params)
    for name in options:
        if name.startswith("$") and name not in ("$select", "$format"):
            raise QueryError(f"the query option {name} does not apply to one record", name)
    return _select(options.get("$select"), resource)


def _single(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in params:
        if name in options:
            raise QueryError(f"the query option {name} is given twice", name)
        options[name] = value
    return options


def _select(text: str | None, resource: Resource) -> list[str] | None:
    if text is None or text.strip() == "*":
        return None
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if name not in resource.properties:
            raise QueryError(f"{resource.name} has no property {name!r} to select", "$select")
    return list(dict.fromkeys(names))


def _orderby(text: str | None, resource: Resource) -> list[tuple[EdmProperty, bool]]:
    if text is None:
        return []
    out: list[tuple[EdmProperty, bool]] = []
    for part in text.split(","):
        match = _ORDER_ITEM.fullmatch(part.strip())
        if match is None:
            raise QueryError(
                f"$orderby item {part.strip()!r} is not 'Field [asc|desc]'", "$orderby"
            )
        prop = resource.properties.get(match.group(1))
        if prop is None:
            raise QueryError(f"{resource.name} has no property {match.group(1)!r}", "$orderby")
        if prop.collection:
            raise QueryError(f"{prop.name} is a collection and has no order", "$orderby")
        if any(prop is seen for seen, _ in out):
            continue  # ordered already by its first mention: a second changes nothing
        if len(out) == MAX_ORDERBY:
            raise QueryError(f"$orderby takes at most {MAX_ORDERBY} properties", "$orderby")
        out.append((prop, (match.group(2) or "asc").lower() == "desc"))
    return out


def _integer(options: Mapping[str, str], name: str) -> int | None:
    text = options.get(name)
    if text is None:
        return None
    # ASCII digits only: str.isdigit also takes '²' (int() refuses it) and other scripts' digits
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_INT:
        raise QueryError(f"{name} must be a whole number from 0 to {_MAX_INT}", name)
    return int(text)


def _boolean(text: str | None, name: str) -> bool:
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise QueryError(f"{name} must be true or false", name)


def _confidence(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise QueryError("min_confidence must be a number from 0 to 1", "min_confidence")
    return value
