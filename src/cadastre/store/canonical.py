"""Canonical JSON: the one byte form that record content hashes and audit hashes are taken over.

Keys are sorted and the encoding is compact UTF-8 (orjson with ``OPT_SORT_KEYS``). Only values that
survive a JSON round trip unchanged are accepted - ``None``, ``bool``, ``int`` (64-bit), finite
``float``, ``str``, lists/tuples and mappings with string keys. Anything else (``Decimal``,
``datetime``, ``NaN``, sets, objects) raises ``ContractError`` instead of being coerced, because a
silently coerced value would be stored as something other than what the caller wrote and its hash
would not be reproducible. Callers convert first (e.g. ``model_dump(mode="json")``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import orjson

from cadastre.errors import ContractError

_INT64 = 2**63


def check_json(value: Any, where: str = "$") -> None:
    """Raise ``ContractError`` naming the first value that is not JSON-compatible."""
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
            check_json(item, f"{where}[{index}]")
        return
    raise ContractError(
        f"{where}: a {type(value).__name__} is not JSON-compatible; convert it first "
        "(e.g. Decimal to str, datetime to ISO 8601)"
    )


def canonical_json(value: Any) -> bytes:
    check_json(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_hash(data: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of a record's ``data``."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """A checked, independent copy of a JSON object, as a database round trip would return it."""
    copied: dict[str, Any] = orjson.loads(canonical_json(value))
    return copied
