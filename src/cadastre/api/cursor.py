"""Page cursors: opaque to clients, checked on the way back in.

A cursor carries the last id of a page and a checksum over that id, the tenant and the query's
filters, base64url-encoded JSON. The checksum is not a signature: it turns a garbled cursor, or
one taken from another query or tenant, into a 400 instead of a silently different page. A
client that builds a cursor by hand can only start a page after some id of its own tenant,
which a filter could do as well, so there is nothing to protect with a key (and a key would
tie cursors to one process or need a shared secret).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from cadastre.ports import FieldFilter

_MAX_ID = 200  # the store's id column
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    pass


def query_fingerprint(tenant: str, filters: Sequence[FieldFilter]) -> str:
    """The same for the same query, however its values were spelt (350000 or 350000.00)."""
    parts: list[object] = [tenant]
    for f in filters:
        value = f.value
        if isinstance(value, datetime):
            shown = str(value - _EPOCH)  # not astimezone(): year 1 at +14:00 would overflow
        elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            shown = str(Decimal(str(value)).normalize())
        else:
            # bytes.lower() folds ASCII letters only, as the filter does
            shown = str(value).encode().lower().decode() if f.casefold else str(value)
        parts.append([f.field, f.op, f.kind, f.casefold, shown])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _check(fingerprint: str, after: str) -> str:
    return hashlib.sha256(f"{fingerprint}\n{after}".encode()).hexdigest()[:24]


def encode_cursor(after: str, fingerprint: str) -> str:
    body = orjson.dumps({"after": after, "check": _check(fingerprint, after)})
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode()


def decode_cursor(cursor: str, fingerprint: str) -> str:
    """The id to page after; ``InvalidCursor`` for anything this query did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = orjson.loads(raw)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise InvalidCursor("the cursor is not one this API handed out") from None
    after = body.get("after") if isinstance(body, dict) else None
    check = body.get("check") if isinstance(body, dict) else None
    if (
        not isinstance(after, str)
        or not isinstance(check, str)
        or len(after) > _MAX_ID
        or not hmac.compare_digest(check.encode(), _check(fingerprint, after).encode())
    ):
        raise InvalidCursor("the cursor is garbled or belongs to another query")
    return after
