"""The authentication schemes a credential can hold, as data: which secret fields each needs, and
the non-secret facts (``meta``) it carries, validated by a pydantic model per scheme.

Every scheme's meta may name ``egress_ips``: the addresses the vendor must allow-list for this
connection (the hub's outbound addresses), kept so an operator can tell the vendor what to allow.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cadastre.config import describe_validation_error
from cadastre.errors import ConfigurationError


class Scheme(StrEnum):
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"
    OAUTH2_AUTHORIZATION_CODE = "oauth2_authorization_code"
    API_KEY = "api_key"
    BASIC = "basic"
    DIGEST = "digest"
    SESSION = "session"
    WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 - a scheme name: signs or checks webhooks


class SchemeMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    egress_ips: list[str] = Field(
        default_factory=list, description="addresses the vendor must allow-list for us"
    )

    @field_validator("egress_ips")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return value


class ClientCredentialsMeta(SchemeMeta):
    token_url: str | None = None  # None: the connector's
    scope: str | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"


class AuthorizationCodeMeta(ClientCredentialsMeta):
    authorize_url: str | None = None
    redirect_uri: str | None = None  # None: the hub's own callback
    # "never": a refresh token whose answer was lost is never sent again (single-use tokens, as
    # Xero's: a resend revokes the whole family), so the credential needs a person. "allowed":
    # the vendor keeps refresh tokens valid after use, so a lost answer is retried later.
    refresh_token_reuse: Literal["never", "allowed"] = "never"  # noqa: S105 - a policy
    # A consent in progress (``cadastre credentials connect``): sha256 of its state, and since when.
    pending_state: str | None = None
    pending_since: str | None = None


class ApiKeyMeta(SchemeMeta):
    header: str | None = "X-Api-Key"
    query: str | None = None  # the query parameter, for vendors that want the key in the URL
    # Vendors whose key is a pair (Buildium: x-buildium-client-id + x-buildium-client-secret):
    # the non-secret client id, sent in `id_header` beside the key (the secret stays `api_key`).
    id_header: str | None = None
    id: str | None = None
    rotate_url: str | None = None  # the vendor's key-rotation endpoint, if it has one
    rotate_every_days: float | None = Field(default=None, gt=0)
    rotated_at: str | None = None  # ISO 8601, set by the hub
    previous_valid_until: str | None = None  # ISO 8601: the old key's end of overlap


class PasswordMeta(SchemeMeta):
    pass


class WebhookSecretMeta(SchemeMeta):
    # During a rotation the previous secret still verifies (inbound) or also signs (outbound)
    # until then, so senders and receivers can switch over without a refused delivery.
    previous_valid_until: str | None = None  # ISO 8601
    rotated_at: str | None = None  # ISO 8601, set by the hub


class SessionMeta(SchemeMeta):
    login_url: str
    login_format: Literal["form", "json"] = "form"
    cookie: str | None = None  # the session cookie's name; None: every cookie the login sets


@dataclass(frozen=True)
class SchemeSpec:
    scheme: Scheme
    needs: tuple[str, ...]  # secret fields that must be present
    may: tuple[str, ...]  # secret fields that may be present
    meta: type[SchemeMeta]


SCHEMES: dict[Scheme, SchemeSpec] = {
    s.scheme: s
    for s in (
        SchemeSpec(
            Scheme.OAUTH2_CLIENT_CREDENTIALS, ("client_id", "client_secret"), ("access_token",),
            ClientCredentialsMeta,
        ),
        SchemeSpec(
            Scheme.OAUTH2_AUTHORIZATION_CODE, ("client_id",),
            ("client_secret", "refresh_token", "access_token", "code_verifier"),
            AuthorizationCodeMeta,
        ),
        SchemeSpec(Scheme.API_KEY, ("api_key",), ("previous_api_key",), ApiKeyMeta),
        SchemeSpec(Scheme.BASIC, ("username", "password"), (), PasswordMeta),
        SchemeSpec(Scheme.DIGEST, ("username", "password"), (), PasswordMeta),
        SchemeSpec(Scheme.SESSION, ("username", "password"), (), SessionMeta),
        SchemeSpec(Scheme.WEBHOOK_SECRET, ("secret",), ("previous_secret",), WebhookSecretMeta),
    )
}  # fmt: skip


def scheme_spec(name: str) -> SchemeSpec:
    try:
        return SCHEMES[Scheme(name)]
    except ValueError:
        known = ", ".join(s.value for s in Scheme)
        raise ConfigurationError(f"unknown credential scheme {name!r}; one of: {known}") from None


def check(name: str, scheme: str, fields: set[str], meta: dict[str, Any]) -> dict[str, Any]:
    """The meta, validated and with defaults; ``ConfigurationError`` naming what is wrong (field
    names only, never a value)."""
    spec = scheme_spec(scheme)
    missing = [f for f in spec.needs if f not in fields]
    if missing:
        raise ConfigurationError(
            f"credential {name!r} ({scheme}) needs secret field(s): {', '.join(missing)}"
        )
    unknown = sorted(fields - {*spec.needs, *spec.may})
    if unknown:
        raise ConfigurationError(
            f"credential {name!r} ({scheme}) has no field(s) {', '.join(unknown)}; it takes "
            f"{', '.join((*spec.needs, *spec.may))}"
        )
    try:
        checked = spec.meta.model_validate(meta)
    except ValidationError as exc:
        raise ConfigurationError(
            f"credential {name!r} ({scheme}): {describe_validation_error(exc)}"
        ) from None
    if isinstance(checked, ApiKeyMeta) and (checked.id_header is None) != (checked.id is None):
        raise ConfigurationError(
            f"credential {name!r} ({scheme}): id_header and id go together (the header and the "
            "client id it carries)"
        )
    return checked.model_dump(mode="json")
