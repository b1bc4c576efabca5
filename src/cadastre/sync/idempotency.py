"""The deterministic idempotency key of one write-back target.

The same logical write to the same connection always gets the same key, so a resend after a crash
carries the key the vendor saw the first time (QuickBooks' ``requestid`` replays the first
answer). The key is 32 lowercase hex characters: within QuickBooks' batch-id limit of 36 and the
``[a-z0-9-]`` every vendor accepts.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Mapping

KEY_LENGTH = 32


def target_key(
    *,
    tenant: str,
    write_id: str,
    connection: str,
    entity: str,
    canonical_id: str,
    operation: str,
    fields: Mapping[str, Any],
) -> str:
    """sha256 over the write's identity and its fields (sorted), cut to 32 hex characters."""
    body = orjson.dumps(
        [tenant, write_id, connection, entity, canonical_id, operation, dict(fields)],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(body).hexdigest()[:KEY_LENGTH]
