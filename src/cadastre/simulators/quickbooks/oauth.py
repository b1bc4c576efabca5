"""Intuit's OAuth 2.0 server as a QuickBooks app meets it.

``POST /oauth2/v1/tokens/bearer`` (form body, client authentication by HTTP Basic only):
``authorization_code`` (a code from ``GET /connect/oauth2`` or ``POST /admin/oauth/code``, single
use, 5 minutes) and ``refresh_token``. Access tokens live 3,600 s on the simulator clock and are
bound to one company (realm). Refresh tokens have a rolling expiry of 100 days from their last
use (``x_refresh_token_expires_in``); with ``x-include-refresh-token-hard-expires-in: true`` the
answer also carries ``x_refresh_token_hard_expires_in`` (5 years from the grant).

Rotation: Intuit's refresh answer carries a new refresh token about once every 24 hours (its
authorization FAQ: always keep the newest one). Here the answer carries a new one when the current
one is ``rotate_after`` seconds old (default 86,400; 0 rotates on every refresh). The previous one
keeps working until the new one is first used, then it is dead (``invalid_grant``); a client whose
answer was lost can therefore send the old one again and is handed the newer token. Unknown,
expired, dead or revoked refresh tokens are ``400 {"error": "invalid_grant"}``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cadastre.simulators.clock import Clock

ACCESS_TTL = 3600
REFRESH_IDLE = timedelta(days=100)
HARD_LIMIT = timedelta(days=5 * 365)
CODE_TTL = timedelta(minutes=5)


class OAuthRefused(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class Grant:
    realm: str
    client_id: str
    scope: str
    granted_at: datetime
    current: str = field(default="", repr=False)  # refresh tokens never in a repr
    current_issued: datetime | None = None
    current_used: bool = False
    previous: str | None = field(default=None, repr=False)
    last_used: datetime | None = None
    revoked: bool = False


@dataclass
class AccessToken:
    realm: str
    client_id: str
    expires_at: datetime


@dataclass
class OAuthStats:
    token_calls: int = 0
    refreshes: int = 0
    rotations: int = 0
    invalid_grants: int = 0
    codes_exchanged: int = 0
    by_grant_type: Counter[str] = field(default_factory=Counter)


class OAuthServer:
    def __init__(self, clock: Clock, clients: dict[str, str], *, rotate_after: float = 86400.0):
        self._clock = clock
        self.clients = dict(clients)
        self.rotate_after = rotate_after
        self.stats = OAuthStats()
        self._grants: list[Grant] = []
        self._by_refresh: dict[str, Grant] = {}
        self._codes: dict[str, tuple[Grant, str | None, datetime]] = {}
        self._access: dict[str, AccessToken] = {}

    def __repr__(self) -> str:
        return f"OAuthServer(clients={sorted(self.clients)}, grants={len(self._grants)})"

    # ------------------------------------------------------------------------- consent

    def consent(self, client_id: str, realm: str, redirect_uri: str | None = None,
                scope: str = "com.intuit.quickbooks.accounting") -> str:  # fmt: skip
        """The user connects the app to ``realm``: an authorization code."""
        if client_id not in self.clients:
            raise OAuthRefused(400, "invalid_client", "unknown client")
        grant = Grant(realm, client_id, scope, self._clock.now())
        code = "AB" + secrets.token_urlsafe(24)
        self._codes[code] = (grant, redirect_uri, self._clock.now() + CODE_TTL)
        return code

    def grant(self, client_id: str, realm: str) -> dict[str, Any]:
        """As if the consent and the code exchange had happened: the token answer."""
        code = self.consent(client_id, realm)
        grant, _, _ = self._codes.pop(code)
        self._grants.append(grant)
        return self._answer(grant, rotate=True, hard=False)

    def revoke_all(self, client_id: str | None = None) -> int:
        """The user disconnects the app: every token of its grants dies."""
        count = 0
        for grant in self._grants:
            if (client_id is None or grant.client_id == client_id) and not grant.revoked:
                grant.revoked = True
                count += 1
        for token, access in list(self._access.items()):
            if client_id is None or access.client_id == client_id:
                del self._access[token]
        return count

    def revoke_token(self, client_id: str, token: str) -> None:
        """RFC 7009: a refresh token revokes its grant, an access token itself."""
        grant = self._by_refresh.get(token)
        if grant is not None and grant.client_id == client_id:
            grant.revoked = True
        access = self._access.get(token)
        if access is not None and access.client_id == client_id:
            del self._access[token]

    # --------------------------------------------------------------------------- tokens

    def token(self, form: dict[str, str], authorization: str | None,
              headers: dict[str, str]) -> dict[str, Any]:  # fmt: skip
        self.stats.token_calls += 1
        client_id = self._client(authorization)
        grant_type = form.get("grant_type", "")
        self.stats.by_grant_type[grant_type or "(none)"] += 1
        hard = headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true"
        if grant_type == "authorization_code":
            return self._exchange(client_id, form, hard)
        if grant_type == "refresh_token":
            return self._refresh(client_id, form.get("refresh_token", ""), hard)
        raise OAuthRefused(400, "unsupported_grant_type", "authorization_code or refresh_token")

    def access(self, token: str) -> AccessToken | None:
        found = self._access.get(token)
        if found is None or self._clock.now() >= found.expires_at:
            return None
        return found

    def _client(self, authorization: str | None) -> str:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise OAuthRefused(401, "invalid_client", "client authentication is HTTP Basic")
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthRefused(401, "invalid_client", "unreadable Basic credentials") from None
        known = self.clients.get(client_id)
        if known is None or not secrets.compare_digest(known, secret):
            raise OAuthRefused(401, "invalid_client", "unknown client or wrong secret")
        return client_id

    def _exchange(self, client_id: str, form: dict[str, str], hard: bool) -> dict[str, Any]:
        entry = self._codes.pop(form.get("code", ""), None)
        if entry is None:
            return self._invalid("unknown or used authorization code")
        grant, redirect_uri, expires = entry
        if grant.client_id != client_id or self._clock.now() >= expires:
            return self._invalid("authorization code expired or of another client")
        if redirect_uri is not None and form.get("redirect_uri") != redirect_uri:
            return self._invalid("redirect_uri does not match the authorization request")
        self.stats.codes_exchanged += 1
        self._grants.append(grant)
        return self._answer(grant, rotate=True, hard=hard)

    def _refresh(self, client_id: str, token: str, hard: bool) -> dict[str, Any]:
        grant = self._by_refresh.get(token)
        now = self._clock.now()
        if grant is None or grant.client_id != client_id or grant.revoked:
            return self._invalid("Token invalid")
        if grant.last_used is not None and now - grant.last_used >= REFRESH_IDLE:
            return self._invalid("Token expired")
        if now - grant.granted_at >= HARD_LIMIT:
            return self._invalid("Token expired")
        if token == grant.previous:
            if grant.current_used:
                return self._invalid("Token invalid")
        elif token == grant.current:
            grant.current_used = True
            if grant.previous is not None:
                self._by_refresh.pop(grant.previous, None)
                grant.previous = None
        else:  # pragma: no cover - every mapped token is current or previous
            return self._invalid("Token invalid")
        grant.last_used = now
        self.stats.refreshes += 1
        issued = grant.current_issued or now
        rotate = (now - issued).total_seconds() >= self.rotate_after
        return self._answer(grant, rotate=rotate, hard=hard)

    def _answer(self, grant: Grant, *, rotate: bool, hard: bool) -> dict[str, Any]:
        now = self._clock.now()
        if rotate:
            if grant.current:
                self.stats.rotations += 1
                if grant.previous is not None:
                    self._by_refresh.pop(grant.previous, None)
                grant.previous = grant.current
            grant.current = "RT1-" + secrets.token_urlsafe(32)
            grant.current_issued = now
            grant.current_used = False
            self._by_refresh[grant.current] = grant
        access = "eyJ" + secrets.token_urlsafe(48)
        self._access[access] = AccessToken(
            grant.realm, grant.client_id, now + timedelta(seconds=ACCESS_TTL)
        )
        answer: dict[str, Any] = {
            "token_type": "bearer", "access_token": access, "expires_in": ACCESS_TTL,
            "refresh_token": grant.current,
            "x_refresh_token_expires_in": int(REFRESH_IDLE.total_seconds()),
        }  # fmt: skip
        if hard:
            left = grant.granted_at + HARD_LIMIT - now
            answer["x_refresh_token_hard_expires_in"] = int(left.total_seconds())
        return answer

    def _invalid(self, why: str) -> dict[str, Any]:
        self.stats.invalid_grants += 1
        raise OAuthRefused(400, "invalid_grant", why)
