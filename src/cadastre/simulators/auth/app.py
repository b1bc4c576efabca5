"""A vendor's authorization server: the OAuth 2.0 grants a hub meets (authorization code with PKCE,
client credentials, refresh with the rotation habits of real vendors), API keys that rotate with
an overlap, RETS-style HTTP Basic and Digest, and a legacy session-cookie login, each with a
protected resource to prove the credentials on.

Endpoints: ``GET /oauth/authorize``, ``POST /oauth/token``, ``POST /oauth/revoke``, ``GET /api/me``
(bearer), ``GET /api/keyed`` and ``POST /keys/rotate`` (API key), ``GET /rets/login`` (Basic or
Digest), ``POST /session/login``, ``GET /session/data``, ``POST /session/logout`` (cookie). All are
vendor paths: counted, and subject to the rate limit and the fault profile (a lost response on
``/oauth/token`` rotates the refresh token and then drops the answer). Admin, beside the base
simulator's: ``GET|POST /admin/settings``, ``GET|POST /admin/oauth/clients``,
``POST /admin/oauth/grant``, ``POST /admin/oauth/revoke-all``, ``POST /admin/oauth/refuse-refresh``,
``POST /admin/api-keys``, ``POST /admin/users`` (see README.md).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route

from cadastre.simulators.auth.common import Users, oauth_error
from cadastre.simulators.auth.grants import Tokens
from cadastre.simulators.auth.httpauth import HttpAuth
from cadastre.simulators.auth.keys import ApiKeys
from cadastre.simulators.auth.oauth import OAuthServer
from cadastre.simulators.auth.sessions import Sessions
from cadastre.simulators.auth.settings import AuthSettings, AuthStats
from cadastre.simulators.base import Simulator, json_response, read_json
from cadastre.simulators.clock import SystemClock

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.clock import Clock
    from cadastre.simulators.faults import FaultProfile
    from cadastre.simulators.ratelimit import RateLimit, RateLimitHeaders

DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"


class AuthSimulator(Simulator):
    stats: AuthStats

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        settings: AuthSettings | None = None,
        rate_limit: RateLimit | None = None,
        faults: FaultProfile | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",  # noqa: S107 - the simulator's published demo login
        redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
        username: str = "demo-user",
        password: str = "demo-password",  # noqa: S107 - the published demo login
        api_keys: Iterable[str] = (),
    ) -> None:
        clock = clock if clock is not None else SystemClock()
        stats = AuthStats()
        self._settings = settings if settings is not None else AuthSettings()
        self.users = Users()
        self.users.add(username, password)
        current = self._current_settings
        self._tokens = Tokens(clock, current, stats)
        self._oauth = OAuthServer(clock, current, stats, self._tokens)
        self._oauth.register(client_id, client_secret, redirect_uris)
        self._keys = ApiKeys(clock, current, stats)
        for key in api_keys:
            self._keys.seed(key)
        self._http = HttpAuth(clock, current, stats, self.users)
        self._sessions = Sessions(clock, current, stats, self.users)
        super().__init__(
            clock=clock, rate_limit=rate_limit, faults=faults, rate_limit_headers=rate_limit_headers
        )
        self.stats = stats  # the parts count into this one object

    def __repr__(self) -> str:
        clients = sorted(client.client_id for client in self._oauth.clients)
        return f"AuthSimulator(clients={clients}, rotation={self._settings.rotation!r})"

    # ------------------------------------------------------------------------- for tests

    @property
    def settings(self) -> AuthSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: AuthSettings) -> None:
        self._settings = settings

    def _current_settings(self) -> AuthSettings:
        return self._settings

    def configure(self, **changes: Any) -> AuthSettings:
        """Change some settings (checked as the constructor checks them) and return them all."""
        self._settings = dataclasses.replace(self._settings, **changes)
        return self._settings

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str] = ()
    ) -> None:
        """Add a client, or replace one's secret and redirect URIs."""
        self._oauth.register(client_id, client_secret, redirect_uris)

    def grant(self, client_id: str, scope: str = "") -> dict[str, Any]:
        """Mint a grant as if the user had consented: the token endpoint's answer."""
        return self._oauth.mint(client_id, scope)

    def revoke_all(self, client_id: str | None = None) -> int:
        """The user disconnects the app (``None``: every app); the number of grants ended."""
        return self._tokens.revoke_client(client_id)

    def refuse_refreshes(self, status: int, count: int, error: str | None = None) -> None:
        """Answer the next ``count`` refresh requests with ``status`` (400, 500 or 503)."""
        self._oauth.refuse_refreshes(status, count, error)

    def seed_api_key(self, key: str) -> None:
        self._keys.seed(key)

    def add_user(self, username: str, password: str) -> None:
        self.users.add(username, password)

    # --------------------------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/authorize", self._oauth.authorize, methods=["GET"]),
            Route("/oauth/token", self._oauth.token, methods=["POST"]),
            Route("/oauth/revoke", self._oauth.revoke, methods=["POST"]),
            Route("/api/me", self._oauth.me, methods=["GET"]),
            Route("/api/keyed", self._keys.resource, methods=["GET"]),
            Route("/keys/rotate", self._keys.rotate, methods=["POST"]),
            Route("/rets/login", self._http.login, methods=["GET"]),
            Route("/session/login", self._sessions.login, methods=["POST"]),
            Route("/session/data", self._sessions.data, methods=["GET"]),
            Route("/session/logout", self._sessions.logout, methods=["POST"]),
        ]

    def admin_routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/settings", self._admin_settings, methods=["GET", "POST"]),
            Route("/admin/oauth/clients", self._admin_clients, methods=["GET", "POST"]),
            Route("/admin/oauth/grant", self._admin_grant, methods=["POST"]),
            Route("/admin/oauth/revoke-all", self._admin_revoke_all, methods=["POST"]),
            Route("/admin/oauth/refuse-refresh", self._admin_refuse, methods=["POST"]),
            Route("/admin/api-keys", self._admin_api_key, methods=["POST"]),
            Route("/admin/users", self._admin_user, methods=["POST"]),
        ]

    # ---------------------------------------------------------------------------------- admin

    async def _admin_settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self._settings = self._settings.updated(await _object(request))
            except (ValueError, TypeError) as exc:
                return oauth_error("invalid_request", str(exc))
        return json_response(self._settings.to_json())

    async def _admin_clients(self, request: Request) -> Response:
        if request.method == "GET":
            clients = [_client_json(c.client_id, c.redirect_uris) for c in self._oauth.clients]
            return json_response({"clients": clients})
        try:
            body = await _object(request, required=("client_id", "client_secret"),
                                 optional=("redirect_uris",))  # fmt: skip
            uris = body.get("redirect_uris", [])
            if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                raise ValueError("redirect_uris is a list of strings")
            self.register_client(_text(body, "client_id"), _text(body, "client_secret"), uris)
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response(_client_json(body["client_id"], uris), 201)

    async def _admin_grant(self, request: Request) -> Response:
        try:
            body = await _object(request, required=("client_id",), optional=("scope",))
            scope = body.get("scope", "")
            if not isinstance(scope, str):
                raise ValueError("scope is a string")
            minted = self.grant(_text(body, "client_id"), scope)
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response(minted)

    async def _admin_revoke_all(self, request: Request) -> Response:
        try:
            body = await _object(request, optional=("client_id",), allow_empty=True)
            client_id = body.get("client_id")
            if client_id is not None and not isinstance(client_id, str):
                raise ValueError("client_id is a string")
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response({"client_id": client_id, "revoked": self.revoke_all(client_id)})

    async def _admin_refuse(self, request: Request) -> Response:
        try:
            body = await _object(request, required=("status", "count"), optional=("error",))
            status, count, error = body["status"], body["count"], body.get("error")
            if any(isinstance(v, bool) or not isinstance(v, int) for v in (status, count)):
                raise ValueError("status and count are integers")
            if error is not None and not isinstance(error, str):
                raise ValueError("error is a string")
            self.refuse_refreshes(status, count, error)
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response(self._oauth.refusal)

    async def _admin_api_key(self, request: Request) -> Response:
        try:
            body = await _object(request, required=("key",))
            self.seed_api_key(_text(body, "key"))
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response({"ok": True}, 201)

    async def _admin_user(self, request: Request) -> Response:
        try:
            body = await _object(request, required=("username", "password"))
            self.add_user(_text(body, "username"), _text(body, "password"))
        except (ValueError, TypeError) as exc:
            return oauth_error("invalid_request", str(exc))
        return json_response({"username": body["username"]}, 201)


async def _object(
    request: Request,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    *,
    allow_empty: bool = False,
) -> dict[str, Any]:
    body = await read_json(request)
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object")
    if not required and not optional:
        return body
    unknown = set(body) - {*required, *optional}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    missing = [name for name in required if name not in body]
    if missing:
        raise ValueError(f"missing fields: {missing}")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is a string")
    return value


def _client_json(client_id: str, redirect_uris: Iterable[str]) -> dict[str, Any]:
    return {"client_id": client_id, "redirect_uris": list(redirect_uris)}
