"""Session-cookie login, as legacy property-management systems do it.

``POST /session/login`` takes ``username`` and ``password`` as a form or a JSON object and answers
200 with ``Set-Cookie: SIMSESSION=<id>; HttpOnly; Path=/``. ``GET /session/data`` needs that
cookie; each use keeps the session alive, and one left unused for ``session_idle`` seconds of the
simulator clock is gone (401). ``POST /session/logout`` ends it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from cadastre.simulators.auth.common import FORM, media_type, oauth_error
from cadastre.simulators.base import json_response, read_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from cadastre.simulators.auth.common import Users
    from cadastre.simulators.auth.settings import AuthSettings, AuthStats
    from cadastre.simulators.clock import Clock

COOKIE = "SIMSESSION"
PRUNE_ABOVE = 4096  # idle sessions are forgotten once there are more than this many


@dataclass(eq=False)
class _Session:
    username: str
    last_used: float


class Sessions:
    def __init__(
        self, clock: Clock, settings: Callable[[], AuthSettings], stats: AuthStats, users: Users
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self._users = users
        self._sessions: dict[str, _Session] = {}

    def __repr__(self) -> str:
        return f"Sessions(open={len(self._sessions)})"

    async def login(self, request: Request) -> Response:
        try:
            username, password = await _credentials(request)
        except ValueError as exc:
            self._stats.session_login_failures += 1
            return oauth_error("invalid_request", str(exc))
        if not self._users.check(username, password):
            self._stats.session_login_failures += 1
            return oauth_error("invalid_credentials", "wrong username or password", 401)
        now = self._clock.monotonic()
        if len(self._sessions) > PRUNE_ABOVE:
            self._sessions = {s: r for s, r in self._sessions.items() if self._alive(r, now)}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = _Session(username, now)
        self._stats.session_logins += 1
        response = json_response({"ok": True, "username": username})
        response.headers["Set-Cookie"] = f"{COOKIE}={session}; HttpOnly; Path=/"
        return response

    async def data(self, request: Request) -> Response:
        self._stats.session_calls += 1
        session = request.cookies.get(COOKIE)
        if not session:
            self._stats.session_refused += 1
            return oauth_error("no_session", "log in first", 401)
        record = self._sessions.get(session)
        now = self._clock.monotonic()
        if record is None or not self._alive(record, now):
            self._sessions.pop(session, None)
            self._stats.session_refused += 1
            return oauth_error("session_expired", "the session has expired: log in again", 401)
        record.last_used = now
        return json_response({"ok": True, "username": record.username})

    async def logout(self, request: Request) -> Response:
        session = request.cookies.get(COOKIE)
        if session:
            self._sessions.pop(session, None)
        response = json_response({"ok": True})
        response.headers["Set-Cookie"] = f"{COOKIE}=; Max-Age=0; HttpOnly; Path=/"
        return response

    def _alive(self, record: _Session, now: float) -> bool:
        return now - record.last_used < self._settings().session_idle


async def _credentials(request: Request) -> tuple[str, str]:
    kind = media_type(request)
    body: Any
    if kind == "application/json":
        body = await read_json(request)
    elif kind == FORM:
        try:
            body = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ValueError("the body is not UTF-8") from None
    else:
        raise ValueError(f"the body is {FORM} or application/json")
    if not isinstance(body, dict):
        raise ValueError("the body is an object with username and password")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise ValueError("username and password are strings")
    return username, password
