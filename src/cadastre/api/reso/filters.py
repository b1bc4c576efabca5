"""``$filter``: parsed by ``odata-query`` (a well-kept OData v4 grammar), then compiled here into
a Python predicate over a record's stored data, type-checked against the resource once per
request, so a bad query is a 400 even when no record would reach it.

Records are filtered in Python because the store's ``FieldFilter`` speaks only ``and`` of simple
comparisons; the top-level ``and`` of comparisons it can evaluate exactly the same way is also
handed to the store (``narrowing``) so most queries scan only the candidates.

Semantics: ``eq``/``ne`` compare with null as a value (``City eq null``); ``gt``/``ge``/``lt``/
``le`` with a null side are false. Enumerations are strings (the Lookup-resource style has no
``has``); ``any``/``all`` take a lambda over a collection; ``contains``, ``startswith``,
``endswith``, ``tolower``, ``toupper``, ``length`` and ``now()`` are the functions offered.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from cadastre.api.reso.edm import EdmProperty, Resource
from cadastre.ports import FieldFilter

Kind = Literal["number", "string", "boolean", "date", "datetime", "null", "collection"]
Env = Mapping[str, Any]  # lambda variable -> the item it stands for
Fn = Callable[[Mapping[str, Any], Env], Any]

_KINDS: dict[str, Kind] = {
    "Edm.String": "string", "Edm.Int64": "number", "Edm.Decimal": "number",
    "Edm.Boolean": "boolean", "Edm.Date": "date", "Edm.DateTimeOffset": "datetime",
}  # fmt: skip
# The forms the store's FieldFilter reads too, so narrowing and Python agree on every value.
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
# Strict comparisons are handed to the store relaxed: SQLite compares numbers as doubles and
# instants to the millisecond, so two values Python tells apart may be equal there; ge/le keep
# them for Python to decide.
_STORE_OPS: dict[type, Literal["eq", "ge", "le"]] = {
    ast.Eq: "eq", ast.Gt: "ge", ast.GtE: "ge", ast.Lt: "le", ast.LtE: "le",
}  # fmt: skip


class FilterError(ValueError):
    """The ``$filter`` is not one this endpoint can answer; the message says why."""


def read_value(prop: EdmProperty, raw: Any) -> Any:
    """A stored JSON value as the Python value its EDM type means; None when unreadable."""
    if prop.collection:
        return [str(x) for x in raw] if isinstance(raw, list) else []
    if raw is None:
        return None
    kind = _KINDS[prop.edm]
    if kind == "string":
        return raw if isinstance(raw, str) else None
    if kind == "boolean":
        return raw if isinstance(raw, bool) else None
    if kind == "number":
        return _number(raw)
    if not isinstance(raw, str):
        return None
    try:
        if kind == "date":
            return date.fromisoformat(raw) if len(raw) == 10 else None
        return datetime.fromisoformat(raw) if _INSTANT.fullmatch(raw) else None
    except ValueError:
        return None


def _number(raw: Any) -> int | Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = repr(raw) if isinstance(raw, float) else raw
    if not isinstance(text, str) or not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Typed:
    kind: Kind
    fn: Fn
    prop: EdmProperty | None = None  # set when the expression is a property of the record
    literal: Any = None  # set (with kind) when the expression is a literal
    is_literal: bool = False


@dataclass(frozen=True)
class Compiled:
    predicate: Callable[[Mapping[str, Any]], bool]
    narrowing: list[FieldFilter]


MAX_FILTER = 4000  # characters; RESO clients send a few hundred at most
# any/all inside the body of another: each level multiplies the work per record by the size of
# its collection, so a short filter could hold the event loop for minutes
MAX_LAMBDA_NESTING = 2


def compile_filter(text: str, resource: Resource, now: Callable[[], datetime]) -> Compiled:
    if len(text) > MAX_FILTER:
        raise FilterError(f"$filter is longer than {MAX_FILTER} characters")
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
        typed = _Compiler(resource, now).compile(tree, {})
    except ODataException as exc:
        raise FilterError(f"$filter does not parse: {exc}") from None
    except (IndexError, AttributeError, TypeError):  # the grammar's own failure on odd input
        raise FilterError("$filter does not parse") from None
    except RecursionError:  # thousands of nested parentheses
        raise FilterError("$filter nests too deeply") from None
    if typed.kind != "boolean":
        raise FilterError("$filter must be a condition (true or false), not a value")
    fn = typed.fn
    return Compiled(
        predicate=lambda row: fn(row, {}) is True,
        narrowing=_narrowing(tree, resource),
    )


class _Compiler:
    def __init__(self, resource: Resource, now: Callable[[], datetime]) -> None:
        self.resource = resource
        self.now = now

    def compile(self, node: ast._Node, scope: Mapping[str, Kind]) -> Typed:
        match node:
            case ast.Identifier(name=name, namespace=namespace):
                if namespace:
                    dotted = ".".join((*namespace, name))
                    raise FilterError(f"{dotted}: namespaced names are not used here")
                return self._identifier(name, scope)
            case ast.Null():
                return _literal("null", None)
            case ast.Boolean(val=val):
                return _literal("boolean", val == "true")
            case ast.Integer(val=val):
                return _literal("number", int(val))
            case ast.Float(val=val):
                return _literal("number", Decimal(val))
            case ast.String(val=val):
                return _literal("string", val)
            case ast.Date(val=val):
                return _literal("date", _parse(date.fromisoformat, val))
            case ast.DateTime(val=val):
                return _literal("datetime", _datetime(val))
            case ast.Compare():
                return self._compare(node, scope)
            case ast.BoolOp(op=op, left=left, right=right):
                a, b = self._boolean(left, scope), self._boolean(right, scope)
                fa, fb = a.fn, b.fn
                if isinstance(op, ast.And):
                    return Typed("boolean", lambda r, e: fa(r, e) is True and fb(r, e) is True)
                return Typed("boolean", lambda r, e: fa(r, e) is True or fb(r, e) is True)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                fo = self._boolean(operand, scope).fn
                return Typed("boolean", lambda r, e: fo(r, e) is not True)
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                typed = self.compile(operand, scope)
                if not typed.is_literal or typed.kind != "number":
                    raise FilterError("'-' applies to number literals only")
                return _literal("number", -typed.literal)
            case ast.Call():
                return self._call(node, scope)
            case ast.CollectionLambda():
                return self._lambda(node, scope)
        raise FilterError(f"{type(node).__name__} is not supported in $filter")

    def _identifier(self, name: str, scope: Mapping[str, Kind]) -> Typed:
        if name in scope:
            return Typed(scope[name], lambda r, e: e[name])
        prop = self.resource.properties.get(name)
        if prop is None:
            raise FilterError(f"{self.resource.name} has no property {name!r}")
        kind: Kind = "collection" if prop.collection else _KINDS[prop.edm]
        return Typed(kind, lambda r, e: read_value(prop, r.get(name)), prop=prop)

    def _boolean(self, node: ast._Node, scope: Mapping[str, Kind]) -> Typed:
        typed = self.compile(node, scope)
        if typed.kind != "boolean":
            raise FilterError("'and', 'or' and 'not' join conditions, not values")
        return typed

    def _compare(self, node: ast.Compare, scope: Mapping[str, Kind]) -> Typed:
        left = self.compile(node.left, scope)
        if isinstance(node.comparator, ast.In):
            if not isinstance(node.right, ast.List):
                raise FilterError("'in' takes a list of literals: Field in ('a', 'b')")
            items = [self.compile(item, scope) for item in node.right.val]
            for item in items:
                _comparable(left, item)
            values = [item.literal for item in items]
            fl = left.fn
            return Typed("boolean", lambda r, e: fl(r, e) in values)
        right = self.compile(node.right, scope)
        _comparable(left, right)
        fl, fr = left.fn, right.fn
        comparator = type(node.comparator)
        if comparator is ast.Eq:
            return Typed("boolean", lambda r, e: fl(r, e) == fr(r, e))
        if comparator is ast.NotEq:
            return Typed("boolean", lambda r, e: fl(r, e) != fr(r, e))
        compare = _ORDER[comparator]

        def ordered(r: Mapping[str, Any], e: Env) -> bool:
            a, b = fl(r, e), fr(r, e)
            return a is not None and b is not None and bool(compare(a, b))

        return Typed("boolean", ordered)

    def _call(self, node: ast.Call, scope: Mapping[str, Kind]) -> Typed:
        name = node.func.name
        args = [self.compile(a, scope) for a in node.args]
        kinds = [a.kind for a in args]
        fns = [a.fn for a in args]
        if name == "now" and not args:
            instant = self.now()
            return _literal("datetime", instant)
        if name in ("contains", "startswith", "endswith") and kinds == ["string", "string"]:
            test = {"contains": str.__contains__, "startswith": str.startswith,
                    "endswith": str.endswith}[name]  # fmt: skip
            a, b = fns

            def matches(r: Mapping[str, Any], e: Env) -> bool:
                x, y = a(r, e), b(r, e)
                return x is not None and y is not None and bool(test(x, y))

            return Typed("boolean", matches)
        if name in ("tolower", "toupper") and kinds == ["string"]:
            change = str.lower if name == "tolower" else str.upper
            (a,) = fns
            return Typed("string", lambda r, e: None if (x := a(r, e)) is None else change(x))
        if name == "length" and kinds in (["string"], ["collection"]):
            (a,) = fns
            return Typed("number", lambda r, e: None if (x := a(r, e)) is None else len(x))
        shown = ", ".join(kinds)
        raise FilterError(f"function {name}({shown}) is not supported")

    def _lambda(self, node: ast.CollectionLambda, scope: Mapping[str, Kind]) -> Typed:
        owner = self.compile(node.owner, scope)
        if owner.kind != "collection" or owner.prop is None:
            raise FilterError("any/all apply to a collection property, e.g. Appliances/any(...)")
        items = owner.fn
        if node.lambda_ is None:  # Appliances/any(): the collection is not empty
            return Typed("boolean", lambda r, e: bool(items(r, e)))
        if len(scope) >= MAX_LAMBDA_NESTING:  # scope: the lambda variables around this one
            raise FilterError(f"any/all nest at most {MAX_LAMBDA_NESTING} deep")
        variable = node.lambda_.identifier.name
        if variable in self.resource.properties:
            raise FilterError(f"lambda variable {variable!r} hides a property; pick another name")
        body = self.compile(node.lambda_.expression, {**scope, variable: "string"})
        if body.kind != "boolean":
            raise FilterError("the body of any/all must be a condition")
        test = body.fn
        if isinstance(node.operator, ast.Any):
            return Typed("boolean", lambda r, e: any(
                test(r, {**e, variable: item}) is True for item in items(r, e)))  # fmt: skip
        return Typed("boolean", lambda r, e: all(
            test(r, {**e, variable: item}) is True for item in items(r, e)))  # fmt: skip


def _literal(kind: Kind, value: Any) -> Typed:
    return Typed(kind, lambda r, e: value, literal=value, is_literal=True)


def _parse(parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except ValueError:
        raise FilterError(f"{text!r} is not a valid date") from None


def _datetime(text: str) -> datetime:
    value: datetime = _parse(datetime.fromisoformat, text)
    if value.utcoffset() is None:
        raise FilterError(f"{text!r} needs an offset (Z or +HH:MM)")
    return value


def _comparable(a: Typed, b: Typed) -> None:
    if "collection" in (a.kind, b.kind):
        raise FilterError("a collection is compared through any/all, e.g. X/any(v: v eq 'A')")
    if a.kind != b.kind and "null" not in (a.kind, b.kind):
        raise FilterError(f"cannot compare a {a.kind} with a {b.kind}")


def _narrowing(tree: ast._Node, resource: Resource) -> list[FieldFilter]:
    """The conjuncts the store can evaluate exactly as ``compile`` does. Only comparisons with a
    non-null literal: they are false for a null or unreadable value, as the store's are, so
    narrowing never drops a record the predicate would keep (even a field withheld from the
    caller, which the predicate reads as null)."""
    if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And):
        return _narrowing(tree.left, resource) + _narrowing(tree.right, resource)
    if not (isinstance(tree, ast.Compare) and isinstance(tree.left, ast.Identifier)):
        return []
    op = _STORE_OPS.get(type(tree.comparator))
    prop = resource.properties.get(tree.left.name)
    if op is None or prop is None or prop.collection or tree.left.namespace:
        return []
    right = tree.right
    kind = _KINDS[prop.edm]
    try:
        if kind == "number" and isinstance(right, ast.Integer | ast.Float):
            return [FieldFilter(prop.name, op, Decimal(right.val), kind="number")]
        if kind == "datetime" and isinstance(right, ast.DateTime):
            return [FieldFilter(prop.name, op, _datetime(right.val), kind="time")]
        if kind == "string" and op == "eq" and isinstance(right, ast.String):
            return [FieldFilter(prop.name, "eq", right.val)]
    except (ValueError, FilterError):  # out of the store's range: Python alone decides
        return []
    return []
