"""Test-side signers: what each vendor puts on a webhook, written from the vendors' documented
algorithms independently of ``cadastre.webhooks.verify`` (Standard Webhooks through the
``standardwebhooks`` reference package), so the tests check the verifiers against something
else than themselves."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

HUBSPOT_URL = "https://hub.example/webhooks/acme/crm"


def _b64_hmac(secret: str, content: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha256).digest()).decode()


def standard(secrets: list[str], body: bytes, when: datetime, msg_id: str) -> dict[str, str]:
    """Standard Webhooks headers, one ``v1`` signature per secret (the reference signer)."""
    signatures = [Webhook(s).sign(msg_id, when, body.decode()) for s in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def buildium(secret: str, body: bytes, when: datetime) -> dict[str, str]:
    stamp = str(int(when.timestamp()))
    return {
        "buildium-webhook-timestamp": stamp,
        "buildium-webhook-signature": _b64_hmac(secret, stamp.encode() + b"." + body),
    }


def hubspot(secret: str, body: bytes, when: datetime, url: str = HUBSPOT_URL,
            method: str = "POST") -> dict[str, str]:  # fmt: skip
    stamp = str(int(when.timestamp() * 1000))
    content = method.encode() + url.encode() + body + stamp.encode()
    signature = _b64_hmac(secret, content)
    return {"x-hubspot-request-timestamp": stamp, "x-hubspot-signature-v3": signature}


def quickbooks(secret: str, body: bytes) -> dict[str, str]:
    return {"intuit-signature": _b64_hmac(secret, body)}


def github(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-delivery": "72d3162e"}


def stamped_hex(secret: str, body: bytes, when: datetime) -> dict[str, str]:
    """Stripe-like: hex HMAC over ``timestamp.body``, the timestamp in a header of its own."""
    stamp = str(int(when.timestamp()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-signature": digest, "x-timestamp": stamp}


# scheme -> (webhook block of the connection, what signs a body)
SCHEMES: dict[str, dict[str, Any]] = {
    "standard_webhooks": {"scheme": "standard_webhooks"},
    "buildium": {"scheme": "buildium"},
    "hubspot_v3": {"scheme": "hubspot_v3", "url": HUBSPOT_URL},
    "quickbooks": {"scheme": "quickbooks"},
    "github": {"scheme": "hmac_sha256", "header": "X-Hub-Signature-256", "prefix": "sha256="},
    "stamped": {"scheme": "hmac_sha256", "header": "X-Signature", "timestamp_header": "X-Timestamp",
                "signed": "timestamp.body"},
}  # fmt: skip
TIMESTAMPED = ("standard_webhooks", "buildium", "hubspot_v3", "stamped")
SECRET = {  # a secret of the shape each vendor issues
    "standard_webhooks": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "buildium": "buildium-test-secret",
    "hubspot_v3": "hubspot-test-client-secret",
    "quickbooks": "qbo-test-verifier-token",
    "github": "github-test-secret",
    "stamped": "stamped-test-secret",
}
OTHER_SECRET = {
    "standard_webhooks": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    **{k: f"{v}-other" for k, v in SECRET.items() if k != "standard_webhooks"},
}


def sign(name: str, secrets: str | list[str], body: bytes, when: datetime,
         msg_id: str = "msg_1") -> dict[str, str]:  # fmt: skip
    """The headers vendor-style scheme ``name`` puts on ``body`` sent at ``when``."""
    keys = [secrets] if isinstance(secrets, str) else secrets
    match name:
        case "standard_webhooks":
            return standard(keys, body, when, msg_id)
        case "buildium":
            return buildium(keys[0], body, when)
        case "hubspot_v3":
            return hubspot(keys[0], body, when)
        case "quickbooks":
            return quickbooks(keys[0], body)
        case "github":
            return github(keys[0], body)
        case "stamped":
            return stamped_hex(keys[0], body, when)
    raise ValueError(name)


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
