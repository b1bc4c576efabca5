"""OAuth2 on the wire, without a client: the token request's form and headers (RFC 6749 sections
2.3.1, 4.1.3, 4.4, 6; RFC 7636 for PKCE) and what a token endpoint's answer means. ``tokens.py``
sends them through the ``TokenEndpoint`` port.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

import orjson

from cadastre.errors import (
    VendorAuthRefused,
    VendorError,
    VendorProtocolError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from cadastre.observe import SECRETS
from cadastre.ports import Secret

if TYPE_CHECKING:
    from cadastre.ports import EndpointReply

# OAuth2 error codes meaning "this client, or this grant, may not have a token" (RFC 6749 5.2),
# and the same refusals in vendor dialects: HubSpot answers 400 {"status": "BAD_REFRESH_TOKEN"}
# (a revoked or uninstalled grant) or BAD_CLIENT_ID / BAD_CLIENT_SECRET instead of an `error`.
REFUSALS = frozenset({
    "invalid_client", "unauthorized_client", "invalid_grant",
    "BAD_REFRESH_TOKEN", "BAD_CLIENT_ID", "BAD_CLIENT_SECRET",
})  # fmt: skip
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
_VENDOR_STATUS = re.compile(r"[A-Z_]{1,64}")  # HubSpot's `status`: a code, never free text
MAX_LIFETIME = 366 * 86400.0  # a longer expires_in is read as a year


@dataclass(frozen=True)
class TokenRequest:
    form: dict[str, str]
    headers: dict[str, str]

    def __repr__(self) -> str:  # the form holds secrets
        return f"TokenRequest(grant_type={self.form.get('grant_type')!r})"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: Secret
    expires_in: float | None  # seconds; None: until refused
    refresh_token: Secret | None  # a new one (rotation), or None when the vendor kept the old


def token_request(
    grant: dict[str, str], client_id: Secret, client_secret: Secret | None, auth_method: str
) -> TokenRequest:
    headers = {"Accept": "application/json"}
    form = dict(grant)
    if client_secret is None:  # a public client (PKCE) names itself in the form
        form["client_id"] = client_id.reveal()
    elif auth_method == "client_secret_post":
        form |= {"client_id": client_id.reveal(), "client_secret": client_secret.reveal()}
    else:
        # RFC 6749 section 2.3.1: each part is form-encoded before the Basic encoding
        pair = f"{quote_plus(client_id.reveal())}:{quote_plus(client_secret.reveal())}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return TokenRequest(form, headers)


def pkce_pair() -> tuple[str, str]:
    """A code verifier (43-128 characters of the unreserved set) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def read_tokens(reply: EndpointReply, where: str) -> IssuedTokens:
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        body = None
    if not (isinstance(body, dict) and isinstance(token := body.get("access_token"), str)):
        raise VendorProtocolError(f"{where}: answered without an access_token")
    if not token:
        raise VendorProtocolError(f"{where}: answered an empty access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise VendorProtocolError(f"{where}: issued a token that is not a Bearer token")
    refresh = body.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise VendorProtocolError(f"{where}: answered a refresh_token that is not a string")
    lifetime = body.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if (
        isinstance(lifetime, bool) or not isinstance(lifetime, int | float)
        or not math.isfinite(lifetime) or lifetime <= 0
    ):  # fmt: skip
        lifetime = None
    elif lifetime > MAX_LIFETIME:  # a vendor's "forever" must not overflow a date
        lifetime = MAX_LIFETIME
    SECRETS.add(token)  # the redactor knows it before anything could log it
    if refresh:
        SECRETS.add(refresh)
    return IssuedTokens(Secret(token), lifetime, Secret(refresh) if refresh else None)


def refusal(reply: EndpointReply, message: str) -> VendorError:
    """What a non-2xx answer from a token endpoint means. ``VendorAuthRefused``: the grant or the
    client is refused - a person must act; anything else may pass."""
    status = reply.status
    code = _oauth_error(reply.body)
    said = f"{status} {_reason(status)}" + (f" ({code})" if code else "")
    message = f"{message}: answered {said}"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return VendorRateLimited(message, reply.retry_after)
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status == HTTPStatus.REQUEST_TIMEOUT:
        return VendorUnavailable(message, reply.retry_after)
    if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN} or code in REFUSALS:
        return VendorAuthRefused(message)
    return VendorRejected(message, status)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _oauth_error(content: bytes) -> str:
    """The ``error`` code of an OAuth2 error body (else a vendor's upper-case ``status`` code, as
    HubSpot sends), if it looks like one. Only the code: a vendor's ``error_description`` or
    ``message`` is free text that may quote what we sent."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error")
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    status = body.get("status")
    return status if isinstance(status, str) and _VENDOR_STATUS.fullmatch(status) else ""
