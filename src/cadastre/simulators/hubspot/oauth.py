"""HubSpot's OAuth 2.0 token endpoint (``POST /oauth/v1/token``) and a consent page that agrees
at once (``GET /oauth/authorize``).

The token request is a form with ``client_id`` and ``client_secret`` in the body (HubSpot takes no
Basic auth), ``grant_type`` ``authorization_code`` (``code``, ``redirect_uri``) or
``refresh_token``. Answers ``{"token_type": "bearer", "refresh_token", "access_token",
"expires_in": 1800}``. Refresh tokens do not rotate (the same one comes back) and do not expire;
access tokens expire on the simulator clock. Refusals are HubSpot's, 400 with
``{"status": "BAD_REFRESH_TOKEN" | "BAD_AUTH_CODE" | "BAD_CLIENT_ID" | "BAD_CLIENT_SECRET" |
"BAD_REDIRECT_URI" | "BAD_GRANT_TYPE", "message", "correlationId"}``: not RFC 6749's ``error``
field. The token families come from the shared authorization server (``auth.grants``).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from starlette.responses import RedirectResponse, Response

from cadastre.simulators.auth.common import same
from cadastre.simulators.auth.grants import Tokens
from cadastre.simulators.auth.settings import AuthSettings, AuthStats
from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from starlette.requests import Request

    from cadastre.simulators.auth.grants import Access
    from cadastre.simulators.clock import Clock

CODE_TTL = 600.0
NO_STORE = {"Cache-Control": "no-store"}


class TokenRefused(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Code:
    redirect_uri: str
    scope: str
    deadline: float
    used: bool = False


@dataclass
class OAuthCounts:
    token_endpoint_calls: int = 0
    codes_exchanged: int = 0
    refreshes: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by HubSpot status


class HubSpotOAuth:
    def __init__(self, clock: Clock, *, client_id: str, client_secret: str,
                 token_ttl: float = 1800.0) -> None:  # fmt: skip
        self._clock = clock
        self.client_id = client_id
        self._secret = client_secret
        self._settings = AuthSettings(rotation="none", token_ttl=token_ttl)
        self.tokens = Tokens(clock, lambda: self._settings, AuthStats())
        self._codes: dict[str, _Code] = {}
        self.counts = OAuthCounts()

    def __repr__(self) -> str:
        return f"HubSpotOAuth(client_id={self.client_id!r}, tokens={self.tokens!r})"

    @property
    def token_ttl(self) -> float:
        return self._settings.token_ttl

    def check(self, token: str) -> Access | None:
        return self.tokens.check(token)

    def issue_code(self, redirect_uri: str, scope: str = "") -> str:
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(redirect_uri, scope, self._clock.monotonic() + CODE_TTL)
        return code

    def grant(self, scope: str = "") -> dict[str, object]:
        """Tokens as if the user had installed the app and the code been exchanged."""
        _, issued = self.tokens.start_family(self.client_id, scope)
        return _answer(issued.body())

    def revoke_all(self) -> int:
        return self.tokens.revoke_client(self.client_id)

    async def authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != self.client_id or not params.get("redirect_uri"):
            return json_response(_refusal("BAD_CLIENT_ID", "client_id or redirect_uri is "
                                          "missing or unknown"), 400)  # fmt: skip
        redirect = params["redirect_uri"]
        answer = {"code": self.issue_code(redirect, params.get("scope", ""))}
        if params.get("state") is not None:
            answer["state"] = params["state"]
        joiner = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{joiner}{urlencode(answer)}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.counts.token_endpoint_calls += 1
        try:
            answer = self._token(request.headers.get("content-type", ""), await request.body())
        except TokenRefused as exc:
            self.counts.refused[exc.status] = self.counts.refused.get(exc.status, 0) + 1
            return json_response(_refusal(exc.status, exc.message), 400, NO_STORE)
        return json_response(answer, 200, NO_STORE)

    def _token(self, content_type: str, raw: bytes) -> dict[str, object]:
        if not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise TokenRefused("BAD_REQUEST", "the body must be application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise TokenRefused("BAD_REQUEST", "the body is not UTF-8") from None
        if form.get("client_id") != self.client_id:
            raise TokenRefused("BAD_CLIENT_ID", "missing or unknown client_id")
        if not same(form.get("client_secret", ""), self._secret):
            raise TokenRefused("BAD_CLIENT_SECRET", "missing or invalid client secret")
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            try:
                issued = self.tokens.refresh(self.client_id, form.get("refresh_token", ""), None)
            except Exception:  # noqa: BLE001 - OAuthError of the shared server: any refusal
                raise TokenRefused(
                    "BAD_REFRESH_TOKEN", "missing or unknown refresh token"
                ) from None
            self.counts.refreshes += 1
            return _answer(issued.body())
        if grant_type == "authorization_code":
            code = self._codes.get(form.get("code", ""))
            if code is None or code.used or self._clock.monotonic() >= code.deadline:
                raise TokenRefused("BAD_AUTH_CODE", "missing or unknown auth code")
            code.used = True
            if form.get("redirect_uri") != code.redirect_uri:
                raise TokenRefused("BAD_REDIRECT_URI", "redirect_uri does not match")
            self.counts.codes_exchanged += 1
            return self.grant(code.scope)
        raise TokenRefused("BAD_GRANT_TYPE", "grant_type is authorization_code or refresh_token")


def _answer(body: dict[str, object]) -> dict[str, object]:
    return {
        "token_type": "bearer", "refresh_token": body.get("refresh_token"),
        "access_token": body["access_token"], "expires_in": body["expires_in"],
    }  # fmt: skip


def _refusal(status: str, message: str) -> dict[str, str]:
    return {"status": status, "message": message, "correlationId": str(uuid.uuid4())}
