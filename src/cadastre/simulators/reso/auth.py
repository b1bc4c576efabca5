"""OAuth 2.0 client credentials (RFC 6749 section 4.4) and bearer tokens (RFC 6750), on the
simulator's clock.

The token endpoint takes a form body with ``grant_type=client_credentials`` and the client's
credentials either in the body or as HTTP Basic (never both, section 2.3). Errors are RFC 6749
section 5.2 JSON. Tokens are opaque random strings, kept only in memory, and never logged.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from cadastre.simulators.auth.common import basic_credentials
from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.clock import Clock

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenIssuer:
    def __init__(self, clock: Clock, client_id: str, client_secret: str, ttl: float) -> None:
        self._clock = clock
        self._client_id = client_id
        self._client_secret = client_secret
        self.ttl = ttl
        self._expiry: dict[str, float] = {}  # token -> monotonic deadline

    def __repr__(self) -> str:
        return f"TokenIssuer(client_id={self._client_id!r}, ttl={self.ttl})"

    def issue(self) -> str:
        now = self._clock.monotonic()
        # Forget tokens long dead, so a long run does not grow without bound.
        if len(self._expiry) > 1024:
            self._expiry = {t: d for t, d in self._expiry.items() if d > now}
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self.ttl
        return token

    def check(self, authorization: str | None) -> str | None:
        """None when the bearer token is good, else the RFC 6750 error to answer with."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ""  # no credentials: a bare challenge, no error code (RFC 6750 section 3.1)
        deadline = self._expiry.get(token.strip())
        if deadline is None or self._clock.monotonic() >= deadline:
            return "invalid_token"
        return None

    async def token_endpoint(self, request: Request) -> tuple[Response, bool]:
        """The response, and whether it issued a token."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != FORM:
            return _oauth_error("invalid_request", f"the body must be {FORM}"), False
        try:
            pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return _oauth_error("invalid_request", "the body is not UTF-8"), False
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                return _oauth_error("invalid_request", f"{name} is given twice"), False
            form[name] = value
        try:
            basic = basic_credentials(request.headers.get("authorization"), form_encoded=True)
        except ValueError:
            return _oauth_error("invalid_request", "malformed Basic credentials"), False
        in_body = "client_id" in form or "client_secret" in form
        if basic is not None and in_body:
            return _oauth_error("invalid_request", "credentials both in Basic and body"), False
        grant_type = form.get("grant_type")
        if grant_type is None:
            return _oauth_error("invalid_request", "grant_type is missing"), False
        if grant_type != "client_credentials":
            return _oauth_error("unsupported_grant_type", "only client_credentials"), False
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if not (self._matches(client_id, secret)):
            headers = {"WWW-Authenticate": 'Basic realm="oauth"'} if basic else {}
            return _oauth_error(
                "invalid_client", "client authentication failed", 401, headers
            ), False
        body = {
            "access_token": self.issue(),
            "token_type": "Bearer",
            "expires_in": math.floor(self.ttl),
        }
        if form.get("scope"):
            body["scope"] = form["scope"]
        return json_response(body, headers=NO_STORE), True

    def _matches(self, client_id: str, secret: str) -> bool:
        id_ok = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self._client_secret.encode())
        return id_ok and secret_ok


def _oauth_error(
    code: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> Response:
    return json_response(
        {"error": code, "error_description": description}, status, {**NO_STORE, **(headers or {})}
    )
