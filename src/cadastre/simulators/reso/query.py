"""OData query options on the Property collection, and running them over the index.

``$top`` is the page size (capped at ``page_size_max``, or refused above it with
``over_max="error"``; ``default_top`` when absent), as RESO servers use it:
``@odata.nextLink`` carries the same ``$filter``, ``$select``, ``$orderby`` and ``$top`` plus a
``$skiptoken`` holding the last row's sort values and ListingKey. ListingKey is always the final
sort key, so the token names one exact place in the order and the next page starts strictly
after it: a record changed mid-paging moves to its new place (served again later if that is
ahead), and no other record shifts. ``$skip`` still works as an offset, applied after the token.
``$orderby`` of ModificationTimestamp (asc) - or none - walks the index directly; any other order
sorts the matching rows for each page (fine for tests, slow for 50,000 rows).
``$expand`` names navigation properties the dialect offers (``Media``); with one, ``$top`` is
capped at ``expand_max`` instead (MLS Grid: 5,000 records a page, 1,000 with ``$expand``).
Nulls sort first ascending and last descending, as OData specifies.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.simulators.reso.odata_filter import (
    Expr,
    QueryError,
    compile_filter,
    parse_datetime,
    parse_filter,
    wire_date,
    wire_datetime,
)
from cadastre.simulators.reso.records import Row, to_micros
from cadastre.simulators.reso.schema import (
    BOOLEAN,
    DATE,
    DATETIMEOFFSET,
    DECIMAL,
    DOUBLE,
    INT32,
    KEY_FIELD,
    TIMESTAMP_FIELD,
)
from cadastre.simulators.reso.schema import FieldSpec as Spec

if TYPE_CHECKING:
    from cadastre.simulators.reso.index import RecordIndex

DEFAULT_PAGE_SIZE = 100
REPLICATION_ORDER = ((TIMESTAMP_FIELD, False), (KEY_FIELD, False))
SUPPORTED = frozenset(
    {"$filter", "$select", "$top", "$skip", "$orderby", "$count", "$skiptoken", "$expand"}
)
CARRIED = ("$filter", "$select", "$orderby", "$top", "$expand")  # into the nextLink


@dataclass(frozen=True)
class Query:
    options: Mapping[str, str]  # the raw options, to rebuild the nextLink from
    filter: Expr | None
    select: tuple[str, ...] | None
    order: tuple[tuple[str, bool], ...]  # (field, descending); always ends with ListingKey
    top: int
    skip: int
    count: bool
    after: tuple[Any, ...] | None  # the skiptoken's sort values
    expand: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    more: bool
    count: int | None


def getter(name: str, fields: Mapping[str, Spec]) -> Callable[[Row], Any]:
    """How the server reads a field: its true value, typed for comparison."""
    if name == TIMESTAMP_FIELD:
        return lambda row: row.modified
    if name == KEY_FIELD:
        return lambda row: row.key
    edm = fields[name].edm
    if edm == DATETIMEOFFSET:
        return lambda row: _typed(row.data.get(name), wire_datetime)
    if edm == DATE:
        return lambda row: _typed(row.data.get(name), wire_date)
    return lambda row: row.data.get(name)


def _typed(value: Any, parse: Callable[[str], Any]) -> Any:
    return parse(value) if isinstance(value, str) else value


# ------------------------------------------------------------------------------------- parsing


def parse_query(
    pairs: list[tuple[str, str]],
    fields: Mapping[str, Spec],
    page_size_max: int,
    *,
    default_top: int = DEFAULT_PAGE_SIZE,
    over_max: str = "cap",
    expandable: tuple[str, ...] = (),
    expand_max: int | None = None,
) -> Query:
    options: dict[str, str] = {}
    for name, value in pairs:
        if not name.startswith("$"):
            continue  # not ours: OData ignores custom options it does not know
        if name not in SUPPORTED:
            raise QueryError(f"the query option {name} is not supported")
        if name in options:
            raise QueryError(f"the query option {name} is given twice")
        options[name] = value
    field_map = dict(fields)
    expr = parse_filter(options["$filter"], field_map) if "$filter" in options else None
    select = _parse_select(options["$select"], fields) if "$select" in options else None
    order = _parse_orderby(options.get("$orderby", ""), fields)
    expand = _parse_expand(options["$expand"], expandable) if "$expand" in options else ()
    cap = expand_max if expand and expand_max is not None else page_size_max
    top = _non_negative(options, "$top", min(default_top, cap))
    if top > cap and over_max == "error":
        with_expand = " with $expand" if expand else ""
        raise QueryError(f"$top is at most {cap}{with_expand}")
    top = min(top, cap)
    count = options.get("$count", "false")
    if count not in ("true", "false"):
        raise QueryError("$count is true or false")
    after = _decode_token(options["$skiptoken"], order, fields) if "$skiptoken" in options else None
    return Query(
        options,
        expr,
        select,
        order,
        top,
        _non_negative(options, "$skip", 0),
        count == "true",
        after,
        expand,
    )


def _parse_expand(text: str, expandable: tuple[str, ...]) -> tuple[str, ...]:
    if not expandable:  # an MLS without navigation properties does not know the option
        raise QueryError("the query option $expand is not supported")
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    for name in names:
        if name not in expandable:
            offered = ", ".join(expandable)
            raise QueryError(f"$expand: {name!r} cannot be expanded here (offered: {offered})")
    return names


def _non_negative(options: Mapping[str, str], name: str, default: int) -> int:
    if name not in options:
        return default
    text = options[name].strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit(), but int("²") fails
        raise QueryError(f"{name} is a non-negative integer")
    return int(text) if len(text) <= 18 else 10**18  # int() refuses over 4,300 digits


def _parse_select(text: str, fields: Mapping[str, Spec]) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name not in fields:
            raise QueryError(f"$select: unknown field {name!r}")
    return tuple(dict.fromkeys(names))


def _parse_orderby(text: str, fields: Mapping[str, Spec]) -> tuple[tuple[str, bool], ...]:
    order: list[tuple[str, bool]] = []
    for item in (part.strip() for part in text.split(",")) if text.strip() else ():
        words = item.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise QueryError(f"$orderby: cannot read {item!r} (Field [asc|desc])")
        if words[0] not in fields:
            raise QueryError(f"$orderby: unknown field {words[0]!r}")
        if all(words[0] != seen for seen, _ in order):
            order.append((words[0], len(words) == 2 and words[1] == "desc"))
    if not order:
        return REPLICATION_ORDER
    if all(name != KEY_FIELD for name, _ in order):
        order.append((KEY_FIELD, False))
    return tuple(order)


def encode_token(row: Row, order: tuple[tuple[str, bool], ...], fields: Mapping[str, Spec]) -> str:
    values = [_token_value(row, name, fields) for name, _ in order]
    payload = orjson.dumps({"o": [name for name, _ in order], "v": values})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _token_value(row: Row, name: str, fields: Mapping[str, Spec]) -> Any:
    value = getter(name, fields)(row)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _decode_token(
    token: str, order: tuple[tuple[str, bool], ...], fields: Mapping[str, Spec]
) -> tuple[Any, ...]:
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        names, values = payload["o"], payload["v"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise QueryError("$skiptoken is not one this server issued") from None
    if names != [name for name, _ in order] or len(values) != len(order):
        raise QueryError("$skiptoken belongs to a different $orderby")
    typed: list[Any] = []
    for (name, _), value in zip(order, values, strict=True):
        edm = fields[name].edm
        if not _token_typed(name, edm, value):  # a forged token would fail compares: 500
            raise QueryError("$skiptoken is not one this server issued")
        if value is None or edm not in (DATETIMEOFFSET, DATE):
            typed.append(value)
        elif edm == DATETIMEOFFSET:
            typed.append(parse_datetime(value))
        else:
            typed.append(wire_date(value))
    return tuple(typed)


def _token_typed(name: str, edm: str, value: Any) -> bool:
    """Whether ``value`` is what ``encode_token`` writes for a field of type ``edm``."""
    if value is None:
        return name not in (KEY_FIELD, TIMESTAMP_FIELD)  # never null: the index is built on them
    if edm == BOOLEAN:
        return isinstance(value, bool)
    if edm in (INT32, DECIMAL, DOUBLE):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


# ------------------------------------------------------------------------------------- running


def run(index: RecordIndex, query: Query, fields: Mapping[str, Spec]) -> Page:
    predicate = (
        compile_filter(query.filter, lambda name: getter(name, fields)) if query.filter else None
    )
    ranges, exact = index.candidate_ranges(query.filter)
    count = None
    if query.count:
        if exact or predicate is None:
            count = sum(high - low for low, high in ranges)
        else:
            count = sum(
                1 for low, high in ranges for i in range(low, high) if predicate(index.row_at(i))
            )
    rows: list[Row]
    if query.top == 0:
        rows, more = [], False
    elif query.order == REPLICATION_ORDER:
        rows, more = _walk_index(index, query, ranges, None if exact else predicate)
    else:
        rows, more = _sort_and_slice(index, query, ranges, predicate, fields)
    return Page(rows, more, count)


def _walk_index(
    index: RecordIndex,
    query: Query,
    ranges: list[tuple[int, int]],
    predicate: Callable[[Row], bool] | None,
) -> tuple[list[Row], bool]:
    start = 0
    if query.after is not None:
        start = index.after(to_micros(query.after[0]), query.after[1])
    wanted, skip = query.top + 1, query.skip
    rows: list[Row] = []
    for low, high in ranges:
        for i in range(max(low, start), high):
            row = index.row_at(i)
            if predicate is not None and not predicate(row):
                continue
            if skip:
                skip -= 1
                continue
            rows.append(row)
            if len(rows) == wanted:
                return rows[: query.top], True
    return rows, False


def _sort_and_slice(
    index: RecordIndex,
    query: Query,
    ranges: list[tuple[int, int]],
    predicate: Callable[[Row], bool] | None,
    fields: Mapping[str, Spec],
) -> tuple[list[Row], bool]:
    rows = [index.row_at(i) for low, high in ranges for i in range(low, high)]
    if predicate is not None:
        rows = [row for row in rows if predicate(row)]
    getters = [(getter(name, fields), descending) for name, descending in query.order]
    for get, descending in reversed(getters):  # stable sorts, last key first
        rows.sort(key=_sort_key(get), reverse=descending)
    start = 0
    if query.after is not None:
        after = query.after
        low, high = 0, len(rows)
        while low < high:  # first row strictly after the token, in this order
            middle = (low + high) // 2
            if _compare_to(rows[middle], after, getters) <= 0:
                low = middle + 1
            else:
                high = middle
        start = low
    start += query.skip
    page = rows[start : start + query.top + 1]
    return page[: query.top], len(page) > query.top


def _null_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def _sort_key(get: Callable[[Row], Any]) -> Callable[[Row], tuple[bool, Any]]:
    return lambda row: _null_first(get(row))


def _compare_to(
    row: Row, after: tuple[Any, ...], getters: list[tuple[Callable[[Row], Any], bool]]
) -> int:
    for (get, descending), token_value in zip(getters, after, strict=True):
        mine, theirs = _null_first(get(row)), _null_first(token_value)
        if mine != theirs:
            before = mine < theirs
            return (1 if before else -1) if descending else (-1 if before else 1)
    return 0
