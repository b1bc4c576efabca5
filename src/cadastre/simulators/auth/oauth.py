"""The OAuth 2.0 endpoints: authorization code with PKCE (RFC 6749 section 4.1, RFC 7636, S256
only), client credentials (4.4), refresh (section 6), token revocation (RFC 7009) and bearer
checks (RFC 6750), on the simulator's clock.

``GET /oauth/authorize`` stands for the vendor's consent page with a user who clicks Allow (or
Deny, per the ``consent`` setting) at once: it answers 302 to the client's redirect URI. A missing
or unknown client, or a redirect URI not registered for it, is answered 400 without a redirect
(section 4.1.2.1); every other problem is redirected as ``error=...``. Codes are single-use and
live ``code_ttl`` seconds; a code presented again after it was exchanged revokes the grant issued
for it (section 4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.responses import RedirectResponse, Response

from cadastre.simulators.auth.common import (
    NO_STORE,
    OAuthError,
    basic_credentials,
    oauth_error,
    read_form,
    same,
)
from cadastre.simulators.auth.grants import Family
from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from starlette.requests import Request

    from cadastre.simulators.auth.grants import Tokens
    from cadastre.simulators.auth.settings import AuthSettings, AuthStats
    from cadastre.simulators.clock import Clock

# RFC 7636 section 4.1: 43 to 128 unreserved characters (a S256 challenge is 43 of them).
PKCE_TEXT = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")
REFUSAL_ERRORS = {400: "invalid_grant", 500: "server_error", 503: "temporarily_unavailable"}


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]


@dataclass(eq=False)
class _Code:
    client_id: str
    redirect_uri: str
    redirect_given: bool  # the exchange must repeat it only when the request named it
    challenge: str = field(repr=False)
    scope: str
    deadline: float
    tried: bool = False  # an exchange was attempted: the code is spent
    family: Family | None = None  # the grant it was exchanged for


@dataclass
class _Refusal:
    status: int
    error: str
    left: int


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthServer:
    def __init__(
        self, clock: Clock, settings: Callable[[], AuthSettings], stats: AuthStats, tokens: Tokens
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self.tokens = tokens
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, _Code] = {}
        self._refusal: _Refusal | None = None

    def __repr__(self) -> str:
        return (
            f"OAuthServer(clients={sorted(self._clients)}, codes={len(self._codes)}, "
            f"tokens={self.tokens!r})"
        )

    # ------------------------------------------------------------------------------- clients

    def register(self, client_id: str, client_secret: str, redirect_uris: Iterable[str]) -> None:
        uris = tuple(redirect_uris)
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are non-empty strings")
        for uri in uris:
            parts = urlsplit(uri)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise ValueError(f"a redirect URI is absolute, without a fragment: {uri!r}")
        self._clients[client_id] = Client(client_id, client_secret, uris)

    @property
    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def refuse_refreshes(self, status: int, count: int, error: str | None = None) -> None:
        """The next ``count`` refresh requests are answered ``status`` with ``error``."""
        if status not in REFUSAL_ERRORS:
            raise ValueError(f"status is one of {sorted(REFUSAL_ERRORS)}")
        if count < 0:
            raise ValueError("count is >= 0")
        self._refusal = _Refusal(status, error or REFUSAL_ERRORS[status], count)

    @property
    def refusal(self) -> dict[str, object] | None:
        """The refusal set, with the count of refresh requests it has yet to answer."""
        refusal = self._refusal
        if refusal is None:
            return None
        return {"status": refusal.status, "error": refusal.error, "count": refusal.left}

    # ------------------------------------------------------------------------ authorization

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return oauth_error("invalid_client", "client_id is missing or unknown")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            target = client.redirect_uris[0]
        elif redirect_uri is not None and redirect_uri in client.redirect_uris:
            target = redirect_uri
        else:
            return oauth_error("invalid_request", "redirect_uri is not registered for the client")
        state = params.get("state")
        try:
            code = self._consent(client, params, target, redirect_uri is not None)
        except OAuthError as exc:
            answer = {"error": exc.error, "error_description": exc.description}
            return _redirect(target, answer, state)
        self._stats.codes_issued += 1
        return _redirect(target, {"code": code}, state)

    def _consent(self, client: Client, params: dict[str, str], target: str, given: bool) -> str:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        challenge = params.get("code_challenge")
        if not challenge:
            raise OAuthError("invalid_request", "code_challenge is required (PKCE)")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "transform algorithm not supported: use S256")
        if len(challenge) != 43 or not PKCE_TEXT.fullmatch(challenge):
            raise OAuthError("invalid_request", "code_challenge is not a S256 challenge")
        if self._settings().consent == "deny":
            raise OAuthError("access_denied", "the user denied the request")
        now = self._clock.monotonic()
        self._codes = {
            c: r for c, r in self._codes.items() if r.deadline > now or r.family is not None
        }
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            client_id=client.client_id,
            redirect_uri=target,
            redirect_given=given,
            challenge=challenge,
            scope=" ".join(params.get("scope", "").split()),
            deadline=now + self._settings().code_ttl,
        )
        return code

    # -------------------------------------------------------------------------------- token

    async def token(self, request: Request) -> Response:
        self._stats.token_endpoint_calls += 1
        grant_type = ""
        try:
            form = await read_form(request)
            grant_type = form.get("grant_type", "")
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is missing")
            if grant_type not in GRANT_TYPES:
                raise OAuthError("unsupported_grant_type", f"grant_type is one of {GRANT_TYPES}")
            if grant_type == "refresh_token" and self._refusal and self._refusal.left > 0:
                self._refusal.left -= 1
                self._stats.refreshes_refused += 1
                raise OAuthError(self._refusal.error, "refused (simulated)", self._refusal.status)
            client = self._authenticate(request, form)
            issued = self._grant(grant_type, client, form)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                self._stats.invalid_grants[grant_type] += 1
            return exc.response()
        self._stats.tokens_issued += 1
        return json_response(issued, headers=NO_STORE)

    def _authenticate(self, request: Request, form: dict[str, str]) -> Client:
        """The client, by HTTP Basic or client_id/client_secret in the body (never both)."""
        try:
            basic = basic_credentials(request.headers.get("authorization"), form_encoded=True)
        except ValueError:
            raise OAuthError("invalid_request", "malformed Basic credentials") from None
        # A client_id in the body beside Basic is tolerated when it names the same client.
        if basic is not None and (
            "client_secret" in form or form.get("client_id", basic[0]) != basic[0]
        ):
            raise OAuthError("invalid_request", "credentials both in Basic and the body")
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client = self._clients.get(client_id)
        if client is None or not same(secret, client.secret):
            headers = {"WWW-Authenticate": 'Basic realm="oauth"'} if basic else {}
            raise OAuthError("invalid_client", "client authentication failed", 401, headers)
        return client

    def _grant(self, grant_type: str, client: Client, form: dict[str, str]) -> dict[str, object]:
        if grant_type == "client_credentials":
            scope = " ".join(form.get("scope", "").split())
            return self.tokens.client_credentials(client.client_id, scope).body()
        if grant_type == "refresh_token":
            token = form.get("refresh_token")
            if not token:
                raise OAuthError("invalid_request", "refresh_token is missing")
            issued = self.tokens.refresh(client.client_id, token, form.get("scope"))
            self._stats.refreshes += 1
            return issued.body()
        return self._exchange(client, form)

    def _exchange(self, client: Client, form: dict[str, str]) -> dict[str, object]:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code is unknown or issued to another client")
        if code.family is not None:
            self._stats.code_reuse += 1
            if self.tokens.revoke_family(code.family):
                self._stats.families_revoked += 1
            raise OAuthError("invalid_grant", "the code was already used: its grant is revoked")
        if code.tried:
            raise OAuthError("invalid_grant", "the code was spent by a failed exchange")
        code.tried = True
        if self._clock.monotonic() >= code.deadline:
            raise OAuthError("invalid_grant", "the code has expired")
        if code.redirect_given and form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's")
        verifier = form.get("code_verifier", "")
        if not PKCE_TEXT.fullmatch(verifier):
            raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
        if not same(s256(verifier), code.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the challenge")
        family, issued = self.tokens.start_family(client.client_id, code.scope)
        code.family = family
        return issued.body()

    def mint(self, client_id: str, scope: str) -> dict[str, object]:
        """A grant as if the user had consented and the code been exchanged (admin)."""
        if client_id not in self._clients:
            raise ValueError(f"no client {client_id!r}")
        _, issued = self.tokens.start_family(client_id, " ".join(scope.split()))
        return issued.body()

    # ------------------------------------------------------------------ revocation, checking

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: a refresh token ends its whole grant, an access token itself. Unknown or
        foreign tokens are answered 200 too (section 2.2)."""
        try:
            form = await read_form(request)
            client = self._authenticate(request, form)
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request", "token is missing")
        except OAuthError as exc:
            return exc.response()
        self._stats.token_revocations += 1
        family = self.tokens.family_of_refresh(token)
        if family is not None and family.client_id == client.client_id:
            self.tokens.revoke_family(family)
        else:
            access = self.tokens.check(token)
            if access is not None and access.client_id == client.client_id:
                self.tokens.revoke_access(token)
        return Response(status_code=200, headers=NO_STORE)

    async def me(self, request: Request) -> Response:
        """``GET /api/me``: the protected resource."""
        self._stats.api_calls += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._stats.api_refused += 1
            # RFC 6750 section 3.1: no error code in the challenge when no token came at all.
            return _unauthorized(
                'Bearer realm="api"', "invalid_request", "a bearer token is needed"
            )
        access = self.tokens.check(token.strip())
        if access is None:
            self._stats.api_refused += 1
            return _unauthorized(
                'Bearer error="invalid_token"',
                "invalid_token",
                "the access token is expired, revoked or unknown",
            )
        return json_response({"client_id": access.client_id, "scope": access.scope, "ok": True})


def _unauthorized(challenge: str, error: str, description: str) -> Response:
    return json_response(
        {"error": error, "error_description": description},
        401,
        {"WWW-Authenticate": challenge},
    )


def _redirect(target: str, answer: dict[str, str], state: str | None) -> Response:
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += list(answer.items())
    if state is not None:
        query.append(("state", state))
    location = urlunsplit(parts._replace(query=urlencode(query)))
    return RedirectResponse(location, status_code=302, headers=NO_STORE)
