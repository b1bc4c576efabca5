"""What a canonical value may be on the wire and in the store: JSON that survives a round trip
unchanged - ``None``, ``bool``, ``int`` (64-bit), finite ``float``, ``str``, lists and mappings with
string keys. The contract checks every validated field against it (so one bad value is that
change's ``ContractError``, found before anything is written), and the store checks again before
hashing and writing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadastre.errors import ContractError

_INT64 = 2**63


_PLAIN = frozenset({str, bool, type(None)})


def _plain(value: Any) -> bool:
    """True for a value that is certainly fine without a closer look."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is int:
        return bool(-_INT64 <= value < 2**64)
    if kind is float:
        return math.isfinite(value)
    return False


def check_json(value: Any, where: str = "$") -> None:
    """Raise ``ContractError`` naming the first value that is not JSON-compatible."""
    # Exact types first: most values are plain strings and numbers, and this runs for every
    # field written; anything else takes the full path below, which names the problem.
    if _plain(value):
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ContractError(f"{where}: key {key!r} is not a string")
            if not _plain(item):
                check_json(item, f"{where}.{key}")
        return
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < 2**64:
            raise ContractError(f"{where}: integer {value} is outside the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ContractError(f"{where}: {value} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ContractError(f"{where}: key {key!r} is not a string")
            check_json(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if not _plain(item):
                check_json(item, f"{where}[{index}]")
        return
    raise ContractError(
        f"{where}: a {type(value).__name__} is not JSON-compatible; convert it first "
        "(e.g. Decimal to str, datetime to ISO 8601)"
    )
