"""The OData v4 ``$filter`` subset an MLS replication client uses.

Grammar (keywords are lower case, as OData spells them)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := operand (eq|ne|gt|ge|lt|le) operand | BooleanField
    operand    := Field | 'string' ('' escapes a quote) | number | true | false | null
                | 2026-11-01T00:00:00.123Z (DateTimeOffset: optional seconds and fraction,
                  Z or +hh:mm / -hh:mm) | 2026-11-01 (Date)

``not`` binds tighter than ``and``, which binds tighter than ``or``; ``not A eq 1`` is
``not (A eq 1)``. Comparisons with null follow OData: ``eq null`` / ``ne null`` test for null and an
ordering comparison with null is false. DateTimeOffset values compare as instants, at microsecond
precision (extra fraction digits are dropped). Types are checked when parsing: comparing a
Decimal field with a string is a syntax error, as on a real server.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, TypeVar

from cadastre.simulators.reso.schema import (
    BOOLEAN,
    DATE,
    DATETIMEOFFSET,
    DECIMAL,
    DOUBLE,
    INT32,
    STRING,
    FieldSpec,
)

Row = TypeVar("Row")
Getter = Callable[[Row], Any]
Predicate = Callable[[Row], bool]

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
KEYWORDS = frozenset({*COMPARISONS, "and", "or", "not", "true", "false", "null"})
_KIND_OF_EDM = {STRING: "string", DECIMAL: "number", INT32: "number", DOUBLE: "number",
                BOOLEAN: "boolean", DATETIMEOFFSET: "datetime", DATE: "date"}  # fmt: skip

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})"
)
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:[^']|'')*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<punct>[(),])""",
    re.VERBOSE,
)


class QueryError(ValueError):
    """A request the OData service refuses with 400 (syntax, unknown field, wrong type)."""


# ------------------------------------------------------------------------------------ literals


