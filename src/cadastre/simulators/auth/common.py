"""What the authorization server's parts share: RFC 6749 error answers, form and Basic parsing,
the accounts that log in with a password, and ISO timestamps.

Secrets (tokens, keys, passwords) are kept in plain dictionaries for the simulator's life only;
every holder of one has a ``__repr__`` that names counts, never values, and nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus

from cadastre.simulators.base import json_response

if TYPE_CHECKING:
    from datetime import datetime

    from starlette.requests import Request
    from starlette.responses import Response

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error, raised where it is found and answered by the endpoint."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        return oauth_error(self.error, self.description, self.status, self.headers)


def oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> Response:
    return json_response(
        {"error": error, "error_description": description},
        status,
        {**NO_STORE, **(headers or {})},
    )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    """A form body as a dict; OAuthError(invalid_request) for another type or a repeated name
    (RFC 6749 section 3.2: parameters must not be included more than once)."""
    if media_type(request) != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    try:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name} is given twice")
        form[name] = value
    return form


def basic_credentials(authorization: str | None, *, form_encoded: bool) -> tuple[str, str] | None:
    """(user, password) from a Basic header, None without one; ValueError when malformed.

    OAuth clients form-encode both parts before joining them (RFC 6749 section 2.3.1); a plain
    RFC 7617 login (``form_encoded=False``) takes them as they are, in UTF-8.
    """
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed Basic credentials") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError("malformed Basic credentials")
    if form_encoded:
        return unquote_plus(user), unquote_plus(password)
    return user, password


def same(given: str, expected: str) -> bool:
    """A constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class Users:
    """The accounts that log in with a password (RETS HTTP auth and the session login)."""

    def __init__(self) -> None:
        self._passwords: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Users({sorted(self._passwords)})"

    def add(self, username: str, password: str) -> None:
        if not username or ":" in username or not password:
            raise ValueError("a username (without ':') and a password, both non-empty")
        self._passwords[username] = password

    def password(self, username: str) -> str | None:
        return self._passwords.get(username)

    def check(self, username: str, password: str) -> bool:
        expected = self._passwords.get(username)
        # Compared even for an unknown user, so the answer takes as long either way.
        return same(password, expected if expected is not None else "\0") and expected is not None
