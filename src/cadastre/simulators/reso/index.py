"""Records kept in replication order, (ModificationTimestamp, ListingKey), so the query every
MLS client runs ("everything after my cursor, oldest first") is a bisect, not a scan.

``candidate_ranges`` reads a parsed ``$filter`` and returns the slices of that order that can hold
matches, and whether every row in them does match (``exact``): comparisons on
ModificationTimestamp, ``ListingKey eq``, and ListingKey comparisons under a
``ModificationTimestamp eq`` in the same ``and`` become ranges; ``and``/``or``/``not`` intersect,
unite and complement them; anything else leaves the whole order as candidates to evaluate.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cadastre.simulators.reso.odata_filter import And, Compare, Expr, Field, Literal, Not, Or
from cadastre.simulators.reso.records import Row, to_micros
from cadastre.simulators.reso.schema import KEY_FIELD, TIMESTAMP_FIELD

Ranges = list[tuple[int, int]]


class RecordIndex:
    def __init__(self, rows: list[Row]) -> None:
        self.rows: dict[str, Row] = {row.key: row for row in rows}  # in creation order
        self.order: list[tuple[int, str]] = sorted(row.position for row in rows)

    def __len__(self) -> int:
        return len(self.order)

    def row_at(self, index: int) -> Row:
        return self.rows[self.order[index][1]]

    def add(self, row: Row) -> None:
        if row.key in self.rows:
            raise ValueError(f"{row.key} exists already")
        self.rows[row.key] = row
        insort(self.order, row.position)

    def move(self, row: Row, modified: datetime) -> None:
        """Give a record a new ModificationTimestamp and its new place in the order."""
        old = row.position
        del self.order[bisect_left(self.order, old)]
        row.modified = modified
        insort(self.order, row.position)

    def remove(self, key: str) -> Row:
        """A record vanishes upstream."""
        row = self.rows.pop(key)
        del self.order[bisect_left(self.order, row.position)]
        return row

    def restamp(self, rows: list[Row], modified: datetime) -> None:
        """Give many records one new ModificationTimestamp (a mass update): one sort, where
        moving each record would cost a list shift apiece."""
        for row in rows:
            row.modified = modified
        self.order = sorted(row.position for row in self.rows.values())

    def after(self, micros: int, key: str) -> int:
        return bisect_right(self.order, (micros, key))

    # ------------------------------------------------------------------------- filter ranges

    def candidate_ranges(self, expr: Expr | None) -> tuple[Ranges, bool]:
        if expr is None:
            return [(0, len(self.order))], True
        return self._ranges(expr)

    def _ranges(self, expr: Expr) -> tuple[Ranges, bool]:
        everything: Ranges = [(0, len(self.order))]
        if isinstance(expr, Or):
            result: Ranges = []
            exact = True
            for item in expr.items:
                ranges, item_exact = self._ranges(item)
                result, exact = _union(result, ranges), exact and item_exact
            return result, exact
        if isinstance(expr, And):
            return self._and_ranges(expr)
        if isinstance(expr, Not):
            ranges, exact = self._ranges(expr.item)
            return (_complement(ranges, len(self.order)), True) if exact else (everything, False)
        compare = expr.normalised()
        if isinstance(compare.left, Field) and isinstance(compare.right, Literal):
            found = self._field_ranges(compare.op, compare.left.name, compare.right.value)
            if found is not None:
                return found, True
        return everything, False

    def _and_ranges(self, expr: And) -> tuple[Ranges, bool]:
        result: Ranges = [(0, len(self.order))]
        exact = True
        instant = next(
            (
                c.right.value
                for c in (i.normalised() for i in expr.items if isinstance(i, Compare))
                if c.op == "eq"
                and isinstance(c.left, Field)
                and c.left.name == TIMESTAMP_FIELD
                and isinstance(c.right, Literal)
                and isinstance(c.right.value, datetime)
            ),
            None,
        )
        for item in expr.items:
            ranges = self._key_within_instant(item, instant) if instant is not None else None
            item_exact = True
            if ranges is None:
                ranges, item_exact = self._ranges(item)
            result, exact = _intersect(result, ranges), exact and item_exact
        return result, exact

    def _key_within_instant(self, item: Expr, instant: datetime) -> Ranges | None:
        if not isinstance(item, Compare):
            return None
        compare = item.normalised()
        if not (
            isinstance(compare.left, Field)
            and compare.left.name == KEY_FIELD
            and isinstance(compare.right, Literal)
            and isinstance(compare.right.value, str)
        ):
            return None
        micros, key = to_micros(instant), compare.right.value
        start = bisect_left(self.order, (micros, ""))
        end = bisect_left(self.order, (micros + 1, ""))
        low, high = bisect_left(self.order, (micros, key)), bisect_right(self.order, (micros, key))
        spans = {
            "eq": [(low, high)],
            "ne": [(start, low), (high, end)],
            "gt": [(high, end)],
            "ge": [(low, end)],
            "lt": [(start, low)],
            "le": [(start, high)],
        }
        return _clean(spans[compare.op])

    def _field_ranges(self, op: str, name: str, value: object) -> Ranges | None:
        size = len(self.order)
        if name == KEY_FIELD and op == "eq" and isinstance(value, str):
            row = self.rows.get(value)
            if row is None:
                return []
            at = bisect_left(self.order, row.position)
            return [(at, at + 1)]
        if name != TIMESTAMP_FIELD:
            return None
        if value is None:  # every record has a timestamp
            return [(0, size)] if op == "ne" else []
        if not isinstance(value, datetime):
            return None
        micros = to_micros(value)
        first = bisect_left(self.order, (micros, ""))
        past = bisect_left(self.order, (micros + 1, ""))
        spans = {
            "eq": [(first, past)],
            "ne": [(0, first), (past, size)],
            "gt": [(past, size)],
            "ge": [(first, size)],
            "lt": [(0, first)],
            "le": [(0, past)],
        }
        return _clean(spans[op])


def _clean(ranges: Ranges) -> Ranges:
    return [(low, high) for low, high in ranges if low < high]


def _union(a: Ranges, b: Ranges) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(a + b):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    result: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low < high:
            result.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def _complement(ranges: Ranges, size: int) -> Ranges:
    result, start = [], 0
    for low, high in ranges:
        if start < low:
            result.append((start, low))
        start = high
    if start < size:
        result.append((start, size))
    return result


class RecordsView(Mapping[str, Mapping[str, Any]]):
    """Read-only: ListingKey -> the record as the wire shows it (bad data included)."""

    def __init__(self, index: RecordIndex) -> None:
        self._index = index

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return MappingProxyType(self._index.rows[key].served())

    def __iter__(self) -> Iterator[str]:
        return iter(self._index.rows)

    def __len__(self) -> int:
        return len(self._index.rows)
