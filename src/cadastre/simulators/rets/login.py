"""RETS Login: HTTP Digest (RFC 7616, MD5, ``qop="auth"``) on ``/rets/login``, then a session.

A login answered right sets ``RETS-Session-ID`` and lists the capability URLs in
``<RETS-RESPONSE>``. Every other transaction needs that cookie; a session left unused for
``session_idle`` seconds of the simulator clock (or ended by ``expire_all``, or by Logout) is gone,
and the transaction answers reply code 20701 "Not Logged In" with HTTP 200, as RETS servers do.
Other transactions also accept (and check) a Digest answer when one is sent, since clients re-send
the one they hold; a wrong one is 401.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.responses import Response

from cadastre.simulators.auth.common import same
from cadastre.simulators.auth.httpauth import digest_params
from cadastre.simulators.rets.replies import HEADERS, SUCCESS, envelope, xml

if TYPE_CHECKING:
    from starlette.requests import Request

    from cadastre.simulators.clock import Clock

REALM = "rets@sim"
COOKIE = "RETS-Session-ID"
_REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
CAPABILITIES = {
    "Search": "/rets/search",
    "GetObject": "/rets/getobject",
    "GetMetadata": "/rets/getmetadata",
    "Logout": "/rets/logout",
}


@dataclass(eq=False)
class _Session:
    user: str
    last_used: float


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class RetsLogins:
    def __init__(self, clock: Clock, username: str, password: str, session_idle: float) -> None:
        self._clock = clock
        self._user, self._password = username, password
        self.session_idle = session_idle
        self._opaque = secrets.token_hex(8)
        self._nonces: set[str] = set()
        self._sessions: dict[str, _Session] = {}
        self.logins = self.challenges = self.refused = self.expired_replies = 0

    def __repr__(self) -> str:
        return f"RetsLogins(sessions={len(self._sessions)})"

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def login(self, request: Request) -> Response:
        user = self._digest_user(request)
        if user is None:
            return self._challenge()
        session = secrets.token_urlsafe(24)
        self._sessions[session] = _Session(user, self._clock.monotonic())
        self.logins += 1
        lines = [f"MemberName={user}", f"User={user},1,Agent,{user}",
                 f"TimeoutSeconds={round(self.session_idle)}"]  # fmt: skip
        lines += [f"{name}={path}" for name, path in CAPABILITIES.items()]
        body = envelope(SUCCESS, "<RETS-RESPONSE>\n" + "\n".join(lines) + "\n</RETS-RESPONSE>\n")
        return xml(body, {"Set-Cookie": f"{COOKIE}={session}; Path=/; HttpOnly"})

    def check(self, request: Request) -> Response | str | None:
        """The session's user; a 401 for a wrong Digest answer; None when not logged in."""
        if request.headers.get("authorization") and self._digest_user(request) is None:
            return self._challenge()
        session = request.cookies.get(COOKIE)
        record = self._sessions.get(session) if session else None
        now = self._clock.monotonic()
        if record is None or now - record.last_used >= self.session_idle:
            if session:
                self._sessions.pop(session, None)
            self.expired_replies += 1
            return None
        record.last_used = now
        return record.user

    def logout(self, request: Request) -> bool:
        session = request.cookies.get(COOKIE)
        return bool(session) and self._sessions.pop(session or "", None) is not None

    def expire_all(self) -> int:
        ended = len(self._sessions)
        self._sessions.clear()
        return ended

    def _digest_user(self, request: Request) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "digest":
            return None
        try:
            params = digest_params(credentials)
        except ValueError:
            return None
        if (
            any(name not in params for name in _REQUIRED)
            or params.get("algorithm", "MD5").upper() != "MD5"
            or params["qop"] != "auth"
            or params["realm"] != REALM
            or params["nonce"] not in self._nonces
            or params["username"] != self._user
            or params["uri"] != _request_target(request)
        ):
            self.refused += 1
            return None
        ha1 = _md5(f"{self._user}:{REALM}:{self._password}")
        ha2 = _md5(f"{request.method}:{params['uri']}")
        expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        if not same(params["response"].lower(), expected):
            self.refused += 1
            return None
        return self._user

    def _challenge(self) -> Response:
        self.challenges += 1
        nonce = secrets.token_hex(16)
        if len(self._nonces) > 4096:
            self._nonces.clear()
        self._nonces.add(nonce)
        challenge = (
            f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="{nonce}", '
            f'opaque="{self._opaque}"'
        )
        return Response(
            envelope(20036, text="Authorization required"), 401, media_type="text/xml",
            headers={**HEADERS, "WWW-Authenticate": challenge},
        )  # fmt: skip


def _request_target(request: Request) -> str:
    scope = request.scope
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw + b"?" + query if query else raw).decode("latin-1")
