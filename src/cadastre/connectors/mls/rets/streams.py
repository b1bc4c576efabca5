"""Replication of a RETS class by its modification timestamp, in DMQL2 time windows.

RETS 1.x has no sort order and no key-set paging, and many servers cap the rows one search
answers (``<MAXROWS/>``) while ignoring ``Offset``. So a read walks time windows: a window whose
answer is complete is a page; one whose answer was capped is split in halves, earlier half first,
until each half fits. Windows never overlap and together cover the whole range, so every record
arrives exactly once.

RETS DateTime values are the server's local wall-clock time without an offset: windows and the
cursor are kept in that form (what DMQL compares), to the second, and turned into instants only
for the records handed on. A server may keep fractions of a second (RETS 1.8 DateTime allows
them): a window's upper bound is then the last millisecond of its second (``hh:mm:05.999``), so a
record stamped ``hh:mm:05.5`` falls in the window ending at 05 and not between it and the next,
which starts at 06.

The cursor is the last second committed and what of it was read: the keys seen at it (at most one
answer's worth: a second that fits one answer) or, for a second paged with ``Offset`` because it
holds more, how many of its rows were read and how many it held (``offset``, ``count``). The next
read starts at that second (inclusive, so records written later in the same second are not lost)
and skips those keys, or goes on from that offset (the whole second again if its count changed
meanwhile, so a record that left or joined it cannot shift one past us). When that second is in
the hour the wall clock repeats as daylight time ends, it starts an hour earlier (``repeated``),
since what was written on the second pass reads earlier than the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from zoneinfo import ZoneInfo

SECOND = timedelta(seconds=1)
CURSOR_TIME = "ModificationTimestamp"
CURSOR_KEYS = "keys"
CURSOR_OFFSET = "offset"  # rows of the cursor's second read so far, in the server's order
CURSOR_COUNT = "count"  # rows the server said that second held
LAST_MILLISECOND = ".999"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def rets_time(value: datetime) -> str:
    """A RETS DateTime literal: 2026-11-01T09:00:00 (local wall-clock time)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def parse_local(text: Any, *, fraction: bool = False) -> datetime | None:
    """A RETS DateTime (or Date) as a naive local datetime, to the second (what windows and the
    cursor use) or with its fraction of a second; None if unreadable."""
    if not isinstance(text, str) or not 10 <= len(text) <= 32:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:  # a server that sends offsets after all: use its wall time
        parsed = parsed.replace(tzinfo=None)
    return parsed if fraction else parsed.replace(microsecond=0)


def instant(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone)


def repeated(local: datetime, zone: ZoneInfo) -> timedelta:
    """How far back the wall clock went if ``local`` is in an hour that happens twice (the
    night daylight time ends), else zero. A record written on the second pass has an earlier
    wall time than one written on the first: a read whose cursor is in that hour starts this much
    earlier, or the second pass's records before the cursor's wall time would never be read."""
    first = local.replace(tzinfo=zone, fold=0).utcoffset()
    second = local.replace(tzinfo=zone, fold=1).utcoffset()
    if first is None or second is None or first <= second:
        return timedelta(0)
    return first - second


def condition(field: str, values: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"{field!r} is not a RETS field name")
    return f"({field}={values})"


def window_query(
    field: str, low: datetime, high: datetime | None, *, fractions: bool = True
) -> str:
    """``(F=low+)`` or ``(F=low-high)``: both bounds inclusive, as DMQL2 ranges are. With
    ``fractions`` the upper bound is the last millisecond of ``high``'s second, so the window
    covers that whole second on a server that keeps fractions of one."""
    if high is None:
        return condition(field, f"{rets_time(low)}+")
    upper = rets_time(high) + (LAST_MILLISECOND if fractions else "")
    return condition(field, f"{rets_time(low)}-{upper}")


def any_of(field: str, values: Iterable[str], *, lookup: bool = False) -> str:
    """``(F=a,b)``, or for a lookup field ``(F=|a,b)``."""
    listed = ",".join(values)
    if not listed:
        raise ValueError("any_of needs at least one value")
    return condition(field, ("|" if lookup else "") + listed)


def split(low: datetime, high: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """Two disjoint windows covering [low, high] to the second; one when it is a single second."""
    if high <= low:
        return ((low, high),)
    middle = low + timedelta(seconds=(high - low) // SECOND // 2)
    return ((low, middle), (middle + SECOND, high))


@dataclass(frozen=True)
class Position:
    """The last second committed (local) and what of it was read: the keys seen at it, or (a
    second paged with Offset) how many of its rows were read and how many it held."""

    time: datetime
    keys: frozenset[str]
    offset: int | None = None
    count: int | None = None

    @classmethod
    def of(cls, cursor: Any) -> Position | None:
        if not isinstance(cursor, dict):
            return None
        time = parse_local(cursor.get(CURSOR_TIME))
        keys = cursor.get(CURSOR_KEYS, [])
        if time is None or not isinstance(keys, list):
            return None
        offset, count = cursor.get(CURSOR_OFFSET), cursor.get(CURSOR_COUNT)
        if not (_natural(offset) and (count is None or _natural(count))):
            offset = count = None  # not an offset cursor (or a damaged one): the keys alone
        return cls(time, frozenset(k for k in keys if isinstance(k, str)), offset, count)

    def cursor(self) -> dict[str, Any]:
        found: dict[str, Any] = {CURSOR_TIME: rets_time(self.time), CURSOR_KEYS: sorted(self.keys)}
        if self.offset is not None:
            found |= {CURSOR_OFFSET: self.offset, CURSOR_COUNT: self.count}
        return found

    def seen(self, time: datetime | None, key: str | None) -> bool:
        return time == self.time and key in self.keys

    def advanced(self, stamps: Sequence[tuple[datetime, str]]) -> Position:
        """This position moved past ``stamps`` (local time, key); never backwards."""
        if not stamps:
            return self
        latest = max(t for t, _ in stamps)
        if latest < self.time:
            return self
        keys = {k for t, k in stamps if t == latest}
        if latest == self.time:
            if self.offset is not None:
                return self  # rows of a paged second: the offset says how far, not the keys
            return Position(latest, frozenset(keys | self.keys))
        return Position(latest, frozenset(keys))

    def paged(self, second: datetime, offset: int, count: int | None) -> Position:
        """This position after ``offset`` rows of ``second`` (which holds ``count``), read with
        Offset; never backwards."""
        if second < self.time:
            return self
        return Position(second, frozenset(), offset, count)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
