"""Inbound webhook signature schemes: one ``Verifier`` interface over a closed set.

Each scheme checks in two steps, so a forged request costs as little as possible and its body is
never parsed: ``check_headers`` (the signature is there, the signed timestamp is within the
tolerance) before the body is read, then ``verify`` (the HMAC over the raw bytes, constant-time,
with each secret the credential holds now: the previous one too while a rotation overlaps).
``verify`` answers the message id the inbox keys replays on: the vendor's id when it is signed
(Standard Webhooks' ``webhook-id``), else ``sha256:`` + the hash of the signed content (of the
body for Buildium, which signs each retry anew with its send time).

- ``standard_webhooks``: ``webhook-id``/``-timestamp``/``-signature`` (several ``v1,`` entries
  during a rotation), ``whsec_`` secrets (``cadastre.webhooks.standard``).
- ``buildium``: ``buildium-webhook-signature`` = base64 HMAC-SHA256(secret, timestamp "." body),
  ``buildium-webhook-timestamp`` in seconds. Buildium signs the body as sent (minified JSON); a
  body re-serialised on the way does not verify, and is not "repaired" here.
- ``hubspot_v3``: ``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256(client secret, method + URI +
  body + timestamp), ``X-HubSpot-Request-Timestamp`` in milliseconds. The URI is the URL HubSpot
  called, with the percent-escapes HubSpot documents decoding (``%3A`` ``:`` ... ``%3B`` ``;``)
  decoded.
- ``quickbooks``: ``intuit-signature`` = base64 HMAC-SHA256(verifier token, body); no timestamp,
  so replays are caught by the message id alone (the inbox keeps ids past any vendor retry).
- ``hmac_sha256``: a header of our choosing, hex or base64, an optional prefix (``sha256=``), an
  optional timestamp header; signed content the body or ``timestamp.body`` (GitHub, Xero,
  Stripe-like senders).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import operator
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, assert_never

from cadastre.errors import WebhookRefused
from cadastre.webhooks import standard
from cadastre.webhooks.settings import Scheme, WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from cadastre.ports import Secret

MAX_ID = 200  # longer vendor ids are kept as their hash (the inbox column's size)
_DIGITS = re.compile(r"[0-9]{1,16}")
_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces
# The escapes HubSpot decodes in the URI before signing (its "Validating requests" guide).
_HUBSPOT_ESCAPES = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def missing_signature() -> WebhookRefused:
    return WebhookRefused("missing_signature", "the request carries no signature")


def bad_signature() -> WebhookRefused:
    return WebhookRefused("bad_signature", "the signature does not match")


def content_id(content: bytes) -> str:
    """A message id for a scheme without a signed one: the signed content's hash."""
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _hmac(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def _timestamp(value: str | None, unit: float, now: datetime, tolerance: int) -> None:
    """Refuse a missing, malformed or out-of-tolerance timestamp (``unit``: seconds per tick)."""
    value = value.strip() if value is not None else ""
    if not value:
        raise WebhookRefused("missing_timestamp", "the request carries no signed timestamp")
    if not _DIGITS.fullmatch(value):
        raise WebhookRefused("invalid_timestamp", "the signed timestamp is not a whole number")
    skew = abs(int(value) * unit - now.timestamp())
    if skew > tolerance:
        raise WebhookRefused(
            "stale_timestamp", f"the signed timestamp is {skew:.0f} s from now (tolerance "
            f"{tolerance} s)",
        )  # fmt: skip


class Verifier(ABC):
    """One scheme's checks. ``signature_headers`` name what is never stored, shown or logged."""

    signature_headers: frozenset[str]

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        # The keys of the secrets last verified with: the same Secret objects come with every
        # request until the credential changes, and deriving a key (base64 for Standard
        # Webhooks) per request was a tenth of the verification's cost.
        self._derived: tuple[tuple[Secret, ...], list[bytes]] = ((), [])

    @abstractmethod
    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        """Raise ``WebhookRefused`` before the body is read: signature or timestamp missing,
        timestamp outside the tolerance. ``headers`` have lower-case names."""

    @abstractmethod
    def verify(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes,
        secrets: Sequence[Secret],
    ) -> str:  # fmt: skip
        """The message id, or ``WebhookRefused`` (bad_signature) when no secret signed it."""

    def key(self, secret: Secret) -> bytes:
        return secret.reveal().encode()

    def _keys(self, secrets: Sequence[Secret]) -> list[bytes]:
        held, keys = self._derived
        if len(held) == len(secrets) and all(map(operator.is_, held, secrets)):
            return keys
        try:
            keys = [self.key(s) for s in secrets]
        except ValueError:  # a stored secret of the wrong shape: ours to fix, not the vendor's
            raise WebhookRefused(
                "not_configured", "the connection's webhook secret is not usable", status=503
            ) from None
        self._derived = (tuple(secrets), keys)
        return keys


class StandardWebhooks(Verifier):
    signature_headers = frozenset({"webhook-signature"})

    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        if not headers.get("webhook-signature") or not headers.get("webhook-id"):
            raise missing_signature()
        _timestamp(headers.get("webhook-timestamp"), 1.0, now, self.settings.tolerance_seconds)

    def key(self, secret: Secret) -> bytes:
        return standard.secret_key(secret.reveal())

    def verify(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes,
        secrets: Sequence[Secret],
    ) -> str:  # fmt: skip
        msg_id, stamp = headers["webhook-id"], int(headers["webhook-timestamp"].strip())
        header = headers["webhook-signature"]
        for key in self._keys(secrets):
            if standard.matches(key, msg_id, stamp, body, header):
                break
        else:
            raise bad_signature()
        # The id is signed: a replay under another id would not verify.
        return msg_id if _ID.fullmatch(msg_id) else content_id(msg_id.encode())


class _Base64Hmac(Verifier):
    """A base64 HMAC-SHA256 in one header over content built from the request."""

    header: str

    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        if not headers.get(self.header):
            raise missing_signature()

    @abstractmethod
    def content(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """What the vendor signed."""

    def message_id(self, content: bytes, body: bytes) -> str:
        return content_id(content)

    def verify(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes,
        secrets: Sequence[Secret],
    ) -> str:  # fmt: skip
        content = self.content(method, url, headers, body)
        sent = headers[self.header].strip().encode()
        found = False
        for key in self._keys(secrets):
            # every key compared: how many match must not change the timing
            found |= hmac.compare_digest(base64.b64encode(_hmac(key, content)), sent)
        if not found:
            raise bad_signature()
        return self.message_id(content, body)


class Buildium(_Base64Hmac):
    header = "buildium-webhook-signature"
    signature_headers = frozenset({header})

    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        super().check_headers(headers, now)
        stamp = headers.get("buildium-webhook-timestamp")
        _timestamp(stamp, 1.0, now, self.settings.tolerance_seconds)

    def content(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return headers["buildium-webhook-timestamp"].strip().encode() + b"." + body

    def message_id(self, content: bytes, body: bytes) -> str:
        # A retry is signed anew with its send time; the body (EventName, EventDateTime, ids)
        # is the message.
        return content_id(body)


class HubSpotV3(_Base64Hmac):
    header = "x-hubspot-signature-v3"
    signature_headers = frozenset({header, "x-hubspot-signature"})

    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        super().check_headers(headers, now)
        stamp = headers.get("x-hubspot-request-timestamp")
        _timestamp(stamp, 0.001, now, self.settings.tolerance_seconds)

    def content(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        uri = hubspot_uri(url)
        stamp = headers["x-hubspot-request-timestamp"].strip()
        return method.upper().encode() + uri.encode() + body + stamp.encode()


def hubspot_uri(url: str) -> str:
    """The URI as HubSpot signs it: the escapes its guide lists decoded, the rest left alone."""
    return _HUBSPOT_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), url)


class QuickBooks(_Base64Hmac):
    header = "intuit-signature"
    signature_headers = frozenset({header})

    def content(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return body


class GenericHmac(Verifier):
    def __init__(self, settings: WebhookSettings) -> None:
        super().__init__(settings)
        assert settings.header is not None  # noqa: S101 - WebhookSettings requires it
        self.header = settings.header.lower()
        self.stamp = settings.timestamp_header.lower() if settings.timestamp_header else None
        self.signature_headers = frozenset({self.header})

    def check_headers(self, headers: Mapping[str, str], now: datetime) -> None:
        value = headers.get(self.header, "").strip()
        if not value or not value.startswith(self.settings.prefix):
            raise missing_signature()
        if self.stamp is not None:
            unit = 0.001 if self.settings.timestamp_unit == "ms" else 1.0
            _timestamp(headers.get(self.stamp), unit, now, self.settings.tolerance_seconds)

    def verify(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes,
        secrets: Sequence[Secret],
    ) -> str:  # fmt: skip
        content = body
        if self.settings.signed == "timestamp.body" and self.stamp is not None:
            content = headers[self.stamp].strip().encode() + b"." + body
        sent = self._sent(headers[self.header].strip().removeprefix(self.settings.prefix))
        found = False
        for key in self._keys(secrets):
            found |= sent is not None and hmac.compare_digest(_hmac(key, content), sent)
        if not found:
            raise bad_signature()
        return content_id(content)

    def _sent(self, value: str) -> bytes | None:
        """The digest the header carries; None when it is not hex or base64 (matches nothing)."""
        try:
            if self.settings.encoding == "hex":
                return bytes.fromhex(value)
            return base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            return None


def verifier(settings: WebhookSettings) -> Verifier:
    match settings.scheme:
        case Scheme.STANDARD_WEBHOOKS:
            return StandardWebhooks(settings)
        case Scheme.BUILDIUM:
            return Buildium(settings)
        case Scheme.HUBSPOT_V3:
            return HubSpotV3(settings)
        case Scheme.QUICKBOOKS:
            return QuickBooks(settings)
        case Scheme.HMAC_SHA256:
            return GenericHmac(settings)
        case _:
            assert_never(settings.scheme)
