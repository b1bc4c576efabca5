"""The QuickBooks query language, as much of it as a sync uses:

``select * | count(*) from <Entity> [where <cond> [and <cond>]...] [orderby <field> [asc|desc]]
[startposition n] [maxresults m]``; a condition is ``field = | < | > | <= | >= | like value`` or
``field in (v, ...)``; values are ``'text'`` (``\\'`` escapes a quote), numbers, ``true`` and
``false``. There is no ``or`` (Intuit refuses it too). Keywords are case-insensitive; ``maxresults``
is at most 1,000 (default 100) and ``startposition`` counts from 1. Name-list entities (Account,
Customer) answer only active objects unless a condition names ``Active``, as QBO does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cadastre.simulators.quickbooks.entities import ENTITIES, NAME_LISTS
from cadastre.simulators.quickbooks.faults import parse_qbo_time, query_error

MAX_RESULTS = 1000
DEFAULT_RESULTS = 100
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<op><=|>=|=|<|>|\(|\)|,|\*)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*(?:\(\*\))?)|(?P<num>-?\d+(?:\.\d+)?))"
)
_ENTITY_NAMES = {name.lower(): name for name in ENTITIES.values()}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # "=", "<", ">", "<=", ">=", "in", "like"
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    entity: str
    count: bool = False
    conditions: tuple[Condition, ...] = ()
    order: tuple[str, bool] | None = None  # (field, descending)
    start: int = 1
    max_results: int = DEFAULT_RESULTS
    names: frozenset[str] = field(default_factory=frozenset)


def parse(text: str) -> Query:
    tokens = _tokens(text)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise query_error(
                f"unexpected end of query{f', expected {expected}' if expected else ''}"
            )
        token = tokens[pos]
        if expected is not None and token.lower() != expected:
            raise query_error(f"expected {expected}, found {token!r}")
        pos += 1
        return token

    def peek() -> str | None:
        return tokens[pos].lower() if pos < len(tokens) else None

    take("select")
    what = take().lower()
    if what not in ("*", "count(*)"):
        raise query_error("only select * and select count(*) are supported")
    take("from")
    entity = _ENTITY_NAMES.get(take().lower())
    if entity is None:
        raise query_error("unknown entity")
    conditions: list[Condition] = []
    if peek() == "where":
        take()
        while True:
            conditions.append(_condition(take, peek))
            if peek() == "and":
                take()
                continue
            if peek() == "or":
                raise query_error("OR is not supported")
            break
    order = None
    if peek() in ("orderby", "order"):
        if take().lower() == "order":
            take("by")
        name = take()
        descending = False
        if peek() in ("asc", "desc"):
            descending = take().lower() == "desc"
        order = (name, descending)
    start, max_results = 1, DEFAULT_RESULTS
    while peek() in ("startposition", "maxresults"):
        keyword = take().lower()
        number = take()
        if not number.isdigit() or int(number) < 1:
            raise query_error(f"{keyword} takes a whole number >= 1")
        if keyword == "startposition":
            start = int(number)
        else:
            max_results = int(number)
    if pos != len(tokens):
        raise query_error(f"unexpected {tokens[pos]!r}")
    if max_results > MAX_RESULTS:
        raise query_error(f"maxresults is at most {MAX_RESULTS}")
    return Query(entity, what == "count(*)", tuple(conditions), order, start, max_results)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise query_error(f"cannot read the query at {text[pos : pos + 20]!r}")
        tokens.append(match.group().strip())
        pos = match.end()
    return [t for t in tokens if t]


def _condition(take: Any, peek: Any) -> Condition:
    name = take()
    op = take().lower()
    if op == "in":
        take("(")
        values = [_value(take())]
        while peek() == ",":
            take()
            values.append(_value(take()))
        take(")")
        return Condition(name, "in", tuple(values))
    if op not in ("=", "<", ">", "<=", ">=", "like"):
        raise query_error(f"unknown operator {op!r}")
    return Condition(name, op, (_value(take()),))


def _value(token: str) -> Any:
    if token.startswith("'"):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(token) if "." in token else int(token)
    except ValueError:
        raise query_error(f"{token!r} is not a value") from None


def run(query: Query, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects the query selects, ordered (by Id unless it says), before paging."""
    conditions = list(query.conditions)
    if query.entity in NAME_LISTS and not any(c.field.lower() == "active" for c in conditions):
        conditions.append(Condition("Active", "=", (True,)))
    found = [obj for obj in objects if all(_holds(c, obj) for c in conditions)]
    if query.order is not None:
        name, descending = query.order
        found.sort(key=lambda obj: _sort_key(_field(obj, name)), reverse=descending)
    else:
        found.sort(key=lambda obj: int(obj["Id"]))
    return found


def _field(obj: dict[str, Any], name: str) -> Any:
    value: Any = obj
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        matches = [k for k in value if k.lower() == part.lower()]
        value = value[matches[0]] if matches else None
    if isinstance(value, dict) and "value" in value:  # a reference: CustomerRef = '12'
        value = value["value"]
    return value


def _comparable(value: Any, wanted: Any) -> tuple[Any, Any]:
    if isinstance(value, str) and isinstance(wanted, str) and value.isdigit() and wanted.isdigit():
        return int(value), int(wanted)  # Ids are numbers: '10' > '9'
    if isinstance(value, str) and isinstance(wanted, str) and "T" in value and "T" in wanted:
        try:
            return parse_qbo_time(value), parse_qbo_time(wanted)
        except ValueError:
            pass
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value, wanted
    if isinstance(wanted, int | float) and isinstance(value, int | float | str):
        try:
            return float(value), float(wanted)
        except ValueError:
            return str(value), str(wanted)
    return (str(value) if value is not None else None), str(wanted)


def _holds(condition: Condition, obj: dict[str, Any]) -> bool:
    value = _field(obj, condition.field)
    if condition.op == "in":
        return any(_equal(value, wanted) for wanted in condition.values)
    wanted = condition.values[0]
    if condition.op == "like":
        pattern = "^" + re.escape(str(wanted)).replace("%", ".*") + "$"
        return value is not None and re.match(pattern, str(value), re.IGNORECASE) is not None
    if value is None:
        return False
    a, b = _comparable(value, wanted)
    try:
        match condition.op:
            case "=":
                return bool(a == b)
            case "<":
                return bool(a < b)
            case ">":
                return bool(a > b)
            case "<=":
                return bool(a <= b)
            case _:
                return bool(a >= b)
    except TypeError:
        return False


def _equal(value: Any, wanted: Any) -> bool:
    a, b = _comparable(value, wanted)
    return bool(a == b)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, str) and value.isdigit():
        return (0, float(value))
    if isinstance(value, str) and "T" in value:
        try:
            return (0, parse_qbo_time(value).timestamp())
        except ValueError:
            pass
    if isinstance(value, int | float):
        return (0, float(value))
    return (1, str(value) if value is not None else "")


__all__ = ["MAX_RESULTS", "Condition", "Query", "parse", "run"]
