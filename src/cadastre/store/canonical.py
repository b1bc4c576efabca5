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
from typing import TYPE_CHECKING, Any

import orjson

from cadastre.contract.wire import check_json

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["canonical_copy", "canonical_json", "content_hash", "json_copy"]


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


def canonical_copy(data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(json_copy(data), content_hash(data))`` from one canonical dump: a record write needs
    both, and serialising every record twice was the larger part of preparing a write."""
    body = canonical_json(data)
    copied: dict[str, Any] = orjson.loads(body)
    return copied, hashlib.sha256(body).hexdigest()
