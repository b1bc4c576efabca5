"""Schema drift while the MLS runs: a field is added, removed or retyped, the way MLSs change their
feeds without notice. ``LiveSchema`` holds the fields as served now (``$metadata`` follows them),
changes the stored records to match, and remembers each change so records created later match too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadastre.simulators.reso.dialect import EDM_TYPES
from cadastre.simulators.reso.schema import (
    BOOLEAN,
    DATE,
    DATETIMEOFFSET,
    DECIMAL,
    DOUBLE,
    INT32,
    KEY_FIELD,
    STRING,
    TIMESTAMP_FIELD,
    FieldSpec,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_PROTECTED = frozenset({KEY_FIELD, TIMESTAMP_FIELD})
_TRUE = frozenset({"true", "y", "yes", "1"})
_FALSE = frozenset({"false", "n", "no", "0"})


class LiveSchema:
    def __init__(self, fields: dict[str, FieldSpec]) -> None:
        self.fields = fields
        self._changes: list[Callable[[dict[str, Any]], None]] = []  # replayed on new records
        self.version = 0  # counts changes, so callers can rebuild what they derived

    def conform(self, data: dict[str, Any]) -> dict[str, Any]:
        """A new record, changed as the stored ones were."""
        for change in self._changes:
            change(data)
        return data

    def add_field(
        self, rows: Iterable[dict[str, Any]], name: str, edm: str, value: Any = None
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{name!r} is not a field name")
        if name in self.fields:
            raise ValueError(f"{name} exists already")
        _check_type(edm)
        value = convert(value, edm)

        def add(data: dict[str, Any]) -> None:
            data[name] = value

        self.fields[name] = FieldSpec(name, edm, 255 if edm == STRING else None)
        self._record(rows, add)

    def remove_field(self, rows: Iterable[dict[str, Any]], name: str) -> None:
        self._check_changeable(name)

        def remove(data: dict[str, Any]) -> None:
            data.pop(name, None)

        del self.fields[name]
        self._record(rows, remove)

    def retype_field(self, rows: Iterable[dict[str, Any]], name: str, edm: str) -> None:
        self._check_changeable(name)
        _check_type(edm)

        def retype(data: dict[str, Any]) -> None:
            if name in data:
                data[name] = convert(data[name], edm)

        self.fields[name] = FieldSpec(name, edm, 255 if edm == STRING else None)
        self._record(rows, retype)

    def _check_changeable(self, name: str) -> None:
        if name not in self.fields:
            raise ValueError(f"unknown field {name!r}")
        if name in _PROTECTED:
            raise ValueError(f"{name} carries replication and cannot change")

    def _record(
        self, rows: Iterable[dict[str, Any]], change: Callable[[dict[str, Any]], None]
    ) -> None:
        for data in rows:
            change(data)
        self._changes.append(change)
        self.version += 1


def _check_type(edm: str) -> None:
    if edm not in EDM_TYPES:
        raise ValueError(f"type is one of {', '.join(EDM_TYPES)}")


def convert(value: Any, edm: str) -> Any:
    """A value in another Edm type, as a server that changed a column's type would send it;
    None where it has no such reading."""
    if value is None:
        return None
    if edm == STRING:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if edm == BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return True if text in _TRUE else False if text in _FALSE else None
    if edm in (INT32, DECIMAL, DOUBLE):
        if isinstance(value, bool):
            return int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return int(number) if edm == INT32 else number
    if edm in (DATE, DATETIMEOFFSET):
        return value if isinstance(value, str) else None
    raise ValueError(f"type is one of {', '.join(EDM_TYPES)}")
