"""How a connection receives webhooks: the ``webhook:`` block of its config (never a secret).

    webhook:
      scheme: standard_webhooks        # or buildium, hubspot_v3, quickbooks, hmac_sha256
      credential: austin-hooks         # a vault credential of scheme webhook_secret
      tolerance_seconds: 300           # how far a signed timestamp may be from our clock
      max_body_bytes: 1048576          # larger bodies are refused (413) before being read whole

Scheme options: ``url`` (hubspot_v3: the URL HubSpot calls, when it is not ``CADASTRE_PUBLIC_URL``
+ the path); for ``hmac_sha256``: ``header`` (required), ``encoding`` (hex or base64),
``prefix`` (e.g. ``sha256=``), ``timestamp_header`` and ``timestamp_unit`` (s or ms), and
``signed`` (``body``, or ``timestamp.body``, which needs a timestamp header).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cadastre.ports import CREDENTIAL_NAME

HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"  # an HTTP token (RFC 9110 section 5.1)
DEFAULT_MAX_BODY = 1024 * 1024


class Scheme(StrEnum):
    STANDARD_WEBHOOKS = "standard_webhooks"
    BUILDIUM = "buildium"
    HUBSPOT_V3 = "hubspot_v3"
    QUICKBOOKS = "quickbooks"
    HMAC_SHA256 = "hmac_sha256"


_OPTIONS: dict[Scheme, frozenset[str]] = {
    Scheme.HUBSPOT_V3: frozenset({"url"}),
    Scheme.HMAC_SHA256: frozenset(
        {"header", "encoding", "prefix", "timestamp_header", "timestamp_unit", "signed"}
    ),
}
_ALL_OPTIONS = frozenset().union(*_OPTIONS.values())


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Scheme
    credential: str = Field(
        pattern=CREDENTIAL_NAME, description="vault credential (scheme webhook_secret)"
    )
    tolerance_seconds: int = Field(default=300, ge=1, le=86_400)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1, le=64 * 1024 * 1024)
    # hubspot_v3
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # hmac_sha256
    header: str | None = Field(default=None, pattern=HEADER_NAME)
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", max_length=40)
    timestamp_header: str | None = Field(default=None, pattern=HEADER_NAME)
    timestamp_unit: Literal["s", "ms"] = "s"
    signed: Literal["body", "timestamp.body"] = "body"

    @model_validator(mode="after")
    def _options_of_the_scheme(self) -> Self:
        allowed = _OPTIONS.get(self.scheme, frozenset())
        stray = sorted((self.model_fields_set & _ALL_OPTIONS) - allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)}: not options of scheme {self.scheme.value}")
        if self.scheme is Scheme.HMAC_SHA256:
            if self.header is None:
                raise ValueError("scheme hmac_sha256 needs 'header': the signature's header")
            if self.signed == "timestamp.body" and self.timestamp_header is None:
                raise ValueError("signed: timestamp.body needs 'timestamp_header'")
        return self
