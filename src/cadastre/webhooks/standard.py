"""Standard Webhooks (standardwebhooks.com) signatures: ``webhook-signature`` is
``v1,<base64 HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}">``, several space-separated
during a secret rotation; secrets are ``whsec_`` + base64 of the key bytes.

Written here rather than taken from the ``standardwebhooks`` package: its ``verify`` reads the wall
clock (the hub's clock is injected, and tests move it), fixes the tolerance at five minutes, and
raises ``ValueError`` on a malformed signature list. The tests check these functions against it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
VERSION = "v1"


def new_secret(size: int = 32) -> str:
    """A fresh signing secret, ``whsec_`` + base64 of ``size`` random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret (or a bare base64 one) stands for; ``ValueError`` if it
    is not base64 or is empty (never naming the value)."""
    text = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret may not be empty")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def signature_header(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key (the new secret and, while a
    rotation overlaps, the previous one)."""
    return " ".join(signature(k, msg_id, timestamp, body) for k in keys)


def matches(key: bytes, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1`` signature in ``header`` is this key's over this message; entries of
    other versions and malformed entries are skipped, never raised on."""
    expected = signature(key, msg_id, timestamp, body).encode()
    found = False
    for entry in header.split():
        version, _, value = entry.partition(",")
        # compare_digest on every v1 entry: how many entries match must not change the timing
        if version == VERSION and value:
            found |= hmac.compare_digest(expected, f"{VERSION},{value}".encode())
    return found