def parse_datetime(text: str) -> datetime:
    """An OData DateTimeOffset literal as an aware UTC datetime (microsecond precision)."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise QueryError(f"not a DateTimeOffset: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if offset == "Z":
        zone = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise QueryError(f"not a DateTimeOffset: {text!r}")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute),
                         int(second or 0), micros, tzinfo=zone)  # fmt: skip
    except ValueError:
        raise QueryError(f"not a DateTimeOffset: {text!r}") from None
    return value.astimezone(UTC)


@lru_cache(maxsize=131072)
def wire_datetime(text: str) -> datetime | str:
    """A served timestamp string as an instant; a value that is not one stays a string, which
    then compares as false against any DateTimeOffset."""
    try:
        return parse_datetime(text)
    except QueryError:
        return text


@lru_cache(maxsize=32768)
def wire_date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    return "string"


# ----------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Literal:
    value: object


Operand = Field | Literal


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand

    def normalised(self) -> Compare:
        """The same comparison with the field on the left, when there is one."""
        if isinstance(self.left, Literal) and isinstance(self.right, Field):
            return Compare(FLIPPED[self.op], self.right, self.left)
        return self


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Compare | And | Or | Not


# -------------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokenize(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] == "'":
                raise QueryError(f"unterminated string at position {position}")
            raise QueryError(f"unexpected {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: dict[str, FieldSpec]) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.fields = fields

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise QueryError("the filter ends too early")
        self.position += 1
        return token

    def at_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "name" and token.text == word

    def parse(self) -> Expr:
        if not self.tokens:
            raise QueryError("the filter is empty")
        expr = self.expr()
        token = self.peek()
        if token is not None:
            raise QueryError(f"unexpected {token.text!r} at position {token.at}")
        return expr

    def expr(self) -> Expr:
        items = [self.and_expr()]
        while self.at_word("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.unary()]
        while self.at_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        if self.at_word("not"):
            self.take()
            return Not(self.unary())
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.expr()
            closing = self.take()
            if closing.text != ")":
                raise QueryError(f"expected ')' at position {closing.at}")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        left = self.operand()
        token = self.peek()
        if token is None or token.kind != "name" or token.text not in COMPARISONS:
            if isinstance(left, Field) and self.fields[left.name].edm == BOOLEAN:
                return Compare("eq", left, Literal(True))
            where = f"at position {token.at}" if token is not None else "at the end"
            raise QueryError(f"expected a comparison operator {where}")
        self.take()
        right = self.operand()
        self._check_types(left, token.text, right)
        return Compare(token.text, left, right)

    def operand(self) -> Operand:
        token = self.take()
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "datetime":
            return Literal(parse_datetime(token.text))
        if token.kind == "date":
            try:
                return Literal(date.fromisoformat(token.text))
            except ValueError:
                raise QueryError(f"not a Date: {token.text!r}") from None
        if token.kind == "number":
            number = float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            return Literal(number)
        if token.kind == "name":
            if token.text in ("true", "false"):
                return Literal(token.text == "true")
            if token.text == "null":
                return Literal(None)
            if token.text in KEYWORDS:
                raise QueryError(f"unexpected {token.text!r} at position {token.at}")
            if token.text not in self.fields:
                raise QueryError(f"unknown field {token.text!r}")
            return Field(token.text)
        raise QueryError(f"unexpected {token.text!r} at position {token.at}")

    def _check_types(self, left: Operand, op: str, right: Operand) -> None:
        kinds = [self._operand_kind(side) for side in (left, right)]
        if "null" in kinds or kinds[0] == kinds[1]:
            return
        raise QueryError(f"cannot compare {self._describe(left)} {op} {self._describe(right)}")

    def _operand_kind(self, operand: Operand) -> str:
        if isinstance(operand, Field):
            return _KIND_OF_EDM[self.fields[operand.name].edm]
        return _kind(operand.value)

    def _describe(self, operand: Operand) -> str:
        if isinstance(operand, Field):
            return f"{operand.name} ({self.fields[operand.name].edm})"
        return f"a {_kind(operand.value)}"


def parse_filter(text: str, fields: dict[str, FieldSpec]) -> Expr:
    return _Parser(text, fields).parse()


# ------------------------------------------------------------------------------------ evaluate


def compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    try:
        return COMPARISONS[op](left, right)
    except TypeError:  # a served value of the wrong type (bad data) matches nothing
        return False


def compile_filter(expr: Expr, getter: Callable[[str], Getter[Row]]) -> Predicate[Row]:
    """Turn the tree into closures once, so evaluating it over 50,000 rows stays cheap."""
    if isinstance(expr, And | Or):
        parts = [compile_filter(item, getter) for item in expr.items]
        stop_on = not isinstance(expr, And)  # and stops at the first False, or at the first True

        def junction(row: Row) -> bool:
            for part in parts:
                if part(row) is stop_on:
                    return stop_on
            return not stop_on

        return junction
    if isinstance(expr, Not):
        inner = compile_filter(expr.item, getter)
        return lambda row: not inner(row)
    node = expr.normalised()
    op = node.op
    if isinstance(node.left, Field) and isinstance(node.right, Literal):
        if node.right.value is not None:
            return _against_value(op, getter(node.left.name), node.right.value)
        get, value = getter(node.left.name), node.right.value
        return lambda row: compare(op, get(row), value)
    left, right = (_operand(side, getter) for side in (node.left, node.right))
    return lambda row: compare(op, left(row), right(row))


def _against_value(op: str, get: Getter[Row], value: object) -> Predicate[Row]:
    # The common shape (Field op non-null literal), specialised: null ne x is true, else false.
    function, null_result = COMPARISONS[op], op == "ne"

    def predicate(row: Row) -> bool:
        found = get(row)
        if found is None:
            return null_result
        try:
            return function(found, value)
        except TypeError:
            return False

    return predicate


def _operand(operand: Operand, getter: Callable[[str], Getter[Row]]) -> Getter[Row]:
    if isinstance(operand, Field):
        return getter(operand.name)
    value = operand.value
    return lambda _row: value
