"""DMQL2, the RETS query language, as far as replication clients use it.

    query  := term ((',' | ' AND ' | '|' | ' OR ') term)*     ',' and AND bind tighter than | / OR
    term   := '~' term | 'NOT ' term | '(' field '=' values ')' | '(' query ')'
    values := '|' codes | '+' codes | '~' codes     (lookup: any of, all of, none of)
            | item (',' item)*                      (any of)
    item   := low '-' high | low '+' | high '-' | 'text*' | '*text*' | value

``parse`` returns a predicate over a stored record, or raises ``DmqlError`` (reply code 20206,
invalid query syntax) or ``UnknownField`` (20200). Values compare by the field's RETS DataType:
numbers as numbers, Date and DateTime as instants, the rest as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cadastre.simulators.rets.records import Field

Predicate = Callable[[Mapping[str, Any]], bool]
_DATE = r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
_DATE_ITEM = re.compile(rf"^(?P<low>{_DATE})?(?P<op>[-+])?(?P<high>{_DATE})?$")
_NUMBER_ITEM = re.compile(r"^(?P<low>\d+(?:\.\d+)?)?(?P<op>[-+])?(?P<high>\d+(?:\.\d+)?)?$")


class DmqlError(ValueError):
    pass


class UnknownField(DmqlError):
    pass


def parse(text: str, fields: Mapping[str, Field]) -> Predicate:
    parser = _Parser(text.strip(), fields)
    predicate = parser.query()
    if parser.pos != len(parser.text):
        raise DmqlError(f"unexpected {parser.text[parser.pos : parser.pos + 10]!r}")
    return predicate


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, Field]) -> None:
        self.text, self.pos, self.fields = text, 0, fields

    def _take(self, *tokens: str) -> str | None:
        for token in tokens:
            if self.text.startswith(token, self.pos):
                self.pos += len(token)
                return token
        return None

    def query(self) -> Predicate:
        alternatives = [self._conjunction()]
        while self._take("|", " OR "):
            alternatives.append(self._conjunction())
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda record: any(p(record) for p in alternatives)

    def _conjunction(self) -> Predicate:
        terms = [self._term()]
        while self._take(",", " AND "):
            terms.append(self._term())
        if len(terms) == 1:
            return terms[0]
        return lambda record: all(p(record) for p in terms)

    def _term(self) -> Predicate:
        if self._take("~", "NOT "):
            inner = self._term()
            return lambda record: not inner(record)
        if not self._take("("):
            raise DmqlError(f"expected '(' at position {self.pos}")
        match = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=").match(self.text, self.pos)
        if match is None:
            inner = self.query()
            if not self._take(")"):
                raise DmqlError(f"expected ')' at position {self.pos}")
            return inner
        name = match.group(1)
        self.pos = match.end()
        end = self.text.find(")", self.pos)
        if end < 0:
            raise DmqlError("a condition is not closed with ')'")
        values = self.text[self.pos : end]
        self.pos = end + 1
        field = self.fields.get(name)
        if field is None:
            raise UnknownField(f"unknown query field {name!r}")
        return _condition(field, values)


def _condition(field: Field, values: str) -> Predicate:
    name = field.name
    if not values:
        raise DmqlError(f"({name}=) has no value")
    if field.lookup is not None and values[0] in "|+~":
        codes = {v.strip() for v in values[1:].split(",") if v.strip()}
        if not codes:
            raise DmqlError(f"({name}={values}) names no lookup value")
        if values[0] == "~":
            return lambda record: _codes(record.get(name)).isdisjoint(codes)
        if values[0] == "+":
            return lambda record: codes <= _codes(record.get(name))
        return lambda record: not _codes(record.get(name)).isdisjoint(codes)
    items = [_item(field, item.strip()) for item in values.split(",")]
    return lambda record: any(p(record) for p in items)


def _codes(value: Any) -> set[str]:
    return {v for v in str(value or "").split(",") if v}


def _item(field: Field, item: str) -> Predicate:
    name = field.name
    if field.data_type in {"Date", "DateTime", "Int", "Decimal", "Long", "Small", "Tiny"}:
        is_date = field.data_type in {"Date", "DateTime"}
        match = (_DATE_ITEM if is_date else _NUMBER_ITEM).match(item)
        if match is None or not (match["low"] or match["high"]):
            raise DmqlError(f"({name}={item}) is not a {field.data_type} value or range")
        convert = _instant if is_date else _number
        low = convert(match["low"]) if match["low"] else None
        high = convert(match["high"]) if match["high"] else None
        op = match["op"]
        if op == "+" and high is None and low is not None:
            return lambda r: (v := _read(r, name, convert)) is not None and v >= low
        if op == "-" and low is not None and high is None:
            return lambda r: (v := _read(r, name, convert)) is not None and v <= low
        if op == "-" and low is not None and high is not None:
            return lambda r: (v := _read(r, name, convert)) is not None and low <= v <= high
        if op is None and low is not None:
            return lambda r: _read(r, name, convert) == low
        raise DmqlError(f"({name}={item}) is not a value or range")
    if item.startswith("*") and item.endswith("*") and len(item) > 1:
        inner = item[1:-1].lower()
        return lambda r: inner in str(r.get(name) or "").lower()
    if item.endswith("*"):
        prefix = item[:-1].lower()
        return lambda r: str(r.get(name) or "").lower().startswith(prefix)
    if item.startswith("*"):
        raise DmqlError(f"({name}={item}): a leading '*' needs a closing one")
    wanted = item.lower()
    return lambda r: str(r.get(name) or "").lower() == wanted


def _instant(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DmqlError(f"{text!r} is not a date") from None
    return parsed


def _number(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise DmqlError(f"{text!r} is not a number") from None


def _read(record: Mapping[str, Any], name: str, convert: Callable[[str], Any]) -> Any:
    value = record.get(name)
    if value in (None, ""):
        return None
    try:
        # A Date value reads as its midnight, so it compares with DateTime bounds too.
        return convert(str(value))
    except DmqlError:
        return None  # a stored value the type cannot read matches no range
