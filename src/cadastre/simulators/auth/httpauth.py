"""HTTP Basic (RFC 7617) and Digest (RFC 7616) authentication on ``GET /rets/login``, as RETS
servers use them.

A request without credentials gets 401 with one challenge per enabled scheme, in the order of the
``http_auth`` setting: for Digest one per algorithm in ``digest_algorithms`` (SHA-256 first by
default, so clients that can prefer it), all with ``qop="auth"``, the same fresh nonce and the
server's opaque, then ``Basic realm=..., charset="UTF-8"``. A Digest answer is checked against the
user's password; when it is right but its nonce is older than ``nonce_ttl`` (or unknown to the
server, or its nonce count was seen before) the answer is 401 with a new nonce and
``stale=true``, which tells the client to retry with the new nonce without asking the user again.
``-sess`` algorithms and ``qop=auth-int`` are not offered.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from starlette.responses import Response

from cadastre.simulators.auth.common import basic_credentials, same
from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from cadastre.simulators.auth.common import Users
    from cadastre.simulators.auth.settings import AuthSettings, AuthStats
    from cadastre.simulators.clock import Clock

REALM = "rets@sim"
PRUNE_ABOVE = 4096  # stale nonces are forgotten once the server holds more than this many
_PARAM = re.compile(r'\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')
_ESCAPED = re.compile(r"\\(.)")
_REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
RETS_LOGIN = """<RETS ReplyCode="0" ReplyText="Operation Successful">
<RETS-RESPONSE>
MemberName={user}
User={user},1,Agent,{user}
TimeoutSeconds={timeout}
</RETS-RESPONSE>
</RETS>
"""


@dataclass(eq=False)
class _Nonce:
    issued: float
    counts: set[str] = field(default_factory=set)  # nc values already answered


def digest_params(text: str) -> dict[str, str]:
    """The name=value pairs of a Digest header (quoted strings unescaped); ValueError if bad."""
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or match.end() == position:
            raise ValueError("malformed Digest parameters")
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = _ESCAPED.sub(r"\1", value[1:-1])
        if name in params:
            raise ValueError(f"{name} is given twice")
        params[name] = value
        position = match.end()
    return params


def _hash(algorithm: str, text: str) -> str:
    data = text.encode()
    if algorithm == "MD5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    return hashlib.sha256(data).hexdigest()


class HttpAuth:
    def __init__(
        self, clock: Clock, settings: Callable[[], AuthSettings], stats: AuthStats, users: Users
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self._users = users
        self._opaque = secrets.token_hex(16)
        self._nonces: dict[str, _Nonce] = {}

    def __repr__(self) -> str:
        return f"HttpAuth(users={self._users!r}, nonces={len(self._nonces)})"

    async def login(self, request: Request) -> Response:
        """``GET /rets/login``."""
        settings = self._settings()
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme not in settings.http_auth:
            if scheme:
                self._stats.rets_refused += 1
            else:
                self._stats.rets_challenges += 1
            return self._challenge("credentials are needed" if not scheme else "unsupported")
        if scheme == "basic":
            user = self._basic(request)
            label = "basic"
        else:
            try:
                params = digest_params(credentials)
            except ValueError:
                params = {}
            user, stale = self._digest(request, params)
            if stale:
                self._stats.digest_stale += 1
                return self._challenge("the nonce is stale", stale=True)
            label = f"digest:{params.get('algorithm', 'MD5').upper()}"
        if user is None:
            self._stats.rets_refused += 1
            return self._challenge("wrong or malformed credentials")
        self._stats.rets_logins[label] += 1
        body = RETS_LOGIN.format(user=escape(user), timeout=round(settings.session_idle))
        return Response(body, media_type="text/xml", headers={"RETS-Version": "RETS/1.7.2"})

    def _basic(self, request: Request) -> str | None:
        try:
            found = basic_credentials(request.headers.get("authorization"), form_encoded=False)
        except ValueError:
            return None
        if found is None or not self._users.check(*found):
            return None
        return found[0]

    def _digest(self, request: Request, params: dict[str, str]) -> tuple[str | None, bool]:
        """(the user when the answer is right, whether its nonce is stale)."""
        settings = self._settings()
        algorithm = params.get("algorithm", "MD5").upper()
        if (
            any(name not in params for name in _REQUIRED)
            or algorithm not in settings.digest_algorithms
            or params["qop"] != "auth"
            or params["realm"] != REALM
            or not same(params.get("opaque", ""), self._opaque)
            or params["uri"] != _request_target(request)
        ):
            return None, False
        user = params["username"]
        password = self._users.password(user)
        if password is None:
            return None, False
        ha1 = _hash(algorithm, f"{user}:{REALM}:{password}")
        ha2 = _hash(algorithm, f"{request.method}:{params['uri']}")
        nonce, count = params["nonce"], params["nc"]
        expected = _hash(algorithm, f"{ha1}:{nonce}:{count}:{params['cnonce']}:auth:{ha2}")
        if not same(params["response"].lower(), expected):
            return None, False
        record = self._nonces.get(nonce)
        now = self._clock.monotonic()
        if record is None or now - record.issued >= settings.nonce_ttl or count in record.counts:
            return None, True
        record.counts.add(count)
        return user, False

    def _challenge(self, description: str, *, stale: bool = False) -> Response:
        settings = self._settings()
        response = json_response({"error": "unauthorized", "error_description": description}, 401)
        nonce = self._new_nonce()
        for scheme in settings.http_auth:
            if scheme == "basic":
                response.headers.append(
                    "WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'
                )
                continue
            for algorithm in settings.digest_algorithms:
                challenge = (
                    f'Digest realm="{REALM}", qop="auth", algorithm={algorithm}, '
                    f'nonce="{nonce}", opaque="{self._opaque}"'
                )
                if stale:
                    challenge += ", stale=true"
                response.headers.append("WWW-Authenticate", challenge)
        return response

    def _new_nonce(self) -> str:
        now = self._clock.monotonic()
        if len(self._nonces) > PRUNE_ABOVE:
            ttl = self._settings().nonce_ttl
            self._nonces = {n: r for n, r in self._nonces.items() if now - r.issued < ttl}
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = _Nonce(issued=now)
        return nonce


def _request_target(request: Request) -> str:
    """The path and query as the client sent them: what Digest's ``uri`` must repeat."""
    scope = request.scope
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw + b"?" + query if query else raw).decode("latin-1")
